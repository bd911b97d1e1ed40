"""Which model and runtime to serve: models and precisions side by side, in one run, on the
same labeled rows: texts per second at the pipeline's batch size and quality.

    python benchmarks/bench_serving.py --model teacher=DIR --model student=DIR \
        --data HELD_OUT_CSV [--precisions fp32,int8] [--batch-size 32] [--seconds 20] \
        [--threads N] [--out results.json]

Throughput is measured on the data's own texts (their real lengths, length-bucketed as the
pipeline does), cycling through them for at least ``--seconds`` after one warm-up batch.
Quality is each runtime's own predictions on every row. ``int8`` is torch's dynamic int8
quantization of the linear layers (CPU), but for those the model's int8 plan keeps in fp32
(``signalyard models quantize``; the ``fp32 layers`` column counts them); ``bf16`` is autocast,
native on CUDA and on CPUs with AVX512-BF16 or AMX.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from models.data import SENTIMENT_LABELS, read_text
from models.encoders import WEIGHTS_FILE, stored_parameters
from models.evaluation import evaluate_data
from models.loading import load_scorer
from models.scorers import SentimentScorer, TicketScorer
from models.text_model import HEAD_FILE


def texts_per_second(
    scorer: SentimentScorer | TicketScorer, texts: list[str], seconds: float
) -> float:
    """Scored texts per second, one ``predict_proba`` call per batch of the engine's size."""
    size = scorer.engine.batch_size
    scorer.predict_proba(texts[:size])  # warm-up
    done, started, start = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        batch = texts[start : start + size] or texts[:size]
        scorer.predict_proba(batch)
        done += len(batch)
        start = (start + size) % len(texts)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=MODEL_DIR")
    parser.add_argument("--data", type=Path, required=True, help="labeled CSV of the domain")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    console.print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size}")

    rows = []
    for spec in args.model:
        name, _, folder = spec.partition("=")
        for precision in args.precisions.split(","):
            scorer = load_scorer(
                Path(folder), args.device, args.max_seq_length, precision, args.batch_size
            )
            assert isinstance(scorer, SentimentScorer | TicketScorer)
            labels = (
                scorer.taxonomy.intents if isinstance(scorer, TicketScorer) else SENTIMENT_LABELS
            )
            data = read_text(args.data, scorer.task, tuple(labels))
            quality = evaluate_data(scorer, data)
            rate = texts_per_second(scorer, data.texts, args.seconds)
            parameters = stored_parameters(Path(folder) / WEIGHTS_FILE, Path(folder) / HEAD_FILE)
            rows.append(
                {
                    "model": name,
                    "version": scorer.version,
                    "precision": scorer.engine.precision,
                    "fp32_layers": len(scorer.engine.keep_fp32)
                    if scorer.engine.precision == "int8"
                    else None,
                    "parameters": parameters,
                    "texts_per_s": round(rate, 1),
                    **{k: v for k, v in quality.items() if isinstance(v, float)},
                    "n": len(data.texts),
                }
            )
            console.log(rows[-1])
    primary = "accuracy" if "accuracy" in rows[0] else "intent_accuracy"
    table = Table(
        "model", "precision", "fp32 layers", "parameters", "texts/s", primary, "macro-F1 / risk F1"
    )
    for row in rows:
        table.add_row(
            row["model"],
            row["precision"],
            "" if row["fp32_layers"] is None else str(row["fp32_layers"]),
            f"{row['parameters'] / 1e6:.1f} M",
            f"{row['texts_per_s']:.1f}",
            f"{row[primary]:.4f}",
            f"{row.get('macro_f1', row.get('risk_macro_f1', float('nan'))):.4f}",
        )
    Console().print(table)
    result = {"batch_size": args.batch_size, "threads": torch.get_num_threads(), "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
