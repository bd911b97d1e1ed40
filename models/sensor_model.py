"""The defect model: physics features of an AI4I reading, normalized, into a small MLP.

The failure modes of AI4I follow physical limits: heat dissipation fails when the gap between
process and air temperature is small at low speed, power failures sit at the extremes of
torque times angular speed, overstrain at tool wear times torque beyond a limit per product
type. The network gets those quantities as features instead of having to discover products.

The limits themselves are left to learning. Each feature is given to the network in a
piecewise-linear encoding over quantile bins of the training data (Gorishniy et al. 2022,
"On Embeddings for Numerical Features in Tabular Deep Learning"): a plain MLP on standardized
inputs draws smooth boundaries and misses sharp limits such as 8.6 K or 3,500 W, while bins
let it place a step at any bin edge.

Two heads share the body: the probability that the machine fails, and which of the five
modes it would be. The bin edges (the feature normalization) live in the weights file as a
buffer; the decision threshold, tuned for F1 on the validation split, in ``config.json``.
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

# Overstrain limits (tool wear x torque, min Nm) per product type, from the AI4I 2020 paper:
# the same strain is a failure on an L machine and fine on an H machine.
OVERSTRAIN_LIMIT = {"L": 11_000.0, "M": 12_000.0, "H": 13_000.0}
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
    "strain_of_limit",
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
                r["tool_wear_min"] * r["torque_nm"] / OVERSTRAIN_LIMIT[r["machine_type"]],
                *(1.0 if r["machine_type"] == t else 0.0 for t in MACHINE_TYPES),
            ]
        )
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(FEATURES))


class SensorNet(nn.Module):
    """An ensemble of ``members`` MLPs over one encoding; each member trains on its own loss
    and their logits are averaged, which steadies a decision learned from a few hundred
    failures."""

    def __init__(
        self,
        hidden: int = 64,
        dropout: float = 0.1,
        threshold: float = 0.5,
        bins: int = 32,
        members: int = 1,
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.dropout_rate = dropout
        self.threshold = threshold
        self.bins = bins
        self.register_buffer("bin_edges", torch.linspace(0, 1, bins + 1).repeat(len(FEATURES), 1))
        self.members = nn.ModuleList(
            nn.Sequential(
                nn.Linear(len(FEATURES) * bins, hidden),
                nn.SiLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),
                nn.SiLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, 1 + len(FAILURE_MODES)),
            )
            for _ in range(members)
        )

    def fit_normalization(self, x: torch.Tensor) -> None:
        """Bin edges per feature: half at quantiles of the training rows, half evenly spaced.

        Quantiles resolve the dense middle; even spacing keeps edges in the sparse tails,
        where failure limits such as overstrain sit.
        """
        quantile_edges = self.bins // 2 + 1
        quantiles = torch.linspace(0, 1, quantile_edges, device=x.device)
        by_quantile = torch.quantile(x, quantiles, dim=0).T
        steps = torch.linspace(0, 1, self.bins + 1 - quantile_edges, device=x.device)
        low, high = x.min(0).values.unsqueeze(1), x.max(0).values.unsqueeze(1)
        evenly = low + (high - low) * steps
        self.bin_edges.copy_(torch.cat([by_quantile, evenly], dim=1).sort(dim=1).values)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Each value as how far it fills each bin: 1 below it, 0 above, a fraction inside."""
        low, high = self.bin_edges[:, :-1], self.bin_edges[:, 1:]
        # Equal edges (a binary feature, a repeated value) make a step instead of a ramp.
        filled = (x.unsqueeze(-1) - low) / (high - low).clamp(min=1e-6)
        return filled.clamp(0, 1).flatten(1)

    def member_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per member: failure logits (members, n) and mode logits (members, n, 5)."""
        encoded = self.encode(x)
        out = torch.stack([member(encoded) for member in self.members])
        return out[..., 0], out[..., 1:]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Failure logits (n,) and failure-mode logits (n, 5) for raw feature rows."""
        failure, mode = self.member_logits(x)
        return failure.mean(0), mode.mean(0)

    def config(self) -> dict[str, Any]:
        return {
            "model_type": MODEL_TYPE,
            "hidden": self.hidden,
            "dropout": self.dropout_rate,
            "threshold": self.threshold,
            "bins": self.bins,
            "members": len(self.members),
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
    model = SensorNet(
        config["hidden"], config["dropout"], config["threshold"], config["bins"], config["members"]
    )
    model.load_state_dict(load_file(folder / WEIGHTS_FILE))
    return model.eval()
