"""The one retry policy: what a failed step means for its job, and when to try again.

Every failure of a job's step (a create, a query, a download, an outbox write, a move, or a
bug) comes here and leaves as a `Verdict`: the lifecycle event to commit, the delay before
the job is due again, and the reason to record. This is the only place that maps errors to
events (errors.py keeps the table of API codes), and the only place that decides when a
step has failed often enough: every loop here has a give-up.

- Creates: a transient failure retries with backoff up to `retry.max_attempts`; a lost
  answer is ambiguous (`api.on_ambiguous`); a create that never reached the API (429, no
  connection, 401) costs nothing and only waits.
- Queries: a task that fails or times out needs a new task (bounded by attempts); a query
  that fails is asked again, with backoff, until the task's deadline.
- Results: a finished task's result is fetched again, with fresh URLs from new queries,
  until its one-hour life is over; then the job fails. It is never created again because a
  download failed.
- Moves and bugs: bounded tries with backoff, then give up (the reason stays in the ledger).

Pure: no I/O, no clock (the caller passes `now`, monotonic), randomness injected.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from watchd.errors import (
    ApiError,
    AuthError,
    ConnectionLost,
    PermanentApiError,
    RateLimited,
    TaskGone,
    TransientApiError,
    backoff_delay,
)
from watchd.lifecycle import Event, State

RESULT_LIFE = 3600.0  # seconds a result URL is valid after the task finished (API doc)
RESULT_MARGIN = 120.0  # stop trying this long before the end: clocks differ, downloads take time
MOVE_TRIES = 10  # moves into done/ or failed/ (a full disk or a permission fixed by hand)
INTERNAL_TRIES = 5  # a step that raised something unexpected
REFETCH_BASE = 5.0  # seconds before a result is fetched again (then doubling, with jitter)
REFETCH_CAP = 300.0  # never longer: the result lives an hour
UNSENT_DELAY = 1.0  # seconds before a create that never left is due again (the budget paces)


@dataclass(frozen=True)
class Verdict:
    event: Event
    delay: float | None = None  # seconds until the job is due again; None: at once
    reason: str | None = None
    code: str | None = None
    http_status: int | None = None
    pause: bool = False  # a 401: stop every create until the key changes
    rate_limited: bool = False  # a 429: the whole budget slows down
    retry_after: float | None = None

    def fields(self, now: float) -> dict[str, Any]:
        """The ledger fields of this verdict (with the job's next due time)."""
        out: dict[str, Any] = {}
        if self.delay is not None:
            out["due"] = now + self.delay
        if self.reason is not None:
            out["error_reason"] = self.reason
            out["error_code"] = self.code
            out["error_http_status"] = self.http_status
        return out

    def detail(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("reason", self.reason),
                ("code", self.code),
                ("http_status", self.http_status),
            )
            if v is not None
        }


def api_code(err: ApiError) -> str:
    if err.state is not None:
        return f"state {err.state}"
    if err.http_status is not None:
        return f"http {err.http_status}"
    return type(err).__name__


@dataclass
class Policy:
    max_attempts: int = 5
    base_delay: float = 2.0
    max_delay: float = 300.0
    poll_interval: float = 1.0
    task_timeout: float = 180.0
    on_ambiguous: str = "resubmit"
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        self.rng = self.rng or random.Random()

    def backoff(self, attempt: int, *, base: float | None = None, retry_after: float | None = None
                ) -> float:  # fmt: skip
        assert self.rng is not None
        return backoff_delay(
            max(1, min(attempt, 30)),
            base=self.base_delay if base is None else base,
            cap=self.max_delay,
            rng=self.rng,
            retry_after=retry_after,
        )

    # -- creates ------------------------------------------------------------------------

    def after_create_error(self, err: ApiError, job: Mapping[str, Any]) -> Verdict:
        if isinstance(err, ConnectionLost) and err.sent:
            return self.lost_create(job, f"the answer to a create was lost: {err.message}")
        if isinstance(err, ConnectionLost | RateLimited | AuthError):
            # Never reached the API as a task: no attempt, no charge; the job only waits.
            delay = err.retry_after if err.retry_after is not None else UNSENT_DELAY
            return _ask_again(Event.UNSENT, err, delay)
        if isinstance(err, TransientApiError):
            return self.new_task_or_fail(err, job)
        return self._fail(err)

    def lost_create(self, job: Mapping[str, Any], why: str) -> Verdict:
        """A create whose answer never came (a cut connection, a crash, a bug after the
        commit): the task may exist. Resubmit (bounded by attempts) or fail, as configured."""
        attempts = job.get("attempts") or 0
        if self.on_ambiguous == "fail":
            return Verdict(
                Event.FAIL,
                reason=f"{why}; api.on_ambiguous is 'fail', so it was not sent again"
                " (the task may exist on the API side)",
                code="ambiguous",
            )
        if attempts >= self.max_attempts:
            return Verdict(
                Event.FAIL,
                reason=f"{why} (gave up after {attempts} attempts)",
                code="ambiguous",
            )
        return Verdict(Event.CREATE_LOST, delay=self.backoff(1), reason=why, code="ambiguous")

    def new_task_or_fail(self, err: ApiError, job: Mapping[str, Any]) -> Verdict:
        """A task failed in a way a new task may not: RETRY, until attempts run out."""
        attempts = job.get("attempts") or 0
        if attempts >= self.max_attempts:
            return self._fail(err, f"{err.message} (gave up after {attempts} attempts)")
        return Verdict(
            Event.RETRY,
            delay=self.backoff(attempts, retry_after=err.retry_after),
            reason=err.message,
            code=api_code(err),
            http_status=err.http_status,
        )

    # -- queries ------------------------------------------------------------------------

    def after_query_error(self, err: ApiError, job: Mapping[str, Any]) -> Verdict:
        if job.get("result_deadline") is not None and isinstance(
            err, TaskGone | PermanentApiError
        ):
            return self._result_lost(job, f"the finished task can no longer be queried: {err}")
        if isinstance(err, TaskGone):
            return self.new_task_or_fail(err, job)
        if isinstance(err, PermanentApiError):
            return self._fail(err)
        if isinstance(err, TransientApiError) and err.state is not None:
            return self.new_task_or_fail(err, job)  # the task itself failed
        # The query failed, not the task (429, 5xx, a cut connection, 401): ask again later.
        tries = (job.get("tries") or 0) + 1
        delay = max(
            self.poll_interval,
            self.backoff(tries, base=self.poll_interval, retry_after=err.retry_after),
        )
        return _ask_again(Event.POLL_ERROR, err, delay)

    def overdue(self, job: Mapping[str, Any], now: float) -> Verdict | None:
        """A job past its deadline: a task that took too long needs a new one; a finished
        task whose result could not be saved in its life has failed."""
        deadline = job.get("deadline")
        if deadline is None or now < deadline:
            return None
        if job.get("result_deadline") is not None:
            return self._result_lost(job, job.get("error_reason") or "no usable result")
        if State(job["state"]) in (State.PROCESSING, State.SUBMITTING):
            err = TransientApiError(
                message=f"task still processing after {self.task_timeout:g} s (timeout)",
                task_id=job.get("task_id"),
                state=-8,
            )
            return self.new_task_or_fail(err, job)
        return None

    def _result_lost(self, job: Mapping[str, Any], why: str) -> Verdict:
        return Verdict(
            Event.GIVE_UP,
            reason=f"the result could not be saved within its one-hour life: {why}",
            code="result_lost",
        )

    # -- results ------------------------------------------------------------------------

    def after_download_error(
        self, reason: str, job: Mapping[str, Any], *, expired: bool, transient: bool
    ) -> Verdict:
        if not (expired or transient):
            return Verdict(Event.FAIL, reason=f"result unusable: {reason}", code="result_bad")
        # Each fresh URL costs a query; the polls of the task count the cycles so far (a
        # change of state resets `tries`, the polls of one task it does not). The schedule
        # is the result's own, not retry.max_delay: an hour of 404s costs a few dozen
        # queries however short the configured retries are.
        n = max((job.get("tries") or 0) + 1, job.get("polls") or 0)
        ceiling = min(REFETCH_CAP, REFETCH_BASE * 2.0 ** min(n - 1, 30))
        assert self.rng is not None
        delay = self.rng.uniform(ceiling / 2, ceiling)
        event = Event.URL_EXPIRED if expired and job.get("task_id") else Event.STEP_FAILED
        return Verdict(event, delay=delay, reason=reason, code="download")

    def after_write_error(self, reason: str, job: Mapping[str, Any]) -> Verdict:
        """The outbox could not be written (a full disk): the job waits, up to the result's
        life (past it, `overdue` gives up)."""
        tries = (job.get("tries") or 0) + 1
        return Verdict(Event.STEP_FAILED, delay=self.backoff(tries), reason=reason, code="write")

    def after_move_error(self, reason: str, job: Mapping[str, Any]) -> Verdict:
        tries = (job.get("tries") or 0) + 1
        if tries >= MOVE_TRIES:
            return Verdict(
                Event.GIVE_UP,
                reason=f"{reason} (gave up moving the original after {tries} tries;"
                " it stays where it is)",
                code="move",
            )
        return Verdict(Event.STEP_FAILED, delay=self.backoff(tries), reason=reason, code="move")

    # -- bugs ---------------------------------------------------------------------------

    def after_internal_error(self, error: str, job: Mapping[str, Any]) -> Verdict:
        """A step raised something unexpected. Noted, tried again later, bounded. A create
        that broke after its commit may have left: that is a lost answer, never a retry."""
        if State(job["state"]) == State.SUBMITTING:
            return self.lost_create(job, f"internal error during a create: {error}")
        tries = (job.get("tries") or 0) + 1
        if tries >= INTERNAL_TRIES:
            return Verdict(
                Event.GIVE_UP,
                reason=f"internal error, {tries} times: {error}",
                code="internal",
            )
        return Verdict(
            Event.INTERNAL_ERROR, delay=self.backoff(tries, base=30.0), reason=error
        )

    def _fail(self, err: ApiError, reason: str | None = None) -> Verdict:
        return Verdict(
            Event.FAIL,
            reason=reason or err.message,
            code=api_code(err),
            http_status=err.http_status,
        )

    def result_deadline(self, job: Mapping[str, Any], now: float) -> float:
        """When a finished task's result is given up on (kept across re-queries)."""
        kept = job.get("result_deadline")
        return kept if kept is not None else now + RESULT_LIFE - RESULT_MARGIN


def _ask_again(event: Event, err: ApiError, delay: float) -> Verdict:
    """A request that failed on its way (not the task): the same request later; a 401
    pauses every create, a 429 slows the whole budget."""
    return Verdict(
        event,
        delay=delay,
        reason=err.message,
        code=api_code(err),
        http_status=err.http_status,
        pause=isinstance(err, AuthError),
        rate_limited=isinstance(err, RateLimited),
        retry_after=err.retry_after,
    )
