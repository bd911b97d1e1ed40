"""``signalyard alerts``: bad options and a bad rules file end in one line, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("tail", "--severity", "loud"), "Invalid value for '--severity'"),
        (("tail", "--domain", "weather"), "Invalid value for '--domain'"),
        (("worker", "--loglevel", "chatty"), "Invalid value for '--loglevel'"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(args: tuple[str, ...], problem: str) -> None:
    result = run("alerts", *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"signalyard: error: {problem}")


def test_a_bad_rules_file_stops_the_worker_in_one_line(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text('[[rules]]\nname = "x"\ndomain = "news"\nkind = "mean"\nfield = "mood"\n')
    result = run("alerts", "worker", env={"SIGNALYARD_ALERTS__RULES_FILE": str(rules)})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"signalyard: error: invalid alert rules in {rules}: ")
    assert "rules.0.severity: Field required" in result.stderr
