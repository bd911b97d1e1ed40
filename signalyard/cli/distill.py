"""``signalyard distill DOMAIN --teacher VERSION --data CSV``: a small, fast student learns a
registered teacher's predictions (``models.training.distillation``) and is registered like any
version."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import click
from rich.console import Console

from config.settings import load_settings
from models.registry import Registry
from models.training.options import TrainOptions
from signalyard.cli.models import existing_file, text_domain_argument

console = Console(stderr=True)


@click.command()
@text_domain_argument
@click.option("--teacher", required=True, help="Registry version of the teacher, e.g. v2.")
@click.option("--data", required=True, type=existing_file, help="Labeled CSV of the domain.")
@click.option(
    "--unlabeled",
    multiple=True,
    type=existing_file,
    help="CSV or JSONL with a text column: more transfer text (repeatable).",
)
@click.option(
    "--student",
    help="A registry version to continue, an encoder (fetched name, folder or cached id); "
    "default: the teacher cut to --student-layers.",
)
@click.option("--student-layers", type=click.IntRange(min=1), help="Default: half the teacher's.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=2.0)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Weight of the teacher's soft labels against the hard labels.",
)
@click.option(
    "--hidden-weight",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Weight of the cosine loss between pooled embeddings (a narrower student's through "
    "a learnt projection).",
)
@click.option(
    "--augment",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Perturbed copies of each labeled training text, for the teacher to label.",
)
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True))
@click.option("--head-lr", "head_learning_rate", type=click.FloatRange(min=0, min_open=True))
@click.option("--patience", type=click.IntRange(min=1))
@click.option("--max-seq-length", type=click.IntRange(min=8), default=128, show_default=True)
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0)
@click.option("--class-weight", type=click.Choice(["none", "sqrt", "balanced"]), default="none")
@click.option("--freeze-embeddings/--train-embeddings", default=False, show_default=True)
@click.option("--seed", type=int, default=13, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--name", "model_name", help="Model name (default: <teacher's name>-student).")
@click.option("--promote/--no-promote", default=True, show_default=True)
def distill(
    domain: str,
    teacher: str,
    data: Path,
    unlabeled: tuple[Path, ...],
    student: str | None,
    student_layers: int | None,
    temperature: float,
    alpha: float,
    hidden_weight: float,
    augment: int,
    promote: bool,
    **schedule: object,
) -> None:
    """Distil the DOMAIN teacher VERSION into a student and register it."""
    from models.training.distillation import DistillOptions, distill_model
    from models.training.encoders import resolve_base
    from models.training.fitting import seed_everything

    settings = load_settings()
    registry = Registry(settings.models_dir)
    teacher_dir = registry.existing_version_dir(domain, teacher)  # type: ignore[arg-type]
    if student in registry.version_ids(domain):  # type: ignore[arg-type]
        student = str(registry.version_dir(domain, student))  # type: ignore[arg-type]
    elif student is not None:
        student = resolve_base(student, settings.encoders_dir)
    options = DistillOptions(
        temperature=temperature,
        alpha=alpha,
        hidden_weight=hidden_weight,
        augment=augment,
        student_layers=student_layers,
        train=TrainOptions(**{k: v for k, v in schedule.items() if v is not None}),
    )
    seed_everything(options.train.seed)
    staging = Path(tempfile.mkdtemp(prefix=f"signalyard-distill-{domain}-"))
    try:
        metadata = distill_model(
            domain,
            teacher_dir,
            data,
            unlabeled,
            staging,
            options,
            student,  # type: ignore[arg-type]
        )
        version = registry.register(domain, staging, promote=promote)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    state = "live" if promote else "not promoted"
    console.print(f"registered {domain} {version} ({state}), distilled from {teacher}")
    click.echo(
        json.dumps(
            {
                "domain": domain,
                "version": version,
                "validation": metadata["metrics"],
                "teacher_validation": metadata["distillation"]["teacher"]["metrics"],
            }
        )
    )
