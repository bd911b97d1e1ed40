"""``precision = "auto"`` on a CPU: the fastest runtime this CPU runs natively whose decisions
on the model's own validation rows stay within a set share of fp32's.

The candidates are torch fp32 (the reference), bf16 autocast where the CPU has native bf16
(AVX512-BF16 or AMX) and ONNX Runtime int8 (VNNI or AVX2: every x86-64 CPU this project
runs on). Each scores the validation rows once, after one warm-up batch; that pass gives both
its speed (texts/s, on this machine as it is at that moment) and its decisions, which are
compared with fp32's. With no validation rows to check against, fp32 is kept.

Timings on a busy machine vary, so two processes could choose differently and score the same
event differently (a replay beside a live worker, or a replay run twice). The first choice for
a model on a machine is therefore remembered (``Choices``: a JSON file, by the model's content
hash, the CPU, the allowance and what ONNX int8 computes: its quantizer's settings and the
model's plan for it) and every later load there takes it, whatever its threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.serving.cpu_features import NATIVE_BF16, VNNI, cpu_flags
from models.serving.inference import TextEngine

MAX_ROWS = 512  # validation rows scored per candidate: enough to see a 1 % change


@dataclass(frozen=True)
class Trial:
    """One candidate runtime: its speed and the share of rows whose decision differs from
    fp32's."""

    precision: str
    texts_per_s: float
    changed: float


class Choices:
    """Choices remembered in a JSON file ``{key: precision}``; written whole, by rename, so a
    reader never sees half a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def key(model_sha256: str, max_changed: float, runtimes: str) -> str:
        """What a choice depends on: the model's bytes, the CPU, the allowance and
        ``runtimes``, what the candidate runtimes compute beyond the model's bytes (their
        quantizers' settings and the model's int8 plans, in any text: it is hashed). Not the
        thread count: every process on a machine, however many threads it runs, must score a
        model alike, or two replays of one range would differ."""
        flags = ",".join(sorted(cpu_flags() & (NATIVE_BF16 | VNNI)))
        cpu = platform.processor() or platform.machine()
        settings = hashlib.sha256(runtimes.encode()).hexdigest()[:12]
        return f"{model_sha256}:{cpu}:{flags}:{max_changed:g}:{settings}"

    def get(self, key: str) -> str | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError):
            return None

    def put(self, key: str, precision: str) -> None:
        try:
            known = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({**known, key: precision}, out, indent=1)
        os.replace(temporary, self.path)


def candidates(flags: frozenset[str]) -> list[str]:
    """The runtimes to try on a CPU with ``flags``, the reference (fp32) first."""
    return ["fp32", *(["bf16"] if flags & NATIVE_BF16 else []), "onnx-int8"]


def choose(
    build: Callable[[str], TextEngine],
    texts: Sequence[str],
    max_changed: float,
    flags: frozenset[str],
) -> tuple[TextEngine, list[Trial]]:
    """The engine of the fastest candidate whose decisions on ``texts`` differ from fp32's on
    at most ``max_changed`` of them, and every candidate's trial. ``build(precision)`` makes
    an engine of the model."""
    rows = list(texts[:MAX_ROWS])
    best = build("fp32")
    rate, reference = _trial(best, rows)
    trials = [Trial("fp32", rate, 0.0)]
    for precision in candidates(flags)[1:]:
        engine = build(precision)
        rate, decisions = _trial(engine, rows)
        trials.append(Trial(precision, rate, float(np.mean(decisions != reference))))
        fastest = max((t for t in trials if t.changed <= max_changed), key=lambda t: t.texts_per_s)
        if fastest.precision == precision:
            best = engine
    return best, trials


def _trial(engine: TextEngine, texts: list[str]) -> tuple[float, np.ndarray]:
    """Texts/s over ``texts`` after one warm-up batch, and the decision on each."""
    engine.predict_logits(texts[: engine.batch_size])
    started = time.perf_counter()
    decisions = engine.predict_logits(texts).argmax(axis=1)
    return len(texts) / max(time.perf_counter() - started, 1e-9), decisions


def describe(trials: Sequence[Trial], chosen: str, rows: int) -> str:
    """One line: what was chosen and why, for the log."""
    tried = ", ".join(
        f"{t.precision} {t.texts_per_s:,.0f} texts/s ({t.changed:.1%} changed)" for t in trials
    )
    return f"precision auto chose {chosen} on {rows} validation rows: {tried}"
