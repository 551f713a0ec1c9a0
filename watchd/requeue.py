"""`watchd retry`: put a failed job's original back into its inbox for another go.

The original (and its sidecar mask) moves back into the inbox and its error.json goes; the
job's row notes the request. Intake then takes the file like any other, checks it again
with the folder's current settings, finds the failed job by its content hash and requeues
that same job, history and all. So the daemon, running or started later, does the rest,
and a crash at any point leaves either a failed job or a file in the inbox.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from watchd import outbox
from watchd.config import Config
from watchd.ledger import Ledger
from watchd.lifecycle import State


class RequeueError(Exception):
    """A job that cannot be retried (unknown, not failed, original missing)."""


def requeue(cfg: Config, ledger: Ledger, job_id: int) -> Path:
    """Move job `job_id`'s original back into its inbox; return where it now is."""
    job = ledger.get(job_id)
    if job is None:
        raise RequeueError(f"no job {job_id}")
    if job["state"] != State.FAILED:
        raise RequeueError(f"job {job_id} is {job['state']}, not failed")
    if job["keep_original"]:
        raise RequeueError(f"job {job_id} came from `watchd process`: run that again")
    folder = {f.name: f for f in cfg.folders}.get(job["folder"])
    if folder is None:
        raise RequeueError(
            f"job {job_id} belongs to folder {job['folder']!r}, no longer configured"
        )
    src = Path(job["path"])
    inbox = Path(folder.inbox)
    if src.parent == inbox and os.path.lexists(src):
        return src  # already back (a second `retry`)
    back = _put_back_at(ledger, job_id)
    if back is not None and os.path.lexists(back):
        return back  # already back, and intake has not taken it yet
    if not os.path.lexists(src):
        raise RequeueError(f"job {job_id}: its original is no longer at {src}")
    if not inbox.is_dir():
        raise RequeueError(f"inbox {inbox} of folder {folder.name!r} is missing")
    # The destination is noted first, so intake knows the file it will find there was put
    # back by a retry; the moves never replace a file that appeared in the inbox meanwhile.
    dest = outbox.plan_destination(inbox, src.name)
    ledger.note(job_id, "retry_requested", {"by": "watchd retry", "path": str(dest)})
    mask = job["mask_path"]
    if mask and Path(mask).parent == src.parent and os.path.lexists(mask):
        outbox.move_original(Path(mask), inbox)
    try:
        outbox.move_original_to(src, dest)
    except FileExistsError:  # taken in between: the next free name, noted again
        dest = outbox.move_original(src, inbox)
        ledger.note(job_id, "retry_requested", {"by": "watchd retry", "path": str(dest)})
    with contextlib.suppress(FileNotFoundError):
        os.unlink(outbox.error_json_path(src))
    # Only notes: intake finds the file back in the inbox, by its content, and requeues the
    # job through the lifecycle table (a finished task is asked again first).
    return dest


def _put_back_at(ledger: Ledger, job_id: int) -> Path | None:
    """Where the last `retry` put the original (the note it left), if anywhere."""
    for event in reversed(ledger.events_of(job_id)):
        if event["event"] == "retry_requested" and event["detail"]:
            path = json.loads(event["detail"]).get("path")
            return Path(path) if path else None
    return None
