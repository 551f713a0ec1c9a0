"""The engine: the workers over the ledger (intake in recorder.py, results in results.py).

It turns settled files into jobs (intake), spends the one request budget on creates and
polls as the scheduler decides, fetches results, writes the outbox and moves originals.
Every step commits the job's new state to the ledger *before* the side effect that depends
on it, so `reconcile()` can finish any job after a crash. It runs on one asyncio loop; CPU
work goes to threads. It does not watch folders or handle signals (daemon.py does) and it
holds no state that the ledger does not also hold, except which jobs have a request running
right now.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from watchd.api import CreateRequest, PicWishClient, TaskResult
from watchd.budget import Budget
from watchd.config import Config, FolderConfig
from watchd.download import policy_for
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
from watchd.intake import (
    ChangedOnDisk,
    Outcome,
    upload_payload,
)
from watchd.ledger import Ledger, decode
from watchd.lifecycle import Event, State
from watchd.logs import get_logger
from watchd.preflight import PreflightError
from watchd.recorder import IntakeSteps
from watchd.results import ResultSteps
from watchd.scheduler import Candidate, DurationModel, Kind, Scheduler, Task

SHUTDOWN_GRACE = 8.0  # seconds in-flight requests get to finish on SIGTERM
INTERNAL_ERROR_BACKOFF = 60.0  # seconds before a job step that raised is tried again
DOWNLOAD_CONCURRENCY = 4


class Engine(IntakeSteps, ResultSteps):
    def __init__(
        self,
        cfg: Config,
        ledger: Ledger,
        client: PicWishClient,
        *,
        download_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_changed: Callable[[str, Path], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_changed = on_changed or (lambda folder, path: None)
        self.download_client = download_client or httpx.AsyncClient(follow_redirects=False)
        self.log = get_logger()
        self.wake = asyncio.Event()
        self.busy: set[int] = set()
        self.preparing: set[int] = set()  # creates reading their file, not yet submitting
        self.running: set[asyncio.Task[Any]] = set()
        self.downloads = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)
        self._unrecorded: list[tuple[FolderConfig, Outcome]] = []
        self._flusher: asyncio.TimerHandle | None = None
        self.inline: dict[int, tuple[str, ...]] = {}  # base64 results kept out of the ledger
        self.stopping = False
        self.only: set[int] | None = None  # `watchd process`: touch these jobs and no others
        self.model = DurationModel()
        for folder, seconds in reversed(ledger.durations()):
            self.model.observe(folder, seconds)
        self.paused: str | None = ledger.get_meta("paused")
        self.cfg = cfg
        self.budget = Budget(cfg.api.qps)
        self.scheduler = Scheduler(
            max_in_flight=cfg.api.max_in_flight,
            poll_interval=cfg.api.poll_interval,
            model=self.model,
        )
        self.apply_config(cfg)

    # -- configuration ------------------------------------------------------------------

    def apply_config(self, cfg: Config) -> None:
        """Live reload: new folders and settings apply to new jobs; qps changes at once."""
        self.cfg = cfg
        self.folders: dict[str, FolderConfig] = {f.name: f for f in cfg.folders}
        self.budget.set_qps(cfg.api.qps)
        self.scheduler.max_in_flight = cfg.api.max_in_flight
        self.scheduler.poll_interval = cfg.api.poll_interval
        self.download_policy = policy_for(cfg.api.base_url)
        self.wake.set()

    def resume(self, reason: str) -> None:
        """Lift a 401 pause (the key file changed, or a reload)."""
        if self.paused:
            self.log.warning("submissions resumed", reason=reason)
        self.paused = None
        self.ledger.set_meta("paused", None)
        self.wake.set()

    def _pause(self, err: AuthError) -> None:
        if not self.paused:
            self.log.error(
                "API key refused (HTTP 401): all submissions paused; files stay where they are."
                " Fix the key, then `systemctl reload watchd`",
                message=err.message,
            )
        self.paused = f"HTTP 401 from the API: {err.message or 'unauthorized'}"
        self.ledger.set_meta("paused", self.paused)

    # -- the loop -----------------------------------------------------------------------

    def reconcile(self) -> None:
        """After a start (maybe after a crash): every job continues from its ledger state."""
        now = self.clock()
        for job in self.ledger.in_state(State.SUBMITTING):
            # The create may or may not have reached the API: the crash window of SPEC.md.
            self._create_lost(job, "the daemon stopped while a create was on the wire")
        for job in self.ledger.in_state(State.PROCESSING):
            self.ledger.update(job["id"], next_poll_at=now)
        self.wake.set()

    def _can_submit(self) -> bool:
        return not self.stopping and not self.paused

    async def pump(self) -> float:
        """Start what can start now; return how long the caller may sleep at most."""
        now = self.clock()
        next_times: list[float] = []
        for job in self.ledger.in_state(State.FINISHING, State.FAILING):
            if (job["not_before"] or 0) > now:
                next_times.append(job["not_before"])
            elif job["id"] not in self.busy and self._mine(job["id"]):
                coro = (
                    self._finish_done(job["id"])
                    if job["state"] == State.FINISHING
                    else self._finish_failing(job["id"])
                )
                self._spawn(job["id"], coro)
        for job in self.ledger.in_state(State.DOWNLOADING):
            if job["id"] in self.busy or self.stopping or not self._mine(job["id"]):
                continue
            if (job["not_before"] or 0) <= now:
                self._spawn(job["id"], self._download(job["id"]))
            else:
                next_times.append(job["not_before"])
        if not self.paused:
            next_times += self._dispatch_requests(now)
        waiting_at = self.ledger.next_waiting_time(now)
        if waiting_at is not None and self._can_submit():
            next_times.append(waiting_at)
        return max(0.0, min(next_times, default=now + 5.0) - now)

    def _dispatch_requests(self, now: float) -> list[float]:
        """Spend available tokens on what the scheduler picks; return when to look again.

        Cheap when there is nothing to spend: the budget is asked first, and the ledger
        only for the few rows a decision needs (in-flight tasks, one candidate per folder).
        """
        while True:
            mono_now = time.monotonic()
            next_token = self.budget.next_time(mono_now)
            if next_token > mono_now:
                return [now + (next_token - mono_now)]
            tasks = self._tasks()
            in_flight = self.ledger.count_in_flight() + len(self.preparing)
            can_create = self._can_submit() and in_flight < self.scheduler.max_in_flight
            candidates = self._candidates(now) if can_create else []
            demand = len(tasks) / max(self.scheduler.poll_interval, 0.001)
            if candidates:
                demand += self.budget.rate
            contended = self.budget.is_contended(mono_now, demand)
            decision = self.scheduler.pick(now, candidates, tasks, in_flight, contended)
            if decision.kind == Kind.IDLE:
                wake = self.scheduler.wake_time(now, tasks, contended)
                return [wake] if wake is not None else []
            self.budget.try_take(mono_now)
            job_id = decision.job_id
            assert job_id is not None
            if decision.kind == Kind.CREATE:
                self._spawn(job_id, self._create(job_id, contended))
            else:
                self._spawn(job_id, self._poll(job_id, contended))

    async def _pace(self) -> None:
        """Keep sent requests at least one budget interval apart, whatever the time spent
        between the scheduler's decision and the send (reading a large file, say). The
        caller marks the send itself, right before the request leaves (after its commit)."""
        delay = self.budget.send_delay(time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)

    def _candidates(self, now: float) -> list[Candidate]:
        """The oldest ready waiting job of each configured folder (an index walk each, so
        a backlog of 50,000 costs no more than one of 5)."""
        out = []
        # Folder pause (issue 12): its files wait; `watchd process` names its files itself.
        paused = self.ledger.paused_folders() if self.only is None else {}
        for folder in self.folders:
            if folder in paused:
                continue
            rows = self.ledger.oldest_waiting(folder, now, exclude=self.busy, only=self.only)
            out += [Candidate(r["id"], folder) for r in rows]
        return out

    def _tasks(self) -> list[Task]:
        return [
            Task(
                job_id=r["id"],
                folder=r["folder"],
                submitted_at=r["submitted_at"] or 0.0,
                next_poll_at=r["next_poll_at"] or 0.0,
                last_poll_at=r["polled_at"],
            )
            for r in self.ledger.in_state(State.PROCESSING)
            if r["id"] not in self.busy and self._mine(r["id"])
        ]

    def _mine(self, job_id: int) -> bool:
        return self.only is None or job_id in self.only

    def _spawn(self, job_id: int, coro: Any) -> None:
        self.busy.add(job_id)
        task = asyncio.get_running_loop().create_task(coro)
        self.running.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.running.discard(t)
            self.busy.discard(job_id)
            self.wake.set()
            if not t.cancelled() and t.exception() is not None:
                # A bug, not a verdict on the file: note it on the job and try again later
                # (not on every loop turn), so the job is neither lost nor spinning.
                error = repr(t.exception())
                later = self.clock() + INTERNAL_ERROR_BACKOFF
                self.ledger.update(
                    job_id,
                    {"error": error},
                    note="internal_error",
                    not_before=later,
                    next_poll_at=later,
                )
                self.log.error(
                    "internal error in a job step; retried in a minute", job=job_id, error=error
                )

        task.add_done_callback(done)

    # -- requests -----------------------------------------------------------------------

    def _job_log(self, job: dict[str, Any]) -> Any:
        return self.log.bind(job=job["id"], folder=job["folder"], file=job["name"])

    async def _create(self, job_id: int, contended: bool) -> None:
        job = self.ledger.get(job_id)
        assert job is not None
        log = self._job_log(job)
        settings = decode(job, "post") or {}
        self.preparing.add(job_id)
        try:
            payload = await asyncio.to_thread(upload_payload, job, settings)
        except FileNotFoundError:
            self.ledger.transition(job_id, Event.VANISHED)
            log.warning("file vanished before upload; nothing was sent", state="gone")
            return
        except (ChangedOnDisk, PreflightError) as exc:
            self.ledger.transition(job_id, Event.VANISHED, {"changed": str(exc)})
            log.info("file changed after it was checked; it will be taken again as new content")
            self.on_changed(job["folder"], Path(job["path"]))
            return
        finally:
            self.preparing.discard(job_id)
        params = decode(job, "params") or {}
        request = CreateRequest(
            image=payload.image, image_name=job["name"], mask=payload.mask, params=params
        )
        sync = self.cfg.api.mode == "sync"
        await self._pace()
        # The crash window opens here: committed as submitting before the request leaves, so
        # a crash from now until the task id is committed is known to be ambiguous.
        attempt = (job["attempts"] or 0) + 1
        self.ledger.transition(
            job_id,
            Event.SUBMIT,
            {"attempt": attempt},
            attempts=attempt,
            submitted_at=self.clock(),
            task_id=None,
            polls=0,
        )
        job = {**job, "attempts": attempt, "state": State.SUBMITTING}
        try:
            self.budget.mark_sent(time.monotonic())
            result = await self.client.create(request, sync=sync)
        except ApiError as err:
            self._create_failed(job, err)
            return
        finally:
            self.ledger.add_requests(job_id)
        self.budget.on_success()
        now = self.clock()
        if sync:
            self._finished_task(job, result, now)
            return
        next_poll = self.scheduler.next_poll_at(now, job["folder"], now, 0, contended)
        self.ledger.transition(
            job_id,
            Event.CREATED,
            {"task_id": result.task_id},
            task_id=result.task_id,
            next_poll_at=next_poll,
            submitted_at=now,
            processed_at=None,
        )
        log.info(
            "task created", task_id=result.task_id, state="processing", attempt=job["attempts"]
        )

    def _create_failed(self, job: dict[str, Any], err: ApiError) -> None:
        log = self._job_log(job)
        job_id = job["id"]
        if isinstance(err, ConnectionLost) and err.sent:
            self._create_lost(job, f"the answer to a create was lost: {err.message}")
        elif isinstance(err, ConnectionLost | RateLimited | AuthError):
            if isinstance(err, RateLimited):
                self.budget.on_rate_limited(time.monotonic(), err.retry_after)
            if isinstance(err, AuthError):
                self._pause(err)
            # Never reached the API as a task: not an attempt, and no charge.
            self.ledger.transition(
                job_id, Event.UNSENT, {"error": err.message}, attempts=job["attempts"] - 1
            )
            log.info(
                "create not accepted; the job waits",
                reason=err.message,
                http_status=err.http_status,
            )
        elif isinstance(err, TransientApiError):
            self._retry_or_fail(job, err)
        else:
            self._fail(job, err)

    def _create_lost(self, job: dict[str, Any], why: str) -> None:
        log = self._job_log(job)
        if self.cfg.api.on_ambiguous == "fail":
            self.ledger.transition(
                job["id"],
                Event.FAIL,
                {"ambiguous": why},
                not_before=None,
                ambiguous=(job["ambiguous"] or 0) + 1,
                error_reason=f"{why}; api.on_ambiguous is 'fail', so it was"
                " not sent again (the task may exist on the API side)",
                error_code="ambiguous",
            )
            log.warning("create was ambiguous; failing it as configured", state="failing")
            self._spawn_if_idle(job["id"], self._finish_failing(job["id"]))
            return
        delay = backoff_delay(
            1, base=self.cfg.retry.base_delay, cap=self.cfg.retry.max_delay, rng=self.rng
        )
        self.ledger.transition(
            job["id"],
            Event.CREATE_LOST,
            {"ambiguous": why},
            ambiguous=(job["ambiguous"] or 0) + 1,
            not_before=self.clock() + delay,
        )
        log.warning(
            "create was ambiguous (the task may exist); submitting it again",
            reason=why,
            state="waiting",
        )

    def _spawn_if_idle(self, job_id: int, coro: Any) -> None:
        if job_id in self.busy:
            # The current step will end soon; pump() starts the move then.
            coro.close()
            return
        self._spawn(job_id, coro)

    def _retry_or_fail(
        self, job: dict[str, Any], err: ApiError, event: Event = Event.RETRY
    ) -> None:
        attempts = job["attempts"] or 0
        if attempts >= self.cfg.retry.max_attempts:
            self._fail(job, err, f"{err.message} (gave up after {attempts} attempts)")
            return
        delay = backoff_delay(
            attempts,
            base=self.cfg.retry.base_delay,
            cap=self.cfg.retry.max_delay,
            rng=self.rng,
            retry_after=err.retry_after,
        )
        self.ledger.transition(
            job["id"],
            event,
            _err_detail(err),
            not_before=self.clock() + delay,
            error_reason=err.message,
            error_code=_code(err),
            error_http_status=err.http_status,
        )
        self._job_log(job).warning(
            "transient failure; will retry",
            reason=err.message,
            retry_in=round(delay, 1),
            attempt=attempts,
            state="waiting",
        )

    def _fail(self, job: dict[str, Any], err: ApiError, reason: str | None = None) -> None:
        self.ledger.transition(
            job["id"],
            Event.FAIL,
            _err_detail(err),
            not_before=None,
            error_reason=reason or err.message,
            error_code=_code(err),
            error_http_status=err.http_status,
        )
        self._job_log(job).warning(
            "job failed",
            reason=reason or err.message,
            code=_code(err),
            http_status=err.http_status,
            task_id=job.get("task_id"),
            state="failing",
        )
        self._spawn_if_idle(job["id"], self._finish_failing(job["id"]))

    async def _poll(self, job_id: int, contended: bool) -> None:
        job = self.ledger.get(job_id)
        assert job is not None
        await self._pace()
        try:
            self.budget.mark_sent(time.monotonic())
            result = await self.client.query(job["task_id"])
        except ApiError as err:
            self._poll_failed(job, err)
            return
        finally:
            self.ledger.add_requests(job_id)
        self.budget.on_success()
        now = self.clock()
        if result.pending:
            if now - (job["submitted_at"] or now) > self.cfg.api.task_timeout:
                err = TransientApiError(
                    message=f"task still processing after"
                    f" {self.cfg.api.task_timeout:g} s (timeout)",
                    task_id=job["task_id"],
                    state=-8,
                )
                self._retry_or_fail(job, err)
                return
            nxt = self.scheduler.next_poll_at(
                now, job["folder"], job["submitted_at"] or now, (job["polls"] or 0) + 1, contended
            )
            self.ledger.update(
                job_id, next_poll_at=nxt, polls=(job["polls"] or 0) + 1, polled_at=now
            )
            return
        self._finished_task(job, result, now)

    def _finished_task(self, job: dict[str, Any], result: TaskResult, now: float) -> None:
        log = self._job_log(job)
        if not result.images:
            err = TransientApiError(
                message="task finished without a result image",
                task_id=result.task_id,
                state=result.state,
            )
            self._retry_or_fail(job, err)
            return
        urls = [ref for ref in result.images if ref.startswith(("http://", "https://"))]
        if len(urls) != len(result.images):
            self.inline[job["id"]] = result.images
        submitted = job["submitted_at"] or now
        learned = _processing_time(result.raw, submitted, job.get("polled_at"), now)
        if learned is not None:
            self.model.observe(job["folder"], learned)
        event = Event.SYNC_DONE if job["state"] == State.SUBMITTING else Event.POLL_DONE
        self.ledger.transition(
            job["id"],
            event,
            {"task_id": result.task_id, "results": len(result.images)},
            results=urls,
            task_id=result.task_id or job["task_id"],
            processed_at=now,
            task_seconds=learned,
            not_before=None,
            polls=(job["polls"] or 0) + (event == Event.POLL_DONE),
            download_tries=0,
        )
        log.info(
            "task finished",
            task_id=result.task_id or job["task_id"],
            state="downloading",
            seconds=round(now - submitted, 2),
        )
        self.wake.set()

    def _poll_failed(self, job: dict[str, Any], err: ApiError) -> None:
        now = self.clock()
        if isinstance(err, TaskGone):
            self._retry_or_fail(job, err)
        elif isinstance(err, PermanentApiError):
            self._fail(job, err)
        elif isinstance(err, TransientApiError) and err.state is not None:
            self._retry_or_fail(job, err)  # the task failed: a new one is needed
        else:
            if isinstance(err, RateLimited):
                self.budget.on_rate_limited(time.monotonic(), err.retry_after)
            if isinstance(err, AuthError):
                self._pause(err)
            delay = backoff_delay(
                1 + (job["polls"] or 0) // 3,
                base=self.cfg.api.poll_interval,
                cap=self.cfg.retry.max_delay,
                rng=self.rng,
                retry_after=err.retry_after,
            )
            self.ledger.update(
                job["id"], next_poll_at=now + max(delay, self.cfg.api.poll_interval), polled_at=now
            )

    # -- shutdown -----------------------------------------------------------------------

    async def drain(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop taking work; let requests in flight finish for `grace` seconds, then park."""
        self.stopping = True
        self.flush()
        if self.running:
            _, pending = await asyncio.wait(set(self.running), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.download_client.aclose()


def _processing_time(
    raw: dict[str, Any], submitted: float, last_pending_poll: float | None, now: float
) -> float | None:
    """How long the task took, to learn when to poll the next ones.

    The API's own `time_elapsed` or timestamps when it gives them; else the middle between
    the last poll that found it pending and the poll that found it done. Not `now - submitted`
    alone: with the first poll put off to the learned 95% point, that is only an upper bound,
    and learning from it made the estimate creep up (in the benchmark, 10 s became 22 s).
    """
    try:  # "total processing time": seconds ("9.512"); a value over 1000 can only be ms
        elapsed = float(raw.get("time_elapsed"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        elapsed = None
    if elapsed is not None and 0 < elapsed < 86_400_000:
        return elapsed / 1000 if elapsed > 1000 else elapsed
    start, end = _timestamp(raw.get("created_at")), _timestamp(raw.get("completed_at"))
    if start is not None and end is not None and 0 <= end - start < 86400:
        return end - start
    if last_pending_poll is not None and last_pending_poll >= submitted:
        return (last_pending_poll + now) / 2 - submitted
    return None


def _timestamp(value: Any) -> float | None:
    """Epoch seconds (or milliseconds) as a number or string, or an ISO date-time."""
    if value in (None, ""):
        return None
    try:
        number = float(value)
        return number / 1000 if number > 1e11 else number
    except (TypeError, ValueError):
        pass
    try:
        from datetime import datetime

        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _code(err: ApiError) -> str:
    if err.state is not None:
        return f"state {err.state}"
    if err.http_status is not None:
        return f"http {err.http_status}"
    return type(err).__name__


def _err_detail(err: ApiError) -> dict[str, Any]:
    return {
        "error": err.message,
        "http_status": err.http_status,
        "state": err.state,
        "kind": type(err).__name__,
    }
