"""What a running worker shows: metrics, health and readiness, ``signalyard sql`` and the dashboard.

One ``signalyard worker`` (real broker, tiny real models, embedded ClickHouse) with its web port
on serves every test of this module; it scores a known set of events, malformed ones included,
before the first test looks.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from conftest import isolated_settings
from helpers import (
    MALFORMED,
    WAIT_S,
    Worker,
    free_port,
    ids_of,
    provision,
    reading,
    send,
    synthetic,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

import domains
from config.settings import DomainName, Settings
from models.registry import Registry
from models.tasks import TEXT_TASKS
from signalyard.cli import main
from signalyard.local.local_kafka import port_answers
from store.web_token import credentials
from streams.producer import produce

pytestmark = pytest.mark.kafka

EVENTS = 40  # per domain
BAD = MALFORMED[:3]  # news that are dead-lettered
ALERTED = "M-STREAK"  # a machine whose readings fire an alert
SPREAD = timedelta(seconds=6)  # between two events' times
STREAK_READINGS = 2  # scored sensor readings past the default rules' threshold
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"  # explicit, so that selenium never downloads a driver
# Without the background-networking flags Chromium dials out, which a closed network refuses.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1500",
)
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@dataclass
class Live:
    settings: Settings
    worker: Worker
    url: str
    expected: dict[DomainName, set[str]]
    tickers: set[str]

    def get(
        self, path: str, headers: dict[str, str] | None = None, data: bytes | None = None
    ) -> tuple[int, bytes]:
        """GET (POST with ``data``) ``path``, with the worker's token unless ``headers``."""
        request = urllib.request.Request(
            self.url + path, data=data, headers=self.credentials() if headers is None else headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def credentials(self) -> dict[str, str]:
        """What the CLI sends: the token the worker wrote under its home for its port."""
        port = int(self.worker.env["SIGNALYARD_PIPELINE__WEB_PORT"])
        pipeline = self.settings.pipeline.model_copy(update={"web_port": port})
        return credentials(self.settings.model_copy(update={"pipeline": pipeline}))

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics by name and labels."""
        status, body = self.get("/metrics")
        assert status == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, registry_dir: Path) -> Iterator[Live]:
    settings = isolated_settings(tmp_path_factory.mktemp("observed") / "home")
    host, _, port = settings.kafka.bootstrap_list[0].rpartition(":")
    if not port_answers(int(port), host):
        pytest.fail(f"no Kafka broker on {host}:{port}: run `signalyard stack up` first")
    provision(settings)
    web_port = free_port()
    log = settings.home_dir.parent / "worker.log"
    worker = Worker(settings, registry_dir, f"t-{uuid.uuid4().hex[:8]}", log)
    worker.env["SIGNALYARD_PIPELINE__WEB_PORT"] = str(web_port)
    # As deployed: the alert agents run in the worker, so the dashboard has alerts to show.
    worker.env["SIGNALYARD_ALERTS__IN_SCORING_WORKERS"] = "true"
    worker.start()
    live = Live(settings, worker, f"http://127.0.0.1:{web_port}", {}, set())
    try:
        wait_for("readiness", lambda: _answers(live, "/readyz") == 200, worker)
        batches = {
            domain: spread(synthetic(domain, EVENTS, seed=n))
            for n, domain in enumerate(domains.names())
        }
        batches["news"] += [(b"AAPL", bad) for bad, _ in BAD]
        for domain, records in batches.items():
            asyncio.run(send(settings, domain, records))
        live.expected = {domain: ids_of(batches[domain][:EVENTS]) for domain in domains.names()}
        live.tickers = {key.decode() for key, _ in batches["news"][:EVENTS]}
        # Two scored readings past the default rules' threshold: the worker's alert agent fires.
        streak = [reading(f"streak-{n}", n, 0.95, machine=ALERTED) for n in range(STREAK_READINGS)]
        scored = [(ALERTED.encode(), result.model_dump_json().encode()) for result in streak]
        asyncio.run(produce(settings.kafka, settings.topics.sensors_scored.name, scored))

        def all_out() -> bool:
            samples = live.metrics()
            return all(
                samples.get(("signalyard_events_out_total", (("domain", d),)), 0) >= EVENTS
                for d in domains.names()
            )

        wait_for("every event scored", all_out, worker)
        yield live
    finally:
        worker.cleanup()


def spread(records: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The events with event times over the last minutes, so that charts over event time have
    many points to draw."""
    now = datetime.now(UTC)
    spread = []
    for n, (key, value) in enumerate(records):
        event = json.loads(value) | {"ts": (now - (len(records) - n) * SPREAD).isoformat()}
        spread.append((key, json.dumps(event).encode()))
    return spread


def _answers(live: Live, path: str) -> int | None:
    try:
        return live.get(path)[0]
    except OSError:
        return None  # not listening yet


def test_metrics_count_what_the_worker_did(live: Live) -> None:
    samples = live.metrics()

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    registry = Registry(live.worker.env["SIGNALYARD_REGISTRY_DIR"])
    for domain in domains.names():
        dead = len(BAD) if domain == "news" else 0
        assert value("signalyard_events_in_total", domain=domain) == EVENTS + dead
        assert value("signalyard_events_out_total", domain=domain) == EVENTS
        assert value("signalyard_events_deadlettered_total", domain=domain) == dead
        batches = value("signalyard_batch_size_count", domain=domain)
        assert 1 <= batches <= EVENTS + dead
        assert value("signalyard_batch_size_sum", domain=domain) == EVENTS + dead
        assert value("signalyard_batch_scoring_seconds_count", domain=domain) == batches
        assert value("signalyard_batch_scoring_seconds_sum", domain=domain) > 0
        assert value("signalyard_end_to_end_latency_seconds_count", domain=domain) == EVENTS
        # Every event was delivered after it reached Kafka, and within the test's wait.
        total = value("signalyard_end_to_end_latency_seconds_sum", domain=domain)
        assert 0 < total / EVENTS < WAIT_S
        model = [
            labels
            for (name, labels), sample in samples.items()
            if name == "signalyard_model_info" and ("domain", domain) in labels and sample == 1
        ]
        assert len(model) == 1 and ("version", registry.live_version(domain)) in model[0]
    assert value("signalyard_sink_inserts_total") > 0
    assert value("signalyard_sink_retries_total") == 0
    assert value("signalyard_ready") == 1


def test_consumer_lag_per_partition_drops_to_zero_once_committed(live: Live) -> None:
    raw = {live.settings.topics.raw(domain).name: domain for domain in domains.names()}

    def lags() -> dict[tuple[str, str], float]:
        return {
            (labels[1][1], labels[0][1]): sample
            for (name, labels), sample in live.metrics().items()
            if name == "signalyard_consumer_lag" and dict(labels)["topic"] in raw
        }

    # Every raw partition that received events shows, and Faust commits within seconds.
    wait_for("lag 0 on every partition", lambda: set(lags().values()) == {0}, live.worker)
    partitions = {topic for topic, _ in lags()}
    assert partitions == set(raw), lags()


def test_the_alert_state_held_per_domain_and_the_alerts_sent_are_on_metrics(live: Live) -> None:
    """What a worker's memory grows with: every result sits in its entity's windows; and the
    alerts it sent, by rule."""

    def held(name: str) -> dict[str, float]:
        return {
            dict(labels)["domain"]: sample
            for (metric, labels), sample in live.metrics().items()
            if metric == name
        }

    every = dict.fromkeys(domains.names(), float(EVENTS))
    every["sensors"] += STREAK_READINGS  # crafted straight onto the scored topic
    wait_for(
        "every result held", lambda: held("signalyard_alert_results_held") == every, live.worker
    )
    entities = held("signalyard_alert_entities")
    assert set(entities) == set(every) and all(1 <= n <= EVENTS for n in entities.values())

    def streak_alerts() -> float:
        return sum(
            sample
            for (metric, labels), sample in live.metrics().items()
            if metric == "signalyard_alerts_sent_total"
            and dict(labels).items() >= {("domain", "sensors"), ("rule", "machine-defect-streak")}
        )

    # Published once its explanation is attached (or given up on), after the fold.
    wait_for("the crafted streak's alert sent", lambda: streak_alerts() >= 1, live.worker)


def test_health_and_readiness(live: Live) -> None:
    status, body = live.get("/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, body = live.get("/readyz")
    state = json.loads(body)
    assert status == 200 and state["ready"] and state["sink_connected"]
    raw_partitions = sum(live.settings.topics.raw(domain).partitions for domain in domains.names())
    assert state["partitions"] >= raw_partitions


def sql(live: Live, monkeypatch: pytest.MonkeyPatch, *args: str, web: bool = True) -> None:
    """``signalyard sql`` in this process, configured like the worker through SIGNALYARD_*."""
    for name, value in live.worker.env.items():
        if name.startswith("SIGNALYARD_"):
            monkeypatch.setenv(name, value)
    if not web:
        monkeypatch.setenv("SIGNALYARD_PIPELINE__WEB_PORT", "0")
    main(["sql", *args])


def refused(
    live: Live,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    web: bool = True,
) -> str:
    """The one line of a refused ``signalyard sql``, which must exit non-zero."""
    with pytest.raises(SystemExit) as exit_:
        sql(live, monkeypatch, *args, web=web)
    assert exit_.value.code not in (0, None)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("signalyard: error: "), err
    return err


def test_sql_reads_the_workers_store_through_its_endpoint(
    live: Live, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sql(live, monkeypatch, "SELECT event_id FROM sensors_scores FINAL", "--format", "json")
    rows = json.loads(capsys.readouterr().out)
    assert {row["event_id"] for row in rows} == live.expected["sensors"]

    sql(live, monkeypatch, "SELECT count() AS n FROM news_scores FINAL;", "--format", "csv")
    assert capsys.readouterr().out == f"n\n{EVENTS}\n"

    query = "SELECT source_topic, count() AS dead FROM deadletter FINAL GROUP BY source_topic"
    sql(live, monkeypatch, query)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["source_topic", "dead"]
    assert lines[2].split() == [live.settings.topics.news_raw.name, str(len(BAD))]
    assert lines[-1] == "(1 row)"


def test_sql_refuses_writes_and_reports_bad_sql_in_one_line(
    live: Live, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(live, monkeypatch, capsys, "INSERT INTO alerts (alert_id) VALUES ('x')")
    assert "only reads are allowed" in err
    assert "only reads" in refused(live, monkeypatch, capsys, "DROP TABLE news_scores")
    # Past the first word, ClickHouse itself refuses: every query runs with readonly=1.
    err = refused(live, monkeypatch, capsys, "SELECT 1 SETTINGS readonly = 0")
    assert "readonly" in err
    err = refused(live, monkeypatch, capsys, "SELECT * FROM no_such_table")
    assert "no_such_table" in err
    sql(live, monkeypatch, "SELECT count() AS n FROM alerts FINAL WHERE alert_id = 'x'")
    assert capsys.readouterr().out.splitlines()[2] == "0"
    sql(live, monkeypatch, "EXISTS TABLE news_scores", "--format", "csv")
    assert capsys.readouterr().out.splitlines()[1] == "1"


def test_explain_endpoint_explains_a_scored_event(live: Live) -> None:
    event_id = sorted(live.expected["news"])[0]
    status, body = live.get(f"/explain?event_id={event_id}")
    assert status == 200, body
    explained = json.loads(body)
    registry = Registry(live.worker.env["SIGNALYARD_REGISTRY_DIR"])
    assert explained["domain"] == "news" and explained["event_id"] == event_id
    assert explained["model_version"] == registry.live_version("news")
    assert explained["method"] == "integrated-gradients" and explained["attributions"]
    assert explained["label"] in ("negative", "neutral", "positive")
    status, body = live.get("/explain?event_id=no-such-event&domain=news")
    assert status == 404 and "no scored event" in json.loads(body)["error"]
    assert live.get("/explain")[0] == 400


def test_privileged_endpoints_need_the_token_and_the_server_listens_on_loopback(
    live: Live,
) -> None:
    """A reverse proxy on the worker's host makes every client loopback: the address proves
    nothing, the token does."""
    event_id = sorted(live.expected["news"])[0]
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        assert live.get("/sql", headers, data=b"SELECT 1")[0] == 401
        assert live.get(f"/explain?event_id={event_id}", headers)[0] == 401
        assert live.get("/backtest/forget?run_id=r", headers, data=b"")[0] == 401
        assert live.get("/metrics", headers)[0] == 200  # what monitoring scrapes stays open
    assert live.get("/sql", data=b"SELECT 1")[0] == 200
    token_file = live.settings.home_dir / f"web-token-{live.url.rsplit(':', 1)[1]}"
    assert token_file.stat().st_mode & 0o777 == 0o600
    port = int(live.url.rsplit(":", 1)[1])
    listening = {
        c.laddr.ip
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
    assert listening == {"127.0.0.1"}


def test_sql_without_the_workers_endpoint_names_the_way_in(
    live: Live, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(live, monkeypatch, capsys, "SELECT 1", web=False)
    assert "open in another process" in err and "SIGNALYARD_PIPELINE__WEB_PORT" in err


def test_dashboard_draws_the_scored_events_in_chromium(live: Live, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        browser.get(live.url + "/dashboard")
        # Two refreshes (the page keeps drawing after its first data), and the alert is in.
        WebDriverWait(browser, 30).until(
            lambda b: (
                int(b.execute_script("return document.body.dataset.refreshed || 0")) >= 2
                and b.execute_script("return document.querySelectorAll('#alerts tr.alert').length")
            )
        )
        drawn = browser.execute_script(
            """const series = id => [...document.querySelectorAll(`#${id} path.series`)]
                   .map(p => [p.dataset.name, Number(p.dataset.points)]);
               return {domains: Object.fromEntries(arguments[0].map(d => [d, series(d)])),
                       throughput: series("throughput"),
                       latency: series("latency"), accuracy: series("accuracy"),
                       cards: [...document.querySelectorAll("#models .model")]
                           .map(card => card.textContent),
                       models: [...document.querySelectorAll("#models .model b")]
                           .map(b => b.textContent),
                       alerts: [...document.querySelectorAll("#alerts tr.alert")]
                           .map(tr => [...tr.cells].map(td => td.textContent)),
                       status: document.getElementById("status").textContent};""",
            list(domains.names()),
        )
        screenshot = tmp_path / "dashboard.png"
        browser.save_screenshot(str(screenshot))
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "dashboard.png").write_bytes(screenshot.read_bytes())
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        browser.quit()

    assert drawn["status"].startswith("updated"), drawn["status"]
    assert errors == []
    registry = Registry(live.worker.env["SIGNALYARD_REGISTRY_DIR"])
    assert drawn["models"] == [registry.live_version(domain) for domain in domains.names()]
    assert [ALERTED, "machine-defect-streak", "critical"] in [row[2:5] for row in drawn["alerts"]]
    for chart in domains.names():
        lines = drawn["domains"][chart]
        assert lines and all(points >= 1 for _, points in lines), drawn
    assert {name for name, _ in drawn["throughput"]} == set(domains.names())
    assert {name for name, _ in drawn["latency"]} == set(domains.names())
    # The label-free estimate of the text models (their calibration is recorded).
    text = {f"{d.name} estimated" for d in domains.all() if d.task in TEXT_TASKS}
    assert {name for name, _ in drawn["accuracy"]} == text
    assert all("estimated now" in card for card in drawn["cards"]), drawn["cards"]
    # Tickers come from the events sent; none is made up by the page.
    assert {name for name, _ in drawn["domains"]["news"]} <= live.tickers
    assert screenshot.stat().st_size > 10_000
