"""The int8 plan: the layer whose input carries an outlier feature is found and kept in fp32,
a loaded model applies its plan, and ``signalyard models quantize`` records one or says why
it cannot."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.errors import DataError, ModelNotFoundError
from models.registry import Registry
from models.serving.inference import resolve_precision
from models.serving.loading import load_scorer
from models.serving.onnx_runtime import default_reduce_range, int8_scheme
from models.serving.quantization import (
    PLAN_KEYS,
    Logits,
    check_linear_layers,
    fit_int8_plan,
    kept_fp32,
    quantize_int8,
)
from signalyard.cli import cli, main


class Outlier(nn.Module):
    """Two linear layers; the first one's input has a feature near 1,000 beside small ones
    that carry the class, as transformer encoders' outlier features do."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(8, 8)
        self.second = nn.Linear(8, 2)
        with torch.no_grad():
            self.first.weight.copy_(torch.eye(8))
            self.first.weight[0, 0] = 0.0  # the outlier feature itself is not used
            self.first.bias.zero_()
            self.second.weight.zero_()
            self.second.weight[1, 1], self.second.weight[0, 1] = 1.0, -1.0
            self.second.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def rows(n: int = 200) -> tuple[torch.Tensor, list[str]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=generator) * 0.05
    x[:, 1] = torch.sign(x[:, 1]) * (0.05 + x[:, 1].abs())  # a margin: no row sits on the fence
    x[:, 0] = 1000.0
    return x, ["up" if value > 0 else "down" for value in x[:, 1].tolist()]


def logits_of(x: torch.Tensor) -> Logits:
    def logits(model: nn.Module, texts: Sequence[str]) -> np.ndarray:
        with torch.inference_mode():
            return model(x[[int(t) for t in texts]]).numpy()

    return logits


def test_the_plan_keeps_the_layer_that_reads_the_outlier_in_fp32() -> None:
    x, truth = rows()
    texts = [str(i) for i in range(len(truth))]
    logits = logits_of(x)
    model = Outlier().eval()
    everything = logits(quantize_int8(model), texts).argmax(axis=-1)
    assert (np.array(["down", "up"])[everything] == np.array(truth)).mean() < 0.8

    record = fit_int8_plan(model, logits, texts, truth, ["down", "up"], max_changed=0.01)
    assert record["keep_fp32"] == ["first"] and record["changed"] <= 0.01
    assert record["accuracy_fp32"] == 1.0 and record["accuracy_int8"] >= 0.99
    assert record["rows"] == 200 and [t["kept"] for t in record["tried"]] == [0, 1]
    assert isinstance(quantize_int8(model, record["keep_fp32"]).first, nn.Linear)
    assert not isinstance(quantize_int8(model, record["keep_fp32"]).second, nn.Linear)


def test_the_plan_says_why_it_cannot_be_made() -> None:
    x, truth = rows()
    texts = [str(i) for i in range(len(truth))]
    with pytest.raises(DataError, match="with the 0 most sensitive layers in fp32"):
        fit_int8_plan(Outlier().eval(), logits_of(x), texts, truth, ["down", "up"], max_kept=0)
    with pytest.raises(DataError, match="labels the model does not know: up"):
        fit_int8_plan(Outlier().eval(), logits_of(x), texts, truth, ["down", "flat"])
    with pytest.raises(DataError, match="needs validation rows"):
        fit_int8_plan(Outlier().eval(), logits_of(x), [], [], ["down", "up"])
    with pytest.raises(ValueError, match="not linear layers of the model: third"):
        quantize_int8(Outlier(), ["third"])
    with pytest.raises(ValueError, match="not one string"):
        quantize_int8(Outlier(), "first")


@pytest.mark.parametrize(
    ("device", "precision", "resolved"),
    [("cpu", "auto", "fp32"), ("cpu", "bf16", "bf16"), ("cpu", "int8", "int8"),
     ("cpu", "fp16", "fp16 autocast is for CUDA"), ("meta", "int8", "runs on the CPU only")],
)  # fmt: skip
def test_precisions_a_device_can_run(device: str, precision: str, resolved: str) -> None:
    if " " not in resolved:
        assert resolve_precision(torch.device(device), precision) == resolved
        return
    with pytest.raises(ValueError, match=resolved):
        resolve_precision(torch.device(device), precision)


def test_a_loaded_model_applies_its_plan_and_the_command_records_one(
    teacher_home: tuple[Registry, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    registry, _, _ = teacher_home
    folder = registry.version_dir("news", "v1")
    main(["models", "quantize", "news", "v1", "--max-changed", "1"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metadata = registry.metadata("news", "v1")
    assert metadata["quantization"] == record and record["keep_fp32"] == []
    assert record["rows"] == metadata["data"]["validation_rows"]

    # A plan that keeps the head in fp32 is applied when the model is loaded in int8.
    (folder / "metadata.json").write_text(
        json.dumps({**metadata, "quantization": {**record, "keep_fp32": ["head"]}})
    )
    assert kept_fp32(registry.metadata("news", "v1"), "int8") == ("head",)
    assert kept_fp32(registry.metadata("news", "v1"), "onnx-int8") == ()  # another runtime's
    model = load_scorer(folder, "cpu", 16, "int8").engine.model
    linear = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    assert linear == ["head"]
    fp32 = load_scorer(folder, "cpu", 16, "fp32").engine.model
    assert len([m for m in fp32.modules() if type(m) is nn.Linear]) > 1

    # A plan naming layers the model lacks is one clear error, under int8 only.
    (folder / "metadata.json").write_text(
        json.dumps({**metadata, "quantization": {**record, "keep_fp32": ["pooler"]}})
    )
    with pytest.raises(ModelNotFoundError, match="its int8 plan does not fit the model"):
        load_scorer(folder, "cpu", 16, "int8")
    with pytest.raises(ValueError, match="fp16 autocast is for CUDA"):  # not blamed on the plan
        load_scorer(folder, "cpu", 16, "fp16")
    assert load_scorer(folder, "cpu", 16, "fp32").engine.keep_fp32 == ()

    with pytest.raises(SystemExit) as exit_info:
        main(["models", "quantize", "news", "v9"])
    assert exit_info.value.code == 2
    assert "news has no version 'v9'" in capsys.readouterr().err


def test_each_int8_runtime_applies_its_own_plan(
    teacher_home: tuple[Registry, Path, Path],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry, _, _ = teacher_home
    folder = registry.version_dir("news", "v1")
    main(["models", "quantize", "news", "v1", "--runtime", "onnx-int8", "--max-changed", "1"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metadata = registry.metadata("news", "v1")
    assert metadata["onnx_quantization"] == record and "quantization" not in metadata
    assert record["runtime"] == "onnx-int8"
    assert record["scheme"] == int8_scheme()

    # A plan keeping every linear layer: ONNX Runtime then computes fp32's probabilities,
    # and torch's int8, which has no plan of its own, ignores it.
    model = load_scorer(folder, "cpu", 16, "fp32")
    every = check_linear_layers(model.engine.model, ())
    plan = {**record, "keep_fp32": every}
    (folder / "metadata.json").write_text(json.dumps({**metadata, "onnx_quantization": plan}))
    onnx = load_scorer(folder, "cpu", 16, "onnx-int8")
    assert onnx.engine.keep_fp32 == tuple(every)
    texts = ["profit soars 3", "loss widens 4", "shares flat 5"]
    assert np.abs(onnx.predict_proba(texts) - model.predict_proba(texts)).max() < 1e-4
    assert load_scorer(folder, "cpu", 16, "int8").engine.keep_fp32 == ()

    # A plan fitted under other quantizer settings (the other kind of CPU) warns once a load.
    other = int8_scheme(not default_reduce_range())
    (folder / "metadata.json").write_text(
        json.dumps({**metadata, "onnx_quantization": {**plan, "scheme": other}})
    )
    with caplog.at_level(logging.WARNING, logger="models.serving.text_loading"):
        load_scorer(folder, "cpu", 16, "onnx-int8")
        load_scorer(folder, "cpu", 16, "int8")  # torch's runtime: not its plan
    assert [r.getMessage().count(other) for r in caplog.records] == [1]


def test_the_command_offers_a_plan_for_each_int8_runtime() -> None:
    command = cli.commands["models"].commands["quantize"]  # type: ignore[attr-defined]
    runtime = next(param for param in command.params if param.name == "runtime")
    assert list(runtime.type.choices) == list(PLAN_KEYS)
