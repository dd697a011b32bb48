"""Least privilege, computed: each feature's scope is the narrowest one the discovery
documents say authorises every method it calls."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gwsync.core import discovery
from gwsync.domain import features, scopes
from gwsync.domain.features import FEATURES
from gwsync.domain.scopes import AUTH, NoScopeError, ScopeClass

BIN = Path(sys.executable).parent

#: docs/architecture.md §3's table: feature → narrowest scope.
EXPECTED: dict[str, str] = {
    "contacts": AUTH + "contacts.readonly",
    "availability": AUTH + "calendar.freebusy",
    "meetings": AUTH + "calendar.events.readonly",
    "shared_files": AUTH + "drive.file",
    "mail_activity": AUTH + "gmail.metadata",
}
#: Google's verification class of each feature's scope, as `gwsync scopes` prints it.
CLASSES: dict[str, str] = {
    "contacts": "sensitive",
    "availability": "sensitive",
    "meetings": "sensitive",
    "shared_files": "non-sensitive",
    "mail_activity": "restricted",
}
MAIL = FEATURES["mail_activity"]


def test_the_declared_features_are_the_designed_ones() -> None:
    """The features are exactly the five of docs/architecture.md §3."""
    assert set(FEATURES) == set(EXPECTED)


@pytest.mark.parametrize(("name", "scope"), sorted(EXPECTED.items()))
def test_each_feature_gets_the_scope_of_the_design_table(name: str, scope: str) -> None:
    """A feature's computed scope is the full-URL scope docs/architecture.md §3 lists."""
    assert features.get(name).scope == scope


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_chosen_scope_authorises_every_method(name: str) -> None:
    """Per the bundled discovery documents, the feature's scope authorises each of its methods."""
    feature = FEATURES[name]
    for method in feature.methods:
        assert feature.scope in discovery.method_scopes(method), method


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_ranked_scope_of_a_lower_rank_would_do(name: str) -> None:
    """Every other ranked scope that authorises all the methods ranks above the chosen one."""
    feature = FEATURES[name]
    chosen = feature.scope_info
    rank = (chosen.klass, chosen.breadth)
    for info in scopes.RANKED:
        usable = (
            all(info.scope in discovery.method_scopes(m) for m in feature.methods)
            and all(scopes.permits(info, feature.params.get(m, {})) for m in feature.methods)
            and (info.limitation is None or info.scope in feature.accepts_limited)
        )
        if usable and info.scope != chosen.scope:
            assert (info.klass, info.breadth) > rank, info.scope


def test_scope_classes_follow_googles_verification_classes() -> None:
    """drive.file is non-sensitive, calendar and contacts sensitive, gmail.metadata restricted."""
    klass = {name: f.scope_info.klass for name, f in FEATURES.items()}
    assert klass == {name: ScopeClass[c.upper().replace("-", "_")] for name, c in CLASSES.items()}


def test_every_feature_data_use_names_the_feature() -> None:
    """A feature's data use is `feature:<name>`."""
    for name, feature in FEATURES.items():
        assert feature.data_use == f"feature:{name}"


# -- widening when a method needs more ---------------------------------------------------------


def test_fetching_full_messages_widens_mail_to_gmail_readonly() -> None:
    """`messages.get` with `format=full` cannot use gmail.metadata and picks gmail.readonly."""
    params = {**MAIL.params, "gmail.users.messages.get": {"format": "full"}}
    assert scopes.narrowest(MAIL.methods, params).scope == AUTH + "gmail.readonly"


def test_fetching_raw_messages_widens_mail_to_gmail_readonly() -> None:
    """`messages.get` with `format=raw` likewise needs gmail.readonly."""
    params = {"gmail.users.messages.get": {"format": "raw"}}
    assert scopes.narrowest(MAIL.methods, params).scope == AUTH + "gmail.readonly"


def test_searching_messages_widens_mail_to_gmail_readonly() -> None:
    """Adding a `q` search to `messages.list` rules out gmail.metadata."""
    params = {**MAIL.params, "gmail.users.messages.list": {"q": "from:someone"}}
    assert scopes.narrowest(MAIL.methods, params).scope == AUTH + "gmail.readonly"


def test_metadata_format_keeps_gmail_metadata() -> None:
    """`format=metadata` is what gmail.metadata allows, so the scope stays narrow."""
    params = {"gmail.users.messages.get": {"format": "metadata"}}
    assert scopes.narrowest(MAIL.methods, params).scope == AUTH + "gmail.metadata"


def test_adding_a_broader_method_widens_the_scope() -> None:
    """A feature that also sends mail needs a scope that authorises sending."""
    found = scopes.narrowest([*MAIL.methods, "gmail.users.messages.send"], MAIL.params)
    assert found.scope != AUTH + "gmail.metadata"
    assert found.scope in discovery.method_scopes("gmail.users.messages.send")


def test_methods_of_two_apis_have_no_common_scope() -> None:
    """Combining People and Gmail methods in one feature raises NoScopeError."""
    with pytest.raises(NoScopeError):
        scopes.narrowest(["people.people.connections.list", "gmail.users.messages.list"])


def test_an_unknown_method_is_refused() -> None:
    """A method the discovery documents do not define cannot be given a scope."""
    with pytest.raises(discovery.UnknownMethodError):
        scopes.narrowest(["gmail.users.messages.teleport"])


# -- limited scopes ----------------------------------------------------------------------------


def test_limited_calendar_scope_is_not_chosen_unless_accepted() -> None:
    """calendar.events.freebusy (events without details) is skipped by default."""
    assert scopes.narrowest(["calendar.events.list"]).scope == AUTH + "calendar.events.readonly"
    accepted = scopes.narrowest(["calendar.events.list"],
                                accepts=[AUTH + "calendar.events.freebusy"])
    assert accepted.scope == AUTH + "calendar.events.freebusy"


def test_drive_appdata_is_not_chosen_unless_accepted() -> None:
    """drive.appdata (the hidden app folder only) is skipped unless the feature accepts it."""
    plain = scopes.narrowest(["drive.files.list"])
    assert plain.scope not in (AUTH + "drive.appdata", AUTH + "drive.file")
    accepted = scopes.narrowest(["drive.files.list"], accepts=[AUTH + "drive.appdata"])
    assert accepted.scope == AUTH + "drive.appdata"


def test_shared_files_gets_drive_file_only_because_it_accepts_it() -> None:
    """Without accepting drive.file's limitation, shared_files would need a restricted scope."""
    shared = FEATURES["shared_files"]
    assert AUTH + "drive.file" in shared.accepts_limited
    wider = scopes.narrowest(shared.methods, shared.params)
    assert wider.klass == ScopeClass.RESTRICTED


def test_candidates_are_ordered_least_privileged_first() -> None:
    """`candidates` lists usable scopes by class then breadth, the chosen one first."""
    found = scopes.candidates(MAIL.methods, MAIL.params)
    assert found[0].scope == AUTH + "gmail.metadata"
    assert [(c.klass, c.breadth) for c in found] == sorted((c.klass, c.breadth) for c in found)
    assert "https://mail.google.com/" in [c.scope for c in found]


# -- parsing and coverage ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        f"{AUTH}contacts.readonly {AUTH}gmail.metadata",
        f"  {AUTH}contacts.readonly\t{AUTH}gmail.metadata  ",
        [f"{AUTH}contacts.readonly", f"{AUTH}gmail.metadata"],
        (f"{AUTH}contacts.readonly {AUTH}gmail.metadata",),
    ],
    ids=["space-separated", "extra-whitespace", "list", "list-of-space-separated"],
)
def test_parse_accepts_strings_and_lists(given: str | list[str] | tuple[str, ...]) -> None:
    """Scopes parse the same whether Google wrote them space-separated or as a list."""
    assert scopes.parse(given) == {AUTH + "contacts.readonly", AUTH + "gmail.metadata"}


@pytest.mark.parametrize("given", [None, "", [], "   "])
def test_parse_of_nothing_is_empty(given: str | list[str] | None) -> None:
    """No scopes at all parse to the empty set."""
    assert scopes.parse(given) == frozenset()


def test_coverage_reports_the_missing_scope_of_each_feature() -> None:
    """Only features whose scope was granted are enabled; the others name the scope they lack."""
    granted = scopes.parse(f"{AUTH}contacts.readonly {AUTH}calendar.freebusy")
    assert features.coverage(granted) == {
        "contacts": [],
        "availability": [],
        "meetings": [AUTH + "calendar.events.readonly"],
        "shared_files": [AUTH + "drive.file"],
        "mail_activity": [AUTH + "gmail.metadata"],
    }


def test_coverage_with_nothing_granted_disables_everything() -> None:
    """With no scopes granted, every feature reports its own scope as missing."""
    assert features.coverage(frozenset()) == {n: [s] for n, s in EXPECTED.items()}


def test_coverage_with_all_scopes_enables_everything() -> None:
    """With every feature's scope granted, no feature misses anything."""
    assert features.coverage(frozenset(EXPECTED.values())) == {n: [] for n in EXPECTED}


def test_an_unknown_feature_is_a_named_error() -> None:
    """Looking up an undeclared feature raises UnknownFeatureError."""
    with pytest.raises(features.UnknownFeatureError):
        features.get("ai_training")


# -- the command ---------------------------------------------------------------------------------


def test_gwsync_scopes_prints_each_feature_with_its_scope_and_class(tmp_path: Path) -> None:
    """`gwsync scopes` lists every feature on a row with its short scope and its class."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run([str(BIN / "gwsync"), "scopes"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}
    assert set(rows) >= set(EXPECTED)
    for name, scope in EXPECTED.items():
        cells = [c.strip() for c in rows[name].split("│")]
        assert cells[3] == scope.removeprefix(AUTH), name
        assert cells[4] == CLASSES[name], name
