"""Domain adaptation: a news model trained on financial news (fpb), adapted to finance
tweets with growing numbers of labels, and what it keeps of the news domain.

    python benchmarks/bench_adaptation.py [--registry DIR [--version V]] \
        [--steps 250,500,1000,2000] [--mode full] [--epochs N] [--out results.json]

The fpb model is the news model of ``--registry`` (``--version`` or the live one); when that
registry has none, or none is given, it is trained first: a full fine-tune of the bundled
all-MiniLM-L6-v2, into ``--registry`` so that the next run reuses it, or else into a
temporary registry removed at the end. A seeded, stratified ``--eval-fraction`` of the
tweets is held out for evaluation; each step adapts the fpb model (never the previous step's
model) with the first N rows of one seeded shuffle of the rest, so the label sets are nested.
Each row reports accuracy and macro-F1 on the held-out tweets and on the fpb model's own
validation split, and the seconds the adaptation took. The goal of issue #6: at least 0.85
accuracy on tweets after 2,000 labels, with fpb accuracy within 2 points of the fpb model.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from models.adaptation import AdaptOptions, adapt_model, source_validation
from models.data import NEWS_LABELS, TextData, read_text
from models.evaluation import evaluate_data
from models.loading import load_scorer, read_metadata
from models.registry import Registry
from models.training import TrainOptions, split_indices, subset, train_model

DATA = Path(__file__).parents[2] / "shared" / "data"
GOAL_ACCURACY, GOAL_FORGETTING = 0.85, 0.02


def figures(model_dir: Path, tweets: TextData, fpb: TextData, args: argparse.Namespace) -> dict:
    scorer = load_scorer(model_dir, args.device, args.eval_seq_length)
    on_tweets, on_fpb = evaluate_data(scorer, tweets), evaluate_data(scorer, fpb)
    training = read_metadata(model_dir)["training"]
    return {
        "tweets_accuracy": on_tweets["accuracy"],
        "tweets_macro_f1": on_tweets["macro_f1"],
        "fpb_accuracy": on_fpb["accuracy"],
        "fpb_macro_f1": on_fpb["macro_f1"],
        **{key: training[key] for key in ("seconds", "best_epoch", "epochs_run")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fpb", type=Path, default=DATA / "fpb" / "train.csv")
    parser.add_argument("--tweets", type=Path, default=DATA / "tweets" / "train.csv")
    parser.add_argument("--registry", type=Path, help="the fpb model's registry (kept)")
    parser.add_argument("--version", help="the news version to adapt (default: the live one)")
    parser.add_argument("--base", help="base encoder of the fpb model (default: bundled)")
    parser.add_argument("--fpb-epochs", type=int, help="epochs of the fpb model's training")
    parser.add_argument("--steps", default="250,500,1000,2000", help="label counts to adapt with")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="tweets held out")
    parser.add_argument("--mode", choices=["full", "lora", "head"], default="full")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float, help="learning rate (default: AdaptOptions')")
    parser.add_argument("--head-lr", type=float)
    parser.add_argument("--replay-ratio", type=float, default=AdaptOptions().replay_ratio)
    parser.add_argument("--max-seq-length", type=int, default=AdaptOptions().max_seq_length)
    parser.add_argument("--eval-seq-length", type=int, default=128)
    parser.add_argument(
        "--class-weight", choices=["none", "sqrt", "balanced"], help="default: the live model's"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    work = Path(tempfile.mkdtemp(prefix="signalyard-adaptation-"))
    try:
        run(args, work, console)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, console: Console) -> None:
    """Find or train the fpb model, adapt it once per step, print the table, write ``--out``."""
    registry = Registry(args.registry or work / "registry")
    version = args.version or registry.live_version("news")
    if version is None:
        console.log(f"training the fpb model on {args.fpb}")
        train_options = TrainOptions(
            mode="full",
            epochs=args.fpb_epochs,
            base_model=args.base,
            max_seq_length=args.max_seq_length,
            seed=args.seed,
            device=args.device,
            show_progress=False,
        )
        version = train_model("news", args.fpb, registry, train_options)
    live_dir = registry.version_dir("news", version)
    fpb_validation = source_validation(live_dir)
    assert fpb_validation is not None, f"the source data of {live_dir} is gone"

    tweets = read_text(args.tweets, "news", NEWS_LABELS)
    pool_rows, eval_rows = split_indices(tweets.labels, args.eval_fraction, args.seed)
    random.Random(args.seed).shuffle(pool_rows)
    held_out = subset(tweets, eval_rows)
    options = AdaptOptions(
        mode=args.mode,
        epochs=args.epochs,
        learning_rate=args.lr,
        head_learning_rate=args.head_lr,
        replay_ratio=args.replay_ratio,
        max_seq_length=args.max_seq_length,
        class_weight=args.class_weight,
        seed=args.seed,
        device=args.device,
    )

    rows = [{"labels": 0, **figures(live_dir, held_out, fpb_validation, args)}]
    console.log(rows[-1])
    for labels in (int(step) for step in args.steps.split(",")):
        out_dir = work / f"adapted-{labels}"
        adapt_model("news", live_dir, subset(tweets, pool_rows[:labels]), out_dir, options)
        rows.append({"labels": labels, **figures(out_dir, held_out, fpb_validation, args)})
        console.log(rows[-1])
        shutil.rmtree(out_dir)

    table = Table("labels", "tweets acc", "tweets F1", "fpb acc", "fpb F1", "train s")
    for row in rows:
        table.add_row(
            str(row["labels"]),
            *(f"{row[key]:.4f}" for key in ("tweets_accuracy", "tweets_macro_f1")),
            *(f"{row[key]:.4f}" for key in ("fpb_accuracy", "fpb_macro_f1")),
            f"{row['seconds']:.0f}",
        )
    Console().print(table)
    last = rows[-1]
    goal_met = (
        last["tweets_accuracy"] >= GOAL_ACCURACY
        and rows[0]["fpb_accuracy"] - last["fpb_accuracy"] <= GOAL_FORGETTING
    )
    result = {
        "fpb_model": {"path": str(live_dir), "metadata": read_metadata(live_dir)},
        "adapt_options": options.resolved("news").model_dump(mode="json"),
        "eval": {"tweets_rows": len(eval_rows), "fpb_validation_rows": len(fpb_validation.texts)},
        "steps": rows,
        "goal": {"tweets_accuracy": GOAL_ACCURACY, "fpb_drop": GOAL_FORGETTING, "met": goal_met},
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"steps": rows, "goal_met": goal_met}))


if __name__ == "__main__":
    main()
