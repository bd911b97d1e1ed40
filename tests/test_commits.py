"""What the scoring consumer may commit while batches finish out of order."""

from __future__ import annotations

from streams.commits import CommitTracker

A = ("sensors.raw", 0)
B = ("sensors.raw", 1)


def test_a_partition_commits_only_past_batches_all_delivered() -> None:
    tracker = CommitTracker()
    first = tracker.register({A: 9, B: 4})
    second = tracker.register({A: 19})
    third = tracker.register({A: 29, B: 9})

    tracker.delivered(second)
    assert tracker.to_commit() == {}  # the first batch of A is still in flight
    tracker.delivered(first)
    assert tracker.to_commit() == {A: 20, B: 5}  # the next record to read
    tracker.committed({A: 20, B: 5})
    assert tracker.to_commit() == {}
    tracker.delivered(third)
    assert tracker.to_commit() == {A: 30, B: 10}
    assert tracker.committed_offset(A) == 20


def test_a_revoked_partition_is_forgotten() -> None:
    tracker = CommitTracker()
    tracker.delivered(tracker.register({A: 3, B: 7}))
    tracker.forget([A])
    assert tracker.to_commit() == {B: 8}
    assert tracker.committed_offset(A) is None
