"""Google's Limited Use clauses, each with the code that enforces it and the test that proves it.

This table is what `gwsync compliance` prints for the people who must pass Google's OAuth
verification and security assessment; a test checks that every enforcement point and
every proof still exist, so the report cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Clause:
    #: The rule, paraphrasing Google's API Services User Data Policy / Workspace policy.
    rule: str
    #: Dotted path of the function or class that enforces it.
    enforced_by: str
    #: pytest node ids (path::test) that fail if the enforcement breaks.
    proven_by: tuple[str, ...]


CLAUSES: tuple[Clause, ...] = (
    Clause("Use data only to provide or improve prominent user-facing features",
           "gwsync.domain.purpose.decide",
           ("tests/domain/test_purpose.py::test_a_feature_reads_only_its_own_records",)),
    Clause("Never use or transfer data to train or improve generalised AI/ML models",
           "gwsync.domain.purpose.decide",
           ("tests/domain/test_purpose.py::test_forbidden_uses_are_refused_with_the_clause",
            "tests/e2e/test_contacts_lifecycle.py::test_refused_use_is_403_and_audited")),
    Clause("Never use or transfer data for advertising, or to ad platforms or data brokers",
           "gwsync.domain.purpose.decide",
           ("tests/domain/test_purpose.py::test_forbidden_uses_are_refused_with_the_clause",
            "tests/web/test_accounts.py::test_bad_or_forbidden_reads_are_refused")),
    Clause("Never sell data; never use it for credit-worthiness or lending decisions",
           "gwsync.domain.purpose.decide",
           ("tests/domain/test_purpose.py::test_forbidden_uses_are_refused_with_the_clause",)),
    Clause("Refuse any use not named in the rules",
           "gwsync.domain.purpose.decide",
           ("tests/domain/test_purpose.py::test_unknown_uses_are_refused",)),
    Clause("Humans read data only for security, legal compliance or with the user's "
           "documented consent, with a written justification",
           "gwsync.web.staff.staff_read",
           ("tests/web/test_staff.py::test_a_justified_security_read_is_served_and_shown_to_the_user",
            "tests/web/test_staff.py::test_staff_cannot_read_for_other_uses_and_the_attempt_is_logged",
            "tests/domain/test_purpose.py::test_exception_uses_need_staff_and_a_justification")),
    Clause("Aggregated use for internal operations carries counts, never contents",
           "gwsync.storage.records.RecordStore.read",
           ("tests/web/test_accounts.py::test_aggregate_use_returns_counts_only",
            "tests/web/test_staff.py::test_aggregate_ops_gives_counts_only")),
    Clause("Every read, allowed or refused, is audited and visible to the user",
           "gwsync.storage.records.RecordStore.read",
           ("tests/storage/test_records.py::test_every_read_decision_is_audited",
            "tests/web/test_staff.py::test_a_justified_security_read_is_served_and_shown_to_the_user")),
    Clause("Request only the minimum scopes the features need",
           "gwsync.domain.scopes.narrowest",
           ("tests/domain/test_scopes.py::test_each_feature_gets_the_scope_of_the_design_table",
            "tests/domain/test_scopes.py::test_no_ranked_scope_of_a_lower_rank_would_do")),
    Clause("Store only the fields a feature shows",
           "gwsync.storage.records.RecordStore.write_page",
           ("tests/storage/test_records.py::test_writes_store_only_declared_fields_with_purpose",
            "tests/e2e/test_contacts_lifecycle.py::test_contacts_round_trip_stores_only_shown_fields")),
    Clause("Protect data at rest: AES-256-GCM under a per-account key, bound to its row",
           "gwsync.storage.crypto.RowCipher",
           ("tests/storage/test_crypto.py::test_swapping_ciphertexts_between_rows_fails",
            "tests/storage/test_records.py::test_a_records_backup_is_unreadable_once_the_key_is_shredded",
            "tests/e2e/test_backup_restore.py::test_restored_records_decrypt_under_no_key_the_system_holds")),
    Clause("Honour deletion: disconnect, erasure requests and revocation delete every copy",
           "gwsync.tasks.erase.request",
           ("tests/e2e/test_contacts_lifecycle.py::test_marker_is_gone_after_disconnect_and_never_logged",
            "tests/e2e/test_every_trigger.py::test_every_trigger_ends_verified_and_leaves_no_marker",
            "tests/e2e/test_real_processes.py::test_a_worker_killed_mid_erasure_is_finished_by_the_next",
            "tests/tasks/test_sync.py::test_revoked_grant_purges_the_account")),
    Clause("Deleted data stays deleted despite backups: a restored backup is re-erased "
           "from the erasure ledger, a withdrawn feature's key is shredded with it, and "
           "no local residue is left",
           "gwsync.storage.restore.run",
           ("tests/e2e/test_restore_replay.py::test_restore_check_makes_a_restored_dump_unrecoverable_again",
            "tests/storage/test_keys.py::test_withdrawing_a_feature_shreds_its_key_at_once_and_keeps_the_grant",
            "tests/storage/test_keys.py::test_the_retention_sweep_shreds_the_keys_of_months_that_are_over",
            "tests/e2e/test_backup_restore.py::test_restored_records_decrypt_under_no_key_the_system_holds",
            "tests/storage/test_residue.py::test_an_erasure_leaves_no_ciphertext_in_the_sqlite_files")),
    Clause("Master keys rotate without downtime, after which the old key opens nothing",
           "gwsync.storage.rotation.rotate",
           ("tests/e2e/test_key_rotation.py::test_rotating_under_load_fails_nothing_and_retires_the_old_key",
            "tests/devtools/test_keys.py::test_rotate_reports_the_old_key_unused_and_status_shows_it")),
    Clause("Identifiers are kept only as keyed pseudonyms",
           "gwsync.core.keyring.Pseudonyms",
           ("tests/core/test_keyring.py::test_pseudonyms_are_hmacs_under_a_subkey_tagged_with_their_key",)),
    Clause("Act on Cross-Account Protection events: delete the revoked tokens' data",
           "gwsync.web.risc.risc_event",
           ("tests/web/test_risc.py::test_token_revoked_by_prefix_erases_the_account",
            "tests/e2e/test_every_trigger.py::test_every_trigger_ends_verified_and_leaves_no_marker")),
    Clause("Data derived from user data (indexes, summaries) keeps its purpose and is "
           "erased with its sources",
           "gwsync.storage.derived.refresh",
           ("tests/storage/test_derived.py::test_the_suggestion_index_inherits_the_contacts_purpose",
            "tests/storage/test_derived.py::test_derived_data_goes_with_a_withdrawn_feature")),
    Clause("A scope the user withdraws stops its feature and erases its data",
           "gwsync.tasks.grants.apply_granted",
           ("tests/tasks/test_grants.py::test_a_withdrawn_scope_erases_that_features_records_only",
            "tests/e2e/test_every_trigger.py::test_every_trigger_ends_verified_and_leaves_no_marker")),
)
