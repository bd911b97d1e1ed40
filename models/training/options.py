"""Training options, with defaults that depend on the domain and the fine-tuning mode."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.tasks import Task

Mode = Literal["full", "lora", "head"]

# Unset options take these values. "head" trains a linear head on frozen embeddings that are
# computed once, so it affords many cheap epochs and a high learning rate.
_TEXT_DEFAULTS: dict[str, dict[str, float | int]] = {
    "full": {"epochs": 4, "learning_rate": 5e-5, "head_learning_rate": 1e-3, "patience": 2},
    "lora": {"epochs": 6, "learning_rate": 5e-4, "head_learning_rate": 1e-3, "patience": 2},
    "head": {"epochs": 200, "learning_rate": 1e-2, "head_learning_rate": 1e-2, "patience": 15},
}
# Sensors (gradient-boosted trees): ``epochs`` is the most boosting rounds, ``patience`` the
# rounds without a better cross-validated log loss before boosting stops.
_SENSOR_DEFAULTS: dict[str, float | int] = {
    "epochs": 1000,
    "learning_rate": 0.05,
    "patience": 50,
}


class TrainOptions(BaseModel):
    """How to train. ``None`` means the default for the domain and mode (see ``resolved``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "full"  # text domains
    epochs: int | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    learning_rate: float | None = Field(default=None, gt=0)
    head_learning_rate: float | None = Field(default=None, gt=0)
    patience: int | None = Field(default=None, gt=0)  # epochs without improvement before stop
    seed: int = 13
    base_model: str | None = None  # a folder or cached model id; None: bundled all-MiniLM-L6-v2
    max_seq_length: int = Field(default=128, gt=0)
    taxonomy: Path | None = None  # required for tickets
    validation_fraction: float = Field(default=0.15, gt=0, lt=1)
    validation_data: Path | None = None  # a labeled file to validate on instead of a cut split
    class_weight: Literal["none", "sqrt", "balanced"] = "sqrt"
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    # Text domains whose model reads more of a row than its text (a review's flag and title):
    # the share of training rows also trained on as their text alone (models.splits).
    text_alone_share: float = Field(default=0.0, ge=0, le=1)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    lora_r: int = Field(default=8, gt=0)
    lora_alpha: int = Field(default=16, gt=0)
    num_leaves: int = Field(default=15, gt=1)  # sensors: leaves per tree
    dropout: float = Field(default=0.1, ge=0, lt=1)
    # Full mode: keep the word embeddings as pretrained. Words missing from a small training
    # set then stay where their neighbours are, and each step costs about a sixth less.
    freeze_embeddings: bool = False
    # Sensors: k of the k-fold cross-validation that selects the model; the k fold models
    # are the served ensemble.
    folds: int = Field(default=5, ge=2)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model_name: str | None = None  # None: "<domain>-<base model name>" or "<domain>-gbdt"
    show_progress: bool = True

    def resolved(self, task: Task) -> TrainOptions:
        """These options with the task's defaults (and the mode's, for text) where unset."""
        defaults = (
            dict(_SENSOR_DEFAULTS)
            if task == "defect"
            else {
                "batch_size": 32,
                **_TEXT_DEFAULTS[self.mode],
            }
        )
        unset = {key: value for key, value in defaults.items() if getattr(self, key) is None}
        return self.model_copy(update=unset)
