"""The requests room: creates and queries, each turned into one lifecycle event.

Owns building the create from a job (re-reading the original and proving by hash that the
bytes sent are the bytes checked), pacing each send on the one request budget, reading the
answer, and learning task times. A create is committed as `submit` *before* it may leave,
so a crash or a bug from then on is a lost answer (ambiguous), never a silent second
create. What a failure means comes from the policy; this room never decides retries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from watchd.api import CreateRequest, PicWishClient, TaskResult
from watchd.budget import Budget
from watchd.errors import ApiError, TransientApiError
from watchd.intake import ChangedOnDisk, upload_payload
from watchd.ledger import decode
from watchd.lifecycle import Event, State
from watchd.preflight import PreflightError
from watchd.runtime.context import Context
from watchd.scheduler import Progress, Scheduler

# A gate asked for a folder before its creates are picked, and again inside the transaction
# that commits each create: a reason to hold them back (a spending cap), or None.
Gate = Callable[[str], str | None]


class Requests:
    def __init__(
        self,
        ctx: Context,
        client: PicWishClient,
        budget: Budget,
        scheduler: Scheduler,
        *,
        on_changed: Callable[[str, Path], None] = lambda folder, path: None,
        gate: Gate = lambda folder: None,
    ) -> None:
        self.ctx = ctx
        self.client = client
        self.budget = budget
        self.scheduler = scheduler
        self.on_changed = on_changed
        self.gate = gate
        self.inline: dict[int, tuple[str, ...]] = {}  # base64 results, kept out of the ledger
        self.paused: str | None = ctx.ledger.get_meta("paused")  # a 401: no creates at all
        self.preparing: set[int] = set()  # creates reading their file, not yet committed

    # -- the 401 pause ------------------------------------------------------------------

    def pause(self, reason: str) -> None:
        if not self.paused:
            self.ctx.log.error(
                "API key refused (HTTP 401): all submissions paused; files stay where they"
                " are. Fix the key, then `systemctl reload watchd`",
                reason=reason,
            )
        self.paused = f"HTTP 401 from the API: {reason or 'unauthorized'}"
        self.ctx.ledger.set_meta("paused", self.paused)

    def resume(self, reason: str) -> None:
        if self.paused:
            self.ctx.log.warning("submissions resumed", reason=reason)
        self.paused = None
        self.ctx.ledger.set_meta("paused", None)
        self.ctx.wake()

    # -- creates ------------------------------------------------------------------------

    async def create(self, job_id: int) -> None:
        ctx = self.ctx
        job = ctx.ledger.get(job_id)
        if job is None or job["state"] != State.WAITING:
            return
        log = ctx.job_log(job)
        # Counted in flight from now until `submit` is committed (or the create is dropped):
        # creates reading their file or waiting for a send slot must not exceed max_in_flight.
        self.preparing.add(job_id)
        try:
            await self._create(job, log)
        finally:
            self.preparing.discard(job_id)

    async def _create(self, job: dict[str, Any], log: Any) -> None:
        ctx, job_id = self.ctx, job["id"]
        try:
            payload = await ctx.offload(upload_payload, job, decode(job, "post") or {})
        except FileNotFoundError:
            ctx.commit(job_id, Event.VANISHED, {"reason": "vanished before upload"})
            log.warning("file vanished before upload; nothing was sent", state="gone")
            return
        except (ChangedOnDisk, PreflightError) as exc:
            # New bytes under the same name are new content: this job ends unpaid, and the
            # file is taken again as a job of its own.
            ctx.commit(job_id, Event.VANISHED, {"reason": f"changed before upload: {exc}"})
            log.info("file changed after it was checked; it will be taken again as new content")
            self.on_changed(job["folder"], Path(job["path"]))
            return
        request = CreateRequest(
            image=payload.image,
            image_name=job["name"],
            mask=payload.mask,
            params=decode(job, "params") or {},
        )
        sync = ctx.cfg.api.mode == "sync"
        await self._pace()  # before the commit: a create held back here is not yet ambiguous
        # The crash window opens with this commit: from now until the answer is committed,
        # the create may have reached the API.
        with ctx.ledger.atomic():
            fresh = ctx.ledger.get(job_id)
            if fresh is None or fresh["state"] != State.WAITING:
                return
            if self.gate(fresh["folder"]) is not None:
                return  # a cap was reached meanwhile: the job waits, nothing was sent
            now = ctx.clock.mono()
            step = ctx.ledger.commit(
                job_id,
                Event.SUBMIT,
                {"attempt": (fresh["attempts"] or 0) + 1, "cause": _cause(fresh)},
                submitted_at=ctx.clock.wall(),
                started=now,
                deadline=now + ctx.cfg.api.task_timeout,
            )
        self.preparing.discard(job_id)  # counted as submitting in the ledger from here
        job = {**fresh, **step.fields}
        await self._slot()
        try:
            result = await self.client.create(request, sync=sync)
        except ApiError as err:
            self._after_error(job, ctx.policy.after_create_error(err, job))
            return
        self.budget.on_success()
        bytes_up = len(payload.image) + len(payload.mask or b"")
        if sync:
            self._finished(job, result, bytes_up=bytes_up)
            return
        now = ctx.clock.mono()
        ctx.commit(
            job_id,
            Event.CREATED,
            {"task_id": result.task_id, "bytes_up": bytes_up},
            task_id=result.task_id,
            due=self.scheduler.created(job_id, job["folder"], now),
        )
        log.info(
            "task created", task_id=result.task_id, state="processing", attempt=job["attempts"]
        )

    async def recover(self, job_id: int) -> None:
        """A job in `submitting` whose create is not running here (a restart, or a create
        that broke after its commit): the task may exist. The policy decides."""
        job = self.ctx.ledger.get(job_id)
        if job is None or job["state"] != State.SUBMITTING or job_id in self.preparing:
            return
        why = "the daemon stopped while a create was on the wire"
        verdict = self.ctx.policy.lost_create(job, why)
        self.ctx.apply(job, verdict)
        self.ctx.job_log(job).warning(
            "create was ambiguous (the task may exist)", reason=why, next=verdict.event.value
        )

    # -- queries ------------------------------------------------------------------------

    async def query(self, job_id: int) -> None:
        ctx = self.ctx
        job = ctx.ledger.get(job_id)
        if job is None or job["state"] != State.PROCESSING:
            return
        overdue = ctx.policy.overdue(job, ctx.clock.mono())
        if overdue is not None:  # decided before paying for another query
            self._after_error(job, overdue)
            return
        await self._slot()
        try:
            result = await self.client.query(job["task_id"])
        except ApiError as err:
            self._after_error(job, ctx.policy.after_query_error(err, job))
            return
        self.budget.on_success()
        if not result.pending:
            self._finished(job, result)
            return
        now = ctx.clock.mono()
        progress = Progress.of(result.state, result.progress, result.raw)
        ctx.commit(
            job_id,
            Event.POLL_PENDING,
            {"state": result.state, "progress": result.progress},
            polled=now,
            due=self.scheduler.pending(job_id, job["folder"], now, progress),
        )

    def _finished(self, job: dict[str, Any], result: TaskResult, *, bytes_up: int = 0) -> None:
        ctx = self.ctx
        if not result.images:
            err = TransientApiError(
                message="task finished without a result image",
                task_id=result.task_id,
                state=result.state,
            )
            self._after_error(job, ctx.policy.new_task_or_fail(err, job))
            return
        urls = [ref for ref in result.images if ref.startswith(("http://", "https://"))]
        if len(urls) != len(result.images):
            self.inline[job["id"]] = result.images
        now = ctx.clock.mono()
        started = job["started"] if job["started"] is not None else now
        learned = self.scheduler.finished(job["id"], job["folder"], now, result.raw, started)
        sync = job["state"] == State.SUBMITTING
        deadline = ctx.policy.result_deadline(job, now)
        fields: dict[str, Any] = {
            "task_id": result.task_id or job["task_id"],
            "results": urls,
            "processed_at": ctx.clock.wall(),
            "task_seconds": learned,
            "result_deadline": deadline,
            "deadline": deadline,
        }
        detail: dict[str, Any] = {"task_id": fields["task_id"], "seconds": learned}
        if sync:
            detail["bytes_up"] = bytes_up
        else:
            fields["polled"] = now
        ctx.commit(job["id"], Event.SYNC_DONE if sync else Event.POLL_DONE, detail, **fields)
        ctx.job_log(job).info(
            "task finished",
            task_id=fields["task_id"],
            state="downloading",
            seconds=round(now - started, 2),
        )

    def _after_error(self, job: Mapping[str, Any], verdict: Any) -> None:
        if verdict.event not in (Event.POLL_ERROR, Event.UNSENT, Event.CREATE_LOST):
            self.scheduler.forget(job["id"])  # the task leaves processing another way
        if verdict.rate_limited:
            self.budget.on_rate_limited(self.ctx.clock.mono(), verdict.retry_after)
        if verdict.pause:
            self.pause(verdict.reason or "unauthorized")
        self.ctx.apply(job, verdict)
        self.ctx.job_log(job).warning(
            f"{verdict.event.value}: {verdict.reason}",
            code=verdict.code,
            http_status=verdict.http_status,
            task_id=job.get("task_id"),
        )

    async def _pace(self) -> None:
        """Hold a request until its send slot is near, whatever the time spent between the
        scheduler's decision and the send (reading a large file, say)."""
        while (delay := self.budget.send_delay(self.ctx.clock.mono())) > 0:
            await self.ctx.clock.sleep(delay)

    async def _slot(self) -> None:
        """Take the send slot right before the request leaves, nothing awaited in between:
        paced on actual send times, two requests never share a slot (budget.try_send)."""
        while (delay := self.budget.try_send(self.ctx.clock.mono())) > 0:
            await self.ctx.clock.sleep(delay)


def _cause(job: Mapping[str, Any]) -> str | None:
    """Why this create is a second one for the same content (None for a first create)."""
    return job["cause"] if job["attempts"] or job["ambiguous"] or job["requests"] else None
