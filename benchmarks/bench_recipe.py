"""A model recipe over several seeds, scored on held-out rows that chose nothing.

Each seed trains one model with the project's own command (``signalyard train DOMAIN --data
TRAIN --seed S --no-promote`` plus the recipe's options, into a registry of its own), and
``signalyard eval`` scores it on every ``--held-out`` file. One run's figure on a few thousand
rows moves by a point or more from seed to seed, so a recipe is judged by the mean of its seeds
and their spread, never by its best run. The trainer still chooses its epoch on its own
validation cut of TRAIN; the held-out files are only scored. ``--trained SEED=VERSION`` scores
a model this recipe already trained into ``--registry`` instead of training that seed again
(its metadata must give the same seed and training file). The results file is written
again after every seed, so a run stopped early keeps the seeds it finished (``seeds_done``).

    .venv/bin/python benchmarks/bench_recipe.py DOMAIN --data TRAIN --held-out NAME=CSV ...
        [--seeds 13,14,15] [--precision fp32] [--registry DIR] [--trained SEED=VERSION ...]
        [--goal accuracy=0.87 ...] [--note TEXT ...]
        [--out benchmarks/results/<DOMAIN>_recipe.json] -- TRAIN_OPTIONS...

e.g. ``... reviews --data /tmp/splits/reviews/train.csv --held-out held-out=/tmp/splits/
reviews/validation.csv -- --lr 5e-5 --head-lr 1e-3 --epochs 3 --patience 1`` (the split from
``benchmarks/split_data.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recording import add_note_option, record

BIN = Path(sys.executable).parent
FIGURES = ("accuracy", "macro_f1", "estimated_accuracy")


def _last_json(output: str) -> dict[str, Any]:
    return json.loads(output.strip().splitlines()[-1])


def _run(command: list[str], home: Path) -> str:
    print("$", " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(
        command,
        env={**os.environ, "SIGNALYARD_HOME": str(home)},
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{command[1]} failed with exit code {done.returncode}")
    return done.stdout


def _held_out(value: str) -> tuple[str, Path]:
    name, _, path = value.partition("=")
    if not path or not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"expected NAME=CSV of an existing file, not {value!r}")
    return name, Path(path)


def _goal(value: str) -> tuple[str, float]:
    name, _, bound = value.partition("=")
    try:
        return name, float(bound)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIGURE=NUMBER, not {value!r}") from None


def _trained(home: Path, domain: str, seed: int, version: str, data: Path) -> dict[str, Any]:
    """What ``signalyard train`` said of ``version``, read back from its folder."""
    folder = home / "models" / domain / "versions" / version
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    if metadata["options"]["seed"] != seed or Path(metadata["data"]["path"]) != data:
        raise SystemExit(f"{domain} {version} was not trained on {data} with seed {seed}")
    return {"version": version, "validation": metadata["metrics"], "training": metadata["training"]}


def summary(runs: list[dict[str, Any]], held_out: str) -> dict[str, dict[str, float]]:
    """Mean, min and max over the runs of each figure on the held-out file ``held_out``."""
    out = {}
    for figure in FIGURES:
        values = [run["held_out"][held_out][figure] for run in runs]
        values = [v for v in values if v is not None]
        if values:
            out[figure] = {
                "mean": round(statistics.fmean(values), 4),
                "min": round(min(values), 4),
                "max": round(max(values), 4),
            }
    return out


def write(
    args: argparse.Namespace, options: list[str], seeds: list[int], runs: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, bool]]:
    """Record the runs finished so far with their means; returns the means per held-out file
    and whether each goal is met. Written after every seed, so a run stopped early keeps the
    seeds it finished."""
    plural = "seed" if len(seeds) == 1 else "seeds"
    done = (
        f"{len(runs)} of {len(seeds)} {plural}"
        if len(runs) < len(seeds)
        else f"{len(runs)} {plural}"
    )
    held_out = {name: summary(runs, name) for name, _ in args.held_out}
    goals = {name: bound for name, bound in args.goal}
    first = args.held_out[0][0]
    met = {f: held_out[first][f]["mean"] >= bound for f, bound in goals.items()}
    rows = [
        [
            run["seed"],
            run["version"],
            name,
            *(f"{run['held_out'][name][f]:.3f}" for f in FIGURES[:2]),
            f"{run['held_out'][name]['estimated_accuracy'] or 0:.3f}",
            run["train_minutes"],
        ]
        for run in runs
        for name, _ in args.held_out
    ]
    means = [
        [name, *(f"{s[f]['mean']:.3f} ({s[f]['min']:.3f}-{s[f]['max']:.3f})" for f in FIGURES[:2])]
        for name, s in held_out.items()
    ]
    record(
        f"{args.domain}_recipe",
        args.title or f"{args.domain}: a recipe over {len(seeds)} seeds, held out",
        {
            "domain": args.domain,
            "data": str(args.data),
            "seeds": seeds,
            "seeds_done": [run["seed"] for run in runs],
            "precision": args.precision,
            "train_options": options,
            "runs": runs,
            "held_out": held_out,
            "goals": goals,
            "goals_met": met,
        },
        out=args.out,
        tables=[
            {
                "title": f"Mean of {done} (min-max)",
                "columns": ["held-out rows", "accuracy", "macro-F1"],
                "rows": means,
            },
            {
                "title": "Each run",
                "columns": [
                    "seed",
                    "version",
                    "held-out rows",
                    "accuracy",
                    "macro-F1",
                    "label-free estimate",
                    "train minutes",
                ],
                "rows": rows,
            },
        ],
        notes=args.note,
    )
    return held_out, met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("domain")
    parser.add_argument("--data", type=Path, required=True, help="the training CSV")
    parser.add_argument("--held-out", type=_held_out, action="append", required=True)
    parser.add_argument("--seeds", default="13,14,15")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--goal", type=_goal, action="append", default=[])
    parser.add_argument("--registry", type=Path, help="default: a temporary folder")
    parser.add_argument("--trained", action="append", default=[], help="SEED=VERSION")
    parser.add_argument("--title", default="")
    add_note_option(parser)
    parser.add_argument("--out", type=Path)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, options = parser.parse_args(argv[:cut]), argv[cut + 1 :]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    home = args.registry or Path(tempfile.mkdtemp(prefix="bench-recipe-"))
    signalyard = str(BIN / "signalyard")
    trained_before = {int(s): v for s, _, v in (given.partition("=") for given in args.trained)}

    runs: list[dict[str, Any]] = []
    held_out: dict[str, dict[str, dict[str, float]]] = {}
    met: dict[str, bool] = {}
    for seed in seeds:
        started = time.monotonic()
        train = [signalyard, "train", args.domain, "--data", str(args.data), "--seed", str(seed)]
        if seed in trained_before:
            trained = _trained(home, args.domain, seed, trained_before[seed], args.data)
        else:
            trained = _last_json(_run([*train, "--no-promote", *options], home))
        minutes = trained.get("training", {}).get("seconds", time.monotonic() - started) / 60
        run = {
            "seed": seed,
            "version": trained["version"],
            "train_minutes": round(minutes, 1),
            "trainer_validation": trained["validation"],
            "held_out": {},
        }
        for name, path in args.held_out:
            scored = _last_json(
                _run(
                    [
                        signalyard,
                        "eval",
                        args.domain,
                        "--data",
                        str(path),
                        "--version",
                        trained["version"],
                        "--precision",
                        args.precision,
                    ],
                    home,
                )
            )
            run["held_out"][name] = {figure: scored.get(figure) for figure in FIGURES}
        runs.append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
        held_out, met = write(args, options, seeds, runs)

    for name, summary_ in held_out.items():
        print(name, json.dumps(summary_))
    if args.goal:
        print("goals met" if all(met.values()) else f"goals not met: {met}")


if __name__ == "__main__":
    main()
