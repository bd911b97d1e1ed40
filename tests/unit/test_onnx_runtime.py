"""A text model run by ONNX Runtime: fp32 gives torch's probabilities, int8 its decisions on
the keyword model's sentences and keeps the int8 plan's layers in fp32, and both refuse a
GPU; precision auto keeps the fastest runtime whose decisions stay within the allowed share
of fp32's."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import FILLER, KEYWORDS

from models.registry import CONTENT_HASH, content_sha256
from models.serving import onnx_runtime
from models.serving.cpu_features import cpu_flags
from models.serving.inference import TextEngine, resolve_precision
from models.serving.loading import load_scorer
from models.serving.onnx_runtime import OnnxClassifier, export, kept_nodes
from models.serving.precision_choice import candidates, choose
from models.serving.quantization import UnknownLayersError, check_linear_layers
from models.text_model import load_text_classifier


def sentences(count: int) -> list[str]:
    rng = random.Random(8)
    texts = []
    for _ in range(count):
        words = rng.sample(FILLER, 6)
        words.insert(rng.randrange(7), rng.choice(list(KEYWORDS.values())))
        texts.append(" ".join(words))
    return texts


def probabilities(model: Path, precision: str, texts: list[str]) -> np.ndarray:
    scorer = load_scorer(model, "cpu", 64, precision, batch_size=16)
    assert scorer.engine.precision == precision
    return scorer.predict_proba(texts)


def test_onnx_fp32_gives_torchs_probabilities_and_int8_its_decisions(keyword_model: Path) -> None:
    texts = sentences(96)
    reference = probabilities(keyword_model, "fp32", texts)
    onnx_fp32 = probabilities(keyword_model, "onnx-fp32", texts)
    assert np.abs(onnx_fp32 - reference).max() < 1e-4
    onnx_int8 = probabilities(keyword_model, "onnx-int8", texts)
    assert not np.array_equal(onnx_int8, reference)  # quantized: not the same numbers
    agreement = (onnx_int8.argmax(1) == reference.argmax(1)).mean()
    assert agreement >= 0.95, agreement


def test_onnx_int8_keeps_the_plans_layers_in_fp32(keyword_model: Path) -> None:
    model, tokenizer, _ = load_text_classifier(keyword_model)
    batches = TextEngine(model, tokenizer, "cpu", 64, 32, "fp32").sub_batches(sentences(32))
    _, padded = next(batches)
    ids, mask = padded["input_ids"], padded["attention_mask"]
    linear = check_linear_layers(model, ())
    fp32 = OnnxClassifier(model, int8=False, threads=1)(ids, mask)
    kept = OnnxClassifier(model, int8=True, threads=1, keep_fp32=linear)(ids, mask)
    assert np.abs(kept - fp32).max() < 1e-4  # every layer kept: no int8 product left
    quantized = OnnxClassifier(model, int8=True, threads=1, keep_fp32=linear[1:])(ids, mask)
    assert np.abs(quantized - fp32).max() > 1e-4  # one layer in int8 changes the numbers
    with pytest.raises(UnknownLayersError, match="not linear layers"):
        OnnxClassifier(model, int8=True, keep_fp32=["encoder.no_such_layer"])


@pytest.mark.parametrize("precision", ["onnx-fp32", "onnx-int8"])
def test_onnx_runtime_is_for_the_cpu(precision: str) -> None:
    with pytest.raises(ValueError, match="CPU only"):
        resolve_precision(torch.device("cuda"), precision)


def test_precision_auto_keeps_the_fastest_runtime_that_decides_as_fp32(
    keyword_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, tokenizer, _ = load_text_classifier(keyword_model)
    texts = sentences(200)

    def build(precision: str) -> TextEngine:
        return TextEngine(model, tokenizer, "cpu", 64, 16, precision)

    flags = frozenset({"avx512_bf16"})  # bf16 among the candidates, native or not
    engine, trials = choose(build, texts, 0.0, flags)
    assert [t.precision for t in trials] == ["fp32", "bf16", "onnx-int8"]
    faithful = [t for t in trials if t.changed == 0.0]
    assert engine.precision == max(faithful, key=lambda t: t.texts_per_s).precision
    # Allowed to change every decision, it takes the fastest of all.
    engine, trials = choose(build, texts, 1.0, flags)
    assert engine.precision == max(trials, key=lambda t: t.texts_per_s).precision

    with caplog.at_level(logging.INFO, logger="models.serving.text_loading"):
        scorer = load_scorer(keyword_model, "cpu", 64, "auto", batch_size=16)
    assert scorer.engine.precision in candidates(cpu_flags())
    assert "precision auto chose" in caplog.text


def test_the_first_choice_is_remembered_and_later_loads_take_it(
    keyword_model: Path, tmp_path: Path
) -> None:
    choices = tmp_path / "precision-choices.json"
    first = load_scorer(keyword_model, "cpu", 64, "auto", 16, choices=choices)
    remembered = json.loads(choices.read_text())
    assert list(remembered.values()) == [first.engine.precision]
    # onnx-fp32 is no candidate of auto: only the remembered choice can give it.
    choices.write_text(json.dumps(dict.fromkeys(remembered, "onnx-fp32")))
    later = load_scorer(keyword_model, "cpu", 64, "auto", 16, choices=choices)
    assert later.engine.precision == "onnx-fp32"

    # A new int8 plan changes what onnx-int8 computes: the remembered choice no longer holds.
    copy = shutil.copytree(keyword_model, tmp_path / "model")
    metadata = json.loads((copy / "metadata.json").read_text())
    plan = {"runtime": "onnx-int8", "keep_fp32": ["head"]}
    (copy / "metadata.json").write_text(json.dumps({**metadata, "onnx_quantization": plan}))
    replanned = load_scorer(copy, "cpu", 64, "auto", 16, choices=choices)
    assert replanned.engine.precision != "onnx-fp32"  # chosen afresh, not remembered
    assert len(json.loads(choices.read_text())) == 2
    again = load_scorer(copy, "cpu", 64, "auto", 16, choices=choices)  # the same plan: taken
    assert again.engine.precision == replanned.engine.precision
    assert len(json.loads(choices.read_text())) == 2


def test_the_plans_layers_and_products_named_for_no_layer_stay_fp32(
    keyword_model: Path, tmp_path: Path
) -> None:
    model, _, _ = load_text_classifier(keyword_model)
    graph = onnx.load(str(export(model, tmp_path / "model.onnx")))
    linear = check_linear_layers(model, ())
    names = kept_nodes(graph, ["head", "encoder.pooler.dense"], linear)
    assert names == ["/head/Gemm", "/head/Gemm_MatMul"]  # the unused pooler has no node
    assert kept_nodes(graph, [], linear) == []  # every linear layer's product quantized
    for node in graph.graph.node:  # as if another exporter had named the head's product
        if node.name == "/head/Gemm":
            node.name = "/classifier/Gemm"
    # Not a layer a plan could name: fp32, as torch's int8 leaves what is not nn.Linear.
    assert kept_nodes(graph, [], linear) == ["/classifier/Gemm", "/classifier/Gemm_MatMul"]


def test_an_onnx_model_is_built_once_and_then_loaded_from_the_compiled_folder(
    keyword_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled, texts = tmp_path / "compiled", sentences(32)
    built = load_scorer(keyword_model, "cpu", 64, "onnx-int8", 16, compiled=compiled)
    load_scorer(keyword_model, "cpu", 64, "onnx-fp32", 16, compiled=compiled)
    int8_file, fp32_file = sorted(compiled.glob("*.onnx"), key=lambda f: f.stat().st_mtime)

    def no_export(*_: object) -> Path:
        raise AssertionError("exported again")

    with monkeypatch.context() as patch:
        patch.setattr(onnx_runtime, "export", no_export)
        loaded = load_scorer(keyword_model, "cpu", 64, "onnx-int8", 16, compiled=compiled)
    assert np.array_equal(loaded.predict_proba(texts), built.predict_proba(texts))
    assert int8_file.stat().st_mtime > fp32_file.stat().st_mtime  # used last, dropped last

    int8_file.write_bytes(b"half a file")  # a damaged copy is rebuilt, not trusted
    rebuilt = load_scorer(keyword_model, "cpu", 64, "onnx-int8", 16, compiled=compiled)
    assert np.array_equal(rebuilt.predict_proba(texts), built.predict_proba(texts))
    assert onnx.load(str(int8_file)).graph.node

    unwritable = tmp_path / "a file, not a folder"
    unwritable.write_text("")
    load_scorer(
        keyword_model, "cpu", 64, "onnx-int8", 16, compiled=unwritable
    )  # loads all the same

    monkeypatch.setattr(onnx_runtime.CompiledModels, "KEPT", 1)
    another = shutil.copytree(keyword_model, tmp_path / "another")  # other bytes, other file
    (another / "notes.txt").write_text("a file more")
    metadata = json.loads((another / "metadata.json").read_text())
    (another / "metadata.json").write_text(json.dumps(metadata | {CONTENT_HASH: None}))
    load_scorer(another, "cpu", 64, "onnx-int8", 16, compiled=compiled)
    assert [f.name[:16] for f in compiled.glob("*.onnx")] == [content_sha256(another)[:16]]


def test_each_setting_that_changes_a_compiled_model_names_another_file(tmp_path: Path) -> None:
    compiled = onnx_runtime.CompiledModels(tmp_path, "ab" * 32)
    settings = [(True, ["head"], False), (True, [], False), (True, [], True), (False, [], True)]
    paths = {compiled.path_for(*setting) for setting in settings}
    assert len(paths) == len(settings)
    assert compiled.path_for(False, ["head"], False) == compiled.path_for(False, [], True)  # fp32
    assert onnx_runtime.CompiledModels(tmp_path, "cd" * 32).path_for(*settings[0]) not in paths
