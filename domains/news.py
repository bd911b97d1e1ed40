"""News: headlines of financial news, scored for sentiment, keyed by ticker.

``news.raw`` carries ``id, ts, source, ticker or tickers, headline, body?``; ``news.scored``
the sentiment label, its probabilities (negative, neutral, positive) and
``sentiment = p_positive - p_negative`` in [-1, 1].
"""

from __future__ import annotations

from pydantic import Field, model_validator

from domains import register
from domains.base import Category, Column, Domain, Name, RawEvent, ScoredResult, Text


class NewsEvent(RawEvent):
    source: Name
    ticker: Name | None = None
    tickers: list[Name] = Field(default_factory=list)
    headline: Text
    body: str | None = None

    @model_validator(mode="after")
    def _has_ticker(self) -> NewsEvent:
        if not self.ticker and not self.tickers:
            raise ValueError("a news event needs ticker or tickers")
        return self

    @property
    def entity(self) -> str:
        return self.ticker or self.tickers[0]

    @property
    def all_tickers(self) -> list[str]:
        return self.tickers or [self.entity]


class NewsScore(ScoredResult):
    ticker: Category
    label: Category
    p_negative: float
    p_neutral: float
    p_positive: float
    sentiment: float


def model_input(event: NewsEvent) -> str:
    return f"{event.headline} {event.body}" if event.body else event.headline


NEWS = register(
    Domain(
        name="news",
        task="sentiment",
        event=NewsEvent,
        result=NewsScore,
        entity="ticker",
        event_columns=(
            Column("ticker", "LowCardinality(String)", attribute="entity"),
            Column("tickers", "Array(String)", attribute="all_tickers"),
            Column("source", "LowCardinality(String)"),
            Column("headline", "String"),
            Column("body", "String", optional=True),
        ),
        model_input=model_input,
        summary_field="label",
        feedback_field="label",
        score_field="sentiment",
    )
)
