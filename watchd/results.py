"""The engine's last steps: fetch a finished task's result, write the outbox, move originals.

Mixed into Engine (engine.py), whose ledger, logger and retry policy it uses. The order is
the crash-safety contract: outbox names and hashes committed, files written and fsynced,
state committed, then the original moved. Worker threads only touch files, never the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from watchd import outbox
from watchd.download import DownloadError, fetch_result
from watchd.errors import PermanentApiError, backoff_delay
from watchd.imaging import finish_result
from watchd.ledger import decode
from watchd.lifecycle import Event, IllegalTransition


class ResultSteps:
    """Download, outbox, done/ and failed/ (a mixin of Engine)."""

    async def _download(self, job_id: int) -> None:
        job = self.ledger.get(job_id)
        assert job is not None
        log = self._job_log(job)
        refs = self.inline.pop(job_id, None) or tuple(decode(job, "results") or ())
        if not refs:
            # A restart lost base64 results (never stored) or there were none: ask again.
            self.ledger.transition(job_id, Event.URL_EXPIRED, next_poll_at=self.clock())
            return
        settings = decode(job, "post") or {}
        try:
            async with self.downloads:
                blobs = [
                    await fetch_result(ref, self.download_policy, client=self.download_client)
                    for ref in refs
                ]
            finished = await asyncio.to_thread(_finish_all, blobs, settings)
        except DownloadError as exc:
            if exc.expired and job["task_id"]:
                self.ledger.transition(
                    job_id,
                    Event.URL_EXPIRED,
                    {"error": str(exc)},
                    next_poll_at=self.clock(),
                    results=None,
                )
                log.info("result URL expired; querying the task again for a fresh one")
            elif exc.transient:
                self._download_retry(job, str(exc))
            else:
                self._fail(
                    job, PermanentApiError(f"result unusable: {exc}", task_id=job["task_id"])
                )
            return
        except (OSError, ValueError) as exc:
            self._download_retry(job, f"result could not be processed: {exc}")
            return
        try:
            planned = self._plan_outputs(job, settings, finished)
            outputs = await asyncio.to_thread(_write_planned, planned, finished)
        except outbox.TemplateError as exc:
            self._fail(job, PermanentApiError(f"output name: {exc}", task_id=job["task_id"]))
            return
        except OSError as exc:  # ENOSPC and friends: the job waits, nothing is lost
            self._download_retry(job, f"could not write the outbox: {exc}", give_up=False)
            return
        self.ledger.transition(
            job_id, Event.WRITTEN, {"outputs": outputs}, outputs=outputs, not_before=None
        )
        log.info("result written", outputs=[o["path"] for o in outputs], state="finishing")
        await self._finish_done(job_id)

    def _download_retry(self, job: dict[str, Any], reason: str, *, give_up: bool = True) -> None:
        """A result not saved yet: try again later. Bad results give up after
        retry.max_attempts; a full disk (give_up=False) waits as long as it takes."""
        tries = (job["download_tries"] or 0) + 1
        if give_up and tries >= self.cfg.retry.max_attempts:
            self._fail(
                job,
                PermanentApiError(
                    f"{reason} (gave up after {tries} tries)", task_id=job["task_id"]
                ),
            )
            return
        delay = self._back_off(job, tries, "download_retry", reason, error_reason=reason)
        self._job_log(job).warning(
            "result not saved yet; will retry", reason=reason, retry_in=round(delay, 1)
        )

    def _back_off(
        self, job: dict[str, Any], tries: int, note: str, error: str, **fields: Any
    ) -> float:
        """Note a failed try of this step on the job and put the next one off (exponential
        backoff with jitter, capped); returns the delay."""
        delay = backoff_delay(
            min(tries, 10),
            base=self.cfg.retry.base_delay,
            cap=self.cfg.retry.max_delay,
            rng=self.rng,
        )
        self.ledger.update(
            job["id"],
            {"error": error},
            note=note,
            not_before=self.clock() + delay,
            download_tries=tries,
            **fields,
        )
        return delay

    def _plan_outputs(
        self, job: dict[str, Any], settings: dict[str, Any], finished: list[tuple[bytes, str]]
    ) -> list[dict[str, str]]:
        """The outbox names (and content hashes), committed to the ledger before writing, so
        a replay after a crash recognises its own files instead of writing them twice."""
        planned = decode(job, "outputs") or []
        outbox_dir = Path(settings["outbox"])
        stem = Path(job["name"]).stem
        rel_dir = os.path.dirname(job.get("rel") or "")
        if len(planned) != len(finished):
            planned = []
            original_ext = Path(job["name"]).suffix
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
            self.ledger.update(job["id"], outputs=planned)
        return planned

    def _move_retry(self, job: dict[str, Any], where: str, exc: OSError) -> None:
        """The original could not be moved (a full disk, a permission): try again later."""
        tries = (job["download_tries"] or 0) + 1
        delay = self._back_off(job, tries, "move_retry", str(exc))
        self._job_log(job).warning(
            f"could not move the original to {where}; will retry",
            error=str(exc),
            retry_in=round(delay, 1),
        )

    async def _finish_done(self, job_id: int) -> None:
        job = self.ledger.get(job_id)
        assert job is not None
        settings = decode(job, "post") or {}
        try:
            moved = await asyncio.to_thread(_move_originals, job, Path(settings["done"]), None)
        except OSError as exc:
            self._move_retry(job, "done/", exc)
            return
        self.ledger.transition(job_id, Event.MOVED, {"moved_to": moved}, path=moved or job["path"])
        self._job_log(job).info(
            "job done",
            state="done",
            moved_to=moved,
            outputs=[o["path"] for o in decode(job, "outputs") or []],
            requests=job["requests"],
            attempts=job["attempts"],
        )

    async def _finish_failing(self, job_id: int) -> None:
        job = self.ledger.get(job_id)
        assert job is not None
        settings = decode(job, "post") or {}
        info = {
            "reason": job["error_reason"],
            "code": job["error_code"],
            "http_status": job["error_http_status"],
            "task_id": job["task_id"],
            "attempts": job["attempts"],
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())),
        }
        try:
            moved = await asyncio.to_thread(_move_originals, job, Path(settings["failed"]), info)
        except OSError as exc:
            self._move_retry(job, "failed/", exc)
            return
        with contextlib.suppress(IllegalTransition):
            self.ledger.transition(
                job_id, Event.MOVED, {"moved_to": moved}, path=moved or job["path"]
            )
        self._job_log(job).info(
            "job failed; original moved to failed/",
            state="failed",
            moved_to=moved,
            reason=job["error_reason"],
        )


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


def _move_originals(
    job: dict[str, Any], dest_dir: Path, error: dict[str, Any] | None
) -> str | None:
    """Move the original (and its sidecar mask) out of the inbox. None: nothing to move."""
    if job.get("keep_original"):
        return None
    src = Path(job["path"])
    moved: str | None = None
    if os.path.lexists(src) and src.parent != dest_dir:
        target = (
            outbox.fail_original(src, dest_dir, error)
            if error is not None
            else outbox.move_original(src, dest_dir)
        )
        moved = str(target)
    settings = decode(job, "post") or {}
    mask = job.get("mask_path")
    if mask and settings.get("sidecar") and os.path.lexists(mask):
        outbox.move_original(Path(mask), dest_dir)
    return moved


def _same_format(a: str, b: str) -> bool:
    jpeg = {".jpg", ".jpeg"}
    a, b = a.lower(), b.lower()
    return a == b or (a in jpeg and b in jpeg)
