"""Settings come from the config file, are overridden by the environment, and fail clearly."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from config.settings import (
    ENV_PREFIX,
    SettingsError,
    load_settings,
    setting_names,
    settings_environment,
    with_topic_suffix,
)


@pytest.fixture(autouse=True)
def _no_settings_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    # make test points the suite at its own broker through the environment; these tests
    # are about the file's defaults and must not see that.
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_defaults_come_from_the_config_file() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.topics.news_raw.name == "news.raw"
    assert settings.topics.model_updates.cleanup_policy == "compact"
    assert settings.batching.max_batch_size == 32


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIGNALYARD_HOME", str(tmp_path))
    monkeypatch.setenv("SIGNALYARD_BATCHING__MAX_BATCH_SIZE", "64")
    monkeypatch.setenv("SIGNALYARD_TOPICS__NEWS_RAW__PARTITIONS", "12")
    monkeypatch.setenv("SIGNALYARD_KAFKA__BOOTSTRAP_SERVERS", "a:9092, b:9092")
    settings = load_settings()
    assert settings.batching.max_batch_size == 64
    assert settings.topics.news_raw.partitions == 12
    assert settings.topics.news_raw.name == "news.raw"  # the rest of the section stays
    assert settings.kafka.bootstrap_list == ["a:9092", "b:9092"]
    assert settings.clickhouse_dsn == f"chdb://{tmp_path.resolve() / 'clickhouse'}"
    assert settings.models_dir == tmp_path.resolve() / "models"


def test_another_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    original = Path(__file__).resolve().parents[2] / "config" / "signalyard.toml"
    changed = tmp_path / "site.toml"
    changed.write_text(original.read_text().replace("max_wait_ms = 50", "max_wait_ms = 7"))
    monkeypatch.setenv("SIGNALYARD_CONFIG", str(changed))
    assert load_settings().batching.max_wait_ms == 7


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SIGNALYARD_BATCHING__MAX_BATCH_SIZE", "abc", "SIGNALYARD_BATCHING__MAX_BATCH_SIZE='abc'"),
        ("SIGNALYARD_BATCHING__MAX_WAIT_MS", "-1", "SIGNALYARD_BATCHING__MAX_WAIT_MS"),
        ("SIGNALYARD_INFERENCE__DEVICE", "tpu", "SIGNALYARD_INFERENCE__DEVICE='tpu'"),
        ("SIGNALYARD_KAFKA__SECURITY_PROTOCOL", "SASL_SSL", "SASL_USERNAME"),
        ("SIGNALYARD_CLICKHOUSE__DSN", "mysql://x", "SIGNALYARD_CLICKHOUSE__DSN"),
        ("SIGNALYARD_TOPICS__ALERTS__CLEANUP_POLICY", "forever", "SIGNALYARD_TOPICS__ALERTS"),
    ],
)
def test_invalid_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_sasl_credentials_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALYARD_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SIGNALYARD_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SIGNALYARD_KAFKA__SASL_USERNAME", "svc")
    monkeypatch.setenv("SIGNALYARD_KAFKA__SASL_PASSWORD", "s3cret")
    kafka = load_settings().kafka
    assert kafka.sasl_password is not None
    assert kafka.sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(kafka)


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIGNALYARD_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(SettingsError, match=r"absent\.toml"):
        load_settings()


def test_unknown_key_in_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    original = Path(__file__).resolve().parents[2] / "config" / "signalyard.toml"
    typo = tmp_path / "typo.toml"
    typo.write_text(original.read_text().replace("max_wait_ms", "max_wiat_ms"))
    monkeypatch.setenv("SIGNALYARD_CONFIG", str(typo))
    with pytest.raises(SettingsError, match="MAX_WIAT_MS"):
        load_settings()


def test_setting_names_cover_nested_fields() -> None:
    names = setting_names()
    assert "SIGNALYARD_KAFKA__SASL_PASSWORD" in names
    assert "SIGNALYARD_TOPICS__MODEL_UPDATES__CLEANUP_POLICY" in names
    assert "SIGNALYARD_HOME" in names
    assert "SIGNALYARD_KAFKA__PASSWORD" not in names


def test_environment_of_settings_round_trips(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIGNALYARD_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SIGNALYARD_KAFKA__SASL_USERNAME", "svc")
    monkeypatch.setenv("SIGNALYARD_KAFKA__SASL_PASSWORD", "s3cret")
    original = load_settings(
        home=tmp_path, topics={"alerts": {"name": "alerts.x", "partitions": 2}}
    )
    environment = settings_environment(original)
    assert environment["SIGNALYARD_KAFKA__SASL_PASSWORD"] == "s3cret"
    assert environment["SIGNALYARD_TOPICS__ALERTS__NAME"] == "alerts.x"
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original


# Floor by floor, bottom up: a package may import from its own floor and those below it.
FLOORS = [("config",), ("models",), ("domains",), ("store",), ("streams",), ("signalyard",)]


def _project_imports(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names]  # fmt: skip
    names += [node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and not node.level]  # fmt: skip
    packages = {package for floor in FLOORS for package in floor}
    return {name.split(".")[0] for name in names} & packages


def test_settings_are_the_ground_floor_and_no_floor_imports_upward() -> None:
    root = Path(__file__).resolve().parents[2]
    for level, floor in enumerate(FLOORS):
        allowed = {package for below in FLOORS[: level + 1] for package in below}
        for package in floor:
            for source in (root / package).rglob("*.py"):
                upward = _project_imports(source) - allowed
                assert not upward, f"{source.relative_to(root)} imports {sorted(upward)}"


def test_a_suffix_isolates_the_topics_of_domains_without_settings_too() -> None:
    base = load_settings()
    isolated = with_topic_suffix(base, "run1")
    assert isolated.topics.raw("news").name == f"{base.topics.raw('news').name}.run1"
    # A domain with no topic settings of its own gets <name>.<stage>, suffixed the same.
    assert isolated.topics.scored("weather").name == "weather.scored.run1"
    assert settings_environment(isolated)["SIGNALYARD_TOPICS__SUFFIX"] == "run1"
    assert len(isolated.topics.all()) == len(base.topics.all())


def test_a_copy_with_other_places_names_the_new_places(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "first")
    before = (settings.home_dir, settings.models_dir, settings.clickhouse_dsn, settings.rules_path)
    rules = tmp_path / "other-alerts.toml"
    copy = settings.model_copy(
        update={
            "home": tmp_path / "second",
            "alerts": settings.alerts.model_copy(update={"rules_file": rules}),
        }
    )
    assert copy.home_dir == (tmp_path / "second").resolve()
    assert copy.models_dir == (tmp_path / "second" / "models").resolve()
    assert copy.clickhouse_dsn == f"chdb://{(tmp_path / 'second').resolve() / 'clickhouse'}"
    assert copy.rules_path == rules.resolve()
    assert (settings.home_dir, settings.models_dir) == before[:2]
    assert (settings.clickhouse_dsn, settings.rules_path) == before[2:]
