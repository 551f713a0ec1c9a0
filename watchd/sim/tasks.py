"""Where a simulated task stands at a given time, and the simulated QPS limit.

Owns: the task timeline (0 queued -> 4 processing -> 1 done, or a negative state at the end),
the state messages of the API doc, and the sliding-window request limiter. Everything here
takes `now` as an argument. Must never: read a clock, sleep, lock, or do I/O.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = [
    "STATE_MESSAGES",
    "Phase",
    "RateWindow",
    "TaskPlan",
    "choose_final_state",
    "phase_at",
]

QUEUED, DONE, PROCESSING = 0, 1, 4

# data.state codes of the API doc and what each means (used as message and state_detail).
STATE_MESSAGES: dict[int, str] = {
    -17: "Processing failed because the prompt is invalid.",
    -16: "Processing failed because a third-party review detected prohibited content.",
    -15: "Processing failed due to insufficient resources.",
    -14: "Processing failed because the input image content does not meet the requirements.",
    -13: "Processing failed because the task was canceled due to an exception.",
    -11: "Processing failed because the result is empty.",
    -10: "Processing failed because internal review detected prohibited content.",
    -9: "Processing failed because the internal program failed during loop processing.",
    -8: "Processing timed out. The maximum processing time is 180 seconds.",
    -7: "Invalid image file (e.g. corrupted image or incorrect format).",
    -5: "The image_url image exceeds the size limit (30MB).",
    -3: "The server failed to download your file.",
    -2: "Processing completed, but uploading the result to OSS failed.",
    -1: "Processing failed.",
    0: "Queued",
    1: "Complete",
    2: "Preparing",
    3: "Waiting",
    4: "Processing",
    5: "Publishing",
    6: "Processing",
}

# Share of the processing time a task spends queued before it starts processing.
QUEUED_SHARE = 0.2


@dataclass(frozen=True)
class TaskPlan:
    """Everything decided about a task when it is created."""

    task_id: str
    created: float  # simulator clock
    duration: float  # seconds from creation to the final state
    final_state: int  # 1, or the negative state it will fail with
    return_type: int  # 1 url, 2 base64

    @property
    def started(self) -> float:
        return self.created + QUEUED_SHARE * self.duration

    @property
    def finished(self) -> float:
        return self.created + self.duration


@dataclass(frozen=True)
class Phase:
    """What a query at one moment sees of a task."""

    state: int
    progress: int
    processed_at: float | None  # simulator clock; None until processing starts
    completed_at: float | None  # None until the final state

    @property
    def finished(self) -> bool:
        return self.state == DONE or self.state < 0


def phase_at(plan: TaskPlan, now: float) -> Phase:
    """The task's state, progress and timestamps as seen at `now`."""
    if now >= plan.finished:
        return Phase(plan.final_state, 100, plan.started, plan.finished)
    if now < plan.started:
        return Phase(QUEUED, 0, None, None)
    span = plan.finished - plan.started
    share = (now - plan.started) / span if span > 0 else 1.0
    # 1..99 while processing: 0 belongs to "queued", 100 to "finished".
    return Phase(PROCESSING, min(99, max(1, int(share * 100))), plan.started, None)


def timeline_fields(plan: TaskPlan, now: float, epoch_offset: float) -> dict[str, Any]:
    """The fields of a query's `data` that tell where the task is, as the API words them:
    state, progress, and its timestamps in whole seconds of the API's clock (the simulator
    clock plus `epoch_offset`)."""
    phase = phase_at(plan, now)

    def stamp(t: float | None) -> str | None:
        return None if t is None else str(int(t + epoch_offset))

    return {
        "task_id": plan.task_id,
        "state": phase.state,
        "progress": phase.progress,
        "created_at": stamp(plan.created),
        "processed_at": stamp(phase.processed_at),
        "completed_at": stamp(phase.completed_at),
        "time_elapsed": f"{min(now, plan.finished) - plan.created:.3f}",
    }


def choose_final_state(
    prompt: str,
    fail_prompt: dict[str, int],
    task_fail: dict[int, float],
    roll: float,
) -> int:
    """1, or the negative state the task will end in.

    A prompt containing a `fail_prompt` key always fails with its state; otherwise `roll`
    (uniform in [0, 1)) picks a `task_fail` state with its probability.
    """
    for needle, state in fail_prompt.items():
        if needle in prompt:
            return state
    edge = 0.0
    for state, probability in sorted(task_fail.items()):
        edge += probability
        if roll < edge:
            return state
    return DONE


class RateWindow:
    """Sliding-window request limit: at most `qps` accepted requests per second.

    For qps below 1 the window widens to 1/qps seconds holding one request, so 0.5 means
    one request per two seconds. Refused requests are not remembered: a client that keeps
    knocking is let in as soon as the window has room. Not thread-safe: the caller locks.
    """

    def __init__(self) -> None:
        self._accepted: deque[float] = deque()

    def try_acquire(self, now: float, qps: float | None) -> bool:
        if not qps:
            return True
        window = max(1.0, 1.0 / qps)
        limit = max(1, math.floor(qps * window + 1e-9))
        while self._accepted and self._accepted[0] <= now - window:
            self._accepted.popleft()
        if len(self._accepted) >= limit:
            return False
        self._accepted.append(now)
        return True
