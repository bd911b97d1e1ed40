"""The defect model: physics features of an AI4I reading, normalized, into a small MLP.

The failure modes of AI4I follow physical limits: heat dissipation fails when the gap between
process and air temperature is small at low speed, power failures sit at the extremes of
torque times angular speed, overstrain at tool wear times torque beyond a limit per product
type. The network gets those quantities as features instead of having to discover products.

Two heads share the body: the probability that the machine fails, and which of the five
modes it would be. The feature normalization lives in the weights file (buffers) and the
decision threshold, tuned for F1 on the validation split, in ``config.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.base import SensorReading
from models.data import FAILURE_MODES, MACHINE_TYPES
from models.errors import ModelNotFoundError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_TYPE = "signalyard-sensor-mlp"
FEATURES: tuple[str, ...] = (
    "air_temp_k",
    "process_temp_k",
    "rpm",
    "torque_nm",
    "tool_wear_min",
    "temp_diff_k",
    "power_w",
    "strain_nm_min",
    *(f"type_{t}" for t in MACHINE_TYPES),
)


def features(readings: Sequence[SensorReading]) -> torch.Tensor:
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
                *(1.0 if r["machine_type"] == t else 0.0 for t in MACHINE_TYPES),
            ]
        )
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(FEATURES))


class SensorNet(nn.Module):
    def __init__(self, hidden: int = 64, dropout: float = 0.1, threshold: float = 0.5) -> None:
        super().__init__()
        self.hidden = hidden
        self.dropout_rate = dropout
        self.threshold = threshold
        self.register_buffer("feature_mean", torch.zeros(len(FEATURES)))
        self.register_buffer("feature_std", torch.ones(len(FEATURES)))
        self.body = nn.Sequential(
            nn.Linear(len(FEATURES), hidden),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Dropout(dropout),
        )
        self.failure = nn.Linear(hidden, 1)
        self.mode = nn.Linear(hidden, len(FAILURE_MODES))

    def fit_normalization(self, x: torch.Tensor) -> None:
        self.feature_mean.copy_(x.mean(0))
        self.feature_std.copy_(x.std(0).clamp(min=1e-6))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Failure logits (n,) and failure-mode logits (n, 5) for raw feature rows."""
        h = self.body((x - self.feature_mean) / self.feature_std)
        return self.failure(h).squeeze(-1), self.mode(h)

    def config(self) -> dict[str, Any]:
        return {
            "model_type": MODEL_TYPE,
            "hidden": self.hidden,
            "dropout": self.dropout_rate,
            "threshold": self.threshold,
            "features": list(FEATURES),
            "failure_modes": list(FAILURE_MODES),
        }


def save_sensor_net(model: SensorNet, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(model.config(), indent=1), encoding="utf-8")


def load_sensor_net(folder: Path) -> SensorNet:
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("features") != list(FEATURES):
        raise ModelNotFoundError(
            f"{folder} was trained on other features: {config.get('features')}"
        )
    model = SensorNet(config["hidden"], config["dropout"], config["threshold"])
    model.load_state_dict(load_file(folder / WEIGHTS_FILE))
    return model.eval()
