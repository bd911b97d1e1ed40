"""The text inference engine: batched, padded per sub-batch, under ``torch.inference_mode``.

Texts are tokenized once without padding, sorted by length and cut into sub-batches, so each
sub-batch is padded only to its own longest text (length bucketing within a batch); results
go back in input order. Precision: on CUDA, bf16 autocast where the GPU supports it and fp16
otherwise; on CPU fp32 by default, bf16 autocast when asked for (native on CPUs with AVX512-BF16
or AMX, emulated and slow on others), dynamic int8 of the linear layers
(``precision="int8"``, with the layers the model's int8 plan keeps in fp32:
``models.serving.quantization``), or the model run by ONNX Runtime in fp32 or dynamic int8
(``"onnx-fp32"``, ``"onnx-int8"``: ``models.serving.onnx_runtime``, with the model's plan for
that runtime), whose int8 kernels use VNNI where the CPU has it and AVX2 otherwise.
``benchmarks/bench_serving.py`` measures their speed and accuracy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from config.settings import Precision
from models.serving.onnx_runtime import CompiledModels, OnnxClassifier
from models.serving.quantization import PLAN_KEYS, quantize_int8
from models.text_model import TextClassifier

DeviceName = Literal["auto", "cpu", "cuda"]
ONNX_PRECISIONS = {"onnx-fp32": False, "onnx-int8": True}  # ... and whether it is int8


def resolve_device(device: DeviceName | str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda was asked for but torch sees no CUDA GPU")
    return torch.device(device)


def resolve_precision(device: torch.device, precision: Precision | str) -> str:
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if (precision == "int8" or precision in ONNX_PRECISIONS) and device.type != "cpu":
        raise ValueError(f"{precision} runs on the CPU only")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast is for CUDA; use fp32, bf16 or int8 on the CPU")
    return precision


class TextEngine:
    """Class probabilities for texts from a :class:`TextClassifier`. ``keep_fp32`` names the
    linear layers that stay fp32 under ``precision="int8"`` or ``"onnx-int8"`` (the model's
    plan for that runtime: ``models.serving.quantization.kept_fp32``); other precisions ignore
    it, and ``self.keep_fp32`` is then empty."""

    def __init__(
        self,
        model: TextClassifier,
        tokenizer: PreTrainedTokenizerBase,
        device: DeviceName | str = "auto",
        max_seq_length: int = 128,
        batch_size: int = 64,
        precision: Precision | str = "auto",
        keep_fp32: Collection[str] = (),
        threads: int = 0,
        compiled: CompiledModels | None = None,
    ) -> None:
        """``threads``: CPU threads of an ONNX Runtime session (0: as many as torch uses,
        which ``torch.set_num_threads`` sets for the process); ``compiled``: where the ONNX
        runtimes keep the files they build, to load them next time instead."""
        self.device = resolve_device(device)
        self.precision = resolve_precision(self.device, precision)
        model = model.eval()
        self.num_labels = model.head.out_features
        self.keep_fp32 = tuple(keep_fp32) if self.precision in PLAN_KEYS else ()
        self.model: torch.nn.Module | OnnxClassifier
        if self.precision == "int8":
            self.model = quantize_int8(model, self.keep_fp32)
        elif self.precision in ONNX_PRECISIONS:
            int8 = ONNX_PRECISIONS[self.precision]
            self.model = OnnxClassifier(
                model, int8, threads or torch.get_num_threads(), self.keep_fp32, compiled=compiled
            )
        else:
            self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def sub_batches(self, texts: Sequence[str]) -> Iterator[tuple[list[int], dict]]:
        encoded = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_seq_length, padding=False
        )["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            padded = self.tokenizer.pad(
                {"input_ids": [encoded[i] for i in chunk]}, padding=True, return_tensors="pt"
            )
            yield chunk, padded

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw class scores (n, labels), in input order."""
        out = np.zeros((len(texts), self.num_labels), dtype=np.float32)
        if not texts:
            return out
        with torch.inference_mode(), self._autocast():
            for chunk, batch in self.sub_batches(texts):
                logits = self.model(
                    batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
                )
                out[chunk] = (
                    logits if isinstance(logits, np.ndarray) else logits.float().cpu().numpy()
                )
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities (n, labels), in input order."""
        return torch.softmax(torch.from_numpy(self.predict_logits(texts)), dim=-1).numpy()
