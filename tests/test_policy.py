"""The one retry policy, driven directly: every failure becomes an event and a delay, and
every loop ends in a give-up."""

from __future__ import annotations

import random

import pytest

from watchd.errors import (
    AuthError,
    ConnectionLost,
    PermanentApiError,
    RateLimited,
    TaskGone,
    TransientApiError,
)
from watchd.lifecycle import Event
from watchd.policy import INTERNAL_TRIES, MOVE_TRIES, REFETCH_CAP, Policy


def policy(**kw) -> Policy:
    return Policy(rng=random.Random(1), **kw)


def job(state: str = "submitting", **fields) -> dict:
    return {"state": state, "attempts": 1, "tries": 0, "polls": 0, **fields}


def test_a_lost_answer_is_resubmitted_until_the_attempts_run_out() -> None:
    lost = ConnectionLost("reset", sent=True)
    assert policy().after_create_error(lost, job(attempts=1)).event is Event.CREATE_LOST
    final = policy(max_attempts=5).after_create_error(lost, job(attempts=5))
    assert final.event is Event.FAIL and "gave up after 5 attempts" in (final.reason or "")


def test_on_ambiguous_fail_never_sends_a_lost_create_again() -> None:
    verdict = policy(on_ambiguous="fail").lost_create(job(), "crash")
    assert verdict.event is Event.FAIL and verdict.code == "ambiguous"


@pytest.mark.parametrize(
    "err",
    [
        ConnectionLost("refused", sent=False),
        RateLimited("slow down", retry_after=7.0),
        AuthError("bad key"),
    ],
    ids=["refused", "429", "401"],
)
def test_a_create_that_never_reached_the_api_costs_nothing_and_waits(err) -> None:
    verdict = policy().after_create_error(err, job(attempts=5))
    assert verdict.event is Event.UNSENT  # even at max attempts: nothing was spent
    assert verdict.pause == isinstance(err, AuthError)
    assert verdict.rate_limited == isinstance(err, RateLimited)
    if isinstance(err, RateLimited):
        assert verdict.delay == 7.0  # Retry-After is honoured


def test_a_failed_task_gets_a_new_one_with_growing_backoff_then_fails() -> None:
    p = policy(base_delay=2, max_delay=300, max_attempts=5)
    err = TransientApiError("resources", state=-15)
    ceilings = [min(300, 2 * 2 ** (n - 1)) for n in (1, 2, 3, 4)]
    for attempts, ceiling in zip((1, 2, 3, 4), ceilings, strict=True):
        verdict = p.after_query_error(err, job("processing", attempts=attempts))
        assert verdict.event is Event.RETRY and 0 <= (verdict.delay or 0) <= ceiling
    assert p.after_query_error(err, job("processing", attempts=5)).event is Event.FAIL


def test_a_failing_query_asks_the_same_task_again_never_a_new_one() -> None:
    p = policy(poll_interval=1.0)
    for err in (RateLimited("429"), ConnectionLost("reset", sent=True), TransientApiError("5xx")):
        verdict = p.after_query_error(err, job("processing", tries=3))
        assert verdict.event is Event.POLL_ERROR and (verdict.delay or 0) >= 1.0


def test_a_finished_task_that_is_gone_is_a_lost_result_not_a_new_create() -> None:
    verdict = policy().after_query_error(
        TaskGone("404"), job("processing", result_deadline=5000.0)
    )
    assert verdict.event is Event.GIVE_UP and verdict.code == "result_lost"
    assert policy().after_query_error(TaskGone("404"), job("processing")).event is Event.RETRY
    assert policy().after_query_error(PermanentApiError("400"), job("processing")).event is (
        Event.FAIL
    )


def test_deadlines_end_a_slow_task_and_a_result_that_could_not_be_saved() -> None:
    p = policy(task_timeout=180)
    slow = job("processing", deadline=100.0)
    assert p.overdue(slow, 99.0) is None
    timeout = p.overdue(slow, 100.0)
    assert timeout is not None and timeout.event is Event.RETRY and timeout.code == "state -8"
    result = p.overdue(job("downloading", deadline=100.0, result_deadline=100.0), 100.0)
    assert result is not None and result.event is Event.GIVE_UP


def test_a_result_is_fetched_again_on_its_own_schedule_capped_at_five_minutes() -> None:
    p = policy(base_delay=0.1, max_delay=1)  # short configured retries change nothing here
    delays = []
    for polls in range(1, 12):
        verdict = p.after_download_error(
            "404", job("downloading", polls=polls, task_id="t"), expired=True, transient=False
        )
        assert verdict.event is Event.URL_EXPIRED
        delays.append(verdict.delay or 0)
    assert delays[0] >= 2.5 and max(delays) <= REFETCH_CAP
    assert sum(delays) > 1000  # an hour of 404s costs a few dozen queries, not thousands
    bad = p.after_download_error("not an image", job("downloading"), expired=False, transient=False)
    assert bad.event is Event.FAIL


def test_moves_and_bugs_are_bounded() -> None:
    p = policy()
    assert p.after_move_error("ENOSPC", job("finishing", tries=0)).event is Event.STEP_FAILED
    assert p.after_move_error("ENOSPC", job("finishing", tries=MOVE_TRIES - 1)).event is (
        Event.GIVE_UP
    )
    assert p.after_internal_error("bug", job("downloading")).event is Event.INTERNAL_ERROR
    assert p.after_internal_error("bug", job("downloading", tries=INTERNAL_TRIES - 1)).event is (
        Event.GIVE_UP
    )
    # A create that broke after its commit may have left: a lost answer, never a retry.
    assert p.after_internal_error("bug", job("submitting")).event is Event.CREATE_LOST
