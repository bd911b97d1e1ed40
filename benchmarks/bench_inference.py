"""Inference throughput, texts per second, by batch size and sequence length: fp32 against
a fast mode (default: dynamic int8 with the model's plan on the CPU, bf16 autocast on CUDA;
``--fast bf16`` on a CPU with AVX512-BF16 or AMX), and the accuracy the fast mode costs on a
labeled file.

    python benchmarks/bench_inference.py --model-dir DIR --data VALIDATION_CSV \
        [--fast int8|bf16] [--batch-sizes 1,16,64] [--seq-lengths 32,128] [--seconds 3] \
        [--out benchmarks/results/inference.json]

Each measurement feeds texts at least as long as the sequence length, so every batch is
exactly ``batch x length`` tokens; one warm-up batch runs before the clock starts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from recording import record
from rich.console import Console
from rich.table import Table

import domains  # noqa: F401  (registers the domains, whose labeled rows models read)
from models.serving.inference import resolve_device
from models.serving.loading import load_scorer
from models.serving.scorers import SentimentScorer, TicketScorer
from models.training.evaluation import evaluate


def throughput(scorer: SentimentScorer | TicketScorer, texts: list[str], seconds: float) -> float:
    scorer.predict_proba(texts)  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        scorer.predict_proba(texts)
        done += len(texts)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="labeled CSV of the domain")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--seq-lengths", default="32,128")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fast", choices=["int8", "bf16"], help="default: the device's")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/inference.json")
    args = parser.parse_args()
    device = resolve_device(args.device)
    fast = args.fast or ("int8" if device.type == "cpu" else "auto")
    console = Console(stderr=True)
    console.print(f"device {device}, torch threads {torch.get_num_threads()}, fast mode {fast}")

    rows = []
    long_text = " ".join(["The company said quarterly revenue rose while costs fell."] * 40)
    for precision in ("fp32", fast):
        for length in (int(x) for x in args.seq_lengths.split(",")):
            scorer = load_scorer(args.model_dir, str(device), length, precision)
            for batch in (int(x) for x in args.batch_sizes.split(",")):
                scorer.engine.batch_size = batch
                rate = throughput(scorer, [long_text] * batch, args.seconds)
                rows.append({"precision": scorer.engine.precision, "seq_length": length,
                             "batch_size": batch, "texts_per_s": round(rate, 1)})  # fmt: skip
                console.log(rows[-1])

    quality = {}
    for precision in ("fp32", fast):
        scorer = load_scorer(args.model_dir, str(device), 128, precision)
        quality[scorer.engine.precision] = evaluate(scorer, args.data)
    columns = ["seq length", "batch", "fp32 texts/s", f"{fast} texts/s", "speed-up"]
    table = Table(*columns)
    fp32 = {(r["seq_length"], r["batch_size"]): r["texts_per_s"] for r in rows[: len(rows) // 2]}
    cells = []
    for r in rows[len(rows) // 2 :]:
        base = fp32[(r["seq_length"], r["batch_size"])]
        cells.append([r["seq_length"], r["batch_size"], base, r["texts_per_s"],
                      f"{r['texts_per_s'] / base:.2f}x"])  # fmt: skip
        table.add_row(*(str(cell) for cell in cells[-1]))
    Console().print(table)
    result = {"device": str(device), "throughput": rows, "quality": quality}
    series = {
        f"{r['precision']}, {r['seq_length']} tokens": [
            [q["batch_size"], q["texts_per_s"]]
            for q in rows
            if (q["precision"], q["seq_length"]) == (r["precision"], r["seq_length"])
        ]
        for r in rows
    }
    first = next(iter(quality.values()))
    scalars = [k for k, v in first.items() if isinstance(v, int | float) and k != "domain"]
    record(
        "inference",
        "Inference throughput by batch size and sequence length",
        result,
        out=args.out,
        tables=[
            {"title": "", "columns": columns, "rows": cells},
            {
                "title": "Quality on the labeled file",
                "columns": ["precision", *scalars],
                "rows": [[p, *(q[k] for k in scalars)] for p, q in quality.items()],
            },
        ],
        plots=[
            {
                "title": f"Throughput against batch size ({device})",
                "x_label": "batch size",
                "y_label": "texts/s",
                "series": series,
                "x_log": True,
            }
        ],
    )


if __name__ == "__main__":
    main()
