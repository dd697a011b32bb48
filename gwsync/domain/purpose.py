"""Limited Use as code: which named uses may read which records, and why not.

Google's Limited Use rules allow the data for the user-facing feature it was fetched
for; humans may read it only for security, legal compliance or with the user's
documented consent; aggregates for operations carry counts, never contents. Every
other use — model training, advertising, sale, credit decisions, anything unnamed —
is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gwsync.core import metrics
from gwsync.domain.features import FEATURES


class UseKind(StrEnum):
    FEATURE = "feature"
    EXCEPTION = "exception"
    AGGREGATE = "aggregate"
    FORBIDDEN = "forbidden"
    UNKNOWN = "unknown"


#: Uses Google's Limited Use rules forbid, with the clause that forbids them.
FORBIDDEN: dict[str, str] = {
    "ai_training": "training or improving AI/ML models is forbidden",
    "ml_training": "training or improving AI/ML models is forbidden",
    "model_training": "training or improving AI/ML models is forbidden",
    "advertising": "serving or targeting ads is forbidden",
    "ads": "serving or targeting ads is forbidden",
    "sale": "selling user data is forbidden",
    "data_broker": "transfers to data brokers are forbidden",
    "credit_decision": "credit-worthiness and lending decisions are forbidden",
    "lending": "credit-worthiness and lending decisions are forbidden",
}

#: Human access under Google's exceptions: each needs a written justification.
EXCEPTIONS = frozenset({"security", "legal", "user_consented_support"})
AGGREGATE = "aggregate_ops"


@dataclass(frozen=True)
class Decision:
    use: str
    kind: UseKind
    allowed: bool
    reason: str
    #: For a feature use, the only feature whose records it may read.
    feature: str | None = None

    @property
    def counts_only(self) -> bool:
        return self.kind is UseKind.AGGREGATE


class LimitedUseViolation(PermissionError):
    """A read was refused; the decision says why (and has been audited)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


def classify(use: str) -> tuple[UseKind, str | None]:
    if use.startswith("feature:"):
        name = use.removeprefix("feature:")
        return (UseKind.FEATURE, name) if name in FEATURES else (UseKind.UNKNOWN, None)
    if use in FORBIDDEN:
        return UseKind.FORBIDDEN, None
    if use in EXCEPTIONS:
        return UseKind.EXCEPTION, None
    if use == AGGREGATE:
        return UseKind.AGGREGATE, None
    return UseKind.UNKNOWN, None


def decide(
    use: str,
    *,
    feature: str | None,
    staff: bool = False,
    justification: str | None = None,
) -> Decision:
    """Decide whether `use` may read records of `feature` (None: any feature)."""
    kind, use_feature = classify(use)
    if kind is UseKind.FORBIDDEN:
        return Decision(use, kind, False, FORBIDDEN[use])
    if kind is UseKind.UNKNOWN:
        return Decision(use, kind, False, "use is not a permitted use")
    if kind is UseKind.FEATURE:
        if feature is not None and feature != use_feature:
            return Decision(use, kind, False, "a feature may read only its own records")
        return Decision(use, kind, True, "the feature's own data", use_feature)
    if kind is UseKind.AGGREGATE:
        return Decision(use, kind, True, "counts only, never contents")
    if not staff:
        return Decision(use, kind, False, "exception uses are for staff access only")
    if not (justification and justification.strip()):
        return Decision(use, kind, False, "exception uses need a written justification")
    return Decision(use, kind, True, f"staff access under the {use} exception")


def metric_label(use: str) -> str:
    """The use as a metric label: named uses as they are, anything else `unknown`, so a
    client cannot grow the label set (or smuggle text into it)."""
    kind, _ = classify(use)
    return "unknown" if kind is UseKind.UNKNOWN else use


def count_decision(decision: Decision) -> None:
    """Count a decision in the metrics registry (the record store's `on_decision`)."""
    metrics.purpose_decision(str(decision.kind), metric_label(decision.use), decision.allowed)
