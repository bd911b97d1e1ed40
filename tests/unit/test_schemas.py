"""Event validation: what is scored, and the reason for everything that is not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import domains
from config.settings import DomainName
from domains.news import NewsEvent
from domains.sensors import SensorEvent
from domains.tickets import TicketEvent
from streams.deadletter import HEADER_KIND, HEADER_REASON, DeadLetter, kind_from_headers
from streams.validation import EventLimits, Rejected, parse_event, parse_events

LIMIT = EventLimits(65536)
NEWS = {
    "id": "n-1",
    "ts": "2024-05-01T10:00:00Z",
    "source": "reuters",
    "ticker": "NOK",
    "headline": "Nokia raises outlook",
    "body": "Shares rose.",
}
TICKET = {
    "id": "t-1",
    "ts": "2024-05-01T10:00:00+02:00",
    "customer_id": "C1",
    "channel": "email",
    "subject": "Card",
    "text": "my card was stolen",
}
SENSOR = {
    "id": "s-1",
    "ts": "2024-05-01T10:00:00",
    "machine_id": "M1",
    "type": "L",
    "air_temp_k": 298.1,
    "process_temp_k": 308.6,
    "rpm": 1551,
    "torque_nm": 42.8,
    "tool_wear_min": 0,
}
VALID: dict[DomainName, dict] = {"news": NEWS, "tickets": TICKET, "sensors": SENSOR}


def encode(event: dict) -> bytes:
    return json.dumps(event).encode()


def rejected(
    domain: DomainName, payload: bytes, limits: EventLimits = LIMIT, arrival: datetime | None = None
) -> Rejected:
    with pytest.raises(Rejected) as caught:
        parse_event(domain, payload, limits, arrival)
    return caught.value


def test_valid_events_parse_with_utc_times_and_entities() -> None:
    news = parse_event("news", encode(NEWS), LIMIT)
    ticket = parse_event("tickets", encode(TICKET), LIMIT)
    sensor = parse_event("sensors", encode(SENSOR), LIMIT)
    assert isinstance(news, NewsEvent) and news.entity == "NOK" and news.all_tickers == ["NOK"]
    assert isinstance(ticket, TicketEvent) and ticket.ts == datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert isinstance(sensor, SensorEvent) and sensor.ts.tzinfo == UTC
    assert sensor.machine_type == "L" and sensor.rpm == 1551.0


def test_model_inputs_are_the_texts_and_readings_the_models_expect() -> None:
    news = parse_event("news", encode(NEWS), LIMIT)
    ticket = parse_event("tickets", encode(TICKET), LIMIT)
    sensor = parse_event("sensors", encode(SENSOR), LIMIT)
    assert domains.get("news").model_input(news) == "Nokia raises outlook Shares rose."
    assert domains.get("tickets").model_input(ticket) == "Card. my card was stolen"
    assert domains.get("sensors").model_input(sensor) == {
        "machine_type": "L",
        "air_temp_k": 298.1,
        "process_temp_k": 308.6,
        "rpm": 1551.0,
        "torque_nm": 42.8,
        "tool_wear_min": 0.0,
    }
    untitled = parse_event("tickets", encode({**TICKET, "subject": None}), LIMIT)
    assert domains.get("tickets").model_input(untitled) == "my card was stolen"


def test_event_rows_have_the_clickhouse_columns() -> None:
    now = datetime.now(UTC)
    for domain, event in VALID.items():
        spec = domains.get(domain)
        row = spec.event_row(parse_event(domain, encode(event), LIMIT), now)
        assert list(row) == [name for name, _ in spec.events_columns_sql()], domain
        assert row["event_id"] == event["id"] and row["ingested_at"] == now


@pytest.mark.parametrize(
    ("domain", "payload", "kind", "reason"),
    [
        ("news", b"", "empty", "empty message"),
        ("news", b'{"id": "x", "headline": "\xff\xfe"}', "invalid UTF-8", "invalid UTF-8 at byte"),
        ("news", b'{"id": "x",', "not JSON", "not JSON"),
        ("news", b"[1, 2]", "invalid event", "not a JSON object"),
        ("news", encode({**NEWS, "headline": "  "}), "invalid event", "field headline"),
        ("news", encode({k: v for k, v in NEWS.items() if k != "ts"}), "invalid event", "ts"),
        ("news", encode({**NEWS, "ticker": None}), "invalid event", "needs ticker or tickers"),
        ("news", encode({**NEWS, "ts": "yesterday"}), "invalid event", "field ts"),
        ("tickets", encode({**TICKET, "text": ""}), "invalid event", "field text"),
        ("tickets", encode({**TICKET, "customer_id": 42}), "invalid event", "customer_id"),
        ("sensors", encode({**SENSOR, "rpm": "1551"}), "invalid event", "field rpm"),
        ("sensors", encode({**SENSOR, "type": "X"}), "invalid event", "field type"),
        ("sensors", encode({**SENSOR, "tool_wear_min": -1}), "invalid event", "tool_wear_min"),
        ("sensors", encode(SENSOR).replace(b"298.1", b"NaN"), "invalid event", "air_temp_k"),
        ("news", encode({**NEWS, "domain": "weather"}), "wrong domain", "unknown domain"),
        ("tickets", encode({**TICKET, "domain": "news"}), "wrong domain", "news event on the"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(
    domain: DomainName, payload: bytes, kind: str, reason: str
) -> None:
    error = rejected(domain, payload)
    assert error.kind == kind
    assert reason in str(error)
    assert "\n" not in str(error)


def test_payloads_over_the_limit_are_rejected_unread() -> None:
    payload = encode({**NEWS, "body": "x" * 2000})
    assert parse_event("news", payload, EventLimits(len(payload))).id == "n-1"
    error = rejected("news", payload, EventLimits(len(payload) - 1))
    assert error.kind == "too large"
    assert str(error) == f"payload of {len(payload)} bytes exceeds the limit of {len(payload) - 1}"


def test_unknown_fields_are_ignored_and_a_matching_domain_is_accepted() -> None:
    event = parse_event("news", encode({**NEWS, "domain": "news", "sector": "tech"}), LIMIT)
    assert event.id == "n-1"


def test_a_dead_letter_keeps_the_original_bytes_and_says_where_and_why() -> None:
    letter = DeadLetter(
        source_topic="news.raw",
        partition=2,
        offset=41,
        kind="not JSON",
        reason="not JSON: EOF",
        key=b"NOK",
        payload=b'{"id": ',
        ts=datetime(2024, 5, 1, tzinfo=UTC),
    )
    headers = dict(letter.headers())
    assert headers["__connect.errors.topic"] == b"news.raw"
    assert headers["__connect.errors.partition"] == b"2"
    assert headers["__connect.errors.offset"] == b"41"
    assert headers[HEADER_REASON] == b"not JSON: EOF" and headers[HEADER_KIND] == b"not JSON"
    assert kind_from_headers(letter.headers()) == "not JSON"
    assert letter.row()["payload"] == b'{"id": ' and letter.row()["offset"] == 41


@pytest.mark.parametrize(
    ("domain", "payload", "key"),
    [
        (
            "tickets",
            b'{"id": "t-1", "ts": "2024-05-01T10:00:00Z", "customer_id": "c-1", "channel": "web",'
            b' "text": "my card", "customer_id": "c-2"}',
            '"customer_id"',
        ),
        ("news", encode(NEWS)[:-1] + b', "meta": {"a": 1, "a": 2}}', '"a"'),
        ("sensors", encode(SENSOR)[:-1] + b', "x": [{"k": 1, "k\\u00e9": 2, "k": 3}]}', '"k"'),
        ("sensors", encode(SENSOR)[:-1] + b', "id": "s-1"}', '"id"'),
    ],
)
def test_a_repeated_key_at_any_depth_is_rejected_and_named(
    domain: DomainName, payload: bytes, key: str
) -> None:
    error = rejected(domain, payload)
    assert error.kind == "repeated key"
    assert str(error) == f"key {key} appears more than once in an object"


def test_equal_keys_in_different_objects_are_fine() -> None:
    payload = encode({**NEWS, "meta": {"id": "x", "ts": 1}, "more": [{"id": 1}, {"id": 2}]})
    assert parse_event("news", payload, LIMIT).id == "n-1"


ARRIVAL = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("domain", ["news", "tickets", "sensors"])
def test_an_event_time_far_from_its_arrival_is_rejected(domain: DomainName) -> None:
    future = encode({**VALID[domain], "ts": "2199-01-01T00:00:00Z"})
    error = rejected(domain, future, arrival=ARRIVAL)
    assert error.kind == "bad event time"
    assert "ahead of the record's Kafka timestamp" in str(error)
    assert "pipeline.max_future_skew_s" in str(error)
    stale = encode({**VALID[domain], "ts": "2024-04-01T10:00:00Z"})
    error = rejected(domain, stale, arrival=ARRIVAL)
    assert "30 days before the record's Kafka timestamp" in str(error)
    # Beyond what the store's DateTime64 holds, even without an arrival time to compare with.
    for far in ("1850-01-01T00:00:00Z", "2999-01-01T00:00:00Z"):
        error = rejected(domain, encode({**VALID[domain], "ts": far}))
        assert error.kind == "bad event time" and "outside what the store holds" in str(error)


def test_the_future_skew_is_a_setting() -> None:
    ahead = encode({**NEWS, "ts": "2024-05-01T10:04:00Z"})  # four minutes ahead
    assert parse_event("news", ahead, LIMIT, ARRIVAL).id == "n-1"
    strict = EventLimits(65536, max_future_skew=timedelta(minutes=1))
    assert "240 s ahead" in str(rejected("news", ahead, strict, ARRIVAL))
    loose = EventLimits(65536, max_age=timedelta(days=60))
    stale = encode({**NEWS, "ts": "2024-04-01T10:00:00Z"})
    assert parse_event("news", stale, loose, ARRIVAL).id == "n-1"


def outcome(domain: DomainName, payload: bytes | None, arrival: datetime) -> object:
    try:
        return parse_event(domain, payload, LIMIT, arrival)
    except Rejected as error:
        return (error.kind, str(error))


def test_a_batch_parses_as_each_of_its_payloads_would_alone() -> None:
    good = [encode({**SENSOR, "id": f"s-{n}", "rpm": 1500 + n}) for n in range(5)]
    bad = [
        b"",
        b'{"id": "x", "machine_id": "\xff"}',
        b'{"id": "x",',
        encode({**SENSOR, "rpm": "1551"}),
        encode(SENSOR)[:-1] + b', "id": "s-9"}',
        encode({**SENSOR, "domain": "news"}),
        encode({**SENSOR, "ts": "2199-01-01T00:00:00Z"}),
    ]
    arrivals = [ARRIVAL] * 5
    together = parse_events("sensors", good, LIMIT, arrivals)
    assert together == [parse_event("sensors", p, LIMIT, ARRIVAL) for p in good]
    # A valid event out of place is refused in the fast path too.
    late = [*good, bad[-1]]
    *events, refused = parse_events("sensors", late, LIMIT, [ARRIVAL] * 6)
    assert events == together and isinstance(refused, Rejected)
    # Every other fault sends the batch down the one-by-one path, with each reason exact.
    for fault in bad:
        payloads = [*good[:2], fault, *good[2:]]
        parsed = parse_events("sensors", payloads, LIMIT, [ARRIVAL] * 6)
        for got, payload in zip(parsed, payloads, strict=True):
            want = outcome("sensors", payload, ARRIVAL)
            assert (got.kind, str(got)) == want if isinstance(got, Rejected) else got == want


def test_payloads_that_would_split_or_merge_in_one_array_stay_apart() -> None:
    """Two events in one payload and one event split over two: joined with commas they make
    as many valid events as there are payloads, none of which any payload holds."""
    first, second = encode({**SENSOR, "id": "a"}), encode({**SENSOR, "id": "b"})
    split = encode({**SENSOR, "id": "c", "message": "x,y"})
    head, tail = split.split(b",y")[0], b'y"' + split.split(b',y"')[1]
    parsed = parse_events("sensors", [first + b"," + second, head, tail], LIMIT, [ARRIVAL] * 3)
    assert [p.kind for p in parsed if isinstance(p, Rejected)] == ["not JSON"] * 3
