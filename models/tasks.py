"""What a model does, whatever stream it serves: the tasks a domain chooses from.

- ``sentiment``: a text classifier over negative, neutral and positive (CSV ``text,label``).
- ``intent_risk``: a text classifier over the intents of a risk taxonomy, whose probability mass
  on risky intents gives a risk score and level (CSV ``text,intent`` and the taxonomy's JSON).
- ``defect``: gradient-boosted trees over machine readings (the AI4I 2020 columns) giving a
  failure probability, a failure mode and a defect flag.

A model folder records its task in ``metadata.json``; folders written before it did are read
by their kind and files (``task_of``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from models.registry import METADATA_FILE

Task = Literal["sentiment", "intent_risk", "defect"]
TASKS: tuple[Task, ...] = ("sentiment", "intent_risk", "defect")
TEXT_TASKS: tuple[Task, ...] = ("sentiment", "intent_risk")

TAXONOMY_FILE = "taxonomy.json"  # an intent_risk model's risk taxonomy, in its folder
LABELS_FILE = "labels.json"  # a text model's labels in the order of its head, in its folder
TREES_KIND = "sensor-gbdt"  # metadata ``kind`` of a defect model; text models: text-classifier

# The figure early stopping and the gate watch, and the figures a listing shows first.
PRIMARY_METRIC: dict[Task, str] = {
    "sentiment": "accuracy",
    "intent_risk": "intent_accuracy",
    "defect": "f1",
}
HEADLINE_METRICS: dict[Task, tuple[str, str]] = {
    "sentiment": ("accuracy", "macro_f1"),
    "intent_risk": ("intent_accuracy", "risk_macro_f1"),
    "defect": ("f1", "roc_auc"),
}
# The label column of a text task's CSV files (the text is in ``text``).
LABEL_COLUMNS: dict[Task, str] = {"sentiment": "label", "intent_risk": "intent"}


def task_of(model_dir: Path) -> Task:
    """The task of the model in ``model_dir``, from its metadata (or, for a folder written
    before metadata named it, its kind and taxonomy file). Raises FileNotFoundError without
    metadata."""
    metadata = json.loads((Path(model_dir) / METADATA_FILE).read_text(encoding="utf-8"))
    task = metadata.get("task")
    if task in TASKS:
        return task
    if metadata.get("kind") == TREES_KIND:
        return "defect"
    return "intent_risk" if (Path(model_dir) / TAXONOMY_FILE).is_file() else "sentiment"
