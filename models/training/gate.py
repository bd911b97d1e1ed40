"""The evaluation gate: whether an adapted candidate may replace the live model.

A candidate is promoted only if, on its task's primary metric (``models.tasks``: sentiment
accuracy, intent accuracy, failure F1), it beats the live model on held-out recent feedback by
at least ``margin`` and falls at most ``tolerance`` below it on the source validation split
(what the live model was trained for). Both sets of metrics travel with the decision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from models.tasks import PRIMARY_METRIC, Task


@dataclass(frozen=True)
class Metrics:
    target: dict[str, Any]  # on held-out recent feedback
    source: dict[str, Any] | None  # on the source validation split; None when its data is gone


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    margin: float
    tolerance: float
    live: Metrics
    candidate: Metrics

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    task: Task, live: Metrics, candidate: Metrics, margin: float, tolerance: float
) -> GateDecision:
    metric = PRIMARY_METRIC[task]
    gain = candidate.target[metric] - live.target[metric]
    reasons = [
        f"held-out {metric} {candidate.target[metric]:.3f} vs live {live.target[metric]:.3f} "
        f"({gain:+.3f}, margin {margin:g})"
    ]
    promote = gain >= margin
    if live.source is None or candidate.source is None:
        reasons.append("source check skipped: the source data is gone")
    else:
        drop = live.source[metric] - candidate.source[metric]
        reasons.append(
            f"source {metric} {candidate.source[metric]:.3f} vs live {live.source[metric]:.3f} "
            f"({-drop:+.3f}, tolerance {tolerance:g})"
        )
        promote = promote and drop <= tolerance
    verdict = "promoted" if promote else "refused"
    return GateDecision(
        promote, f"{verdict}: " + "; ".join(reasons), metric, margin, tolerance, live, candidate
    )
