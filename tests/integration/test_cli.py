"""The command line: one-line errors for bad input, and the stack's lifecycle."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run

from config.settings import load_settings
from signalyard.local.local_kafka import (
    broker_paths,
    fetch_jars,
    format_storage,
    server_properties,
)


@pytest.mark.parametrize(
    "args", [("no-such-command",), ("stack", "sideways"), ("init", "--bogus-flag")]
)
def test_bad_arguments_give_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("signalyard: error: ")


def test_invalid_setting_gives_one_line_and_exit_1() -> None:
    result = run("stack", "status", env={"SIGNALYARD_STACK__PORT": "70000"})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "signalyard: error: invalid setting SIGNALYARD_STACK__PORT='70000': "
        "Input should be less than 65536"
    )


def test_stack_lifecycle_on_its_own_ports(tmp_path: Path) -> None:
    env = {
        "SIGNALYARD_HOME": str(tmp_path),
        "SIGNALYARD_STACK__PORT": "19392",
        "SIGNALYARD_STACK__CONTROLLER_PORT": "19393",
        "SIGNALYARD_STACK__SASL_PORT": "19394",
    }
    assert run("stack", "status", env=env).returncode == 1
    try:
        started = run("stack", "up", env=env)
        assert started.returncode == 0, started.stderr
        assert "is up on 127.0.0.1:19392" in started.stderr
        again = run("stack", "up", env=env)
        assert again.returncode == 0
        assert (
            again.stderr.split("(pid")[1].split(",")[0]
            == started.stderr.split("(pid")[1].split(",")[0]
        )
        status = run("stack", "status", env=env)
        assert status.returncode == 0
        assert str(tmp_path / "kafka" / "broker.log") in status.stderr.replace("\n", "")
        taken = run("stack", "up", env={**env, "SIGNALYARD_HOME": str(tmp_path / "other")})
        assert taken.returncode == 1
        assert "port 19392 is taken" in taken.stderr
    finally:
        stopped = run("stack", "down", env=env)
    assert stopped.returncode == 0
    assert "Kafka stopped" in stopped.stderr
    assert run("stack", "status", env=env).returncode == 1
    assert "not running" in run("stack", "down", env=env).stderr


def test_storage_formats_for_a_cluster_id_that_starts_with_a_dash(tmp_path: Path) -> None:
    """One random cluster id in 64 starts with "-"; formatting must not take it for an option."""
    stack = load_settings(home=tmp_path).stack
    paths = broker_paths(tmp_path, stack)
    fetch_jars(paths)
    paths.data.mkdir(parents=True)
    paths.properties.write_text(server_properties(paths, stack))
    format_storage(paths, cluster_id="-" + "A" * 21)
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in (paths.data / "meta.properties").read_text()
