"""The intake room: settled files into jobs, and images paired with their sidecar masks.

One job per content (folder + hash + mask hash): the same bytes twice make one job; a file
dropped again after a failure requeues its job; a rename while waiting follows the file.
Files that fail their checks are recorded as failing, so the runtime moves them to failed/
without any API call. Records are batched into one ledger transaction per flush. Images
waiting for their sidecar mask are noted in the ledger with their deadline, so a restart
keeps the wait and its end. The checks themselves (`watchd.intake.prepare`) run through
`ctx.offload`; this room does no file reads of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchd.config import FolderConfig
from watchd.filters import mask_stem
from watchd.intake import (
    NeedsMask,
    Outcome,
    Prepared,
    Rejected,
    StillWriting,
    Unreadable,
    prepare,
    settings_of,
)
from watchd.ledger import job_key
from watchd.lifecycle import Event, State
from watchd.runtime.context import Context

RECORD_BATCH = 256  # checked files recorded per ledger transaction, at most
RECORD_DELAY = 0.05  # seconds a checked file may wait to be recorded with others


class Intake:
    def __init__(
        self,
        ctx: Context,
        *,
        move_duplicate: Callable[[dict[str, Any], str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self.ctx = ctx
        self._unrecorded: list[tuple[FolderConfig, Outcome]] = []
        self._flusher: asyncio.TimerHandle | None = None
        # Moving a duplicate's copy into done/ is file work: the runtime spawns it.
        self.move_duplicate = move_duplicate or (lambda fields, path, job: None)

    def is_known(self, folder: str, path: Path) -> bool:
        """An unfinished job already holds this file: a repeated hint costs no read."""
        return self.ctx.ledger.active_at_path(folder, str(path)) is not None

    async def take_many(self, items: list[tuple[str, Path]]) -> list[Outcome | None]:
        """Check settled files in one offloaded call (a 50,000-file backlog is a few hundred
        hand-offs, not 50,000), then queue them for the next batched record."""
        folders = self.ctx.folders
        work = [(folders.get(name), path) for name, path in items]
        now = self.ctx.clock.wall()

        def check_all() -> list[Outcome | None]:
            return [_check_one(f, p, now) for f, p in work]

        outcomes: list[Outcome | None] = await self.ctx.offload(check_all)
        for (folder, _), outcome in zip(work, outcomes, strict=True):
            if folder is not None and outcome is not None:
                self._unrecorded.append((folder, outcome))
        if len(self._unrecorded) >= RECORD_BATCH:
            self.flush()
        elif self._unrecorded and self._flusher is None:
            self._flusher = asyncio.get_running_loop().call_later(RECORD_DELAY, self.flush)
        return outcomes

    def flush(self) -> None:
        """Record the files checked since the last flush in one transaction. A crash before
        this loses nothing: the files are still in the inbox and are taken again on start."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        batch, self._unrecorded = self._unrecorded, []
        if not batch:
            return
        ledger = self.ctx.ledger
        with ledger.atomic():
            for folder, outcome in batch:
                try:
                    with ledger.atomic():  # a savepoint: one bad file spoils no other
                        self.record(folder, outcome)
                except (sqlite3.Error, OSError) as exc:
                    self.ctx.log.error(
                        "could not record a file; it stays in the inbox and is"
                        " taken again at the next scan",
                        folder=folder.name,
                        file=_name_of(outcome),
                        error=repr(exc),
                    )

    def record(
        self, folder: FolderConfig, outcome: Outcome, *, keep_original: bool = False
    ) -> int | None:
        ctx = self.ctx
        log = ctx.log.bind(folder=folder.name, file=_name_of(outcome))
        if isinstance(outcome, NeedsMask):
            due = ctx.clock.mono() + folder.sidecar_wait
            ctx.ledger.wait_for_mask(folder.name, str(outcome.path), due)
            ctx.wake()
            return None
        if isinstance(outcome, StillWriting):
            return None
        if isinstance(outcome, Unreadable):
            log.warning("file left in the inbox: watchd may not read it", reason=outcome.reason)
            return None
        if isinstance(outcome, Rejected):
            ctx.ledger.end_mask_wait(folder.name, str(outcome.path))
            return self._record_rejected(folder, outcome, keep_original)
        assert isinstance(outcome, Prepared)
        fields = dict(outcome.fields, keep_original=int(keep_original))
        path = fields["path"]
        ctx.ledger.end_mask_wait(folder.name, path)
        if keep_original:
            fields["rel"] = fields["name"]
        existing = ctx.ledger.by_key(outcome.key)
        if existing is None:
            job_id = ctx.ledger.add_job(fields)
            log.info(
                "job recorded",
                job=job_id,
                state="waiting",
                size=fields["size"],
                width=fields["width"],
                height=fields["height"],
            )
            ctx.wake()
            return job_id
        job_id, state = existing["id"], State(existing["state"])
        log = log.bind(job=job_id)
        if existing["path"] == path and state not in (State.FAILED, State.GONE):
            return job_id  # a repeated hint for a file already in work (or left in place)
        if state == State.FAILED and existing["path"] == path and not _retry_asked(
            ctx.ledger.events_of(job_id)
        ):
            # Failed, but its original could not be moved to failed/ (the reason says why): it
            # stays where it is, and a rescan must not take it for a new drop and pay again.
            return job_id
        if state == State.FAILED and self._seen_as_duplicate(job_id, path):
            # A copy that came while its job was in work shares that job's fate.
            if not keep_original:
                self.move_duplicate({**fields, "id": job_id}, path, existing)
            return job_id
        if state in (State.FAILED, State.GONE):
            return self._requeue(existing, fields, log)
        if state == State.WAITING and not os.path.lexists(existing["path"]):
            ctx.commit(
                job_id,
                Event.RENAMED,
                {"from": existing["path"], "to": path},
                path=path,
                name=fields["name"],
                rel=fields["rel"],
            )
            return job_id
        # The same bytes twice in one folder: never paid for twice. A copy of a job still
        # in work waits in the inbox and follows it: to done/ once it is done, to failed/
        # if it fails (done/ only ever holds what was expanded, or exact copies of it).
        if not self._seen_as_duplicate(job_id, path):
            ctx.ledger.note(job_id, "duplicate", {"path": path})
            log.info("duplicate of an existing job: not sent again", duplicate=path)
        if state == State.DONE and not keep_original:
            self.move_duplicate({**fields, "id": job_id}, path, existing)
        return job_id

    def _seen_as_duplicate(self, job_id: int, path: str) -> bool:
        return any(
            e["event"] == "duplicate" and _detail(e).get("path") == path
            for e in self.ctx.ledger.events_of(job_id)
        )

    def _requeue(self, job: dict[str, Any], fields: dict[str, Any], log: Any) -> int:
        """The same bytes dropped again after a failure (or put back by `watchd retry`): the
        user wants them processed. A task that finished may still hold the result: ask it
        before paying for a new one."""
        ctx = self.ctx
        by_retry = _retry_asked(ctx.ledger.events_of(job["id"]))
        keep = {k: v for k, v in fields.items() if k not in ("folder", "key", "size", "sha256")}
        keep["cause"] = "retry" if by_retry else "requeue"
        keep.pop("mask_sha256", None)
        if job["state"] == State.FAILED and job["task_id"] and job["processed_at"]:
            ctx.commit(
                job["id"],
                Event.REQUERY,
                {"path": fields["path"], "by": keep["cause"]},
                deadline=ctx.clock.mono() + ctx.cfg.api.task_timeout,
                **keep,
            )
            log.info("job requeued: its finished task is asked again first", state="processing")
            return job["id"]
        ctx.commit(job["id"], Event.REQUEUE, {"path": fields["path"], "by": keep["cause"]},
                   **keep)  # fmt: skip
        log.info("job requeued: the same file was dropped again", state="waiting")
        return job["id"]

    def _record_rejected(
        self, folder: FolderConfig, rej: Rejected, keep_original: bool
    ) -> int | None:
        ctx = self.ctx
        log = ctx.log.bind(folder=folder.name, file=rej.path.name)
        key = job_key(folder.name, rej.sha256) if rej.sha256 else None
        existing = ctx.ledger.by_key(key) if key else None
        if existing is None:
            # A file refused before hashing has no key: one job per path and content state.
            existing = ctx.ledger.active_at_path(folder.name, str(rej.path))
        if existing is not None and existing["path"] == str(rej.path):
            return existing["id"]
        stamp = f"{ctx.clock.wall():.6f}"
        if existing is not None:
            # Same bytes, already known: the job keeps its row; this copy fails beside it.
            key = f"{key}:{stamp}"
        fields = {
            "folder": folder.name,
            "key": key or f"{folder.name}:path:{rej.path}:{stamp}",
            "path": str(rej.path),
            "name": rej.path.name,
            "rel": os.path.relpath(rej.path, folder.inbox),
            "size": rej.size,
            "sha256": rej.sha256,
            "mask_path": str(rej.mask_path) if rej.mask_path else None,
            "post": settings_of(folder),
            "keep_original": int(keep_original),
            "error_reason": rej.reason,
            "error_code": rej.code,
        }
        job_id = ctx.ledger.add_job(fields, state=State.FAILING)
        log.warning(
            "file failed its checks before upload (no API call made)",
            job=job_id,
            code=rej.code,
            reason=rej.reason,
        )
        ctx.wake()
        return job_id

    # -- sidecar masks ------------------------------------------------------------------

    def images_waiting_for(self, folder: str, mask: Path) -> list[Path]:
        """The images of `folder` that wait for this (settled) mask."""
        stem = mask_stem(mask.name)
        if stem is None:
            return []
        return [
            Path(w["path"])
            for w in self.ctx.ledger.mask_waits()
            if w["folder"] == folder
            and Path(w["path"]).parent == mask.parent
            and Path(w["path"]).stem == stem
        ]

    def expire_mask_waits(self, now: float) -> float | None:
        """Fail the images whose mask did not come in time; return the next deadline."""
        ctx = self.ctx
        upcoming = []
        for wait in ctx.ledger.mask_waits():
            if wait["due"] > now:
                upcoming.append(wait["due"])
                continue
            folder = ctx.folders.get(wait["folder"])
            path = Path(wait["path"])
            if folder is None or not os.path.lexists(path):
                ctx.ledger.end_mask_wait(wait["folder"], wait["path"])
                continue
            reason = (
                f"no sidecar mask ({path.stem}.mask.png, .mask.jpg or .mask.jpeg) arrived"
                f" within {folder.sidecar_wait:g} s after the image"
            )
            self.record(folder, Rejected("sidecar_missing", reason, path))
        return min(upcoming) if upcoming else None


def _check_one(folder: FolderConfig | None, path: Path, now: float) -> Outcome | None:
    """One file's checks; what happens to one file never spoils the others of its batch
    (a file that vanished since its hint is simply not there any more)."""
    if folder is None:
        return None
    try:
        return prepare(folder, path, now=now)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Unreadable(path, f"cannot read it: {exc.strerror or exc}")


def _retry_asked(events: list[dict[str, Any]]) -> bool:
    """`watchd retry` (or the dashboard's) was the last thing to happen to the job."""
    return bool(events) and events[-1]["event"] == "retry_requested"


def _detail(event: dict[str, Any]) -> dict[str, Any]:
    return json.loads(event["detail"]) if event["detail"] else {}


def _name_of(outcome: Outcome) -> str:
    return outcome.fields["name"] if isinstance(outcome, Prepared) else outcome.path.name
