"""Training the defect model: class-weighted failure loss, a mode loss, a tuned threshold."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from sklearn.metrics import average_precision_score
from torch import nn

from models.data import FAILURE_MODES, SensorData
from models.fitting import FitResult, fit
from models.inference import resolve_device
from models.metrics import best_f1_threshold, sensor_metrics
from models.options import TrainOptions
from models.sensor_model import SensorNet, features


@dataclass
class TrainedSensors:
    model: SensorNet
    fit: FitResult
    metrics: dict


def _mode_targets(data: SensorData) -> torch.Tensor:
    """The first failure mode of each failed row, or -1 (ignored by the mode loss)."""
    return torch.tensor(
        [
            FAILURE_MODES.index(modes[0]) if failed and modes else -1
            for failed, modes in zip(data.failure, data.modes, strict=True)
        ]
    )


def train_sensors(
    train: SensorData,
    validation: SensorData,
    options: TrainOptions,
    start: SensorNet | None = None,
) -> TrainedSensors:
    """Train a fresh network normalized on ``train``, or fine-tune ``start`` as it is
    normalized (adaptation re-fits its normalization on recent readings first)."""
    assert options.epochs and options.batch_size and options.learning_rate and options.patience
    device = resolve_device(options.device)
    x, val_x = features(train.readings).to(device), features(validation.readings).to(device)
    y = torch.tensor(train.failure, dtype=torch.float32, device=device)
    modes = _mode_targets(train).to(device)
    if start is None:
        model = SensorNet(options.hidden, options.dropout, members=options.members).to(device)
        model.fit_normalization(x)
    else:
        model = start.to(device)
    positives = float(y.sum())
    pos_weight = {
        "none": 1.0,
        "sqrt": ((len(y) - positives) / max(positives, 1.0)) ** 0.5,
        "balanced": (len(y) - positives) / max(positives, 1.0),
    }[options.class_weight]
    failure_loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device))
    mode_loss = nn.CrossEntropyLoss(ignore_index=-1)
    generator = torch.Generator().manual_seed(options.seed)

    def batches(_: int) -> Iterator[torch.Tensor]:
        yield from torch.randperm(len(y), generator=generator).to(device).split(options.batch_size)

    def loss(rows: object) -> torch.Tensor:
        failure_logits, mode_logits = model.member_logits(x[rows])
        members = failure_logits.shape[0]
        value = failure_loss(failure_logits, y[rows].expand(members, -1))
        if bool((modes[rows] >= 0).any()):
            flat_modes = mode_logits.reshape(-1, mode_logits.shape[-1])
            value = value + mode_loss(flat_modes, modes[rows].repeat(members))
        return value

    def validation_probability() -> torch.Tensor:
        with torch.inference_mode():
            return torch.sigmoid(model(val_x)[0]).cpu()

    def validate() -> float:
        # Average precision rather than F1 at a tuned threshold: with a few dozen failures in
        # the validation rows, F1 jumps by whole rows and stops training on noise.
        return float(average_precision_score(validation.failure, validation_probability()))

    result = fit(
        model,
        [{"params": list(model.parameters()), "lr": options.learning_rate}],
        batches,
        -(-len(y) // options.batch_size),
        loss,
        validate,
        epochs=options.epochs,
        patience=options.patience,
        weight_decay=options.weight_decay,
        warmup_ratio=options.warmup_ratio,
        show_progress=options.show_progress,
        description="sensors",
    )
    p = validation_probability().numpy()
    # Without a failure to tune on, a started model keeps its threshold and a fresh one 0.5.
    if any(validation.failure):
        model.threshold = best_f1_threshold(p, validation.failure)
    metrics = sensor_metrics(p, model.threshold, validation.failure)
    return TrainedSensors(model.cpu().eval(), result, metrics)
