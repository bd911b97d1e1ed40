"""A text classifier run by ONNX Runtime instead of torch, in fp32 or int8, on the CPU.

The model is exported to ONNX when it is loaded (TorchScript exporter, opset 17, batch and
sequence dimensions dynamic) and, for int8, quantized dynamically: weights to int8 once,
activations per batch (ONNX Runtime's ``quantize_dynamic``). ONNX Runtime's CPU kernels use the
int8 dot-product instructions where the CPU has them (AVX512-VNNI, AVX-VNNI, AMX) and AVX2
otherwise, so int8 is a fast path on CPUs without bf16 too. Nothing is written next to the
model: the files live in a temporary folder only while the session is made.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from models.text_model import TextClassifier

OPSET = 17
INPUTS = ("input_ids", "attention_mask")


class _NoPreprocessingAdvice(logging.Filter):
    """``quantize_dynamic`` advises, on the root logger, ONNX Runtime's shape-inference
    pre-processing, which fails on these models ("Incomplete symbolic shape inference")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


logging.getLogger().addFilter(_NoPreprocessingAdvice())


class OnnxClassifier:
    """Logits of a :class:`TextClassifier`, computed by an ONNX Runtime session on ``threads``
    CPU threads (0: ONNX Runtime's default, one per core)."""

    def __init__(self, model: TextClassifier, int8: bool, threads: int = 0) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the quantizer's advice is not for users
        with tempfile.TemporaryDirectory(prefix="signalyard-onnx-") as folder:
            path = export(model, Path(folder) / "model.onnx")
            if int8:
                quantized = path.with_name("model.int8.onnx")
                quantize_dynamic(path, quantized, weight_type=QuantType.QInt8)
                path = quantized
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        """Logits (batch, labels) for token ids and their mask (batch, sequence)."""
        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)


def export(model: TextClassifier, path: Path) -> Path:
    """Write the model (in eval mode) to ``path`` as ONNX; returns ``path``."""
    example = torch.ones((2, 8), dtype=torch.long)
    dynamic = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        # The TorchScript exporter's deprecation notice and its notes on traced indexing,
        # which hold for these encoders (no negative indices), are not for the user.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example, torch.ones_like(example)),
            str(path),
            input_names=list(INPUTS),
            output_names=["logits"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return path
