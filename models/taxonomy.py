"""The ticket risk taxonomy: a risk level per intent and a weight per level.

The file is JSON: ``{"levels": {intent: level}, "weights": {level: weight}}``. An intent
distribution's risk score is the probability-weighted sum of its intents' level weights
(with the shipped weights: P(high) + 0.5 * P(medium)). Its risk level is the level whose
weight is nearest to the score, so the bands are cut at the midpoints between consecutive
weights (0.25 and 0.75 with the shipped weights; a tie goes to the riskier level): a confident
prediction keeps its intent's level, and a split between a high and a low intent lands in
the middle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models.errors import DataError


@dataclass(frozen=True)
class RiskTaxonomy:
    levels: dict[str, str]
    weights: dict[str, float]

    @classmethod
    def load(cls, path: Path) -> RiskTaxonomy:
        if not path.is_file():
            raise FileNotFoundError(f"taxonomy file {path} not found")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            levels = {str(k): str(v) for k, v in raw["levels"].items()}
            weights = {str(k): float(v) for k, v in raw["weights"].items()}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as error:
            raise DataError(
                f"{path} is not a taxonomy of the form "
                '{"levels": {intent: level}, "weights": {level: number}}: ' + str(error)
            ) from None
        unknown = sorted(set(levels.values()) - set(weights))
        if not levels or unknown:
            raise DataError(f"{path}: levels without a weight: {', '.join(unknown) or 'none'}")
        return cls(levels, weights)

    def to_json(self) -> str:
        return json.dumps({"levels": self.levels, "weights": self.weights}, indent=1)

    @property
    def intents(self) -> tuple[str, ...]:
        return tuple(sorted(self.levels))

    def risk_score(self, intents: Sequence[str], probabilities: Sequence[float]) -> float:
        score = sum(
            p * self.weights[self.levels[i]] for i, p in zip(intents, probabilities, strict=True)
        )
        return min(1.0, max(0.0, score))

    def level_of_score(self, score: float) -> str:
        return min(
            self.weights, key=lambda level: (abs(self.weights[level] - score), -self.weights[level])
        )

    def level_of_intent(self, intent: str) -> str:
        return self.levels[intent]
