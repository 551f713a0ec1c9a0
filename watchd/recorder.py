"""The engine's first step: record settled, checked files as jobs.

Mixed into Engine (engine.py). One job per content (folder + hash + mask hash): the same
bytes twice make one job; a file dropped again after a failure requeues its job; a rename
while waiting follows the file. Files that fail their checks go to failed/ without a job
ever reaching the API. Records are batched into one ledger transaction per flush.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from watchd.config import FolderConfig
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
from watchd.results import _move_originals

RECORD_BATCH = 256  # checked files recorded per ledger transaction, at most
RECORD_DELAY = 0.05  # seconds a checked file may wait to be recorded with others


class IntakeSteps:
    """Settled files into jobs (a mixin of Engine)."""

    def is_known(self, folder: str, path: Path) -> bool:
        """An unfinished job already holds this file: a repeated hint costs no read."""
        return self.ledger.active_at_path(folder, str(path)) is not None

    async def take(self, folder_name: str, path: Path) -> Outcome | None:
        """A settled file: check it in a thread, then record it. None if the folder is gone."""
        return (await self.take_many([(folder_name, path)]))[0]

    async def take_many(self, items: list[tuple[str, Path]]) -> list[Outcome | None]:
        """Check settled files in one worker-thread call (a 50,000-file backlog is a few
        hundred hand-offs, not 50,000), then queue them for the next batched record."""
        work = [(self.folders.get(name), path) for name, path in items]
        now = self.clock()

        def check_all() -> list[Outcome | None]:
            return [prepare(f, p, now=now) if f is not None else None for f, p in work]

        outcomes = await asyncio.to_thread(check_all)
        for (folder, _), outcome in zip(work, outcomes, strict=True):
            if folder is not None and outcome is not None:
                self._unrecorded.append((folder, outcome))
        if len(self._unrecorded) >= RECORD_BATCH:
            self.flush()
        elif self._unrecorded and self._flusher is None:
            self._flusher = asyncio.get_running_loop().call_later(RECORD_DELAY, self.flush)
        return outcomes

    def flush(self) -> None:
        """Record the files checked since the last flush in one transaction: a 10,000-file
        drop is a few dozen commits, not 10,000 fsyncs. A crash before this loses nothing:
        the files are still in the inbox and are taken again on start."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        batch, self._unrecorded = self._unrecorded, []
        if batch:
            with self.ledger.atomic():
                for folder, outcome in batch:
                    try:
                        with self.ledger.atomic():  # a savepoint: one bad file spoils no other
                            self.record(folder, outcome)
                    except (sqlite3.Error, OSError) as exc:
                        self.log.error(
                            "could not record a file; it stays in the inbox and is"
                            " taken again at the next scan",
                            folder=folder.name,
                            file=_name_of(outcome),
                            error=repr(exc),
                        )

    def record(
        self, folder: FolderConfig, outcome: Outcome, *, keep_original: bool = False
    ) -> int | None:
        log = self.log.bind(folder=folder.name, file=_name_of(outcome))
        if isinstance(outcome, NeedsMask | StillWriting):
            return None
        if isinstance(outcome, Unreadable):
            log.warning("file left in the inbox: watchd may not read it", reason=outcome.reason)
            return None
        if isinstance(outcome, Rejected):
            return self._record_rejected(folder, outcome, keep_original)
        assert isinstance(outcome, Prepared)
        fields = dict(outcome.fields, keep_original=int(keep_original))
        if keep_original:
            fields["rel"] = fields["name"]
        existing = self.ledger.by_key(outcome.key)
        if existing is None:
            job_id = self.ledger.add_job(fields)
            log.info(
                "job recorded",
                job=job_id,
                state="waiting",
                size=fields["size"],
                width=fields["width"],
                height=fields["height"],
            )
            self.wake.set()
            return job_id
        job_id, state, path = existing["id"], State(existing["state"]), fields["path"]
        log = log.bind(job=job_id)
        if existing["path"] == path and state not in (State.FAILED, State.GONE):
            return job_id  # a repeated hint for a file already in work
        if state in (State.FAILED, State.GONE):
            # The same bytes dropped again after a failure: the user wants them processed.
            keep = {k: v for k, v in fields.items() if k not in ("folder", "key")}
            self.ledger.transition(
                job_id,
                Event.REQUEUE,
                {"path": path},
                **keep,
                attempts=0,
                task_id=None,
                not_before=None,
                error_reason=None,
                error_code=None,
                error_http_status=None,
                outputs=None,
                results=None,
            )
            log.info("job requeued: the same file was dropped again", state="waiting")
            self.wake.set()
            return job_id
        if state == State.WAITING and not os.path.lexists(existing["path"]):
            self.ledger.update(
                job_id,
                {"from": existing["path"], "to": path},
                note="renamed",
                path=path,
                name=fields["name"],
                rel=fields["rel"],
            )
            return job_id
        # The same bytes twice in one folder: never paid for twice.
        if not keep_original:
            duplicate = {**fields, "id": job_id, "keep_original": 0}
            moved = _move_originals(duplicate, Path(fields["post"]["done"]), None)
            self.ledger.note(job_id, "duplicate", {"path": path, "moved_to": moved})
        log.info("duplicate of an existing job: not sent again", duplicate=path)
        return job_id

    def _record_rejected(
        self, folder: FolderConfig, rej: Rejected, keep_original: bool
    ) -> int | None:
        log = self.log.bind(folder=folder.name, file=rej.path.name)
        key = job_key(folder.name, rej.sha256) if rej.sha256 else None
        existing = self.ledger.by_key(key) if key else None
        if existing is not None and existing["path"] == str(rej.path):
            return existing["id"]
        if existing is not None:
            # Same bytes, already known: the job keeps its row; this copy fails beside it.
            key = f"{key}:{self.clock()}"
        fields = {
            "folder": folder.name,
            "key": key or f"{folder.name}:path:{rej.path}:{self.clock()}",
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
        job_id = self.ledger.add_job(fields, state=State.FAILING)
        log.warning(
            "file failed its checks before upload (no API call made)",
            job=job_id,
            code=rej.code,
            reason=rej.reason,
        )
        self._spawn(job_id, self._finish_failing(job_id))
        return job_id


def _name_of(outcome: Outcome) -> str:
    return outcome.fields["name"] if isinstance(outcome, Prepared) else outcome.path.name
