"""Bad training files fail with a message naming the problem; the risk taxonomy's arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.data import SENTIMENT_LABELS, read_readings, read_text
from models.errors import DataError
from models.taxonomy import RiskTaxonomy
from signalyard.cli import main

AI4I_HEADER = (
    "UDI,Product ID,Type,Air temperature [K],Process temperature [K],Rotational speed [rpm],"
    "Torque [Nm],Tool wear [min],Machine failure,TWF,HDF,PWF,OSF,RNF"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("text,label\n", "no rows"),
        ("text,sentiment\nup,positive\n", "lacks column(s) label"),
        ("text,label\nup,bullish\n", "data.csv:2: unknown label 'bullish'"),
        ('text,label\n"",neutral\n', "empty text"),
    ],
)
def test_bad_news_files(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(DataError) as error:
        read_text(write(tmp_path, content), "sentiment", SENTIMENT_LABELS)
    assert message in str(error.value)


def test_bad_sensor_files(tmp_path: Path) -> None:
    row = "1,L1,L,298.1,308.6,1551,42.8,0,0,0,0,0,0,0"
    assert read_readings(write(tmp_path, f"{AI4I_HEADER}\n{row}\n")).failure == [0]
    with pytest.raises(DataError, match="lacks column"):
        read_readings(write(tmp_path, "UDI,Type\n1,L\n"))
    with pytest.raises(DataError, match="Torque \\[Nm\\] is not a number"):
        read_readings(write(tmp_path, f"{AI4I_HEADER}\n{row.replace('42.8', 'n/a')}\n"))
    with pytest.raises(DataError, match="unknown Type 'X'"):
        read_readings(write(tmp_path, f"{AI4I_HEADER}\n{row.replace(',L,', ',X,')}\n"))


def test_cli_reports_bad_data_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIGNALYARD_HOME", str(tmp_path / "home"))
    bad = write(tmp_path, "headline,label\nup,positive\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "news", "--data", str(bad), "--mode", "head"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("signalyard: error:") and "lacks column(s) text" in err
    assert len(err.splitlines()) == 1


def test_risk_score_and_bands(tmp_path: Path) -> None:
    path = tmp_path / "risk.json"
    path.write_text(
        '{"levels": {"fraud": "high", "fee": "medium", "hello": "low"},'
        ' "weights": {"low": 0, "medium": 0.5, "high": 1}}'
    )
    taxonomy = RiskTaxonomy.load(path)
    intents = ["fee", "fraud", "hello"]
    assert taxonomy.risk_score(intents, [0.2, 0.7, 0.1]) == pytest.approx(0.8)
    assert taxonomy.level_of_score(0.8) == "high"
    assert taxonomy.level_of_score(0.5) == "medium"
    assert taxonomy.level_of_score(0.2) == "low"
    assert taxonomy.level_of_score(0.25) == "medium"  # a tie goes to the riskier level
    path.write_text('{"levels": {"fraud": "severe"}, "weights": {"high": 1}}')
    with pytest.raises(DataError, match="severe"):
        RiskTaxonomy.load(path)
