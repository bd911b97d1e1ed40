"""Which agents and tables a worker's app gets: scoring, alerting or both (no broker needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import isolated_settings

from models.base import ModelInput, Prediction, Scorer
from signalyard.settings import Domain, Settings
from sinks.clickhouse_sink import ClickHouseSink
from streams.app import ScoringRuntime, create_app


class IdleScorer:
    """Stands in for a model: creating the app does not score anything."""

    model_name = "idle"
    version = "0"

    def __init__(self, domain: Domain) -> None:
        self.domain = domain

    def score(self, inputs: Sequence[ModelInput]) -> list[Prediction]:
        raise AssertionError("not called")


def agents_and_tables(settings: Settings, domains: tuple[Domain, ...]) -> tuple[set, set]:
    scorers: dict[Domain, Scorer] = {domain: IdleScorer(domain) for domain in domains}
    runtime = ScoringRuntime(
        settings, ClickHouseSink(settings.clickhouse_dsn, settings.sink), scorers
    )
    app = create_app(settings, runtime)
    return set(app.agents), set(app.tables)


ALERTING = {"alerts-news", "alerts-tickets", "alerts-sensors"}
STATE = {"alert-state-news", "alert-state-tickets", "alert-state-sensors"}


@pytest.mark.parametrize("in_scoring_workers", [True, False])
def test_a_scoring_worker_runs_the_alert_agents_unless_alerting_runs_apart(
    tmp_path: Path, in_scoring_workers: bool
) -> None:
    settings = isolated_settings(tmp_path, alerts={"in_scoring_workers": in_scoring_workers})
    agents, tables = agents_and_tables(settings, ("news",))
    # Scoring itself is the scoring consumer's; a scoring worker joins feedback labels too.
    assert agents == {"feedback"} | (ALERTING if in_scoring_workers else set())
    assert tables == (STATE if in_scoring_workers else set())
    # A worker without models (``signalyard alerts worker``) runs the alert agents either way.
    assert agents_and_tables(settings, ()) == (ALERTING, STATE)


def test_domains_without_rules_get_no_alert_agent(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text(
        '[[rules]]\nname = "streak"\ndomain = "sensors"\nkind = "consecutive"\n'
        'when = { field = "defect", equals = true }\nat_least = 2\nwindow = "1h"\n'
        'severity = "critical"\ncooldown = "1h"\n'
    )
    settings = isolated_settings(tmp_path, alerts={"rules_file": str(rules)})
    assert agents_and_tables(settings, ()) == ({"alerts-sensors"}, {"alert-state-sensors"})
