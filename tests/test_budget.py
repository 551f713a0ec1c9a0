"""The request budget, driven with explicit times (it owns no clock)."""

import itertools
import random
from collections import deque

import pytest

from watchd.budget import (
    FLOOR,
    HALVE_WITHIN,
    HEADROOM,
    HEADROOM_STEP,
    LAG_FACTOR,
    LAG_MEMORY,
    MIN_HEADROOM,
    RECOVERY,
    SLACK,
    Budget,
)


def test_the_rate_sits_a_little_under_the_accounts_qps():
    budget = Budget(qps=2)
    assert budget.rate == pytest.approx(HEADROOM * 2)
    assert budget.max_rate == pytest.approx(HEADROOM * 2)
    assert 0.97 <= HEADROOM < 1.0
    # never slower than a client that adds 10 ms to each 1/QPS (bench/naive.py) at QPS 2
    assert 1 / budget.rate < 0.5 + 0.01


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


def test_the_next_decision_waits_for_the_last_actual_send():
    """A request that left late (a slow file read) moves the next decision with it."""
    budget = Budget(qps=2)
    assert budget.try_take(0.0)
    assert budget.try_send(0.4) == 0.0  # it left 0.4 s after its token
    assert budget.next_time(0.6) == pytest.approx(0.4 + budget.interval)


# -- sends ----------------------------------------------------------------------------------


def test_try_send_marks_the_send_or_says_how_long_to_wait():
    budget = Budget(qps=2)
    interval = budget.interval
    assert budget.try_send(5.0) == 0.0
    assert budget.sent == 1
    assert budget.try_send(5.0) == pytest.approx(interval)
    assert budget.try_send(5.0 + interval / 2) == pytest.approx(interval / 2)
    assert budget.sent == 1
    assert budget.try_send(5.0 + interval) == 0.0
    assert budget.sent == 2


def test_two_requests_waiting_for_one_slot_never_both_take_it():
    """Both were told to come back at the same time; the first takes the slot, the second
    is told to wait one more interval (a check and a mark in one call: no race)."""
    budget = Budget(qps=2)
    assert budget.try_send(0.0) == 0.0
    first = budget.try_send(0.1)
    second = budget.try_send(0.1)
    assert first == second
    wake = 0.1 + first
    assert budget.try_send(wake) == 0.0
    assert budget.try_send(wake) == pytest.approx(budget.interval)


def test_sends_stay_one_interval_apart_whoever_asks_and_whenever():
    rng = random.Random(4)
    budget = Budget(qps=3)
    waiting: list[float] = [0.0] * 20  # when each request asks (again)
    sent: list[float] = []
    while waiting:
        waiting.sort()
        now = waiting.pop(0)
        delay = budget.try_send(now)
        if delay:
            waiting.append(now + delay + rng.choice([0.0, 0.0, rng.uniform(0, 0.05)]))
        else:
            sent.append(now)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= budget.interval - 1e-9


def test_a_late_wake_up_becomes_margin():
    """A request told to come back at t and back at t + 0.1 s (a busy host): the budget
    keeps margin for that lateness, so a late send and the next on time stay within the
    server's window."""
    budget = Budget(qps=2)
    quiet = budget.max_rate
    assert budget.try_send(0.0) == 0.0
    delay = budget.try_send(0.1)
    assert budget.try_send(0.1 + delay + 0.1) == 0.0
    assert budget.lag == pytest.approx(0.1)
    assert budget.max_rate < quiet
    # L requests at the new spacing span the window plus the lateness, twice over
    assert 2 / budget.max_rate >= 1.0 + LAG_FACTOR * budget.lag - 1e-9


def test_lateness_is_forgotten_after_many_punctual_readings():
    budget = Budget(qps=2)
    budget.note_lag(0.2)
    slowed = budget.max_rate
    for _ in range(LAG_MEMORY - 1):
        budget.note_lag(0.001)
    assert budget.lag == 0.2  # the worst of the recent readings
    budget.note_lag(0.001)
    assert budget.lag == pytest.approx(0.001)
    assert budget.max_rate > slowed
    assert budget.max_rate == pytest.approx(HEADROOM * 2, rel=1e-2)


@pytest.mark.parametrize("lag", [-5.0, 0.0, 1e9])
def test_a_reported_lag_is_bounded(lag):
    budget = Budget(qps=2)
    budget.note_lag(lag)
    assert 0.0 <= budget.lag <= budget.window
    assert budget.max_rate > 0


# -- 429s -----------------------------------------------------------------------------------


def test_a_429_blocks_until_retry_after_and_takes_a_step_of_headroom():
    budget = Budget(qps=2)
    budget.on_rate_limited(10.0, retry_after=3.0)
    assert budget.rate_limited == 1
    assert budget.headroom == pytest.approx(HEADROOM - HEADROOM_STEP)
    assert budget.rate == pytest.approx(budget.max_rate)  # one 429 alone does not halve it
    assert budget.blocked_until == 13.0
    assert budget.next_time(10.0) == 13.0
    assert not budget.try_take(12.9)
    assert budget.try_take(13.0)
    assert budget.try_send(12.0) == pytest.approx(1.0)


def test_a_second_429_soon_after_halves_the_rate():
    budget = Budget(qps=2)
    budget.on_rate_limited(0.0, retry_after=1.0)
    before = budget.rate
    for i in range(HALVE_WITHIN - 1):
        budget.mark_sent(float(i))
    budget.on_rate_limited(30.0, retry_after=1.0)
    assert budget.rate == pytest.approx(min(before, budget.max_rate) / 2)


def test_a_429_long_after_the_last_does_not_halve():
    budget = Budget(qps=2)
    budget.on_rate_limited(0.0, retry_after=1.0)
    for i in range(HALVE_WITHIN + 1):
        budget.mark_sent(float(i))
    budget.on_rate_limited(30.0, retry_after=1.0)
    assert budget.rate == pytest.approx(budget.max_rate)


def test_a_429_without_retry_after_blocks_one_interval():
    budget = Budget(qps=2)
    budget.on_rate_limited(10.0)
    assert budget.blocked_until == pytest.approx(10.0 + budget.interval)


def test_a_second_429_never_shortens_the_block():
    budget = Budget(qps=2)
    budget.on_rate_limited(10.0, retry_after=30.0)
    budget.on_rate_limited(11.0, retry_after=1.0)
    assert budget.blocked_until == 40.0


def test_many_429s_stop_at_the_floors():
    budget = Budget(qps=10)
    for i in range(40):
        budget.on_rate_limited(float(i), retry_after=0.0)
    assert budget.rate == pytest.approx(10 * FLOOR)
    assert budget.headroom == pytest.approx(MIN_HEADROOM)
    assert budget.rate_limited == 40


def test_successes_give_the_rate_and_the_headroom_back_slowly():
    budget = Budget(qps=2)
    budget.on_rate_limited(0.0, retry_after=1.0)
    budget.on_rate_limited(0.0, retry_after=1.0)  # halved
    low = budget.rate
    budget.on_success()
    assert budget.rate == pytest.approx(low + 2 * RECOVERY)
    assert budget.headroom < HEADROOM
    for _ in range(1_000):
        budget.on_success()
    assert budget.headroom == pytest.approx(HEADROOM)
    assert budget.rate == pytest.approx(budget.max_rate)


def test_a_success_at_full_rate_changes_nothing():
    budget = Budget(qps=3)
    budget.on_success()
    assert budget.rate == pytest.approx(budget.max_rate)


def test_set_qps_applies_at_once_and_keeps_the_slowdown():
    budget = Budget(qps=2)
    budget.set_qps(4)
    assert budget.rate == pytest.approx(HEADROOM * 4)
    budget.on_rate_limited(0.0, retry_after=0.0)
    budget.on_rate_limited(0.0, retry_after=0.0)  # now at half speed
    slowed = budget.rate / budget.max_rate
    budget.set_qps(10)
    assert budget.rate / budget.max_rate == pytest.approx(slowed)

def window_of(qps: float) -> tuple[float, int]:
    window = max(1.0, 1.0 / qps)
    return window, max(1, int(qps * window + 1e-9))


@pytest.mark.parametrize("qps", [0.5, 1, 2, 3, 5, 10, 50])
def test_taking_tokens_as_fast_as_allowed_never_overruns_a_sliding_window(qps):
    """60 simulated seconds, greedy with random idle spells: a sliding-window limiter never
    sees more than its limit. (A bucket that saved up idle time would burst past it.)"""
    rng = random.Random(qps)
    budget = Budget(qps=qps)
    window, limit = window_of(qps)
    accepted: deque[float] = deque()
    now, sent = 0.0, 0
    while now < 60.0:
        now = budget.next_time(now)
        assert budget.try_take(now)
        assert budget.try_send(now) == 0.0
        while accepted and accepted[0] <= now - window:
            accepted.popleft()
        assert len(accepted) < limit, f"request {sent} at t={now:.4f} would get a 429"
        accepted.append(now)
        sent += 1
        if rng.random() < 1 / (25 * qps):
            now += rng.uniform(0.0, 3.0)  # an idle spell, every 25 s or so
    assert sent >= 60 * qps * 0.5  # and it does use the budget


@pytest.mark.parametrize("qps", [1, 2, 5, 50])
def test_on_a_busy_host_lateness_seen_keeps_the_server_window(qps):
    """Sends leave up to 60 ms late after their slot (seen by the budget as a late wake-up)
    and reach the server up to as late again (unseen). Once the lateness has been seen, the
    server's window holds."""
    rng = random.Random(qps)
    budget = Budget(qps=qps)
    window, limit = window_of(qps)
    accepted: deque[float] = deque()
    budget.note_lag(0.06)  # seen once, at the start
    now, refused = 0.0, 0
    for _ in range(int(40 * qps)):
        slot = budget.next_time(now)
        assert budget.try_take(slot)
        leave = slot + rng.uniform(0, 0.06) * (rng.random() < 0.2)
        delay = budget.try_send(leave)
        assert delay == 0.0
        budget.note_lag(leave - slot)
        arrive = leave + rng.uniform(0, 0.06) * (rng.random() < 0.2)
        while accepted and accepted[0] <= arrive - window:
            accepted.popleft()
        if len(accepted) >= limit:
            refused += 1
        else:
            accepted.append(arrive)
        now = leave
    assert refused == 0


def _drive(budget: Budget, seconds: float, late: "callable") -> tuple[int, int]:
    """Decide and send as fast as the budget allows for `seconds`, each step (decision, then
    send) `late(rng)` after the time it was allowed; return (sent, refused by the server)."""
    window, limit = window_of(budget.qps)
    accepted: deque[float] = deque()
    rng = random.Random(budget.qps)
    now, sent, refused = 0.0, 0, 0
    while now < seconds:
        now = budget.next_time(now) + late(rng)
        assert budget.try_take(now)
        while (delay := budget.try_send(now)) > 0:
            now += delay + late(rng)
        while accepted and accepted[0] <= now - window:
            accepted.popleft()
        if len(accepted) >= limit:
            refused += 1
        else:
            accepted.append(now)
        sent += 1
    return sent, refused


@pytest.mark.parametrize("qps", [2, 50])
def test_a_steady_few_milliseconds_late_costs_no_rate(qps):
    """Every decision and every send 3 ms after its slot (a wake-up, a commit before the
    send): the schedule holds, so the rate stays the budget's. Anchored on the late times
    instead, QPS 50 lost 3 ms of every 20 ms, 13% of the account."""
    budget = Budget(qps=qps)
    sent, refused = _drive(budget, 60.0, lambda rng: 0.003)
    assert refused == 0
    assert sent >= 60.0 * budget.max_rate * 0.995


@pytest.mark.parametrize("qps", [0.5, 1, 2, 5, 50])
def test_lateness_within_the_slack_never_overruns_the_server_window(qps):
    """Late by anything from 0 to SLACK, at random: gaps shrink, the window still holds."""
    sent, refused = _drive(Budget(qps=qps), 120.0, lambda rng: rng.uniform(0.0, SLACK))
    assert refused == 0
    assert sent >= 120.0 * qps * 0.95


def test_lateness_past_the_slack_starts_the_schedule_again():
    budget = Budget(qps=2)
    assert budget.try_take(0.0) and budget.try_send(0.0) == 0.0
    slot = budget.interval
    assert budget.try_send(slot + SLACK / 2) == 0.0  # within the slack: counted at its slot
    assert budget.send_delay(slot + SLACK / 2) == pytest.approx(budget.interval - SLACK / 2)
    late = 2 * slot + 0.1  # far past: the next slot is one interval after the send itself
    assert budget.try_send(late) == 0.0
    assert budget.send_delay(late) == pytest.approx(budget.interval)
