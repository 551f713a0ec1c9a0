"""The quiet-period tracker, driven by an explicit clock (no sleeps)."""

import tracemalloc

import pytest

from watchd.settle import SettleTracker, Stat

A = Stat(size=100, mtime_ns=1_000)
B = Stat(size=200, mtime_ns=2_000)


def test_a_file_is_due_only_after_settle_quiet_seconds():
    t = SettleTracker(settle=1.0)
    t.seen("a", A, now=10.0)
    assert t.due(10.5) == []
    assert t.due(10.999) == []
    assert t.due(11.0) == ["a"]
    assert t.confirm("a", A, now=11.0) is True
    assert "a" not in t and len(t) == 0


def test_a_new_event_restarts_the_wait_even_with_the_same_stat():
    t = SettleTracker(settle=1.0)
    t.seen("a", A, now=10.0)
    t.seen("a", A, now=10.8)
    assert t.due(11.5) == []
    assert t.due(11.8) == ["a"]


def test_a_due_key_is_handed_out_once():
    t = SettleTracker(settle=1.0)
    t.seen("a", A, now=0.0)
    assert t.due(2.0) == ["a"]
    assert t.due(3.0) == []
    assert "a" in t  # still pending until confirmed


def test_a_changed_stat_at_confirm_restarts_the_wait():
    t = SettleTracker(settle=1.0)
    t.seen("a", A, now=0.0)
    assert t.due(1.0) == ["a"]
    assert t.confirm("a", B, now=1.0) is False
    assert t.due(1.9) == []
    assert t.due(2.0) == ["a"]
    assert t.confirm("a", B, now=2.0) is True


def test_an_event_between_due_and_confirm_wins():
    t = SettleTracker(settle=1.0)
    t.seen("a", A, now=0.0)
    assert t.due(1.0) == ["a"]
    t.seen("a", A, now=1.2)
    assert t.confirm("a", A, now=1.3) is False
    assert t.due(2.2) == ["a"]
    assert t.confirm("a", A, now=2.2) is True


def test_a_vanished_file_is_forgotten():
    t = SettleTracker(settle=1.0)
    t.seen("a", A, now=0.0)
    t.seen("a", None, now=0.5)
    assert "a" not in t
    assert t.due(5.0) == []
    t.seen("b", A, now=0.0)
    assert t.due(1.0) == ["b"]
    assert t.confirm("b", None, now=1.0) is False
    assert "b" not in t


def test_confirm_of_an_unknown_key_is_false():
    assert SettleTracker(settle=1.0).confirm("nope", A, now=5.0) is False


def test_forget_drops_a_pending_file():
    t = SettleTracker(settle=1.0)
    t.seen("a", A, now=0.0)
    t.forget("a")
    t.forget("never-seen")
    assert len(t) == 0
    assert t.due(9.0) == []


def test_next_deadline_is_the_earliest_live_deadline():
    t = SettleTracker(settle=2.0)
    assert t.next_deadline() is None
    t.seen("a", A, now=0.0)
    t.seen("b", B, now=1.0)
    assert t.next_deadline() == 2.0
    t.seen("a", A, now=1.5)  # a's first deadline is stale now
    assert t.next_deadline() == 3.0
    t.forget("b")
    assert t.next_deadline() == 3.5
    assert t.due(3.5) == ["a"]
    assert t.next_deadline() is None


def test_keys_are_any_hashable_and_ties_do_not_compare_keys():
    t = SettleTracker(settle=1.0)
    t.seen(("f", 1), A, now=0.0)
    t.seen(frozenset({"x"}), A, now=0.0)
    assert len(t.due(1.0)) == 2


def test_zero_settle_is_due_at_once_and_negative_is_refused():
    t = SettleTracker(settle=0.0)
    t.seen("a", A, now=3.0)
    assert t.due(3.0) == ["a"]
    with pytest.raises(ValueError):
        SettleTracker(settle=-1.0)


def test_a_file_that_keeps_changing_does_not_grow_the_heap():
    t = SettleTracker(settle=1.0)
    for i in range(10_000):
        t.seen("busy", Stat(size=i, mtime_ns=i), now=i * 0.01)
    assert len(t) == 1
    assert len(t._heap) <= 64


def test_ten_thousand_pending_files_stay_small():
    """Seen twice each (so half the heap goes stale), 10,000 files cost a few MB at most."""
    keys = [f"/srv/inbox/photo-{i:05d}.jpg" for i in range(10_000)]
    stats = [Stat(size=i, mtime_ns=1_700_000_000_000_000_000 + i) for i in range(10_000)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        t = SettleTracker(settle=1.0)
        for now in (0.0, 0.5, 1.0):
            for key, stat in zip(keys, stats, strict=True):
                t.seen(key, stat, now=now)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(t) == 10_000
    assert len(t._heap) <= 2 * len(t) + 64
    assert used < 4_000_000, f"{used} bytes for 10,000 pending files"
