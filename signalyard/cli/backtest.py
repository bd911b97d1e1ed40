"""``signalyard replay`` (score a time range again into a backtest run) and
``signalyard backtest compare`` (two runs, or a run and the live scores, side by side)."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import domains
from config.settings import DomainName, load_settings
from models.registry import Registry
from store.backtest_runs import BacktestStoreError, WorkerRunWriter, run_writer
from store.readonly import QueryError
from streams.replay import TimeRange, UnknownTopicError, format_time, parse_time

console = Console(stderr=True, highlight=False, soft_wrap=True)
# A replay beside a live worker runs at this niceness: live scoring keeps the CPU it needs.
REPLAY_NICENESS = 10


def _time(value: str, option: str) -> int:
    try:
        return parse_time(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=option) from None


@click.command()
@click.argument("domain", type=click.Choice(domains.names()))
@click.option(
    "--from",
    "start",
    required=True,
    help="First Kafka timestamp to include: 2026-11-28T10:00:00Z, 2026-11-28 or epoch ms.",
)
@click.option("--to", "end", required=True, help="First Kafka timestamp to leave out.")
@click.option("--version", help="Model version from the registry; default: the live one.")
@click.option(
    "--run-id",
    help="Name of the run; default: DOMAIN-VERSION-FROM-TO. Replaying into a run id again "
    "replaces that run.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=4096),
    default=64,
    show_default=True,
    help="Events per scoring batch. Identical scores need the same batch size.",
)
def replay(
    domain: DomainName,
    start: str,
    end: str,
    version: str | None,
    run_id: str | None,
    batch_size: int,
) -> None:
    """Score DOMAIN's raw events with Kafka timestamps in [FROM, TO) again, into a backtest run.

    Reads every partition of the raw topic from the first record at or after FROM to the first
    at or after TO, without a consumer group (live workers and their offsets are untouched),
    scores the valid events with the chosen model version and writes them to the ClickHouse
    table backtest_DOMAIN_scores under the run id, and the run to backtest_runs. Malformed
    events are counted, not scored. The same range, version and batch size give the same scores.

    The embedded ClickHouse (the default) opens in one process at a time: while a worker holds
    it, the replay writes through that worker's web port (pipeline.web_port) and runs at low CPU
    priority, so live scoring goes on; with a ClickHouse server it writes there directly.
    """
    from streams.backtest import check_run_id, default_run_id
    from streams.backtest import replay as run_replay

    try:
        time_range = TimeRange(_time(start, "--from"), _time(end, "--to"))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--from/--to") from None
    if run_id is not None:
        try:
            check_run_id(run_id)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--run-id") from None
    settings = load_settings()
    registry = Registry(settings.models_dir)
    version = version or registry.live_dir(domain).name
    if version not in registry.version_ids(domain):
        known = ", ".join(registry.version_ids(domain)) or "none"
        raise click.BadParameter(
            f"{domain} has no version {version!r} (registered: {known})", param_hint="--version"
        )
    run_id = run_id or default_run_id(domain, version, time_range)
    try:
        # Before loading the model: a store that cannot be written fails fast.
        with run_writer(settings) as writer:
            if isinstance(writer, WorkerRunWriter):
                # Live scoring shares these cores: the replay takes what it leaves.
                os.nice(REPLAY_NICENESS)
                console.print(
                    f"writing through the worker on port {settings.pipeline.web_port}, "
                    "which holds the embedded store; replaying at low CPU priority"
                )
            from models.serving.loading import load_folder  # torch (text models): after the store

            with console.status(f"loading {domain} {version}"):
                scorer = load_folder(settings, registry.version_dir(domain, version), batch_size)
            with Progress(
                TextColumn(f"replaying {settings.topics.raw(domain).name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("replay", total=None)
                report = asyncio.run(
                    run_replay(
                        settings,
                        writer,
                        domain,
                        time_range,
                        scorer,
                        run_id,
                        batch_size,
                        lambda done, total: progress.update(task, completed=done, total=total),
                    )
                )
    except (UnknownTopicError, BacktestStoreError) as error:
        raise click.ClickException(str(error)) from None
    dead = ", ".join(f"{kind} {count}" for kind, count in report.dead.most_common())
    console.print(
        f"run {report.run_id}: {report.events} {domain} events scored by {version} "
        f"from {format_time(time_range.start_ms)} to {format_time(time_range.end_ms)}; "
        f"{report.records} records read, {report.skipped} outside the range by timestamp, "
        f"{report.dead.total()} malformed" + (f" ({dead})" if dead else "")
    )
    for example in report.dead_examples:
        console.print(f"  {example}")
    click.echo(report.run_id)


@click.group()
def backtest() -> None:
    """Backtest runs written by signalyard replay."""


@backtest.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as one JSON object.")
def compare(run_a: str, run_b: str, as_json: bool) -> None:
    """Compare two runs side by side; either may be "live".

    Shows events by label, how often the two runs give an event the same label, accuracy and
    macro F1 against feedback labels where analysts gave some, and the alerts each run would
    have fired under the configured rules. "live" stands for the live scores of the other
    run's events.
    """
    from streams.alerting.rules import load_rules
    from streams.backtest import LIVE, compare, load_feedback, load_results, load_run

    if run_a == LIVE and run_b == LIVE:
        raise click.BadParameter("at most one side may be live", param_hint="RUN_A RUN_B")
    settings = load_settings()
    rules = load_rules(settings.rules_path)
    try:
        runs = {name: load_run(settings, name) for name in (run_a, run_b) if name != LIVE}
        for name, run in runs.items():
            if run is None:
                raise click.BadParameter(f"no backtest run {name!r}", param_hint="RUN")
        named = {run["domain"] for run in runs.values() if run is not None}
        if len(named) > 1:
            raise click.BadParameter(
                f"{run_a} and {run_b} are runs of different domains", param_hint="RUN"
            )
        domain: DomainName = named.pop()
        other = {run_a: run_b, run_b: run_a}
        results = {name: load_results(settings, domain, name, other[name]) for name in other}
        feedback = load_feedback(settings, domain, list(runs))
    except QueryError as error:
        raise click.ClickException(str(error)) from None
    comparison = compare(
        domain, (run_a, results[run_a]), (run_b, results[run_b]), feedback, rules.for_domain(domain)
    )
    if as_json:
        click.echo(json.dumps({**asdict(comparison), "metric_deltas": comparison.metric_deltas()}))
        return
    severities = {rule.name: rule.severity for rule in rules.for_domain(domain)}
    table = Table("", run_a, run_b, f"{run_b} - {run_a}", title=f"{domain} backtest")
    table.columns[0].no_wrap = True
    table.columns[3].justify = table.columns[1].justify = table.columns[2].justify = "right"
    a, b = comparison.a, comparison.b
    table.add_row("model version", ", ".join(a.versions), ", ".join(b.versions), "")
    table.add_row("events", str(a.events), str(b.events), f"{b.events - a.events:+d}")
    for label in sorted(a.labels.keys() | b.labels.keys()):
        x, y = a.labels.get(label, 0), b.labels.get(label, 0)
        table.add_row(
            f"  {domains.get(domain).summary_field} {label}", str(x), str(y), f"{y - x:+d}"
        )
    deltas = comparison.metric_deltas()
    for name, delta in deltas.items():
        assert a.metrics is not None and b.metrics is not None
        row = f"{name} ({comparison.feedback} labeled)"
        table.add_row(row, f"{a.metrics[name]:.3f}", f"{b.metrics[name]:.3f}", f"{delta:+.3f}")
    for rule in sorted(a.alerts.keys() | b.alerts.keys() | severities.keys()):
        x, y = a.alerts.get(rule, 0), b.alerts.get(rule, 0)
        table.add_row(f"alerts {rule} ({severities.get(rule, '?')})", str(x), str(y), f"{y - x:+d}")
    out = Console(highlight=False, width=max(Console().width, 100))
    for name in (run_a, run_b):
        out.print(_describe(name, runs.get(name), other[name], domain))
    out.print(table)
    if comparison.agreement is None:
        out.print("agreement: no event was scored by both runs")
    else:
        out.print(
            f"agreement: {comparison.agreement:.1%} of {comparison.common} events scored by both; "
            f"mean |change| of {comparison.score_field}: {comparison.mean_abs_score_change:.4f}"
        )
    if not deltas:
        out.print("feedback: no labels for the events both runs scored")


def _describe(name: str, run: dict[str, Any] | None, other: str, domain: DomainName) -> str:
    if run is None:
        return f"{name}: the live {domain}_scores of the events of {other}"
    return (
        f"{name}: {_iso(run['from_ts'])} to {_iso(run['to_ts'])} scored by "
        f"{run['model_version']}, {run['dead']} malformed"
    )


def _iso(value: str) -> str:
    """A stored time (ISO 8601, UTC, perhaps without its zone) to the second, with a Z."""
    moment = datetime.fromisoformat(value)
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat(timespec="seconds").replace("+00:00", "Z")
