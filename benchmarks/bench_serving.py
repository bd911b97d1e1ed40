"""Which model and runtime to serve: models and precisions side by side, in one run, on the
same labeled rows: texts per second at the pipeline's batch size and quality.

    python benchmarks/bench_serving.py --model teacher=DIR --model student=DIR \
        --data HELD_OUT_CSV [--precisions fp32,int8] [--batch-size 32] [--seconds 20] \
        [--threads N] [--title TEXT] [--note TEXT ...] [--out benchmarks/results/serving.json]

Throughput is measured on the data's own texts (their real lengths, length-bucketed as the
pipeline does), cycling through them for at least ``--seconds`` after one warm-up batch.
Quality is each runtime's own predictions on every row. ``int8`` is torch's dynamic int8
quantization of the linear layers (CPU), but for those the model's int8 plan keeps in fp32
(``signalyard models quantize``; the ``fp32 layers`` column counts them); ``bf16`` is autocast,
native on CUDA and on CPUs with AVX512-BF16 or AMX; ``onnx-fp32`` and ``onnx-int8`` run the
model with ONNX Runtime (int8: its dynamic quantization of the linear layers, but for those
the model's plan for ONNX Runtime keeps in fp32: ``models quantize --runtime onnx-int8``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from recording import add_note_option, record
from rich.console import Console
from rich.table import Table

import domains  # noqa: F401  (registers the domains, whose labeled rows models read)
from models.data import SENTIMENT_LABELS, read_text
from models.serving.loading import load_scorer
from models.serving.quantization import PLAN_KEYS
from models.serving.scorers import SentimentScorer, TicketScorer
from models.text_model import HEAD_FILE
from models.training.encoders import WEIGHTS_FILE, stored_parameters
from models.training.evaluation import evaluate_data


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
    parser.add_argument("--title", default="Models and runtimes side by side: speed and quality")
    add_note_option(parser)
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/serving.json")
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
            data = read_text(args.data, scorer.task, tuple(labels), scorer.domain)
            quality = evaluate_data(scorer, data)
            rate = texts_per_second(scorer, data.texts, args.seconds)
            parameters = stored_parameters(Path(folder) / WEIGHTS_FILE, Path(folder) / HEAD_FILE)
            rows.append(
                {
                    "model": name,
                    "version": scorer.version,
                    "precision": scorer.engine.precision
                    if precision != "auto"
                    else f"auto ({scorer.engine.precision})",
                    "fp32_layers": len(scorer.engine.keep_fp32)
                    if scorer.engine.precision in PLAN_KEYS
                    else None,
                    "parameters": parameters,
                    "texts_per_s": round(rate, 1),
                    **{k: v for k, v in quality.items() if isinstance(v, float)},
                    "n": len(data.texts),
                }
            )
            console.log(rows[-1])
    primary = "accuracy" if "accuracy" in rows[0] else "intent_accuracy"
    columns = ["model", "precision", "fp32 layers", "parameters (M)", "texts/s", primary]
    columns.append("macro-F1 / risk F1")
    table = Table(*columns)
    cells = [
        [
            row["model"],
            row["precision"],
            row["fp32_layers"],
            round(row["parameters"] / 1e6, 1),
            row["texts_per_s"],
            round(row[primary], 4),
            round(row.get("macro_f1", row.get("risk_macro_f1", float("nan"))), 4),
        ]
        for row in rows
    ]
    for line in cells:
        table.add_row(*("" if cell is None else str(cell) for cell in line))
    Console().print(table)
    result = {"batch_size": args.batch_size, "threads": torch.get_num_threads(), "rows": rows}
    models = dict.fromkeys(row["model"] for row in rows)
    record(
        "serving",
        args.title,
        result,
        out=args.out,
        tables=[{"title": "", "columns": columns, "rows": cells}],
        plots=[
            {
                "title": "The quality/speed frontier",
                "x_label": f"texts/s (batch {args.batch_size}, {torch.get_num_threads()} threads)",
                "y_label": primary,
                "series": {
                    model: [[r["texts_per_s"], r[primary]] for r in rows if r["model"] == model]
                    for model in models
                },
                "points": True,
                "annotate": {
                    model: [r["precision"] for r in rows if r["model"] == model] for model in models
                },
            }
        ],
        notes=[f"On {rows[0]['n']:,} rows of `{args.data}`.", *args.note],
    )


if __name__ == "__main__":
    main()
