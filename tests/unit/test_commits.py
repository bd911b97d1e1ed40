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


def test_the_commit_passes_markers_once_every_record_read_is_delivered() -> None:
    tracker = CommitTracker()
    # Records 0-4 read, then an aborted transaction and its marker: the position is 9.
    batch = tracker.register({A: 4})
    assert not tracker.read(A, 9, last_offset=4)
    assert tracker.to_commit() == {}  # record 4 is still being scored
    tracker.delivered(batch)
    assert tracker.to_commit() == {A: 9}  # past the marker: the partition's lag is 0
    tracker.committed({A: 9})
    # A fetch that brings only another marker moves the commit point by itself.
    assert tracker.read(A, 11, last_offset=None)
    assert tracker.to_commit() == {A: 11}


def test_records_read_but_not_yet_batched_hold_the_commit_back() -> None:
    tracker = CommitTracker()
    tracker.delivered(tracker.register({A: 4}))
    # Records 5-7 are in the micro-batcher, not in a registered batch yet.
    assert not tracker.read(A, 10, last_offset=7)
    assert tracker.to_commit() == {A: 5}
    tracker.delivered(tracker.register({A: 7}))
    assert tracker.to_commit() == {A: 10}


def test_a_partition_with_nothing_but_markers_commits_its_position() -> None:
    tracker = CommitTracker()
    assert tracker.read(B, 3, last_offset=None)
    assert tracker.to_commit() == {B: 3}
