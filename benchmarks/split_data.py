"""Cut a stratified, seeded validation split from the shared data sets, for quality reports.

    python benchmarks/split_data.py OUT_DIR [--data ../shared/data] [--fraction 0.15]

writes OUT_DIR/<set>/train.csv and OUT_DIR/<set>/validation.csv with the original rows and
columns, so that ``signalyard train`` runs on one and ``signalyard eval`` on the other.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from models.splits import split_indices

# The column each set is stratified on.
STRATA = {
    "fpb": "label",
    "tweets": "label",
    "banking77": "intent",
    "ai4i": "Machine failure",
    "reviews": "label",
}


def split_file(source: Path, out: Path, column: str, fraction: float, seed: int) -> None:
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, rows = list(reader.fieldnames or []), list(reader)
    train, validation = split_indices([row[column] for row in rows], fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, indices in (("train", train), ("validation", validation)):
        with (out / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows[i] for i in indices)
    print(f"{source}: {len(train)} train, {len(validation)} validation -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared" / "data")
    parser.add_argument("--fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    for name, column in STRATA.items():
        split_file(
            args.data / name / "train.csv", args.out / name, column, args.fraction, args.seed
        )


if __name__ == "__main__":
    main()
