"""The retail reviews domain: its events and results, the model input, and the shipped rule
that flags a product whose recent reviews turn negative (pure logic, no broker)."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import domains
from config.settings import load_settings
from domains.base import Lineage
from domains.reviews import ReviewScore
from models.data import SENTIMENT_LABELS, read_text
from models.errors import DataError
from models.splits import with_text_alone
from signalyard.cli.explain import _inputs as explained_inputs
from signalyard.demo.synthetic import World, write_training_csv
from streams.adaptation.feedback_import import labeled_events
from streams.alerting.engine import EntityState
from streams.alerting.rules import load_rules
from streams.validation import EventLimits, Rejected, parse_event

ORIGIN = Lineage("reviews.raw", 0, 0, "at_least_once")

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LIMITS = EventLimits(65536)
REVIEW = {"id": "r-1", "ts": "2026-12-01T09:00:00Z", "product_id": "1078", "title": "Love it",
          "text": "Soft and flattering.", "rating": 5, "department": "Dresses",
          "recommended": True}  # fmt: skip


class Scorer:
    model_name, version, model_sha256 = "reviews-test", "v1", "ab" * 32


def encode(event: dict) -> bytes:
    return json.dumps(event).encode()


def score(event_id: str, minute: float, label: str, product: str = "1078") -> ReviewScore:
    return ReviewScore(
        event_id=event_id, ts=T0 + timedelta(minutes=minute), model_name="m", model_version="v1",
        batch_size=1, latency_ms=1.0, scored_at=T0, product_id=product, label=label,
        p_negative=float(label == "negative"), p_neutral=float(label == "neutral"),
        p_positive=float(label == "positive"), sentiment=0.0,
    )  # fmt: skip


def test_a_review_is_scored_on_its_text_and_keeps_the_reviewers_recommendation() -> None:
    reviews = domains.get("reviews")
    event = parse_event("reviews", encode(REVIEW), LIMITS)
    assert event.entity == "1078"
    assert reviews.model_input(event) == "Recommended. Love it. Soft and flattering."
    prediction = {"label": "positive", "confidence": 0.8, "p_negative": 0.1, "p_neutral": 0.1,
                  "p_positive": 0.8, "sentiment": 0.7}  # fmt: skip
    result = reviews.scored_result(event, prediction, Scorer(), 1, T0, T0, ORIGIN)  # type: ignore[arg-type]
    assert isinstance(result, ReviewScore) and result.recommended is True
    assert result.product_id == "1078" and result.model_version == "v1"
    bare = parse_event("reviews", encode({k: REVIEW[k] for k in ("id", "ts", "product_id",
                                                                  "text")}), LIMITS)  # fmt: skip
    assert reviews.scored_result(bare, prediction, Scorer(), 1, T0, T0, ORIGIN).recommended is None  # type: ignore[arg-type]
    row = reviews.event_row(bare, T0)
    assert row["title"] == "" and row["rating"] is None and row["recommended"] is None
    assert reviews.model_input(bare) == "Soft and flattering."


LABELED = """text,label,product_id,rating,recommended,title,department
Runs small and the zipper broke.,negative,1078,1,0,Not worth it,Dresses
"Nice color, odd fit.",neutral,862,3,1,,Tops
Love the fabric!,positive,862,5,,Perfect!,
"""


def test_a_labeled_review_is_read_as_the_event_it_makes(tmp_path: Path) -> None:
    reviews, path = domains.get("reviews"), tmp_path / "reviews.csv"
    path.write_text(LABELED)
    read = read_text(path, "sentiment", SENTIMENT_LABELS, "reviews")
    assert read.texts == [
        "Not recommended. Not worth it. Runs small and the zipper broke.",
        "Recommended. Nice color, odd fit.",
        "Perfect! Love the fabric!",
    ]
    # What the demo streams and feedback import sends of the same rows: the model reads of
    # each event what it was trained and evaluated on.
    streamed = [
        reviews.event.model_validate_json(encode({"id": "x", "ts": REVIEW["ts"], **fields}))
        for fields in (
            reviews.labeled_event(given, row, "test", random.Random(0))
            for given, row, _ in reviews.labeled_rows(path, SENTIMENT_LABELS)
        )
    ]
    assert [reviews.model_input(event) for event in streamed] == read.texts
    assert [(e.product_id, e.rating) for e in streamed] == [("1078", 1), ("862", 3), ("862", 5)]
    # Cells as other writers spell them (pandas: True, 5.0) read as the same event.
    spelled = path.with_name("spelled.csv")
    spelled.write_text(LABELED.replace(",1,0,", ",1.0,False,").replace(",3,1,", ",3,True,"))
    assert read_text(spelled, "sentiment", SENTIMENT_LABELS, "reviews").texts == read.texts
    # Another domain's rows are their text alone.
    assert read_text(path, "sentiment", SENTIMENT_LABELS, "news").texts[0] == (
        "Runs small and the zipper broke."
    )


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("recommended", "maybe", "recommended: Input should be a valid boolean"),
        ("rating", "6", "rating: Input should be less than or equal to 5"),
        ("product_id", "p" * 300, "product_id: String should have at most 256 characters"),
    ],
)
def test_a_labeled_review_with_a_bad_field_is_refused_with_its_line(
    tmp_path: Path, column: str, value: str, reason: str
) -> None:
    path = tmp_path / "reviews.csv"
    rows = list(csv.DictReader(io.StringIO(LABELED)))
    rows[1][column] = value
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DataError, match=f"reviews.csv:3: .*{reason}"):
        read_text(path, "sentiment", SENTIMENT_LABELS, "reviews")


def test_a_share_of_rows_also_trains_as_text_alone(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(LABELED)
    read = read_text(path, "sentiment", SENTIMENT_LABELS, "reviews")
    assert read.text_alone == [
        "Runs small and the zipper broke.", "Nice color, odd fit.", "Love the fabric!",
    ]  # fmt: skip
    assert with_text_alone(read, 0.0, 1) == read
    grown = with_text_alone(read, 0.67, 1)
    assert grown.texts[:3] == read.texts and len(grown.texts) == 5
    assert set(grown.texts[3:]) <= set(read.text_alone)
    assert [read.text_alone.index(t) for t in grown.texts[3:]] == [
        read.labels.index(label) for label in grown.labels[3:]
    ]
    # A domain whose model reads the text alone has nothing to add.
    news = read_text(path, "sentiment", SENTIMENT_LABELS, "news")
    assert news.text_alone is None and with_text_alone(news, 0.5, 1) == news


def test_imported_feedback_keeps_each_reviews_fields_and_tells_apart_same_texts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reviews.csv"
    # The same text twice, recommended once and not the other time: two events.
    path.write_text(LABELED + "Love the fabric!,negative,862,2,0,,\n")
    imported = labeled_events("reviews", path, (), T0)
    events = [parse_event("reviews", item.event[1], LIMITS) for item in imported]
    assert len({item.event_id for item in imported}) == 4
    assert [(e.product_id, e.recommended, e.title) for e in events] == [
        ("1078", False, "Not worth it"), ("862", True, None), ("862", None, "Perfect!"),
        ("862", False, None),
    ]  # fmt: skip
    assert [item.label for item in imported] == ["negative", "neutral", "positive", "negative"]


def test_a_file_of_reviews_is_explained_as_the_events_its_rows_make(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(LABELED)
    assert (
        explained_inputs("reviews", None, path)
        == read_text(path, "sentiment", SENTIMENT_LABELS, "reviews").texts
    )


def test_rows_of_a_domain_nobody_registered_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(LABELED)
    with pytest.raises(DataError, match="'nowhere' is not registered"):
        read_text(path, "sentiment", SENTIMENT_LABELS, "nowhere")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"rating": 6}, "rating"),
        ({"rating": "5"}, "rating"),
        ({"text": "  "}, "text"),
        ({"product_id": None}, "product_id"),
        ({"recommended": "yes"}, "recommended"),
    ],
)
def test_a_bad_review_is_rejected_with_the_field(change: dict, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        parse_event("reviews", encode({**REVIEW, **change}), LIMITS)


def test_the_shipped_rule_flags_a_product_whose_reviews_turn_negative() -> None:
    rules = [r for r in load_rules(load_settings().rules_path).rules if r.domain == "reviews"]
    assert [rule.name for rule in rules] == ["product-negative-reviews"]
    state, alerts = EntityState(), []
    labels = ["positive"] * 6 + ["negative"] * 5 + ["neutral", "negative", "negative"]
    for n, label in enumerate(labels):
        alerts += state.fold("reviews", rules, score(f"e{n}", n, label)).alerts
    # 7 negative of 14 at the 14th review: half, over the minimum of 8 reviews; fires once.
    assert [(a.entity, a.rule) for a in alerts] == [("1078", "product-negative-reviews")]
    assert alerts[0].evidence["event_ids"][-1] == "e13" and alerts[0].evidence["matched"] == 7


def test_the_synthetic_world_writes_reviews_in_the_shared_datas_format(tmp_path: Path) -> None:
    world = World(seed=4)
    labels = [world.draw("reviews")[1] for _ in range(3000)]
    share = {label: labels.count(label) / len(labels) for label in set(labels)}
    assert share["positive"] > 0.6 and share["negative"] > 0.05 and share["neutral"] > 0.03
    path = write_training_csv("reviews", tmp_path / "reviews.csv", 20)
    assert path.read_text().splitlines()[0] == "text,label"
