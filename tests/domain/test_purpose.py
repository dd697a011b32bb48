"""Limited Use decisions: the feature's own use, staff exceptions, counts, and refusals."""

from __future__ import annotations

import pytest

from gwsync.domain.purpose import UseKind, decide


@pytest.mark.parametrize("use", ["ai_training", "ml_training", "model_training", "advertising",
                                 "ads", "sale", "data_broker", "credit_decision", "lending"])
def test_forbidden_uses_are_refused_with_the_clause(use: str) -> None:
    """Every use Google's Limited Use rules forbid is refused, naming why."""
    decision = decide(use, feature=None)
    assert not decision.allowed and decision.kind is UseKind.FORBIDDEN
    assert "forbidden" in decision.reason


@pytest.mark.parametrize("use", ["", "analytics", "feature:", "feature:telepathy",
                                 "FEATURE:contacts"])
def test_unknown_uses_are_refused(use: str) -> None:
    """A use that is not named in the rules is refused."""
    assert not decide(use, feature=None).allowed


def test_a_feature_reads_only_its_own_records() -> None:
    """feature:contacts may read contacts, and nothing else."""
    assert decide("feature:contacts", feature="contacts").allowed
    assert decide("feature:contacts", feature=None).feature == "contacts"
    assert not decide("feature:contacts", feature="mail_activity").allowed


@pytest.mark.parametrize("use", ["security", "legal", "user_consented_support"])
def test_exception_uses_need_staff_and_a_justification(use: str) -> None:
    """Human access under Google's exceptions is staff-only and must be justified in writing."""
    assert not decide(use, feature=None).allowed
    assert not decide(use, feature=None, staff=True).allowed
    assert not decide(use, feature=None, staff=True, justification="   ").allowed
    assert decide(use, feature=None, staff=True, justification="abuse report #12").allowed


def test_aggregate_ops_is_counts_only() -> None:
    """aggregate_ops is allowed, and only ever as counts."""
    decision = decide("aggregate_ops", feature=None)
    assert decision.allowed and decision.counts_only
