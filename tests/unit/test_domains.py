"""The domain description: stored columns generated from its schemas, what a result carries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

import pytest

import domains
from domains.base import ColumnType, Lineage, column_type
from domains.news import NewsEvent, NewsScore

ORIGIN = Lineage("news.raw", 0, 0, "at_least_once")

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class FlaggedScore(NewsScore):
    flagged: Annotated[bool | None, ColumnType("Nullable(Bool)")] = None


class Scorer:
    model_name, version, model_sha256 = "m", "v1", "ab" * 32


def test_a_result_takes_fields_from_its_event_and_stores_them_as_typed() -> None:
    news = domains.get("news")
    flagging = replace(
        news, result=FlaggedScore, result_fields=lambda event: {"flagged": bool(event.body)}
    )
    event = NewsEvent(id="n1", ts=NOW, source="s", ticker="NOK", headline="up", body="more")
    prediction = {"label": "positive", "confidence": 0.9, "p_negative": 0.05,
                  "p_neutral": 0.05, "p_positive": 0.9, "sentiment": 0.85}  # fmt: skip
    result = flagging.scored_result(event, prediction, Scorer(), 1, NOW, NOW, ORIGIN)  # type: ignore[arg-type]
    assert isinstance(result, FlaggedScore) and result.flagged is True and result.ticker == "NOK"
    columns = dict(flagging.scores_columns_sql())
    assert columns["flagged"] == "Nullable(Bool)" and columns["ticker"] == "LowCardinality(String)"
    order = list(columns)
    # The id and time, the domain's own fields (flagged last of them), then every result's.
    assert order[:3] == ["event_id", "ts", "ticker"]
    assert order.index("flagged") + 1 == order.index("model_name")


def test_a_prediction_cannot_overwrite_what_the_pipeline_fills_in() -> None:
    news = domains.get("news")
    event = NewsEvent(id="n1", ts=NOW, source="s", ticker="NOK", headline="up", body="more")
    prediction = {"label": "positive", "confidence": 0.9, "p_negative": 0.05,
                  "p_neutral": 0.05, "p_positive": 0.9, "sentiment": 0.85}  # fmt: skip
    for stray in ({"source_offset": 7}, {"ticker": "OTHER"}):
        with pytest.raises(TypeError, match=f"given twice: .'{next(iter(stray))}'"):
            news.scored_result(event, prediction | stray, Scorer(), 1, NOW, NOW, ORIGIN)  # type: ignore[arg-type]


def test_a_field_without_a_clickhouse_type_is_named() -> None:
    assert column_type(list[float]) == "Array(Float32)"
    with pytest.raises(TypeError, match="optional"):
        column_type(int | None)
    with pytest.raises(TypeError, match="no ClickHouse type"):
        column_type(dict)


def test_an_unknown_domain_names_the_known_ones() -> None:
    with pytest.raises(domains.UnknownDomainError, match=r"expected one of .*news"):
        domains.get("weather")
