"""Kafka credentials reach every client the project makes: the scoring and alert consumers of
a worker, the trainer, ``signalyard produce`` and ``signalyard replay``, all through the test
broker's SASL_PLAINTEXT listener (``stack.sasl_port``, PLAIN); a wrong password gets one line
and a non-zero exit instead of a traceback."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Worker, isolated_settings, new_worker
from helpers import free_port, ids_of, provision, read_until, run, synthetic, wait_for

from config.settings import Settings, load_settings, settings_environment
from signalyard.local.local_kafka import port_answers
from signalyard.local.worker_process import WorkerProcess
from streams.groups import wait_until_stable

pytestmark = pytest.mark.kafka

WAIT_S = 120


def sasl_settings(home: Path, password: str | None = None) -> Settings:
    stack = load_settings().stack
    if not stack.sasl_port or not port_answers(stack.sasl_port):
        pytest.fail("no SASL listener: run `signalyard stack up` with SIGNALYARD_STACK__SASL_PORT")
    return isolated_settings(
        home,
        kafka={
            "bootstrap_servers": f"127.0.0.1:{stack.sasl_port}",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": stack.sasl_username,
            "sasl_password": password or stack.sasl_password.get_secret_value(),
        },
    )


def test_every_client_logs_in_through_the_sasl_listener(
    kafka: Settings, registry_dir: Path, workers: list[Worker], tmp_path: Path
) -> None:
    settings = sasl_settings(tmp_path / "home")
    provision(settings)
    app_id = f"t-{uuid.uuid4().hex[:8]}"
    port = free_port()
    worker = new_worker(workers, settings, registry_dir, app_id, "worker")
    worker.env["SIGNALYARD_PIPELINE__WEB_PORT"] = str(port)
    worker.env["SIGNALYARD_ALERTS__IN_SCORING_WORKERS"] = "true"
    worker.start("sensors")
    trainer = WorkerProcess(settings, tmp_path / "trainer.log", ("trainer",), worker.env)
    workers.append(trainer)  # type: ignore[arg-type]
    trainer.start()
    env = worker.env

    records = synthetic("sensors", 100, seed=9)
    events = tmp_path / "readings.jsonl"
    events.write_text("".join(value.decode() + "\n" for _, value in records))
    before = datetime.now(UTC) - timedelta(seconds=1)
    produced = run("produce", "sensors", "--file", str(events), env=env)
    assert produced.returncode == 0, produced.stderr
    scored = asyncio.run(
        read_until(settings, lambda s: len(s.ids["sensors"]) >= 100, ("sensors",), WAIT_S)
    )
    assert set(scored.ids["sensors"]) == ids_of(records), worker.tail()

    pipeline = settings.pipeline.model_copy(update={"app_id": app_id})
    for group in (pipeline.scoring_group, f"{app_id}-alerts", f"{app_id}-trainer"):
        assert asyncio.run(wait_until_stable(settings.kafka, group, 1, WAIT_S)), group

    after = (datetime.now(UTC) + timedelta(seconds=1)).isoformat(timespec="seconds")
    replayed = run(
        "replay", "sensors", "--from", before.isoformat(timespec="seconds"), "--to", after,
        "--run-id", "sasl", env=env,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    summary = replayed.stdout + replayed.stderr
    assert "run sasl: 100 sensors events scored" in summary, summary

    assert trainer.stop() == 0, trainer.tail()
    assert worker.stop() == 0, worker.tail()


def test_a_wrong_password_ends_a_client_with_one_line_and_a_non_zero_exit(
    kafka: Settings, tmp_path: Path
) -> None:
    settings = sasl_settings(tmp_path / "home", password="not-the-password")
    env = settings_environment(settings)
    events = tmp_path / "one.jsonl"
    events.write_text(synthetic("sensors", 1, seed=1)[0][1].decode() + "\n")
    produced = run("produce", "sensors", "--file", str(events), env=env)
    assert produced.returncode == 1
    assert "Traceback" not in produced.stderr
    lines = produced.stderr.strip().splitlines()
    assert "SaslAuthenticationFailed" in produced.stderr  # aiokafka's own line says why
    assert lines[-1].startswith("signalyard: error: cannot connect to Kafka"), lines
    assert "credentials" in lines[-1]


def test_a_worker_refused_its_credentials_waits_and_says_so_without_a_flood(
    kafka: Settings, registry_dir: Path, workers: list[Worker], tmp_path: Path
) -> None:
    """Credentials may be fixed on the broker's side (a rotated secret): the worker waits as it
    waits for an absent broker, with one line of its own and the client's refusals once per
    minute, not once per retry; SIGTERM still stops it."""
    settings = sasl_settings(tmp_path / "home", password="not-the-password")
    worker = new_worker(workers, settings, registry_dir, f"t-{uuid.uuid4().hex[:8]}", "refused")
    worker.start("sensors")

    def said(words: str) -> list[str]:
        return [line for line in worker.log.read_text().splitlines() if words in line]

    # However long the worker takes to start on a loaded machine: its first lines, then ten
    # seconds of retries, one a second, that say nothing more.
    wait_for(
        "the worker's lines about its refused credentials",
        lambda: bool(said("accepts the credentials") and said("SaslAuthenticationFailed")),
        worker,
    )
    time.sleep(10)
    assert worker.running, worker.tail()
    waiting = said("accepts the credentials")
    assert len(waiting) == 1 and "waiting for it" in waiting[0], worker.tail()
    assert len(said("SaslAuthenticationFailed")) == 1, worker.tail()
    # Before its consumers start, the worker ends by SIGTERM's default action: there is
    # nothing to deliver or commit yet. Not killed after the timeout (that would be -9).
    assert worker.stop(timeout_s=30) in (0, -signal.SIGTERM), worker.tail()
