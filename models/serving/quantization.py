"""Dynamic int8 for a text classifier on the CPU, and the plan of which linear layers stay fp32.

    from models.serving.quantization import (
        check_linear_layers, fit_int8_plan, kept_fp32, layer_sensitivity, quantize_int8)

    quantize_int8(model: nn.Module, keep_fp32: Collection[str] = ()) -> nn.Module
    layer_sensitivity(model, logits, texts, quantize=quantize_int8) -> dict[str, float]
    fit_int8_plan(model, logits, texts, truth, labels, max_changed=0.005, ...) -> dict
    kept_fp32(metadata: dict, precision: str) -> tuple[str, ...]   # what a load applies
    plan_of(metadata: dict, precision: str) -> dict   # the plan's whole record
    check_linear_layers(model, names) -> list[str]   # UnknownLayersError for other names

torch's dynamic quantization stores each linear layer's weight in int8 (one scale per output
channel) and quantizes its input per batch with one scale for the whole tensor. A layer whose
input carries a few very large activations (the outlier features of transformer encoders,
Dettmers et al., "LLM.int8()", 2022) loses the resolution of every other value, and on the
distilled 8-layer fpb student quantizing every layer cost 6 points of accuracy. Keeping those
few layers in fp32 ("mixed-precision decomposition" at the granularity of a layer) recovers it
at a fraction of the speed.

The plan is fitted on the model's own validation split: each linear layer's sensitivity is the
KL divergence of the model's class probabilities when that layer alone is quantized (on the
first ``probe_rows`` texts); the most sensitive layers are kept in fp32, one more at a time,
until int8 changes at most ``max_changed`` of the decisions fp32 takes on the validation rows.
Each int8 runtime has its plan, fitted with its own quantizer, because the runtimes round
differently and the same layers do not suffice for both: torch's ``"int8"`` (recorded as
``metadata.json`` ``quantization``) and ONNX Runtime's ``"onnx-int8"`` (``onnx_quantization``,
``models.serving.onnx_runtime``). A record lists the kept layers with what they were chosen on.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from models.errors import DataError
from models.labels import label_indices
from models.progress import progress_bar

__all__ = [
    "PLAN_KEYS",
    "SCHEME",
    "Logits",
    "Quantizer",
    "UnknownLayersError",
    "check_linear_layers",
    "fit_int8_plan",
    "kept_fp32",
    "layer_sensitivity",
    "plan_of",
    "quantize_int8",
]

Logits = Callable[[Any, Sequence[str]], np.ndarray]  # (a model or its quantized copy, texts)
Quantizer = Callable[[nn.Module, Collection[str]], Any]  # (model, layers kept in fp32)
PLAN_KEYS = {"int8": "quantization", "onnx-int8": "onnx_quantization"}  # runtime: metadata key
SCHEME = "torch dynamic int8, per-channel weights"  # quantize_int8's, as a plan records it


class UnknownLayersError(ValueError):
    """Names to keep in fp32 that are not linear layers of the model (a plan that does not
    fit it)."""


def _linear_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def quantize_int8(model: nn.Module, keep_fp32: Collection[str] = ()) -> nn.Module:
    """A copy of ``model`` whose linear layers, except those named in ``keep_fp32`` (names
    from ``model.named_modules()``), run in dynamic int8 (CPU only) with one weight scale per
    output channel: on the 6-layer distilled fpb student one scale per tensor lost 0.9 points
    of accuracy on 582 held-out fpb rows, one per channel 0.5. Raises UnknownLayersError for a
    name that is not a linear layer of ``model``, ValueError for a bare string instead of a
    collection."""
    with warnings.catch_warnings():
        # torch points eager quantization users to torchao; the eager API still works.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        linear = check_linear_layers(model, keep_fp32)
        spec = {name: per_channel_dynamic_qconfig for name in linear if name not in keep_fp32}
        return quantize_dynamic(model, spec, dtype=torch.qint8)  # a copy: inplace=False


def check_linear_layers(model: nn.Module, names: Collection[str]) -> list[str]:
    """The model's linear layers (names from ``model.named_modules()``). Raises
    UnknownLayersError when one of ``names`` is not among them, ValueError for a bare string
    instead of a collection."""
    if isinstance(names, str):
        raise ValueError("keep_fp32 takes a collection of layer names, not one string")
    linear = _linear_layers(model)
    unknown = sorted(set(names) - set(linear))
    if unknown:
        raise UnknownLayersError(f"not linear layers of the model: {', '.join(unknown)}")
    return linear


def plan_of(metadata: dict[str, Any], precision: str) -> dict[str, Any]:
    """The record of the model's plan for ``precision`` (a key of ``PLAN_KEYS``); empty when
    it has no such plan or ``precision`` quantizes nothing."""
    return metadata.get(PLAN_KEYS[precision], {}) if precision in PLAN_KEYS else {}


def kept_fp32(metadata: dict[str, Any], precision: str) -> tuple[str, ...]:
    """The layers the model's plan for ``precision`` keeps in fp32 (``plan_of``); none
    without a plan."""
    return tuple(plan_of(metadata, precision).get("keep_fp32", ()))


def _kl(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean KL(softmax(reference) || softmax(other)) over rows of logits (n, k), in nats."""
    p = torch.log_softmax(torch.from_numpy(reference).double(), dim=-1)
    q = torch.log_softmax(torch.from_numpy(other).double(), dim=-1)
    return float((p.exp() * (p - q)).sum(dim=-1).mean())


def layer_sensitivity(
    model: nn.Module,
    logits: Logits,
    texts: Sequence[str],
    show_progress: bool = False,
    quantize: Quantizer = quantize_int8,
) -> dict[str, float]:
    """Each linear layer's KL divergence (nats, mean over ``texts``) of the class
    probabilities from fp32 when that layer alone runs in int8 (``quantize(model, kept)``
    makes the int8 copy); most sensitive first."""
    reference = logits(model, texts)
    linear = _linear_layers(model)
    scores = {}
    with progress_bar(show_progress) as bar:
        for name in bar.track(linear, description="int8 sensitivity, layer by layer"):
            alone = quantize(model, [other for other in linear if other != name])
            scores[name] = _kl(reference, logits(alone, texts))
    return dict(sorted(scores.items(), key=lambda item: -item[1]))


def fit_int8_plan(
    model: nn.Module,
    logits: Logits,
    texts: Sequence[str],
    truth: Sequence[str],
    labels: Sequence[str],
    max_changed: float = 0.005,
    probe_rows: int = 128,
    max_kept: int | None = None,
    show_progress: bool = False,
    quantize: Quantizer = quantize_int8,
    scheme: str = SCHEME,
) -> dict[str, Any]:
    """The int8 plan of ``model`` on labeled validation rows: ``texts`` with their ``truth``
    among ``labels`` (the order of the model's outputs); ``logits(model, texts)`` gives the
    raw class scores (n, k). Keeps the fewest most sensitive layers in fp32 for which int8
    changes the decision of at most ``max_changed`` (a fraction) of the rows. That bounds
    the accuracy int8 can lose on them; the accuracy difference itself is not the criterion
    because changes for the better and for the worse cancel in it, and do not elsewhere.
    Returns the record: kept layers, rows, share changed, both accuracies, both rates
    (texts/s on these rows, this machine, one pass each after a warm-up batch: rough), the
    sensitivities of the kept layers. ``max_kept`` (default: half the linear layers) bounds
    the search. ``quantize(model, kept)`` makes the int8 copy of the runtime the plan is for,
    named in the record by ``scheme``. Raises DataError without rows, on unknown labels, or
    when ``max_kept`` layers are not enough."""
    if not texts:
        raise DataError("an int8 plan needs validation rows")
    target = label_indices(truth, labels)

    def decisions(candidate: nn.Module) -> tuple[np.ndarray, float]:
        logits(candidate, texts[:32])  # warm-up: the first batch pays one-time costs
        started = time.perf_counter()
        decided = logits(candidate, texts).argmax(axis=-1)
        return decided, len(texts) / (time.perf_counter() - started)

    sensitivity = layer_sensitivity(model, logits, texts[:probe_rows], show_progress, quantize)
    ranked = list(sensitivity)
    max_kept = len(ranked) // 2 if max_kept is None else min(max_kept, len(ranked))
    fp32, fp32_rate = decisions(model)
    tried = []
    with progress_bar(show_progress) as bar:
        search = bar.add_task("int8 plan, one more fp32 layer at a time", total=max_kept + 1)
        for kept in range(max_kept + 1):
            int8, rate = decisions(quantize(model, ranked[:kept]))
            changed = float((int8 != fp32).mean())
            tried.append({"kept": kept, "changed": round(changed, 4)})
            bar.advance(search)
            if changed <= max_changed:
                break
        else:
            raise DataError(
                f"int8 changes more than {max_changed:.3f} of the decisions with the "
                f"{max_kept} most sensitive layers in fp32 (tried: {tried})"
            )
    return {
        "scheme": scheme,
        "keep_fp32": ranked[:kept],
        "sensitivity": {name: round(sensitivity[name], 6) for name in ranked[:kept]},
        "rows": len(texts),
        "max_changed": max_changed,
        "changed": round(changed, 4),
        "accuracy_fp32": round(float((fp32 == target).mean()), 4),
        "accuracy_int8": round(float((int8 == target).mean()), 4),
        "texts_per_s_fp32": round(fp32_rate, 1),
        "texts_per_s_int8": round(rate, 1),
        "tried": tried,
    }
