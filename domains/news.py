"""News: headlines of financial news, scored for sentiment, keyed by ticker.

``news.raw`` carries ``id, ts, source, ticker or tickers, headline, body?``; ``news.scored``
the sentiment label, its probabilities (negative, neutral, positive) and
``sentiment = p_positive - p_negative`` in [-1, 1].
"""

from __future__ import annotations

import random
import re
from typing import Any

from pydantic import Field, model_validator

from domains import register
from domains.base import (
    Category,
    Column,
    Domain,
    Name,
    Panel,
    RawEvent,
    ScoredResult,
    Simulation,
    Text,
)


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


# The synthetic world: each ticker has a sentiment regime that shifts now and then (a good
# quarter, a scandal); headlines are drawn from templates of the regime's tone.
COMPANIES: dict[str, str] = {
    "AAPL": "Apple",
    "MSFT": "Microsoft",
    "NVDA": "Nvidia",
    "AMZN": "Amazon",
    "NOK": "Nokia",
    "SAP": "SAP",
    "SHEL": "Shell",
    "VOW": "Volkswagen",
    "SIE": "Siemens",
    "ASML": "ASML",
    "JPM": "JPMorgan",
    "NESN": "Nestle",
}
SOURCES = ("reuters", "bloomberg", "dowjones", "newswire", "ft")
HEADLINES: dict[str, tuple[str, ...]] = {
    "positive": (
        "{company} beats quarterly earnings estimates as revenue climbs {pct}%",
        "{company} raises full-year outlook on strong demand",
        "{company} shares jump {pct}% after record {segment} sales",
        "{company} wins multi-year {segment} contract worth EUR {amount} million",
        "Analysts upgrade {company} to buy, citing margin expansion",
        "{company} announces share buyback of USD {amount} million",
        "{company} operating profit rose to EUR {amount} million from a year earlier",
    ),
    "negative": (
        "{company} cuts full-year guidance as {segment} demand weakens",
        "{company} shares slide {pct}% after profit warning",
        "{company} to lay off {count} staff amid restructuring",
        "Regulators open probe into {company} {segment} practices",
        "{company} misses estimates as costs rise {pct}%",
        "{company} operating loss widened to EUR {amount} million",
        "Analysts downgrade {company} on weaker {segment} orders",
    ),
    "neutral": (
        "{company} to present at investor conference next week",
        "{company} appoints new head of {segment}",
        "{company} schedules quarterly results release for {day}",
        "{company} completes previously announced reorganisation of {segment} unit",
        "{company} annual general meeting to be held in {city}",
        "{company} says {segment} volumes in line with last year",
    ),
}
SEGMENTS = ("cloud", "automotive", "retail", "semiconductor", "network", "energy", "payments")
CITIES = ("Helsinki", "Frankfurt", "London", "New York", "Zurich", "Amsterdam")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
BODIES: dict[str, tuple[str, ...]] = {
    "positive": ("The company said growth was broad-based.", "Shares rose in early trading."),
    "negative": ("The company blamed weaker orders.", "Shares fell in early trading."),
    "neutral": ("The company gave no further details.", "The statement was released today."),
}
CASHTAG = re.compile(r"\$([A-Za-z][A-Za-z.]{0,9})\b")


class NewsWorld(Simulation):
    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.regimes = {ticker: "neutral" for ticker in COMPANIES}

    def draw(self) -> tuple[dict[str, Any], str]:
        """A news event and its true sentiment."""
        rng = self.rng
        ticker = rng.choice(list(COMPANIES))
        if rng.random() < 0.05:
            self.regimes[ticker] = rng.choice(("positive", "negative", "neutral"))
        regime = self.regimes[ticker]
        tone = regime if rng.random() < 0.7 else rng.choice(("positive", "negative", "neutral"))
        headline = rng.choice(HEADLINES[tone]).format(
            company=COMPANIES[ticker],
            pct=rng.randint(2, 25),
            segment=rng.choice(SEGMENTS),
            amount=rng.randint(5, 900),
            count=rng.randint(50, 5000),
            day=rng.choice(DAYS),
            city=rng.choice(CITIES),
        )
        event: dict[str, Any] = {
            "source": rng.choice(SOURCES),
            "ticker": ticker,
            "tickers": [ticker] + ([rng.choice(list(COMPANIES))] if rng.random() < 0.1 else []),
            "headline": headline,
        }
        if rng.random() < 0.5:
            event["body"] = rng.choice(BODIES[tone])
        return event, tone


def event_fields(text: str, source: str, rng: random.Random) -> dict[str, Any]:
    """A labeled sentence as a headline of the ticker its cashtag names, else one drawn."""
    tag = CASHTAG.search(text)
    ticker = tag.group(1).upper() if tag else rng.choice(list(COMPANIES))
    return {"source": source, "ticker": ticker, "headline": text}


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
        panel=Panel(
            "Sentiment per ticker (mean, 10 s)",
            # The eight tickers with the most news in the window.
            """SELECT {bucket} AS t, ticker AS series, avg(sentiment) AS value
            FROM news_scores FINAL
            WHERE {in_window} AND ticker IN (
                SELECT ticker FROM news_scores FINAL WHERE {in_window}
                GROUP BY ticker ORDER BY count() DESC LIMIT 8)
            GROUP BY t, series ORDER BY t, series""",
            y_min=-1.0,
            y_max=1.0,
        ),
        simulation=NewsWorld,
        event_fields=event_fields,
        data_sets=("fpb", "tweets"),
    )
)
