"""The results room: fetch a finished task's result, write the outbox, move the original.

The order is the crash-safety contract, and every name is recorded before it is used:
- outbox names and content hashes are committed (`planned`), then the files are written and
  fsynced, then `written` is committed;
- the original's destination in done/ or failed/ is committed (`planned`), then it is moved
  there without replacing anything, then `moved` is committed.
A replay after a crash at any instant finds its own files under the recorded names. File
work runs through `ctx.offload` (a worker thread), never touching the ledger.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from watchd import outbox
from watchd.download import DownloadError, DownloadPolicy, fetch_result, policy_for
from watchd.imaging import finish_result
from watchd.ledger import decode
from watchd.lifecycle import Event, State
from watchd.runtime.context import Context

DOWNLOAD_CONCURRENCY = 4


class Results:
    def __init__(
        self,
        ctx: Context,
        client: httpx.AsyncClient,
        *,
        inline: dict[int, tuple[str, ...]],
        on_changed: Callable[[str, Path], None] = lambda folder, path: None,
    ) -> None:
        self.ctx = ctx
        self.client = client
        self.inline = inline  # base64 results the requests room kept in memory
        self.on_changed = on_changed
        self.download_policy: DownloadPolicy = policy_for(ctx.cfg.api.base_url)

    async def download(self, job_id: int) -> None:
        ctx = self.ctx
        job = ctx.ledger.get(job_id)
        if job is None or job["state"] != State.DOWNLOADING:
            return
        overdue = ctx.policy.overdue(job, ctx.clock.mono())
        if overdue is not None:
            self._apply(job, overdue)
            return
        refs = self.inline.pop(job_id, None) or tuple(decode(job, "results") or ())
        if not refs:
            # A restart lost base64 results (never stored), or there were none: ask again.
            ctx.commit(job_id, Event.URL_EXPIRED, {"reason": "no result reference kept"})
            return
        settings = decode(job, "post") or {}
        try:
            blobs = [
                await fetch_result(
                    ref, self.download_policy, client=self.client, offload=ctx.offload
                )
                for ref in refs
            ]
            finished = await ctx.offload(_finish_all, blobs, settings)
        except DownloadError as exc:
            verdict = ctx.policy.after_download_error(
                str(exc), job, expired=exc.expired, transient=exc.transient
            )
            self._apply(job, verdict)
            return
        except (OSError, ValueError) as exc:
            reason = f"result could not be processed: {exc}"
            self._apply(
                job, ctx.policy.after_download_error(reason, job, expired=False, transient=True)
            )
            return
        try:
            planned = self._plan_outputs(job, settings, finished)
        except outbox.TemplateError as exc:
            self._apply(job, ctx.policy.after_download_error(
                f"output name: {exc}", job, expired=False, transient=False))  # fmt: skip
            return
        try:
            outputs = await ctx.offload(_write_planned, planned, finished)
        except OSError as exc:  # ENOSPC and friends: the job waits, up to the result's life
            reason = f"could not write the outbox: {exc}"
            self._apply(job, ctx.policy.after_write_error(reason, job))
            return
        bytes_down = sum(len(b) for b in blobs)
        ctx.commit(
            job_id, Event.WRITTEN, {"outputs": outputs, "bytes_down": bytes_down}, outputs=outputs
        )
        ctx.job_log(job).info(
            "result written", outputs=[o["path"] for o in outputs], state="finishing"
        )
        await self.move_to_done(job_id)

    def _plan_outputs(
        self, job: dict[str, Any], settings: dict[str, Any], finished: list[tuple[bytes, str]]
    ) -> list[dict[str, str]]:
        """The outbox names (and content hashes), committed before writing, so a replay after
        a crash recognises its own files instead of writing them twice."""
        planned = decode(job, "outputs") or []
        if len(planned) == len(finished):
            return planned
        outbox_dir = Path(settings["outbox"])
        stem = Path(job["name"]).stem
        rel_dir = os.path.dirname(job.get("rel") or "")
        original_ext = Path(job["name"]).suffix
        planned = []
        for index, (data, ext) in enumerate(finished, start=1):
            if _same_format(ext, original_ext):
                ext = original_ext  # keep the user's spelling: "Lamp.JPG" stays ".JPG"
            name = outbox.render_name(
                settings["output"],
                stem=stem,
                ext=ext,
                name=job["name"],
                folder=job["folder"],
                job=job["id"],
                dir=rel_dir,
            )
            if index > 1:
                name = outbox.with_suffix_number(name, index, sep="-")
            target = outbox.free_name(outbox_dir, name)
            planned.append({"path": str(target), "sha256": hashlib.sha256(data).hexdigest()})
        self.ctx.commit(job["id"], Event.PLANNED, {"outputs": planned}, outputs=planned)
        return planned

    # -- originals ----------------------------------------------------------------------

    async def move_to_done(self, job_id: int) -> None:
        await self._move(job_id, State.FINISHING, "done")

    async def move_to_failed(self, job_id: int) -> None:
        await self._move(job_id, State.FAILING, "failed")

    async def _move(self, job_id: int, state: State, where: str) -> None:
        ctx = self.ctx
        job = ctx.ledger.get(job_id)
        if job is None or job["state"] != state:
            return
        log = ctx.job_log(job)
        settings = decode(job, "post") or {}
        src = Path(job["path"])
        if job["keep_original"]:
            ctx.commit(job_id, Event.MOVED, {"to": None})
            self._log_end(job, None)
            return
        info = _error_info(job, ctx.clock.wall()) if state == State.FAILING else None
        try:
            if job["dest"] is None:
                dest = await ctx.offload(
                    outbox.plan_destination, Path(settings[where]), src.name,
                    report=state == State.FAILING,
                )  # fmt: skip
                ctx.commit(job_id, Event.PLANNED, {"dest": str(dest)}, dest=str(dest))
            else:
                dest = Path(job["dest"])
            moved = await ctx.offload(_move_original, job, dest, info)
        except outbox.Changed:
            # New bytes under the job's name (a re-export): they are not what was expanded,
            # so they stay in the inbox and are taken as a job of their own.
            ctx.commit(job_id, Event.MOVED, {"to": None, "reason": "overwritten in the inbox"})
            log.warning("the original changed while its job ran; the new file stays in the inbox")
            self.on_changed(job["folder"], src)
            return
        except OSError as exc:
            # A name taken in between (FileExistsError), a full disk, a permission: try again
            # later, under a newly planned name, a bounded number of times.
            verdict = ctx.policy.after_move_error(
                f"could not move the original to {where}/: {exc}", job
            )
            self._apply(job, verdict, dest=None)
            return
        if moved is None:
            ctx.commit(job_id, Event.MOVED, {"to": None, "reason": "the original is gone"})
        else:
            ctx.commit(job_id, Event.MOVED, {"to": str(moved)}, path=str(moved))
        self._log_end(job, None if moved is None else str(moved))
        self._release_duplicates(job)

    def _release_duplicates(self, job: dict[str, Any]) -> None:
        """Copies of this job's original that came while it worked waited in the inbox to
        share its fate: now that it is known, have intake look at them again."""
        for event in self.ctx.ledger.events_of(job["id"]):
            if event["event"] == "duplicate" and event["detail"]:
                path = json.loads(event["detail"]).get("path")
                if path:
                    self.on_changed(job["folder"], Path(path))

    def _log_end(self, job: dict[str, Any], moved: str | None) -> None:
        log = self.ctx.job_log(job)
        if job["state"] == State.FINISHING:
            log.info(
                "job done",
                state="done",
                moved_to=moved,
                outputs=[o["path"] for o in decode(job, "outputs") or []],
                requests=job["requests"],
                attempts=job["attempts"],
            )
        else:
            log.info(
                "job failed; original moved to failed/",
                state="failed",
                moved_to=moved,
                reason=job["error_reason"],
            )

    def _apply(self, job: dict[str, Any], verdict: Any, **fields: Any) -> None:
        self.ctx.apply(job, verdict, **fields)
        self.ctx.job_log(job).warning(
            f"{verdict.event.value}: {verdict.reason}", code=verdict.code
        )


def _error_info(job: dict[str, Any], wall: float) -> dict[str, Any]:
    return {
        "reason": job["error_reason"],
        "code": job["error_code"],
        "http_status": job["error_http_status"],
        "task_id": job["task_id"],
        "attempts": job["attempts"],
        "at": datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _move_original(
    job: dict[str, Any], dest: Path, error: dict[str, Any] | None
) -> Path | None:
    """Move the original to its recorded destination (a worker thread: no ledger here),
    with its report beside it in failed/. None if the original is gone altogether.

    Idempotent: an original already at `dest` (a crash after the move) is found there. The
    bytes are checked first: an original overwritten since it was checked raises Changed.
    """
    src = Path(job["path"])
    sha = job.get("sha256")
    if os.path.lexists(src) and sha and outbox.sha256_file(src) not in (sha, None):
        raise outbox.Changed(src)
    try:
        if error is None:
            outbox.move_original_to(src, dest, sha256=sha)
        else:
            outbox.fail_original_to(src, dest, error, sha256=sha)
    except FileNotFoundError:
        if os.path.lexists(src):
            raise  # the destination folder is missing, not the original
        return None
    mask = job.get("mask_path")
    settings = decode(job, "post") or {}
    if mask and settings.get("sidecar") and os.path.lexists(mask):
        outbox.move_original(Path(mask), dest.parent)
    return dest


def move_duplicate(fields: dict[str, Any], error: dict[str, Any] | None) -> str | None:
    """Move a duplicate's copy (and its sidecar mask) into done/, or into failed/ with
    `error` as its reason; a worker thread. None if it is gone already."""
    src = Path(fields["path"])
    if not os.path.lexists(src) or outbox.sha256_file(src) != fields["sha256"]:
        return None  # gone, or written over since (new bytes are a job of their own)
    settings = fields["post"] if isinstance(fields["post"], dict) else decode(fields, "post")
    where = Path(settings["done"] if error is None else settings["failed"])
    moved = (
        outbox.move_original(src, where)
        if error is None
        else outbox.fail_original(src, where, error)
    )
    mask = fields.get("mask_path")
    if mask and settings.get("sidecar") and os.path.lexists(mask):
        outbox.move_original(Path(mask), where)
    return str(moved)


def _write_planned(
    planned: list[dict[str, str]], finished: list[tuple[bytes, str]]
) -> list[dict[str, str]]:
    """Write each result at its planned name (a worker thread: no ledger access here)."""
    written = []
    for plan, (data, _) in zip(planned, finished, strict=True):
        path = outbox.ensure_written(Path(plan["path"]), data, plan["sha256"])
        written.append({"path": str(path), "sha256": plan["sha256"]})
    return written


def _finish_all(blobs: list[bytes], settings: dict[str, Any]) -> list[tuple[bytes, str]]:
    aspect = tuple(settings["aspect"]) if settings.get("aspect") else None
    size = tuple(settings["size"]) if settings.get("size") else None
    return [
        finish_result(
            blob,
            aspect=aspect,
            size=size,
            output_format=settings["output_format"],
            quality=settings["quality"],
        )
        for blob in blobs
    ]


def _same_format(a: str, b: str) -> bool:
    jpeg = {".jpg", ".jpeg"}
    a, b = a.lower(), b.lower()
    return a == b or (a in jpeg and b in jpeg)
