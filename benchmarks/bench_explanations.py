"""Are the explanations faithful? The comprehensiveness test of ERASER (DeYoung et al. 2020):
delete the k words most attributed toward the predicted label and measure how far that
label's probability falls, against deleting k words at random; and the time per explanation.

    python benchmarks/bench_explanations.py --model-dir DIR --data LABELED_CSV \
        [--ks 1,3,5] [--steps 32] [--rows 300] [--random-draws 3] [--out results.json]

A faithful method's deletions cost the prediction clearly more than random ones. Texts with
fewer than ``max(ks) + 1`` words are left out (deleting every word says nothing). The model
runs in fp32 with the settings' torch threads; the explanation time is wall time per text.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np
from recording import record
from rich.console import Console
from rich.table import Table

import domains  # noqa: F401  (registers the domains, whose labeled rows models read)
from models.data import read_texts
from models.serving.explanations import Attribution, Explainer
from models.serving.inference import TextEngine


def without(text: str, words: list[Attribution]) -> str:
    """``text`` with the character spans of ``words`` cut out, spaces collapsed."""
    kept, cursor = [], 0
    for word in sorted(words, key=lambda w: w.span or (0, 0)):
        assert word.span is not None
        kept.append(text[cursor : word.span[0]])
        cursor = word.span[1]
    kept.append(text[cursor:])
    return " ".join("".join(kept).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="CSV with a text column")
    parser.add_argument("--ks", default="1,3,5")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rows", type=int, default=300, help="first N eligible texts")
    parser.add_argument("--random-draws", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/explanations.json")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    rng = random.Random(args.seed)
    explainer = Explainer(args.model_dir, steps=args.steps)
    engine = TextEngine(explainer.model, explainer.tokenizer, "cpu", 128, 64, "fp32")
    label_index = {label: i for i, label in enumerate(explainer.labels)}

    drops: dict[str, dict[int, list[float]]] = {"attributed": {}, "random": {}}
    seconds, deltas, used = [], [], 0
    for text in read_texts(args.data, domain=explainer.domain):
        if used >= args.rows:
            break
        started = time.perf_counter()
        (explanation,) = explainer.explain([text])
        elapsed = time.perf_counter() - started
        words = explanation.attributions
        if len(words) <= max(ks):
            continue
        used += 1
        seconds.append(elapsed)
        deltas.append(abs(explanation.delta))
        target = label_index[explanation.label]
        ranked = sorted(words, key=lambda w: w.score, reverse=True)
        variants: list[tuple[str, int, str]] = []
        for k in ks:
            variants.append(("attributed", k, without(text, ranked[:k])))
            variants += [
                ("random", k, without(text, rng.sample(words, k))) for _ in range(args.random_draws)
            ]
        p = engine.predict_proba([text, *(v[2] for v in variants)])[:, target]
        for (kind, k, _), after in zip(variants, p[1:], strict=True):
            drops[kind].setdefault(k, []).append(float(p[0] - after))

    figures = {
        "model": explainer.version,
        "domain": explainer.domain,
        "texts": used,
        "steps": args.steps,
        "seconds_per_explanation": statistics.mean(seconds),
        "p95_seconds": float(np.percentile(seconds, 95)),
        "mean_abs_delta": statistics.mean(deltas),
        "comprehensiveness": {
            str(k): {
                "attributed": statistics.mean(drops["attributed"][k]),
                "random": statistics.mean(drops["random"][k]),
            }
            for k in ks
        },
    }
    table = Table("k words deleted", "top-attributed: fall in p", "random: fall in p", "ratio")
    for k in ks:
        top, chance = (figures["comprehensiveness"][str(k)][x] for x in ("attributed", "random"))
        table.add_row(str(k), f"{top:.3f}", f"{chance:.3f}", f"{top / max(chance, 1e-9):.1f}x")
    Console().print(table)
    summary = (
        f"{used} texts, {figures['seconds_per_explanation']:.3f} s per explanation "
        f"(p95 {figures['p95_seconds']:.3f} s), mean |delta| {figures['mean_abs_delta']:.4f}"
    )
    Console(stderr=True).print(summary)
    record(
        "explanations",
        "Explanations: how faithful, how fast",
        figures,
        out=args.out,
        tables=[
            {
                "title": "Comprehensiveness: the fall in the predicted class's probability",
                "columns": ["k words deleted", "top-attributed", "random"],
                "rows": [
                    [
                        k,
                        figures["comprehensiveness"][str(k)]["attributed"],
                        figures["comprehensiveness"][str(k)]["random"],
                    ]
                    for k in ks
                ],
            }
        ],
        notes=[f"{summary}."],
    )


if __name__ == "__main__":
    main()
