"""One retraining round on real (tiny) models: the gate promotes a better candidate and refuses
a worse one, and either way the candidate is registered with the decision and both metrics."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from config.settings import AdaptationSettings, load_settings
from models.registry import Registry
from models.serving.loading import LoadedScorer, load_scorer
from models.training.retraining import LabeledRow, retrain
from signalyard.demo.bootstrap import BootstrapSize, ensure_models
from signalyard.demo.synthetic import write_training_csv

FLIPPED = {"positive": "negative", "negative": "positive", "neutral": "neutral"}


@pytest.fixture(scope="module")
def news_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A live news model whose source validation split (45 rows) holds enough positive and
    negative headlines for forgetting them to show: the session's tiny model has 14, nearly
    all neutral."""
    settings = load_settings(home=tmp_path_factory.mktemp("news-home"))
    ensure_models(settings, ("news",), BootstrapSize(text_rows=300, text_epochs=40))
    return settings.models_dir


@pytest.fixture
def registry(tmp_path: Path, news_registry: Path) -> Registry:
    shutil.copytree(news_registry, tmp_path / "models")
    return Registry(tmp_path / "models")


def news_rows(tmp_path: Path, rows: int, flip: bool) -> list[LabeledRow]:
    """Synthetic headlines unseen in training; ``flip``: a target domain whose analysts read
    positive and negative the other way round, which the live model gets mostly wrong."""
    path = write_training_csv("news", tmp_path / "target.csv", rows, seed=99)
    with path.open(newline="", encoding="utf-8") as handle:
        read = list(csv.DictReader(handle))
    return [
        LabeledRow(f"e{i}", FLIPPED[row["label"]] if flip else row["label"], row["text"])
        for i, row in enumerate(read)
    ]


def settings(**changes: object) -> AdaptationSettings:
    base = {"mode": "head", "min_holdout": 15, "holdout_fraction": 0.25, "gate_margin": 0.05}
    return load_settings().adaptation.model_copy(update=base | changes)


def load(folder: Path) -> LoadedScorer:
    return load_scorer(folder, "cpu", 64, "fp32")


def test_gate_promotes_a_candidate_that_learned_the_target(
    tmp_path: Path, registry: Registry
) -> None:
    labeled = news_rows(tmp_path, 80, flip=True)
    # No replay and no source tolerance: the target contradicts the source on purpose.
    rules = settings(replay_ratio=0.0, source_tolerance=1.0)
    outcome = retrain("news", registry, labeled, rules, load, {"reason": "manual"})
    assert outcome.promoted, outcome.reason
    assert outcome.live_version == "v1" and outcome.version == "v2"
    assert registry.live_version("news") == "v2"
    gate = registry.metadata("news", "v2")["adaptation"]["gate"]
    assert gate["promote"] and gate["metric"] == "accuracy"
    assert gate["candidate"]["target"]["accuracy"] >= gate["live"]["target"]["accuracy"] + 0.05
    assert gate["live"]["source"]["n"] > 0  # the live model's own validation split was found
    assert registry.metadata("news", "v2")["adaptation"]["labels"] == {"train": 60, "holdout": 20}


def test_gate_refuses_a_candidate_that_forgets_the_source(
    tmp_path: Path, registry: Registry
) -> None:
    labeled = news_rows(tmp_path, 80, flip=True)
    rules = settings(replay_ratio=0.0, source_tolerance=0.02)
    outcome = retrain("news", registry, labeled, rules, load, {"reason": "manual"})
    assert not outcome.promoted and outcome.reason.startswith("refused")
    assert "tolerance 0.02" in outcome.reason
    assert registry.live_version("news") == "v1"
    gate = registry.metadata("news", outcome.version)["adaptation"]["gate"]
    assert not gate["promote"]
    drop = gate["live"]["source"]["accuracy"] - gate["candidate"]["source"]["accuracy"]
    assert drop > 0.02


def test_too_few_labels_train_nothing(tmp_path: Path, registry: Registry) -> None:
    labeled = news_rows(tmp_path, 20, flip=False)
    outcome = retrain("news", registry, labeled, settings(), load, {})
    assert outcome.version is None and not outcome.promoted
    assert "too few labels: 20" in outcome.reason
    assert registry.version_ids("news") == ["v1"]
