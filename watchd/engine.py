"""The runtime: asks the ledger which jobs have a step due, and carries out the table's work.

Each active state has one piece of work (`lifecycle.WORK`); the runtime maps it to a room:
creates and queries to `Requests` (through the scheduler and the one request budget),
downloads and moves to `Results`, recovering lost creates to `Requests.recover`. Files come
in through `Intake`. Every room commits its outcome as one transition, so the runtime holds
no state of its own beyond which jobs have a step running right now (`busy`). A step that
raises is an INTERNAL_ERROR event: noted on the job, retried later, and given up after a
few tries, so nothing is stranded. `run()` is the one loop, for the daemon and, in burst
mode (`until=`), for `watchd process`, `watchd demo` and the tests.

It does not watch folders or handle signals (daemon.py does). It reads no clock but the
ledger's, and does blocking file work only through `ctx.offload`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from watchd.api import PicWishClient
from watchd.budget import Budget
from watchd.clock import Clock
from watchd.config import Config, FolderConfig
from watchd.download import policy_for
from watchd.intake import Outcome
from watchd.ledger import Ledger
from watchd.lifecycle import ACTIVE, State, Work
from watchd.logs import get_logger
from watchd.observe import log_transition
from watchd.runtime.context import Context, Offload
from watchd.runtime.context import policy_for as retry_policy_for
from watchd.runtime.intake import Intake
from watchd.runtime.requests import Gate, Requests
from watchd.runtime.results import DOWNLOAD_CONCURRENCY, Results, move_duplicate
from watchd.scheduler import Candidate, DurationModel, Kind, Scheduler, Task

IDLE_WAKE = 30.0  # longest sleep with nothing due (a `watchd retry` by another process)

# The states whose work runs as soon as the job is due, outside the request budget.
DIRECT = {
    State.SUBMITTING: Work.RECOVER,
    State.DOWNLOADING: Work.DOWNLOAD,
    State.FINISHING: Work.MOVE_TO_DONE,
    State.FAILING: Work.MOVE_TO_FAILED,
}


class Engine:
    def __init__(
        self,
        cfg: Config,
        ledger: Ledger,
        client: PicWishClient,
        *,
        download_client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
        offload: Offload = asyncio.to_thread,
        on_changed: Callable[[str, Path], None] | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.wake = asyncio.Event()
        self.log = get_logger()
        self.ctx = Context(
            cfg=cfg,
            ledger=ledger,
            policy=retry_policy_for(cfg, rng),
            offload=offload,
            wake=self.wake.set,
            log=self.log,
        )
        self.on_changed = on_changed or (lambda folder, path: None)
        ledger.observers.add(log_transition)  # one line for every committed transition
        self.model = DurationModel()
        for folder, seconds in reversed(ledger.durations()):
            self.model.observe(folder, seconds)
        self.budget = Budget(cfg.api.qps)
        self.scheduler = Scheduler(
            max_in_flight=cfg.api.max_in_flight,
            poll_interval=cfg.api.poll_interval,
            model=self.model,
        )
        self.requests = Requests(
            self.ctx,
            client,
            self.budget,
            self.scheduler,
            on_changed=self._changed,
            gate=gate or (lambda folder: None),
        )
        self.results = Results(
            self.ctx,
            download_client or httpx.AsyncClient(follow_redirects=False),
            inline=self.requests.inline,
            on_changed=self._changed,
        )
        self.intake = Intake(self.ctx, move_duplicate=self._move_duplicate)
        self.downloads = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)
        self.busy: set[int] = set()
        self.running: set[asyncio.Task[Any]] = set()
        self.stopping = False
        self.only: set[int] | None = None  # `watchd process`: touch these jobs and no others
        self.work: dict[Work, Callable[[int], Coroutine[Any, Any, None]]] = {
            Work.RECOVER: self.requests.recover,
            Work.DOWNLOAD: self._download,
            Work.MOVE_TO_DONE: self.results.move_to_done,
            Work.MOVE_TO_FAILED: self.results.move_to_failed,
        }
        self.apply_config(cfg)

    # -- what other parts use -----------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        return self.ctx.ledger

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def cfg(self) -> Config:
        return self.ctx.cfg

    @property
    def folders(self) -> dict[str, FolderConfig]:
        return self.ctx.folders

    @property
    def client(self) -> PicWishClient:
        return self.requests.client

    @property
    def paused(self) -> str | None:
        return self.requests.paused

    def resume(self, reason: str) -> None:
        """Lift a 401 pause (the key file changed, or a reload)."""
        self.requests.resume(reason)

    def apply_config(self, cfg: Config) -> None:
        """Live reload: new folders and settings apply to new jobs; qps changes at once."""
        self.ctx.cfg = cfg
        policy = retry_policy_for(cfg, self.ctx.policy.rng)
        self.ctx.policy = policy
        self.budget.set_qps(cfg.api.qps)
        self.scheduler.max_in_flight = cfg.api.max_in_flight
        self.scheduler.poll_interval = cfg.api.poll_interval
        self.results.download_policy = policy_for(cfg.api.base_url)
        self.wake.set()

    def is_known(self, folder: str, path: Path) -> bool:
        return self.intake.is_known(folder, path)

    async def take(self, folder: str, path: Path) -> Outcome | None:
        return (await self.intake.take_many([(folder, path)]))[0]

    async def take_many(self, items: list[tuple[str, Path]]) -> list[Outcome | None]:
        return await self.intake.take_many(items)

    def flush(self) -> None:
        self.intake.flush()

    def record(self, folder: FolderConfig, outcome: Outcome, *, keep_original: bool = False
               ) -> int | None:  # fmt: skip
        return self.intake.record(folder, outcome, keep_original=keep_original)

    # -- the loop -----------------------------------------------------------------------

    async def run(
        self,
        *,
        until: Callable[[], bool] | None = None,
        turn: Callable[[], Awaitable[float | None]] | None = None,
    ) -> None:
        """The one loop: start what is due, sleep until woken or until the next due time.

        `turn` (the daemon's hints, settling, status) runs first on each pass and returns the
        longest it may sleep, or None to stop. `until` ends a burst run (`watchd process`).
        """
        while True:
            started = self.clock.mono()
            wake_at = started + IDLE_WAKE
            if turn is not None:
                asked = await turn()
                if asked is None:
                    return
                wake_at = min(wake_at, started + asked)
            if until is not None and until():
                return
            # Absolute times: the time this pass itself takes (ledger reads, spawning) is
            # not added to every sleep, or sends due every 20 ms at QPS 50 drift by it.
            wake_at = min(await self.pump(), wake_at)
            self.wake.clear()
            now = self.clock.mono()
            planned = max(wake_at, now)
            await self.clock.wait(self.wake, planned - now)
            if not self.wake.is_set():
                # Woken by the timer: how late it came is how late a send may leave too.
                self.budget.note_lag(self.clock.mono() - planned)

    async def pump(self) -> float:
        """Start every step that is due now; return the monotonic time to look again at
        the latest."""
        now = self.clock.mono()
        wake_at = [now + IDLE_WAKE]
        mask_due = self.intake.expire_mask_waits(now)
        if mask_due is not None:
            wake_at.append(mask_due)
        if not self.stopping:
            for job in self.ledger.due(DIRECT, now, exclude=self.busy, only=self.only):
                work = DIRECT[State(job["state"])]
                self._spawn(job["id"], self.work[work](job["id"]))
            upcoming = self.ledger.next_due(DIRECT, now)
            if upcoming is not None:
                wake_at.append(upcoming)
            wake_at += self._dispatch_requests(now)
        return min(wake_at)

    async def _download(self, job_id: int) -> None:
        async with self.downloads:
            await self.results.download(job_id)

    def _dispatch_requests(self, now: float) -> list[float]:
        """Spend available tokens on what the scheduler picks; return when to look again.

        Cheap when there is nothing to spend: the budget is asked first, and the ledger
        only for the few rows a decision needs (in-flight tasks, one candidate per folder,
        a bounded count of what waits).
        """
        while True:
            next_token = self.budget.next_time(now)
            if next_token > now:
                return [next_token]
            tasks = self._tasks(now)
            in_flight = self.ledger.count_in_flight() + len(self.requests.preparing)
            can_create = not self.paused and in_flight < self.scheduler.max_in_flight
            candidates = self._candidates(now) if can_create else []
            rate = self.budget.rate
            waiting = (
                self.ledger.count_due(State.WAITING, now, self.scheduler.enough_waiting(rate))
                if candidates
                else 0
            )
            decision = self.scheduler.pick(
                now, candidates, tasks, in_flight, waiting=waiting, rate=rate
            )
            if decision.kind == Kind.IDLE:
                waiting_at = self.ledger.next_due([State.WAITING], now) if can_create else None
                held = self.ledger.next_due([State.PROCESSING], now)
                return [t for t in (decision.wake_at, waiting_at, held) if t is not None]
            self.budget.try_take(now)
            job_id = decision.job_id
            assert job_id is not None
            if decision.kind == Kind.CREATE:
                self._spawn(job_id, self.requests.create(job_id))
            else:
                self._spawn(job_id, self.requests.query(job_id))

    def _candidates(self, now: float) -> list[Candidate]:
        """The oldest due waiting job of each configured folder that is neither paused nor
        held by a spending cap (an index walk each, so a backlog of 50,000 costs no more
        than one of 5)."""
        # A paused folder's files wait; `watchd process` names its files itself.
        paused = self.ledger.paused_folders() if self.only is None else {}
        out = []
        for folder in self.folders:
            if folder in paused:
                continue
            rows = self.ledger.oldest_waiting(folder, now, exclude=self.busy, only=self.only)
            if rows and self.requests.gate(folder) is not None:
                continue  # a cap holds it (asked only when a create would go)
            out += [Candidate(r["id"], folder) for r in rows]
        return out

    def _tasks(self, now: float) -> list[Task]:
        """The tasks the scheduler may poll. A task held back by a backoff (its query
        failed, or its result is being fetched again) is not the scheduler's to poll early:
        it waits for its due time."""
        return [
            Task(
                job_id=r["id"],
                folder=r["folder"],
                submitted_at=r["started"] if r["started"] is not None else 0.0,
                next_poll_at=r["due"] if r["due"] is not None else 0.0,
                last_poll_at=r["polled"],
            )
            for r in self.ledger.processing()
            if r["id"] not in self.busy
            and (self.only is None or r["id"] in self.only)
            and not (_held(r) and (r["due"] or 0.0) > now)
        ]

    def _spawn(self, job_id: int, coro: Coroutine[Any, Any, None]) -> None:
        self.busy.add(job_id)
        task = asyncio.get_running_loop().create_task(coro)
        self.running.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.running.discard(t)
            self.busy.discard(job_id)
            self.wake.set()
            if not t.cancelled() and t.exception() is not None:
                self._internal_error(job_id, t.exception())

        task.add_done_callback(done)

    def _internal_error(self, job_id: int, exc: BaseException | None) -> None:
        """A bug, not a verdict on the file: an event on the job, retried later, bounded."""
        error = repr(exc)
        self.log.error("internal error in a job step", job=job_id, error=error)
        try:
            job = self.ledger.get(job_id)
            if job is not None and job["state"] in ACTIVE:
                self.ctx.apply(job, self.ctx.policy.after_internal_error(error, job))
        except Exception as again:  # the ledger itself is failing: the job stays due
            self.log.error("could not record an internal error", job=job_id, error=repr(again))

    def _changed(self, folder: str, path: Path) -> None:
        self.on_changed(folder, path)

    def _move_duplicate(self, fields: dict[str, Any], path: str, job: dict[str, Any]) -> None:
        """Move a duplicate's copy where its job's original went: done/, or failed/ with
        the job's reason (file work: a task of its own, noted on the job)."""
        info = None
        if job["state"] == State.FAILED:
            info = {
                "reason": f"same bytes as {job['name']!r} (job {job['id']}), which failed:"
                f" {job['error_reason']}",
                "code": job["error_code"],
                "duplicate_of": job["id"],
            }

        async def move() -> None:
            moved = await self.ctx.offload(move_duplicate, fields, info)
            if moved is None:  # not the same bytes any more: intake looks at it again
                self.on_changed(fields["folder"], Path(path))
                return
            self.ledger.note(fields["id"], "duplicate_moved", {"path": path, "moved_to": moved})

        task = asyncio.get_running_loop().create_task(move())
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    # -- shutdown -----------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Stop taking work; let steps in flight finish for `grace` seconds, then cancel.
        A cancelled create stays `submitting` in the ledger: the next start recovers it."""
        self.stopping = True
        self.flush()
        if self.running:
            _, pending = await asyncio.wait(set(self.running), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)

    async def aclose(self) -> None:
        await self.requests.client.aclose()
        await self.results.client.aclose()


def _held(row: dict[str, Any]) -> bool:
    """A task in a backoff: its last query failed, or its finished result is asked again."""
    return bool(row["tries"]) or row["result_deadline"] is not None
