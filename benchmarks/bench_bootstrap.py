"""How believable the demo's synthetic fallback is: the bootstrap models against the world's truth.

Trains the bootstrap models exactly as ``signalyard demo`` does on a fresh machine (in a scratch
home, or uses the live models of ``--registry``), draws ``--events`` fresh events per domain
from the demo's world (seed 7, the demo's default) and prints, per domain, the events by label
in truth and as scored (sentiment, risk level, defect flag), the share with the right label and
the share with the right feedback label (sentiment, intent, failure mode), and the training time.

    .venv/bin/python benchmarks/bench_bootstrap.py [--events 2000] [--registry DIR] [--out F]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from recording import dict_table, record
from rich.console import Console
from rich.table import Table

import domains
from config.settings import load_settings
from signalyard.demo.bootstrap import agreement, ensure_models

console = Console(width=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--registry", type=Path, default=None, help="default: a scratch one")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/bootstrap.json")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="signalyard-bench-") as scratch:
        settings = load_settings(
            home=Path(scratch),
            **({"registry_dir": arguments.registry} if arguments.registry else {}),
        )
        started = time.perf_counter()
        ensure_models(settings, domains.names())
        training_s = time.perf_counter() - started
        figures = [agreement(settings, domain, arguments.events) for domain in domains.names()]
    table = Table(title=f"bootstrap models on {arguments.events} fresh world events per domain")
    for column in ("domain", "truth", "scored", "label right", "feedback label right"):
        table.add_column(column, justify="right" if "right" in column else "left")
    for figure in figures:
        table.add_row(
            figure.domain,
            ", ".join(f"{label} {count}" for label, count in figure.truth.items()),
            ", ".join(f"{label} {count}" for label, count in figure.predicted.items()),
            f"{figure.accuracy:.3f}",
            f"{figure.feedback_accuracy:.3f}",
        )
    console.print(table)
    console.print(f"training the three bootstrap models: {training_s:.1f}s")
    record(
        "bootstrap",
        "Bootstrap models on the synthetic world",
        {"training_s": training_s, "domains": [asdict(f) for f in figures]},
        out=arguments.out,
        tables=[dict_table([asdict(f) for f in figures])],
        notes=[
            f"{arguments.events:,} fresh world events per domain; training every bootstrap "
            f"model took {training_s:.1f} s."
        ],
    )


if __name__ == "__main__":
    main()
