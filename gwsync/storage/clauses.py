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
           "gwsync.storage.purpose.decide",
           ("tests/storage/test_purpose.py::test_a_feature_reads_only_its_own_records",)),
    Clause("Never use or transfer data to train or improve generalised AI/ML models",
           "gwsync.storage.purpose.decide",
           ("tests/storage/test_purpose.py::test_forbidden_uses_are_refused_with_the_clause",
            "tests/e2e/test_contacts_lifecycle.py::test_refused_use_is_403_and_audited")),
    Clause("Never use or transfer data for advertising, or to ad platforms or data brokers",
           "gwsync.storage.purpose.decide",
           ("tests/storage/test_purpose.py::test_forbidden_uses_are_refused_with_the_clause",
            "tests/worker/test_api.py::test_bad_or_forbidden_reads_are_refused")),
    Clause("Never sell data; never use it for credit-worthiness or lending decisions",
           "gwsync.storage.purpose.decide",
           ("tests/storage/test_purpose.py::test_forbidden_uses_are_refused_with_the_clause",)),
    Clause("Refuse any use not named in the rules",
           "gwsync.storage.purpose.decide",
           ("tests/storage/test_purpose.py::test_unknown_uses_are_refused",)),
    Clause("Humans read data only for security, legal compliance or with the user's "
           "documented consent, with a written justification",
           "gwsync.worker.staff.staff_read",
           ("tests/worker/test_staff.py::test_a_justified_security_read_is_served_and_shown_to_the_user",
            "tests/worker/test_staff.py::test_staff_cannot_read_for_other_uses_and_the_attempt_is_logged",
            "tests/storage/test_purpose.py::test_exception_uses_need_staff_and_a_justification")),
    Clause("Aggregated use for internal operations carries counts, never contents",
           "gwsync.storage.records.RecordStore.read",
           ("tests/worker/test_api.py::test_aggregate_use_returns_counts_only",
            "tests/worker/test_staff.py::test_aggregate_ops_gives_counts_only")),
    Clause("Every read, allowed or refused, is audited and visible to the user",
           "gwsync.storage.records.RecordStore.read",
           ("tests/storage/test_records.py::test_every_read_decision_is_audited",
            "tests/worker/test_staff.py::test_a_justified_security_read_is_served_and_shown_to_the_user")),
    Clause("Request only the minimum scopes the features need",
           "gwsync.connectors.scopes.narrowest",
           ("tests/connectors/test_scopes.py::test_each_feature_gets_the_scope_of_the_design_table",
            "tests/connectors/test_scopes.py::test_no_ranked_scope_of_a_lower_rank_would_do")),
    Clause("Store only the fields a feature shows",
           "gwsync.storage.records.RecordStore.write_page",
           ("tests/storage/test_records.py::test_writes_store_only_declared_fields_with_purpose",
            "tests/e2e/test_contacts_lifecycle.py::test_contacts_round_trip_stores_only_shown_fields")),
    Clause("Protect data at rest: AES-256-GCM under a per-account key, bound to its row",
           "gwsync.storage.crypto.RowCipher",
           ("tests/storage/test_crypto.py::test_swapping_ciphertexts_between_rows_fails",
            "tests/storage/test_records.py::test_a_records_backup_is_unreadable_once_the_key_is_shredded")),
    Clause("Honour deletion: disconnect, erasure requests and revocation delete every copy",
           "gwsync.tasks.erase.request",
           ("tests/e2e/test_contacts_lifecycle.py::test_marker_is_gone_after_disconnect_and_never_logged",
            "tests/tasks/test_sync.py::test_revoked_grant_purges_the_account")),
    Clause("Act on Cross-Account Protection events: delete the revoked tokens' data",
           "gwsync.worker.webhooks.risc_event",
           ("tests/worker/test_risc.py::test_token_revoked_by_prefix_erases_the_account",)),
    Clause("Data derived from user data (indexes, summaries) keeps its purpose and is "
           "erased with its sources",
           "gwsync.storage.derived.refresh",
           ("tests/storage/test_derived.py::test_the_suggestion_index_inherits_the_contacts_purpose",
            "tests/storage/test_derived.py::test_derived_data_goes_with_a_withdrawn_feature")),
    Clause("A scope the user withdraws stops its feature and erases its data",
           "gwsync.tasks.grants.apply_granted",
           ("tests/tasks/test_grants.py::test_a_withdrawn_scope_erases_that_features_records_only",)),
)
