"""A text classifier run by ONNX Runtime instead of torch, in fp32 or int8, on the CPU.

The model is exported to ONNX when it is loaded (TorchScript exporter, opset 17, batch and
sequence dimensions dynamic) and, for int8, quantized dynamically (ONNX Runtime's
``quantize_dynamic``): the linear layers' weights to int8 once, one scale per output channel,
their inputs per batch. The layers the model's plan for this runtime keeps in fp32
(``onnx_quantization``, fitted by ``models.serving.quantization.fit_int8_plan`` with this
quantizer) stay fp32. ONNX Runtime's CPU kernels use the int8
dot-product instructions where the CPU has them (AVX512-VNNI, AVX-VNNI, AMX) and AVX2
otherwise, so int8 is a fast path on CPUs without bf16 too. Without VNNI the weights are
quantized to 7 bits (``reduce_range``): those kernels add pairs of unsigned-by-signed byte
products into 16 bits, which 8-bit weights can saturate (ONNX Runtime's quantization guide,
"When to use reduce-range"). Nothing is written next to the model: the files are built in a
temporary folder and, given a :class:`CompiledModels` folder, the finished one is kept there,
so that the next load of the same model with the same settings skips the export and the
quantizer (seconds per model on a small CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
import transformers
from onnxruntime.quantization import QuantType, quantize_dynamic

from models.serving.cpu_features import VNNI, cpu_flags
from models.serving.quantization import check_linear_layers
from models.text_model import TextClassifier

OPSET = 17
INPUTS = ("input_ids", "attention_mask")

log = logging.getLogger(__name__)


class _NoPreprocessingAdvice(logging.Filter):
    """``quantize_dynamic`` advises, on the root logger, ONNX Runtime's shape-inference
    pre-processing, which fails on these models ("Incomplete symbolic shape inference")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


logging.getLogger().addFilter(_NoPreprocessingAdvice())


def default_reduce_range() -> bool:
    """Whether int8 weights are quantized to 7 bits on this CPU: when it lacks VNNI."""
    return not cpu_flags() & VNNI


def int8_scheme(reduce_range: bool | None = None) -> str:
    """The quantizer's settings in words (``reduce_range`` None: this CPU's), recorded with a
    plan fitted under them."""
    bits = 7 if (default_reduce_range() if reduce_range is None else reduce_range) else 8
    return f"ONNX Runtime dynamic int8 of the linear layers, per-channel {bits}-bit weights"


# The code that builds a compiled model, beside the versions of what it calls: this module
# (export, quantizer options) and the classifier's forward pass.
_BUILD_CODE = hashlib.sha256(
    Path(__file__).read_bytes() + Path(inspect.getfile(TextClassifier)).read_bytes()
).hexdigest()[:16]


@dataclass(frozen=True)
class CompiledModels:
    """A folder of the ONNX files built for models. Each is named for the model's content hash
    (``model_sha256``) and for everything else its bytes depend on: int8 or not, the layers
    kept fp32, the weights' bits, the opset, the versions of torch, transformers, onnx and ONNX
    Runtime, and the code that builds it (this module and the classifier's). Files are
    written whole, by rename, so concurrent loads never read half a file; only the ``KEPT``
    most recently used stay, so that a registry's every adapted version does not leave its
    copy behind. Deleting the folder is always safe: what is missing is built again."""

    folder: Path
    model_sha256: str

    KEPT = 12  # a few live text models per machine, each with a candidate or two beside it

    def path_for(self, int8: bool, keep_fp32: Collection[str], reduce_range: bool) -> Path:
        """The file this model is kept in when built with these settings; it may not exist."""
        recipe = json.dumps(
            {
                "int8": int8,
                "keep_fp32": sorted(keep_fp32) if int8 else [],
                "reduce_range": reduce_range if int8 else None,
                "opset": OPSET,
                "versions": [lib.__version__ for lib in (torch, transformers, onnx, onnxruntime)],
                "code": _BUILD_CODE,
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(recipe.encode()).hexdigest()[:16]
        return self.folder / f"{self.model_sha256[:16]}-{digest}.onnx"

    def load(
        self, path: Path, options: onnxruntime.SessionOptions
    ) -> onnxruntime.InferenceSession | None:
        """A session of the file kept at ``path``, marked as just used; None when there is none
        or it does not load (a damaged copy is then built again)."""
        try:
            if not path.is_file():
                return None
            session = _session(path, options)
        # ONNX Runtime's own errors (InvalidProtobuf, Fail, ...) derive from Exception alone.
        except Exception as error:
            log.warning("%s: a kept compiled model does not load (%s); built again", path, error)
            return None
        # Read-only, or just dropped by another process: only the order of use suffers.
        with contextlib.suppress(OSError):
            os.utime(path)
        return session

    def keep(self, built: Path, path: Path) -> None:
        """Copy ``built`` to ``path`` and drop the least recently used beyond ``KEPT``; a
        folder that cannot be written is logged and left alone (the model still loads)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(dir=self.folder, prefix=f".{path.name}.")
            os.close(handle)
            try:
                shutil.copyfile(built, partial)
                os.replace(partial, path)
            finally:
                Path(partial).unlink(missing_ok=True)
        except OSError as error:
            log.warning("%s: the compiled model is not kept (%s)", self.folder, error)
            return
        for stale in _by_last_use(self.folder.glob("*.onnx"))[: -self.KEPT]:
            stale.unlink(missing_ok=True)


def _by_last_use(files: Iterable[Path]) -> list[Path]:
    """``files`` from the least to the most recently used, leaving out any gone meanwhile."""
    used = []
    for file in files:
        with contextlib.suppress(OSError):
            used.append((file.stat().st_mtime, file))
    return [file for _, file in sorted(used)]


def _session(path: Path, options: onnxruntime.SessionOptions) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxClassifier:
    """Logits of a :class:`TextClassifier`, computed by an ONNX Runtime session on ``threads``
    CPU threads (0: ONNX Runtime's default, one per core). In int8, the linear layers named in
    ``keep_fp32`` (names from ``model.named_modules()``) stay fp32, and ``reduce_range`` (by
    default: when the CPU lacks VNNI) quantizes weights to 7 bits. With ``compiled``, a file
    built before for the same model and settings is loaded instead of built, and a new one is
    kept there. Raises UnknownLayersError for a name that is not a linear layer of ``model``."""

    def __init__(
        self,
        model: TextClassifier,
        int8: bool,
        threads: int = 0,
        keep_fp32: Collection[str] = (),
        reduce_range: bool | None = None,
        compiled: CompiledModels | None = None,
    ) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the quantizer's advice is not for users
        reduce_range = default_reduce_range() if reduce_range is None else reduce_range
        linear = check_linear_layers(model, keep_fp32) if int8 else []
        kept = compiled.path_for(int8, keep_fp32, reduce_range) if compiled else None
        session = compiled.load(kept, options) if compiled and kept else None
        if session is None:
            with tempfile.TemporaryDirectory(prefix="signalyard-onnx-") as folder:
                path = export(model, Path(folder) / "model.onnx")
                if int8:
                    excluded = kept_nodes(onnx.load(str(path)), keep_fp32, linear)
                    path = _quantized(path, excluded, reduce_range)
                session = _session(path, options)
                if compiled and kept:
                    compiled.keep(path, kept)
        self.session = session

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


def _quantized(path: Path, excluded: list[str], reduce_range: bool) -> Path:
    """The ONNX model at ``path`` with dynamic int8 linear layers, beside it; the weight
    products named in ``excluded`` (``kept_nodes``) stay fp32."""
    quantized = path.with_name(f"{path.stem}.int8.onnx")
    quantize_dynamic(
        path,
        quantized,
        # Linear layers only, as torch's dynamic int8: not the embedding tables (Gather) nor
        # the attention products of two activations.
        op_types_to_quantize=["MatMul"],
        extra_options={"MatMulConstBOnly": True},
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=reduce_range,
        nodes_to_exclude=excluded,
    )
    return quantized


def kept_nodes(
    graph: onnx.ModelProto, layers: Collection[str], linear: Collection[str]
) -> list[str]:
    """The names, as ``quantize_dynamic`` knows them, of the weight products in ``graph`` to
    keep in fp32: those computing the linear layers named ``layers``, and those named for none
    of the model's linear layers ``linear`` (torch module names), which torch's dynamic int8
    would not quantize either and which a plan cannot name. The TorchScript exporter names a
    module's nodes by its path: ``/encoder/layer.0/output/dense/MatMul`` computes
    ``encoder.layer.0.output.dense``. The quantizer turns a Gemm into a MatMul named ``<Gemm's
    name>_MatMul`` before it quantizes, so a Gemm is listed under both names. A layer whose
    output nothing uses (a pooler beside mean pooling) is pruned from the graph and has no
    node."""
    weights = {initializer.name for initializer in graph.graph.initializer}
    kept, known, names = set(layers), set(linear), []
    for node in graph.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or node.input[1] not in weights:
            continue  # a product of two activations (attention) is not a linear layer
        layer = node.name.strip("/").rpartition("/")[0].replace("/", ".")
        if layer in kept or layer not in known:
            names += [node.name, f"{node.name}_MatMul"] if node.op_type == "Gemm" else [node.name]
    return names
