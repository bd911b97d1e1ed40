"""Shared fixtures.

Tests that need Kafka use the broker that ``signalyard stack up`` started (``.ci/run`` does
that); they fail, not skip, when it is down. Each test gets its own ``SIGNALYARD_HOME``
(so its embedded ClickHouse is private) and topic names with a unique suffix, so tests and
concurrent runs never see each other's records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import domains
from config.settings import DomainName, Settings, load_settings, with_topic_suffix
from signalyard.local.local_kafka import port_answers
from signalyard.local.worker_process import WorkerProcess
from sinks.clickhouse import connect

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def isolated_settings(home: Path, **overrides: object) -> Settings:
    """Settings on a private home, with every topic renamed to a name unique to this call."""
    return with_topic_suffix(load_settings(home=home, **overrides), uuid.uuid4().hex[:8])


def query(settings: Settings, sql: str) -> list[tuple]:
    """Rows of a query on the settings' store; an embedded store only once its worker exited."""
    client = connect(settings.clickhouse_dsn)
    try:
        return client.query(sql).result_rows
    finally:
        client.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return isolated_settings(tmp_path / "home")


@pytest.fixture
def kafka(settings: Settings) -> Iterator[Settings]:
    """Settings whose broker answers; the test fails with a hint when it does not."""
    host, _, port = settings.kafka.bootstrap_list[0].rpartition(":")
    if not port_answers(int(port), host):
        pytest.fail(f"no Kafka broker on {host}:{port}: run `signalyard stack up` first")
    yield settings


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with a tiny live model of every domain, trained once per session; tests that
    add versions work on a copy."""
    from signalyard.demo.bootstrap import BootstrapSize, ensure_models  # torch: only when needed

    tiny = BootstrapSize(text_rows=90, sensor_rows=600, text_epochs=40, sensor_rounds=15)
    settings = isolated_settings(tmp_path_factory.mktemp("registry"))
    ensure_models(settings, domains.names(), tiny)
    return settings.models_dir


class Worker(WorkerProcess):
    """One ``signalyard worker`` process (or another worker command) with a test's settings."""

    def __init__(
        self,
        settings: Settings,
        registry: Path,
        app_id: str,
        log: Path,
        command: tuple[str, ...] = ("worker",),
    ) -> None:
        overrides = {
            "SIGNALYARD_REGISTRY_DIR": str(registry),
            "SIGNALYARD_PIPELINE__APP_ID": app_id,
            # The restarted worker waits this long for the killed one's partitions.
            "SIGNALYARD_PIPELINE__SESSION_TIMEOUT_S": "6",
            # The scoring stage alone: the alert agents have tests of their own.
            "SIGNALYARD_ALERTS__IN_SCORING_WORKERS": "false",
        }
        super().__init__(settings, log, (*command, "--loglevel", "info"), overrides)
        self.settings = settings

    def start(self, *domains: DomainName) -> Worker:  # type: ignore[override]
        super().start(*(part for domain in domains for part in ("--domain", domain)))
        return self


@pytest.fixture
def workers(tmp_path: Path, registry_dir: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.cleanup()


def new_worker(
    started: list[Worker], settings: Settings, registry: Path, app_id: str, name: str
) -> Worker:
    worker = Worker(settings, registry, app_id, settings.home_dir.parent / f"{name}.log")
    started.append(worker)
    return worker
