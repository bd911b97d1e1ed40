"""Which consumers a worker gets: scoring, alerting or both (no broker needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import isolated_settings

from config.settings import DomainName, Settings
from models.base import ModelInput, Prediction, Scorer
from models.calibration import UNCALIBRATED
from store.sink import ClickHouseSink
from streams.app import ScoringRuntime, create_app, explains_alerts


class IdleScorer:
    """Stands in for a model: creating the app does not score anything."""

    model_name = "idle"
    version = "0"
    calibration = UNCALIBRATED

    def __init__(self, domain: DomainName) -> None:
        self.domain = domain

    def score(self, inputs: Sequence[ModelInput]) -> list[Prediction]:
        raise AssertionError("not called")


def consumers(settings: Settings, domains: tuple[DomainName, ...]) -> tuple[set[DomainName], bool]:
    """The domains the worker alerts on, and whether it joins feedback."""
    scorers: dict[DomainName, Scorer] = {domain: IdleScorer(domain) for domain in domains}
    runtime = ScoringRuntime(
        settings, ClickHouseSink(settings.clickhouse_dsn, settings.sink), scorers
    )
    create_app(settings, runtime)
    alerting = set(runtime.alerts.domains.values()) if runtime.alerts is not None else set()
    return alerting, runtime.feedback is not None


ALL: set[DomainName] = {"news", "tickets", "sensors", "reviews"}  # the rules file has rules for


@pytest.mark.parametrize("in_scoring_workers", [True, False])
def test_a_scoring_worker_alerts_unless_alerting_runs_apart(
    tmp_path: Path, in_scoring_workers: bool
) -> None:
    settings = isolated_settings(tmp_path, alerts={"in_scoring_workers": in_scoring_workers})
    # A scoring worker joins feedback labels too.
    assert consumers(settings, ("news",)) == (ALL if in_scoring_workers else set(), True)
    # A worker without models (``signalyard alerts worker``) alerts either way.
    assert consumers(settings, ()) == (ALL, False)


def test_domains_without_rules_get_no_alerting(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text(
        '[[rules]]\nname = "streak"\ndomain = "sensors"\nkind = "consecutive"\n'
        'when = { field = "defect", equals = true }\nat_least = 2\nwindow = "1h"\n'
        'severity = "critical"\ncooldown = "1h"\n'
    )
    settings = isolated_settings(tmp_path, alerts={"rules_file": str(rules)})
    assert consumers(settings, ()) == ({"sensors"}, False)


def test_alerts_are_explained_where_the_events_are(tmp_path: Path) -> None:
    """A scoring worker explains its alerts; an alerting-only worker on an embedded store
    never holds the events, so it does not; with a ClickHouse server both do."""
    embedded = isolated_settings(tmp_path)
    assert explains_alerts(embedded, scoring=True)
    assert not explains_alerts(embedded, scoring=False)
    server = isolated_settings(tmp_path, clickhouse={"dsn": "http://127.0.0.1:8123/default"})
    assert explains_alerts(server, scoring=False)
    scorers: dict[DomainName, Scorer] = {"news": IdleScorer("news")}
    runtime = ScoringRuntime(
        embedded, ClickHouseSink(embedded.clickhouse_dsn, embedded.sink), scorers
    )
    assert runtime.alerts is not None and runtime.alerts.explainer is runtime.explainer
    off = isolated_settings(
        tmp_path,
        explanations={**embedded.explanations.model_dump(), "in_alerts": False},
    )
    assert not explains_alerts(off, scoring=True)
