"""``signalyard train``, ``signalyard eval`` and ``signalyard models list|show|promote|rollback``.

Heavy imports (torch, transformers) happen inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import get_args

import click
from rich.console import Console
from rich.table import Table

import domains
from config.settings import DomainName, Precision, load_settings
from models.registry import CONTENT_HASH, Registry, recorded_sha256
from models.tasks import HEADLINE_METRICS, TEXT_TASKS
from models.training.options import TrainOptions

console = Console(stderr=True)
domain_argument = click.argument("domain", type=click.Choice(domains.names()))
# calibrate and quantize are for text models
text_domain_argument = click.argument(
    "domain", type=click.Choice([d.name for d in domains.all() if d.task in TEXT_TASKS])
)
existing_file = click.Path(exists=True, dir_okay=False, path_type=Path)


def _registry() -> Registry:
    return Registry(load_settings().models_dir)


def _version_folder(domain: DomainName, version: str | None) -> Path:
    """The folder of a registered version (default: the live one); one line if it has none."""
    registry = _registry()
    folder = registry.version_dir(domain, version) if version else registry.live_dir(domain)
    if not folder.is_dir():
        raise click.BadParameter(f"{domain} has no version {version!r}", param_hint="VERSION")
    return folder


@click.command()
@domain_argument
@click.option("--data", required=True, type=existing_file, help="Labeled CSV of the domain.")
@click.option(
    "--base",
    "base_model",
    help="Encoder: a fetched one's name (signalyard encoders list), a folder or a cached model id.",
)
@click.option(
    "--mode", type=click.Choice(["full", "lora", "head"]), default="full", show_default=True
)
@click.option("--taxonomy", type=existing_file, help="Risk taxonomy JSON (intent_risk models).")
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True))
@click.option("--head-lr", "head_learning_rate", type=click.FloatRange(min=0, min_open=True))
@click.option("--patience", type=click.IntRange(min=1), help="Epochs without improvement.")
@click.option("--seed", type=int, default=13, show_default=True)
@click.option("--max-seq-length", type=click.IntRange(min=8), default=128, show_default=True)
@click.option(
    "--validation-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.15,
    show_default=True,
    help="Share of the data held out for validation, when no --validation file is given.",
)
@click.option(
    "--validation",
    "validation_data",
    type=existing_file,
    help="Labeled CSV to validate on (early stopping, metrics); every --data row then trains.",
)
@click.option(
    "--class-weight",
    type=click.Choice(["none", "sqrt", "balanced"]),
    default="sqrt",
    show_default=True,
)
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0)
@click.option(
    "--text-alone-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of training rows also trained on as their text alone, for a domain whose "
    "model reads more of a row (so events lacking those fields score well too).",
)
@click.option(
    "--freeze-embeddings/--train-embeddings",
    default=False,
    show_default=True,
    help="Full mode: keep the pretrained word embeddings fixed.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--name", "model_name", help="Model name (default: <domain>-<base model>).")
@click.option(
    "--promote/--no-promote", default=True, show_default=True, help="Make the new version live."
)
def train(domain: DomainName, data: Path, promote: bool, **options: object) -> None:
    """Train a DOMAIN model on a labeled CSV and register it as a new version."""
    from models.training.encoders import resolve_base
    from models.training.trainer import train_model

    if domains.get(domain).task == "intent_risk" and options["taxonomy"] is None:
        raise click.UsageError(
            f"{domain} models need --taxonomy PATH (e.g. ../shared/data/banking77/risk_levels.json)"
        )
    settable = {key: value for key, value in options.items() if value is not None}
    settings = load_settings()
    if "base_model" in settable:
        settable["base_model"] = resolve_base(str(settable["base_model"]), settings.encoders_dir)
    registry = Registry(settings.models_dir)
    task = domains.get(domain).task
    version = train_model(domain, task, data, registry, TrainOptions(**settable), promote=promote)
    metrics = json.loads((registry.version_dir(domain, version) / "metrics.json").read_text())
    state = "live" if promote else "not promoted"
    console.print(f"registered {domain} {version} ({state}) in {registry.root}")
    click.echo(json.dumps({"domain": domain, "version": version, "validation": metrics}))


@click.command(name="eval")
@domain_argument
@click.option("--data", required=True, type=existing_file, help="Labeled CSV of the domain.")
@click.option("--version", help="Registry version (default: the live one).")
@click.option("--precision", type=click.Choice(list(get_args(Precision))))
def evaluate_command(
    domain: DomainName, data: Path, version: str | None, precision: str | None
) -> None:
    """Evaluate a registered DOMAIN model on a labeled CSV; the last line is JSON metrics."""
    from models.serving.loading import load_folder
    from models.training.evaluation import evaluate

    settings = load_settings()
    registry = Registry(settings.models_dir)
    folder = registry.version_dir(domain, version) if version else registry.live_dir(domain)
    scorer = load_folder(settings, folder, precision=precision)
    click.echo(json.dumps(evaluate(scorer, data)))


@click.group()
def models() -> None:
    """The model registry: list, show, promote and roll back versions."""


@models.command(name="list")
@click.argument("domain", type=click.Choice(domains.names()), required=False)
def list_versions(domain: DomainName | None) -> None:
    """Registered versions of every domain (or of DOMAIN); * marks the live one."""
    registry = _registry()
    table = Table("domain", "version", "live", "model", "mode", "created", "validation", "gate")
    for name in [domain] if domain else domains.names():
        for info in registry.versions(name):
            figures = " ".join(
                f"{key}={info.metrics[key]:.3f}"
                for key in HEADLINE_METRICS[domains.get(name).task]
                if isinstance(info.metrics.get(key), float)
            )
            table.add_row(
                name,
                info.version,
                "*" if info.live else "",
                info.metadata.get("model_name", "?"),
                info.metadata.get("mode", "?"),
                info.metadata.get("created_at", "?")[:16],
                figures,
                _gate(info.metadata),
            )
    Console().print(table)


def _gate(metadata: dict) -> str:
    """How an adapted candidate fared at the gate: promoted or refused, from which version."""
    gate = metadata.get("adaptation", {}).get("gate")
    if gate is None:
        return ""
    verdict = "promoted" if gate["promote"] else "refused"
    return f"{verdict} (from {metadata.get('adapted_from', '?')})"


@models.command()
@domain_argument
@click.argument("version", required=False)
def show(domain: DomainName, version: str | None) -> None:
    """The metadata of a version (default: the live one) with its content hash, as JSON."""
    registry = _registry()
    folder = registry.version_dir(domain, version) if version else registry.live_dir(domain)
    metadata = next((i.metadata for i in registry.versions(domain) if i.path == folder), None)
    if metadata is None:
        raise click.BadParameter(f"{domain} has no version {version!r}", param_hint="VERSION")
    # Versions registered before the hash was recorded get it computed here.
    described = {**metadata, CONTENT_HASH: recorded_sha256(folder)}
    click.echo(json.dumps({"version": folder.name, "path": str(folder), **described}, indent=2))


@models.command()
@text_domain_argument
@click.argument("version", required=False)
def calibrate(domain: DomainName, version: str | None) -> None:
    """Fit the calibration of a text model trained before training recorded one, on its own
    validation split; it gives each result's confidence and the label-free accuracy estimate.
    The last line is the record, as JSON."""
    from models.errors import DataError
    from models.training.evaluation import calibrate_folder

    folder = _version_folder(domain, version)
    try:
        record = calibrate_folder(folder)
    except DataError as error:
        raise click.ClickException(str(error)) from None
    console.print(
        f"{domain} {folder.name}: temperature {record['temperature']:.3f}, validation accuracy "
        f"{record['accuracy']:.3f}, mean calibrated confidence {record['mean_confidence']:.3f}"
    )
    click.echo(json.dumps(record))


@models.command()
@text_domain_argument
@click.argument("version", required=False)
@click.option(
    "--max-changed",
    type=click.FloatRange(0, 1),
    default=0.005,
    show_default=True,
    help="Share of the validation decisions int8 may change (bounds the accuracy it loses).",
)
# The runtimes of quantization.PLAN_KEYS, named here: the CLI starts without torch.
@click.option(
    "--runtime",
    type=click.Choice(["int8", "onnx-int8"]),
    default="int8",
    show_default=True,
    help="The int8 runtime the plan is for: torch's or ONNX Runtime's.",
)
def quantize(domain: DomainName, version: str | None, max_changed: float, runtime: str) -> None:
    """Fit a text model's int8 plan for one runtime on its own validation split: the fewest
    most sensitive linear layers kept in fp32 so that int8 changes at most --max-changed of
    fp32's decisions. Workers apply it when they run the model in that precision (int8 when
    set; onnx-int8 when set or chosen by precision auto). The last line is the record, as
    JSON."""
    from models.errors import DataError
    from models.training.evaluation import quantize_folder

    folder = _version_folder(domain, version)
    try:
        record = quantize_folder(folder, max_changed, show_progress=True, runtime=runtime)
    except DataError as error:
        raise click.ClickException(str(error)) from None
    console.print(
        f"{domain} {folder.name}, {runtime}: {len(record['keep_fp32'])} linear layers kept in "
        f"fp32; {record['changed']:.2%} of the decisions changed; validation accuracy fp32 "
        f"{record['accuracy_fp32']:.4f}, int8 {record['accuracy_int8']:.4f}; "
        f"{record['texts_per_s_fp32']:.1f} -> "
        f"{record['texts_per_s_int8']:.1f} texts/s on {record['rows']} rows"
    )
    click.echo(json.dumps(record))


announce_option = click.option(
    "--announce/--no-announce",
    default=True,
    show_default=True,
    help="Tell running workers on model.updates (they switch between batches).",
)


@models.command()
@domain_argument
@click.argument("version")
@announce_option
def promote(domain: DomainName, version: str, announce: bool) -> None:
    """Make VERSION the live model of DOMAIN."""
    registry = _registry()
    registry.promote(domain, version)
    console.print(f"{domain} {version} is live")
    if announce:
        _announce(registry, domain, "promote")


@models.command()
@domain_argument
@announce_option
def rollback(domain: DomainName, announce: bool) -> None:
    """Make the previously live version of DOMAIN live again."""
    registry = _registry()
    version = registry.rollback(domain)
    console.print(f"{domain} rolled back to {version}")
    if announce:
        _announce(registry, domain, "rollback")


def _announce(registry: Registry, domain: DomainName, reason: str) -> None:
    from streams.adaptation.announce import announce, live_update

    update = live_update(registry, domain, reason)
    try:
        asyncio.run(announce(load_settings(), update))
    except Exception as error:
        raise click.ClickException(
            f"{domain} {update.version} is live in the registry, but announcing it on "
            f"model.updates failed ({error}); running workers switch when they restart"
        ) from None
    console.print(f"announced {domain} {update.version} on model.updates")
