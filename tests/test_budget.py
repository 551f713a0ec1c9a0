"""The request budget, driven with explicit times (it owns no clock)."""

import random
from collections import deque

import pytest

from watchd.budget import FLOOR, HEADROOM, RECOVERY, Budget


def test_the_rate_sits_a_little_under_the_accounts_qps():
    budget = Budget(qps=2)
    assert budget.rate == pytest.approx(0.97 * 2)
    assert budget.max_rate == pytest.approx(0.97 * 2)
    assert HEADROOM == 0.97


def test_tokens_are_evenly_spaced_at_one_over_the_rate():
    budget = Budget(qps=2)
    interval = 1 / budget.rate
    assert budget.try_take(0.0)
    assert not budget.try_take(0.0)
    assert not budget.try_take(interval - 1e-6)
    assert budget.next_time(0.1) == pytest.approx(interval)
    assert budget.try_take(interval)
    assert budget.next_time(interval) == pytest.approx(2 * interval)


def test_idle_time_is_not_saved_up_into_a_burst():
    """Capacity one: after a long idle spell, one request goes, then the spacing again."""
    budget = Budget(qps=5)
    assert budget.try_take(0.0)
    assert budget.try_take(100.0)
    assert not budget.try_take(100.0)
    assert budget.next_time(100.0) == pytest.approx(100.0 + 1 / budget.rate)


def test_next_time_is_now_when_a_token_is_ready():
    budget = Budget(qps=2)
    assert budget.next_time(42.0) == 42.0


def test_a_429_halves_the_rate_and_blocks_until_retry_after():
    budget = Budget(qps=2)
    budget.on_rate_limited(10.0, retry_after=3.0)
    assert budget.rate == pytest.approx(0.97)
    assert budget.rate_limited == 1
    assert budget.blocked_until == 13.0
    assert budget.next_time(10.0) == 13.0
    assert not budget.try_take(12.9)
    assert budget.try_take(13.0)
    assert budget.next_time(13.0) == pytest.approx(13.0 + 1 / 0.97)


def test_a_429_without_retry_after_blocks_one_new_interval():
    budget = Budget(qps=2)
    budget.on_rate_limited(10.0)
    assert budget.blocked_until == pytest.approx(10.0 + 1 / budget.rate)


def test_a_second_429_never_shortens_the_block():
    budget = Budget(qps=2)
    budget.on_rate_limited(10.0, retry_after=30.0)
    budget.on_rate_limited(11.0, retry_after=1.0)
    assert budget.blocked_until == 40.0


def test_the_rate_never_falls_below_the_floor():
    budget = Budget(qps=10)
    for i in range(20):
        budget.on_rate_limited(float(i), retry_after=0.0)
    assert budget.rate == pytest.approx(10 * FLOOR)
    assert budget.rate_limited == 20


def test_successes_raise_the_rate_slowly_up_to_the_max():
    budget = Budget(qps=2)
    budget.on_rate_limited(0.0, retry_after=1.0)
    low = budget.rate
    budget.on_success()
    assert budget.rate == pytest.approx(low + 2 * RECOVERY)
    for _ in range(1_000):
        budget.on_success()
    assert budget.rate == pytest.approx(budget.max_rate)
    # additive increase: one success is a small step, the halving was a big one
    assert (budget.max_rate - low) / 10 > 2 * RECOVERY


def test_a_success_at_full_rate_changes_nothing():
    budget = Budget(qps=3)
    budget.on_success()
    assert budget.rate == pytest.approx(budget.max_rate)


def test_set_qps_applies_at_once_and_keeps_the_slowdown():
    budget = Budget(qps=2)
    budget.set_qps(4)
    assert budget.rate == pytest.approx(0.97 * 4)
    budget.on_rate_limited(0.0, retry_after=0.0)  # now at half speed
    budget.set_qps(10)
    assert budget.rate == pytest.approx(0.97 * 10 / 2)
    assert budget.max_rate == pytest.approx(0.97 * 10)


def test_send_delay_keeps_sends_one_interval_apart():
    budget = Budget(qps=2)
    interval = 1 / budget.rate
    assert budget.send_delay(5.0) == 0.0  # nothing sent yet
    budget.mark_sent(5.0)
    assert budget.send_delay(5.0) == pytest.approx(interval)
    assert budget.send_delay(5.0 + interval / 2) == pytest.approx(interval / 2)
    assert budget.send_delay(5.0 + interval) == pytest.approx(0.0)
    assert budget.send_delay(100.0) == 0.0


def test_send_delay_honours_a_block():
    budget = Budget(qps=2)
    budget.mark_sent(0.0)
    budget.on_rate_limited(0.0, retry_after=7.0)
    assert budget.send_delay(1.0) == pytest.approx(6.0)


def test_contention_is_demand_above_the_rate_or_a_block():
    budget = Budget(qps=2)
    assert not budget.is_contended(0.0, demand_per_second=1.0)
    assert not budget.is_contended(0.0, demand_per_second=budget.rate)
    assert budget.is_contended(0.0, demand_per_second=budget.rate + 0.01)
    budget.on_rate_limited(0.0, retry_after=5.0)
    assert budget.is_contended(1.0, demand_per_second=0.0)
    assert not budget.is_contended(5.0, demand_per_second=0.0)


@pytest.mark.parametrize(
    ("qps", "window", "limit"),
    # (the account's qps, the server's sliding window in seconds, requests it accepts in it)
    [(1, 1.0, 1), (2, 1.0, 2), (3, 1.0, 3), (5, 1.0, 5), (10, 1.0, 10), (0.5, 2.0, 1)],
)
def test_taking_tokens_as_fast_as_allowed_never_overruns_a_sliding_window(qps, window, limit):
    """60 simulated seconds, greedy with random idle spells: a sliding-window limiter never
    sees more than its limit. (A bucket that saved up idle time would burst past it.)"""
    rng = random.Random(qps)
    budget = Budget(qps=qps)
    accepted: deque[float] = deque()
    now, sent = 0.0, 0
    while now < 60.0:
        now = budget.next_time(now)
        assert budget.try_take(now)
        while accepted and accepted[0] <= now - window:
            accepted.popleft()
        assert len(accepted) < limit, f"request {sent} at t={now:.4f} would get a 429"
        accepted.append(now)
        sent += 1
        if rng.random() < 0.02:
            now += rng.uniform(0.0, 3.0)  # an idle spell
    assert sent >= 60 * qps * 0.5  # and it does use the budget
