"""One training loop for every model: AdamW, linear warm-up and decay, early stopping.

The caller supplies how to get an epoch's batches, the loss of a batch and the validation
score (higher is better); the loop keeps the weights of the best epoch and restores them.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from models.progress import progress_bar


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(label_ids: list[int], num_labels: int, scheme: str) -> torch.Tensor | None:
    """Loss weights against imbalance: ``balanced`` is n / (k * count), ``sqrt`` its root."""
    if scheme == "none":
        return None
    counts = np.bincount(label_ids, minlength=num_labels).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_labels)
    weights[present] = len(label_ids) / (present.sum() * counts[present])
    if scheme == "sqrt":
        weights = np.sqrt(weights)
    return torch.tensor(weights, dtype=torch.float32)


class Validation(NamedTuple):
    """An epoch's figures on the validation rows: the score the model is chosen on (higher is
    better) and the mean cross-entropy of the true labels (nats)."""

    score: float
    loss: float


@dataclass(frozen=True)
class FitResult:
    best_score: float
    best_epoch: int
    epochs_run: int
    history: list[float]


def fit(
    model: nn.Module,
    parameter_groups: list[dict],
    batches: Callable[[int], Iterable[object]],
    steps_per_epoch: int,
    loss: Callable[[object], torch.Tensor],
    validate: Callable[[], Validation],
    epochs: int,
    patience: int,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    max_grad_norm: float = 1.0,
    show_progress: bool = True,
    description: str = "training",
    precision: str = "fp32",
) -> FitResult:
    """Train for at most ``epochs``; ``precision`` "bf16" or "fp16" runs the forward passes
    under CUDA autocast (fp16 with a gradient scaler against underflow).

    An epoch is better than the best so far when its validation score is higher, or equal with
    a lower validation loss: on data a model soon gets all right, the score stops moving while
    the probabilities are still flat, and the loss keeps choosing until they are not."""
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
        if precision in ("bf16", "fp16")
        else contextlib.nullcontext()
    )
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    groups = [group for group in parameter_groups if group["params"]]
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    total = max(1, epochs * steps_per_epoch)
    warmup = int(warmup_ratio * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            step / warmup if step < warmup else max(0.0, (total - step) / (total - warmup))
        ),
    )
    trainable = [p for group in groups for p in group["params"]]
    best: Validation = Validation(-np.inf, np.inf)
    best_epoch, best_state, history = 0, None, []
    with progress_bar(show_progress) as progress:
        task = progress.add_task(description, total=total)
        for epoch in range(1, epochs + 1):
            model.train()
            for batch in batches(epoch):
                with autocast:
                    value = loss(batch)
                scaler.scale(value).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                progress.update(task, advance=1, description=f"{description} epoch {epoch}")
            model.eval()
            validation = validate()
            history.append(validation.score)
            improved = validation.score > best.score or (
                validation.score == best.score and validation.loss < best.loss
            )
            if improved or epochs <= 20:  # long runs (head mode) log only their progress
                progress.console.log(
                    f"{description}: epoch {epoch} validation {validation.score:.4f} "
                    f"(loss {validation.loss:.4f})"
                )
            if improved:
                best, best_epoch = validation, epoch
                # Only what trains can change: a head alone is copied in microseconds.
                best_state = {
                    name: parameter.detach().clone()
                    for name, parameter in model.named_parameters()
                    if parameter.requires_grad
                }
            elif epoch - best_epoch >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    return FitResult(float(best.score), best_epoch, len(history), history)
