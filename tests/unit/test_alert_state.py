"""The alert state's running tallies and its changelog: what a fold costs, what a restart
reads back, and entities forgotten after a time without results."""

from __future__ import annotations

import json
import random

import pytest
from helpers import STREAK, Folder, reading, rule_book

from domains.sensors import SensorScore
from streams.alerting import changelog, engine
from streams.alerting.engine import EntityState
from streams.alerting.expiry import SWEEPS_PER_TTL, Expiry

BUSY = """
[[rules]]
name = "streak"
domain = "sensors"
kind = "consecutive"
when = { field = "failure_probability", above = 0.7 }
at_least = 3
window = "10m"
severity = "critical"
cooldown = "1m"

[[rules]]
name = "rate"
domain = "sensors"
kind = "share"
when = { field = "defect", equals = true }
at_least = 0.5
window = "20m"
min_count = 5
severity = "warning"
cooldown = "2m"

[[rules]]
name = "hot"
domain = "sensors"
kind = "mean"
field = "failure_probability"
above = 0.55
window = "15m"
min_count = 3
severity = "info"
cooldown = "3m"

[[rules]]
name = "burst"
domain = "sensors"
kind = "count"
when = { field = "defect", equals = true }
at_least = 4
window = "5m"
severity = "info"
cooldown = "1m"
"""


def _stream(count: int, seed: int) -> list[SensorScore]:
    """Readings of two machines, mostly in event-time order; some late, some repeated, some
    after a pause that empties the windows."""
    rng = random.Random(seed)
    minute, out = 0.0, []
    for n in range(count):
        minute += rng.uniform(0, 0.5) if rng.random() > 0.05 else rng.uniform(4, 12)
        late = rng.random() < 0.1
        at = minute - rng.uniform(0, 8) if late else minute
        # On a half-minute grid: results at a window's very edge, and at equal times.
        out.append(reading(f"r{n}", round(at * 2) / 2, rng.random(), rng.choice(["M-1", "M-2"])))
        if rng.random() < 0.03:
            out.append(out[rng.randrange(len(out))])
    return out


@pytest.mark.parametrize("cap", [15, engine.MAX_OBSERVATIONS])
def test_running_tallies_fire_what_a_fresh_count_fires(
    cap: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "MAX_OBSERVATIONS", cap)
    rules = rule_book(BUSY).rules
    live: dict[str, EntityState] = {}
    fresh: dict[str, EntityState] = {}
    fired = 0
    for result in _stream(1500, seed=cap):
        running = live.setdefault(result.machine_id, EntityState())
        before = fresh.get(result.machine_id, EntityState())
        # A copy counts its windows afresh on its first fold.
        recount = EntityState(list(before.seen), dict(before.fired), before.watermark_ms)
        fresh[result.machine_id] = recount
        expected = recount.fold("sensors", rules, result)
        assert running.fold("sensors", rules, result) == expected
        fired += len(expected.alerts)
    assert fired > 50, "the stream must exercise every rule"


def test_a_fold_writes_what_it_changed_not_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "MAX_OBSERVATIONS", 300)
    folder = Folder(STREAK)
    folder.fold([reading(f"r{n}", n * 0.01, 0.1) for n in range(1000)])  # ten minutes
    written = len(folder.log)
    folder.fold([reading("last", 10.5, 0.1)])
    # The result, a tombstone for the one that left (the cap), and the entity's record.
    assert len(folder.log) - written == 3
    assert folder.states["M-1"].seen[0].event_id == "r701"
    assert Folder(STREAK, folder.log).states == folder.states


def _compacted(log: Folder.Log) -> Folder.Log:
    """What Kafka's log compaction leaves: the latest record of each key, tombstones gone."""
    latest = {key: n for n, (key, _, _) in enumerate(log)}
    return [log[n] for n in sorted(latest.values()) if log[n][1] is not None]


def test_a_state_written_whole_by_an_earlier_version_is_read_and_rewritten() -> None:
    before = Folder(STREAK)
    before.fold([reading(f"r{n}", n, 0.9 if n % 3 else 0.1) for n in range(12)])
    state = before.states["M-1"]
    whole = {
        "seen": [[o.event_id, o.ts_ms, o.values] for o in state.seen],
        "fired": state.fired,
        "watermark": state.watermark_ms,
    }
    old_log: Folder.Log = [(b"M-1", json.dumps(whole).encode(), [])]
    upgraded = Folder(STREAK, old_log)
    assert upgraded.states == before.states and upgraded.whole == {"M-1"}
    later = [reading("r12", 12, 0.95), reading("r13", 13, 0.95)]
    assert upgraded.fold(later) == before.fold(later)
    # Once compacted, the state written whole is gone and the records hold it all.
    compacted = _compacted(upgraded.log)
    assert all(value and b'"seen"' not in value for _, value, _ in compacted)
    assert Folder(STREAK, compacted).states == before.states


def test_entity_names_cannot_be_mistaken_for_result_records() -> None:
    odd = reading("r0", 0, 0.9, machine='["M-1", "r0"]')
    folder = Folder(STREAK)
    folder.fold([odd, reading("r1", 1, 0.9)])
    assert set(Folder(STREAK, folder.log).states) == {'["M-1", "r0"]', "M-1"}


HOUR_MS = 3_600_000


def test_an_entity_no_result_reached_for_the_ttl_is_due_and_one_just_reached_is_not() -> None:
    expiry = Expiry(ttl_ms=HOUR_MS)
    rules = rule_book(STREAK).rules
    states = {"quiet": EntityState(), "busy": EntityState(), "restored": EntityState()}
    assert expiry.due(states) == []  # no Kafka time yet

    def arrive(entity: str, minute: int) -> None:
        result = reading(f"{entity}-{minute}", minute, 0.1)
        states[entity].fold("sensors", rules, result, arrival=result.ts)
        expiry.tick(round(result.ts.timestamp() * 1000))

    arrive("quiet", 0)
    arrive("busy", 0)
    assert expiry.due(states) == []  # restored: taken as reached now
    start = states["busy"].reached_ms
    assert start is not None and states["restored"].reached_ms == start
    for minute in range(1, 181):  # "busy" every minute for three hours, "quiet" never again
        arrive("busy", minute)
        gone = expiry.due(states)
        if gone:
            break
    # Forgotten at the first look past the ttl: looks come a tenth of the ttl apart.
    assert gone == ["quiet", "restored"]
    assert HOUR_MS < minute * 60_000 <= HOUR_MS + HOUR_MS // SWEEPS_PER_TTL
    # A look costs a pass over the entities only once per tenth of the ttl of Kafka time.
    for entity in gone:
        del states[entity]
    states["late"] = EntityState(reached_ms=0)
    arrive("busy", minute + 1)
    assert expiry.due(states) == []


def test_a_forgotten_entity_leaves_no_record_that_compaction_could_bring_back() -> None:
    folder = Folder(BUSY)
    folder.fold(_stream(400, seed=5))
    kept = folder.states["M-2"]
    gone = folder.states.pop("M-1")
    # Results that left the window since the last write are tombstoned too.
    left = ["r-left-1", "r-left-2"]
    folder.log += [(r.key, r.value, r.headers) for r in changelog.forget("M-1", gone, left)]
    assert sum(r.value is None for r in changelog.forget("M-1", gone, left)) == (
        len(gone.seen) + len(left) + 1
    )
    assert Folder(BUSY, folder.log).states == {"M-2": kept}
    # After compaction has dropped the tombstones as well, nothing of M-1 is read back.
    compacted = _compacted(folder.log)
    assert not any(b"M-1" in (key or b"") for key, _, _ in compacted)
    assert Folder(BUSY, compacted).states == {"M-2": kept}


def test_when_an_entity_was_last_reached_survives_a_restore() -> None:
    """Or every rebalance would make each entity young again, and none would be forgotten."""
    state = EntityState()
    result = reading("r0", 0, 0.9)
    outcome = state.fold("sensors", rule_book(STREAK).rules, result, arrival=result.ts)
    assert outcome.added is not None and state.reached_ms == round(result.ts.timestamp() * 1000)
    records = changelog.records("M-1", state, changelog.Changes([outcome.added]))
    restored, _ = changelog.restore((r.key, r.value, r.headers) for r in records)
    assert restored["M-1"].reached_ms == state.reached_ms
