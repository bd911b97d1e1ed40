"""Training end to end on a tiny random BERT and a few dozen rows, then scoring and eval.

The tiny encoder (two layers of width 32, the bundled tokenizer) keeps every run to seconds;
what is checked is the plumbing and that the model learns separable rows, not quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import NEWS_WORDS, fast, write_csv
from safetensors.torch import load_file

from config.settings import load_settings
from models.registry import Registry, content_sha256
from models.serving.loading import load_live_scorer, load_scorer
from models.training.trainer import train_model
from signalyard.cli import main

INTENTS = {"lost_or_stolen_card": "my card was stolen", "card_arrival": "when will my card come"}


@pytest.fixture
def news_csv(tmp_path: Path) -> Path:
    rows = [[f"{p} {i}", label] for label, ps in NEWS_WORDS.items() for p in ps for i in range(4)]
    return write_csv(tmp_path / "news.csv", ["text", "label"], rows)


@pytest.fixture
def tickets(tmp_path: Path) -> tuple[Path, Path]:
    taxonomy = tmp_path / "risk.json"
    taxonomy.write_text(
        json.dumps(
            {
                "levels": {"lost_or_stolen_card": "high", "card_arrival": "low"},
                "weights": {"low": 0, "medium": 0.5, "high": 1},
            }
        )
    )
    rows = [[f"{text} {i}", intent] for intent, text in INTENTS.items() for i in range(15)]
    return write_csv(tmp_path / "tickets.csv", ["text", "intent"], rows), taxonomy


def test_head_mode_learns_and_scores(tmp_path: Path, tiny_base: Path, news_csv: Path) -> None:
    registry = Registry(tmp_path / "registry")
    options = fast(tiny_base, mode="head", learning_rate=0.05, patience=100, epochs=150)
    version = train_model("news", "sentiment", news_csv, registry, options)
    assert version == "v1" and registry.live_version("news") == "v1"
    folder = registry.version_dir("news", version)
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "head.safetensors", "labels.json"} <= names
    assert {"metrics.json", "metadata.json", "tokenizer.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["base_model"] == str(tiny_base) and len(metadata["data"]["sha256"]) == 64
    assert metadata["options"]["mode"] == "head" and metadata["training"]["epochs_run"] > 1

    scorer = load_scorer(folder, device="cpu", max_seq_length=16)
    texts = ["profit soars 1", "heavy losses 2", "meeting on monday 3"]
    predictions = scorer.score(texts)
    assert [p["label"] for p in predictions] == ["positive", "negative", "neutral"]
    for p in predictions:
        assert p["p_negative"] + p["p_neutral"] + p["p_positive"] == pytest.approx(1, abs=1e-5)
        assert p["sentiment"] == pytest.approx(p["p_positive"] - p["p_negative"])
    # Bucketing by length must not reorder results: one by one gives the same answers.
    single = [scorer.score([t])[0]["p_positive"] for t in texts]
    assert single == pytest.approx([p["p_positive"] for p in predictions], abs=1e-5)
    int8 = load_scorer(folder, device="cpu", max_seq_length=16, precision="int8")
    assert [p["label"] for p in int8.score(texts)] == ["positive", "negative", "neutral"]
    bf16 = load_scorer(folder, device="cpu", max_seq_length=16, precision="bf16")
    seen: list[torch.dtype] = []
    hook = bf16.engine.model.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    assert [p["p_positive"] for p in bf16.score(texts)] == pytest.approx(
        [p["p_positive"] for p in predictions], abs=0.02
    )
    hook.remove()
    assert seen == [torch.bfloat16]  # the head really ran under bf16 autocast


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_fine_tuning_modes_run(tmp_path: Path, tiny_base: Path, news_csv: Path, mode: str) -> None:
    registry = Registry(tmp_path)
    options = fast(tiny_base, mode=mode, epochs=2, batch_size=8)
    version = train_model("news", "sentiment", news_csv, registry, options)
    folder = registry.version_dir("news", version)
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["mode"] == mode and metadata["training"]["epochs_run"] <= 2
    # LoRA adapters are merged: the folder is a plain encoder that loads without peft.
    assert not (folder / "adapter_config.json").exists()
    assert len(load_scorer(folder, device="cpu").score(["shares jump"])) == 1


def test_frozen_embeddings_stay_as_pretrained(
    tmp_path: Path, tiny_base: Path, news_csv: Path
) -> None:
    registry = Registry(tmp_path)
    options = fast(tiny_base, epochs=2, batch_size=8, learning_rate=1e-3, freeze_embeddings=True)
    trained = load_file(
        registry.version_dir("news", train_model("news", "sentiment", news_csv, registry, options))
        / "model.safetensors"
    )
    pretrained = load_file(tiny_base / "model.safetensors")
    words = "embeddings.word_embeddings.weight"
    assert torch.equal(trained[words], pretrained[words])
    layer = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(trained[layer], pretrained[layer])


def test_tickets_and_sensors_through_the_cli(
    tmp_path: Path,
    tiny_base: Path,
    tickets: tuple[Path, Path],
    sensors_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SIGNALYARD_HOME", str(tmp_path / "home"))
    data, taxonomy = tickets
    common = ["--base", str(tiny_base), "--max-seq-length", "16", "--lr", "0.05"]
    main(["train", "tickets", "--data", str(data), "--taxonomy", str(taxonomy), "--mode", "head",
          "--patience", "100", *common])  # fmt: skip
    main(["train", "sensors", "--data", str(sensors_csv), "--epochs", "40"])
    capsys.readouterr()

    main(["eval", "tickets", "--data", str(data)])
    ticket_figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ticket_figures["intent_accuracy"] >= 0.9 and ticket_figures["version"] == "v1"
    assert 0 <= ticket_figures["risk_macro_f1"] <= 1
    main(["eval", "sensors", "--data", str(sensors_csv)])
    sensor_figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"f1", "precision", "recall", "roc_auc"} <= set(sensor_figures)
    assert sensor_figures["roc_auc"] > 0.9

    settings = load_settings()
    ticket = load_live_scorer(settings, "tickets").score(["my card was stolen 99"])[0]
    assert ticket["intent"] == "lost_or_stolen_card"
    # The only high intent carries weight 1 and the low one 0: the score is its probability.
    assert ticket["risk_score"] == pytest.approx(ticket["top_probabilities"][0], abs=1e-5)
    assert ticket["risk_level"] == ("high" if ticket["risk_score"] >= 0.75 else "medium")
    assert ticket["top_intents"][0] == ticket["intent"] and len(ticket["top_intents"]) == 2
    sensor = load_live_scorer(settings, "sensors")
    reading = {"machine_type": "M", "air_temp_k": 300.0, "process_temp_k": 310.0, "rpm": 1500.0,
               "tool_wear_min": 100.0}  # fmt: skip
    calm, strained = sensor.score([{**reading, "torque_nm": 30.0}, {**reading, "torque_nm": 69.0}])
    assert calm["failure_mode"] == "none" and not calm["defect"]
    assert strained["defect"] and strained["failure_mode"] == "PWF"
    assert strained["failure_probability"] > calm["failure_probability"]


def test_registry_commands(
    tmp_path: Path, tiny_base: Path, news_csv: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("SIGNALYARD_HOME", str(tmp_path))
    registry = Registry(load_settings().models_dir)
    for _ in range(2):
        train_model("news", "sentiment", news_csv, registry, fast(tiny_base, mode="head", epochs=3))
    main(["models", "rollback", "news", "--no-announce"])
    assert registry.live_version("news") == "v1"
    main(["models", "promote", "news", "v2", "--no-announce"])
    assert registry.live_version("news") == "v2"
    capsys.readouterr()
    main(["models", "show", "news"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "v2" and shown["domain"] == "news"
    assert shown["content_sha256"] == content_sha256(registry.version_dir("news", "v2"))
    main(["models", "list"])
    assert "news" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "tickets", "--data", str(news_csv)])
    assert exit_info.value.code == 1
    assert "no live tickets model" in capsys.readouterr().err
