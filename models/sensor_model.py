"""The defect model: physics features of an AI4I reading into gradient-boosted trees.

The failure modes of AI4I follow physical limits (Matzka 2020): heat dissipation fails when
the gap between process and air temperature is below about 8.6 K at under 1,380 rpm, power
failures sit below 3,500 W or above 9,000 W of torque times angular speed, overstrain at tool
wear times torque beyond a limit per product type; tool wear failures come at a random wear
between 200 and 240 minutes and a small share of failures is random. The model gets those
quantities as features and learns the limits itself: a tree places a split at any value, so
sharp limits such as 8.6 K or 3,500 W are one split each (``max_bin`` is high so that the
histogram of each feature resolves them).

Two LightGBM models share the features: the probability that the machine fails (binary), and
which of the five modes it would be (multiclass, trained on the failed rows). Each is an
ensemble of the k fold models of the cross-validation that chose its number of boosting
rounds (``models.training.train_defect``); their predictions are averaged. The folder holds the
models in LightGBM's own text format (parsed, never executed: no pickles) and ``config.json``
with the decision threshold, chosen on out-of-fold predictions, and the fold figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from models.base import SensorReading
from models.data import FAILURE_MODES, MACHINE_TYPES, SENSOR_COLUMNS
from models.errors import ModelNotFoundError

# Overstrain limits (tool wear x torque, min Nm) per product type, from the AI4I 2020 paper:
# the same strain is a failure on an L machine and fine on an H machine.
OVERSTRAIN_LIMIT = {"L": 11_000.0, "M": 12_000.0, "H": 13_000.0}
CONFIG_FILE = "config.json"
MODEL_TYPE = "signalyard-sensor-gbdt"
FEATURES: tuple[str, ...] = (
    "air_temp_k",
    "process_temp_k",
    "rpm",
    "torque_nm",
    "tool_wear_min",
    "temp_diff_k",
    "power_w",
    "strain_nm_min",
    "strain_of_limit",
    *(f"type_{t}" for t in MACHINE_TYPES),
)


def features(readings: Sequence[SensorReading]) -> np.ndarray:
    """The feature rows of ``readings``: float64, shape (n, len(FEATURES)); power in W."""
    rows = []
    for r in readings:
        power = r["torque_nm"] * r["rpm"] * 2 * math.pi / 60
        rows.append(
            [
                r["air_temp_k"],
                r["process_temp_k"],
                r["rpm"],
                r["torque_nm"],
                r["tool_wear_min"],
                r["process_temp_k"] - r["air_temp_k"],
                power,
                r["tool_wear_min"] * r["torque_nm"],
                r["tool_wear_min"] * r["torque_nm"] / OVERSTRAIN_LIMIT[r["machine_type"]],
                *(1.0 if r["machine_type"] == t else 0.0 for t in MACHINE_TYPES),
            ]
        )
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))


# A typical reading: the medians of the AI4I 2020 data set. Explanations compare a reading with
# its model's reference, the medians of the model's own training rows; models trained before
# the reference was stored use these.
AI4I_MEDIANS: dict[str, float] = {
    "air_temp_k": 300.1,
    "process_temp_k": 310.1,
    "rpm": 1503.0,
    "torque_nm": 40.1,
    "tool_wear_min": 108.0,
}


def reference_reading(readings: Sequence[SensorReading]) -> dict[str, float]:
    """The median of each input column over ``readings``."""
    return {c: float(np.median([r[c] for r in readings])) for c in SENSOR_COLUMNS}  # type: ignore[literal-required]


def _member_file(head: str, member: int) -> str:
    return f"{head}-{member}.lgb.txt"


@dataclass
class SensorModel:
    """Fold ensembles of the failure head and the mode head, and the decision threshold.

    ``failure`` members predict P(failure); ``mode`` members the five failure-mode
    probabilities (in ``FAILURE_MODES`` order). Without failed rows to learn modes from,
    ``mode`` is empty and every mode is equally likely."""

    failure: list[lgb.Booster]
    mode: list[lgb.Booster]
    threshold: float
    cross_validation: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=lambda: dict(AI4I_MEDIANS))

    def predict_proba(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For feature rows (n, len(FEATURES)): P(failure) (n,) and mode probabilities (n, 5)."""
        return self.failure_probability(x), self.mode_probabilities(x)

    # Both heads predict on one thread per call: the pipeline scores batches of a few hundred
    # rows, for which LightGBM's thread pool costs more than it gains, and torch holds the
    # other cores.

    def failure_probability(self, x: np.ndarray) -> np.ndarray:
        """P(failure) (n,) for feature rows (n, len(FEATURES))."""
        return np.mean([m.predict(x, num_threads=1) for m in self.failure], axis=0)

    def mode_probabilities(self, x: np.ndarray) -> np.ndarray:
        """The failure-mode probabilities (n, 5) for feature rows (n, len(FEATURES))."""
        if not self.mode or not len(x):
            return np.full((len(x), len(FAILURE_MODES)), 1 / len(FAILURE_MODES))
        mode = np.mean([m.predict(x, num_threads=1) for m in self.mode], axis=0)
        return mode.reshape(len(x), len(FAILURE_MODES))

    def config(self) -> dict[str, Any]:
        return {
            "model_type": MODEL_TYPE,
            "threshold": self.threshold,
            "failure_members": len(self.failure),
            "mode_members": len(self.mode),
            "features": list(FEATURES),
            "failure_modes": list(FAILURE_MODES),
            "cross_validation": self.cross_validation,
            "reference": self.reference,
        }


def save_sensor_model(model: SensorModel, folder: Path) -> None:
    """Write ``config.json`` and one LightGBM text file per ensemble member into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for head, members in (("failure", model.failure), ("mode", model.mode)):
        for i, booster in enumerate(members):
            booster.save_model(folder / _member_file(head, i))
    (folder / CONFIG_FILE).write_text(json.dumps(model.config(), indent=1), encoding="utf-8")


def load_sensor_model(folder: Path) -> SensorModel:
    """Read a folder written by :func:`save_sensor_model`.

    Raises ModelNotFoundError for a folder of another model type, other features or a
    missing member file."""
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("model_type") != MODEL_TYPE or config.get("features") != list(FEATURES):
        raise ModelNotFoundError(
            f"{folder} holds a {config.get('model_type')} model on features "
            f"{config.get('features')}, not a {MODEL_TYPE} on {list(FEATURES)}"
        )

    def members(head: str) -> list[lgb.Booster]:
        paths = [folder / _member_file(head, i) for i in range(config[f"{head}_members"])]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise ModelNotFoundError(f"{folder} lacks {', '.join(missing)}")
        return [lgb.Booster(model_file=str(p)) for p in paths]

    return SensorModel(
        members("failure"),
        members("mode"),
        config["threshold"],
        config["cross_validation"],
        dict(config.get("reference", AI4I_MEDIANS)),
    )
