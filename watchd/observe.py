"""The one place that sees every job transition: logs, metrics and notifications hang here.

The ledger calls `Observers.emit()` after each transition is committed (never before: an
observer must never see a change that a crash could still undo). Observers are plain
callables taking a `Transition`; they must be quick and must not block (a notifier hands
its work to a thread of its own). One that raises is logged once and never stops the
engine or the others.

The events and the keys of `detail` that observers may rely on:

| event | from → to | detail |
| --- | --- | --- |
| recorded | — → waiting, or → failing (refused before paying) | path; code, reason when refused |
| submit | waiting → submitting | attempt, cause (below): a create may leave now: spent |
| created | submitting → processing | task_id, bytes_up |
| sync_done | submitting → downloading | task_id, bytes_up, seconds |
| create_lost | submitting → waiting | reason (the answer was lost: the task may exist) |
| unsent | submitting → waiting | reason, http_status (never reached the API: no charge) |
| poll_pending | processing → processing | state, progress |
| poll_error | processing → processing | reason, http_status |
| poll_done | processing → downloading | task_id, seconds |
| retry | submitting/processing → waiting | reason, code, http_status (a new task is needed) |
| url_expired | downloading → processing | reason (the task is queried again for a fresh URL) |
| planned | downloading/finishing/failing → same | outputs or dest (names recorded before writing) |
| written | downloading → finishing | outputs, bytes_down |
| moved | finishing → done, failing → failed | to |
| fail | any active → failing | reason, code, http_status |
| give_up | any active → failing; failing → failed | reason |
| step_failed, internal_error | any active → same | step, reason |
| renamed, vanished, requeue | waiting → waiting; → gone; failed/gone → waiting | path; by |

`cause` of a submit is None for a job's first create, else why it is created again:
"ambiguous" (an earlier answer was lost), "task_failed" (a transient task failure or a
timeout), "retry" (an operator's `watchd retry`), "requeue" (the same bytes dropped again).

Every create or query the API answered adds one to the job's `requests` on the event that
records its outcome; `detail["http_status"] == 429` marks a rate-limited one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog


@dataclass(frozen=True)
class Transition:
    job_id: int
    folder: str
    name: str  # the original's file name
    event: str  # a lifecycle Event value, or "recorded" for a new job
    src: str | None  # the state before (None for "recorded")
    dst: str | None  # the state after (None for a note that changes no state)
    at: float  # wall-clock time of the commit
    detail: Mapping[str, Any] = field(default_factory=dict)
    job: Mapping[str, Any] = field(default_factory=dict)  # the row after the commit


Observer = Callable[[Transition], None]


class Observers:
    """A list of observers, called in order after each commit."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self._broken: set[int] = set()

    def add(self, observer: Observer) -> None:
        self._observers.append(observer)

    def remove(self, observer: Observer) -> None:
        self._observers.remove(observer)

    def __len__(self) -> int:
        return len(self._observers)

    def emit(self, transition: Transition) -> None:
        for observer in self._observers:
            try:
                observer(transition)
            except Exception as exc:
                if id(observer) not in self._broken:  # say it once, not on every transition
                    self._broken.add(id(observer))
                    structlog.get_logger().error(
                        "an observer of job transitions failed; the job is not affected",
                        observer=getattr(observer, "__qualname__", repr(observer)),
                        error=repr(exc),
                    )


def log_transition(t: Transition) -> None:
    """The canonical log line of every committed change of a job (debug level: the rooms log
    what an operator reads at info, with the outcome's own details)."""
    structlog.get_logger().debug(
        "transition",
        job=t.job_id,
        folder=t.folder,
        file=t.name,
        transition=t.event,
        src=t.src,
        dst=t.dst,
        **{k: v for k, v in t.detail.items() if k not in ("job", "folder", "file", "event")},
    )
