"""docker/compose.yaml cannot run here (no Docker engine), so it is checked for consistency."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.settings import load_settings, setting_names
from signalyard.cli import cli

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def signalyard_services(stack: dict) -> dict[str, dict]:
    return {
        name: service
        for name, service in stack["services"].items()
        if service.get("build", {}).get("dockerfile") == "docker/Dockerfile"
    }


def test_every_variable_is_a_real_setting_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    services = signalyard_services(compose())
    assert {"init", "worker"} <= set(services)
    known = setting_names()
    for service in services.values():
        environment = {key: str(value) for key, value in service["environment"].items()}
        assert set(environment) <= known, set(environment) - known
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        settings = load_settings()
        assert settings.kafka.bootstrap_servers == "kafka:9092"
        assert settings.clickhouse_dsn.startswith("http://")


def test_commands_exist_and_images_match_the_local_stack() -> None:
    stack = compose()
    for service in signalyard_services(stack).values():
        program, *args = service["command"]
        assert program == "signalyard"
        assert args[0] in cli.commands
    kafka_image = stack["services"]["kafka"]["image"]
    assert kafka_image == f"apache/kafka:{load_settings().stack.kafka_version}"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    for folder in ("config", "domains", "signalyard", "streams", "models", "store"):
        assert f"COPY {folder} ./{folder}" in dockerfile
