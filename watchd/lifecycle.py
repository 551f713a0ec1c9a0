"""The job lifecycle: one pure, table-driven state machine.

Every state change of a job is an entry of TRANSITIONS. The module knows nothing about
files, HTTP, time or logging: `step(state, event)` returns the new state and the actions the
caller must carry out, and an event with no entry raises IllegalTransition and changes
nothing. The ledger commits the new state before the caller performs the actions (so a crash
replays them), and the README's diagram is drawn from this same table (`mermaid()`).

    waiting ──submit──▶ submitting ──created──▶ processing ──poll_done──▶ downloading
       ▲                   │  │ sync_done ───────────────────────────────▶   │
       │      create_lost/unsent/retry          poll_pending ⟲              written
       └───────────────────┘                                                 ▼
                                                   done ◀──moved── finishing
    any active state but finishing ──fail──▶ failing ──moved──▶ failed ──requeue──▶ waiting
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    WAITING = "waiting"  # checked and hashed; waiting for a create (maybe after a backoff)
    SUBMITTING = "submitting"  # a create request may be on the wire; no task id yet
    PROCESSING = "processing"  # task id recorded; polling
    DOWNLOADING = "downloading"  # result known; fetching it and writing the outbox
    FINISHING = "finishing"  # outputs durable in the outbox; moving the original to done/
    FAILING = "failing"  # permanent failure recorded; moving the original to failed/
    DONE = "done"
    FAILED = "failed"
    GONE = "gone"  # the original vanished before upload: nothing to do, nothing lost


class Event(StrEnum):
    SUBMIT = "submit"  # the scheduler picked the job for a create (counts an attempt)
    CREATED = "created"  # the create answered with a task id
    SYNC_DONE = "sync_done"  # sync mode: the create answered with the result
    CREATE_LOST = "create_lost"  # sent, answer lost (or crash): the task may exist (ambiguous)
    UNSENT = "unsent"  # the create never left (connect error, 401 pause, shutdown): no charge
    POLL_PENDING = "poll_pending"  # the task is still queued or processing
    POLL_DONE = "poll_done"  # the task finished with a result
    RETRY = "retry"  # transient failure that needs a new task (backoff first)
    URL_EXPIRED = "url_expired"  # the result URL expired: query the task again for a fresh one
    WRITTEN = "written"  # every result is durable in the outbox
    FAIL = "fail"  # permanent failure (or attempts exhausted)
    MOVED = "moved"  # the original reached done/ or failed/
    VANISHED = "vanished"  # the original is gone from the inbox before upload
    REQUEUE = "requeue"  # `watchd retry`, or the same bytes dropped again


ACTIVE = frozenset(
    {State.WAITING, State.SUBMITTING, State.PROCESSING, State.DOWNLOADING, State.FINISHING}
)
TERMINAL = frozenset({State.DONE, State.FAILED, State.GONE})
IN_FLIGHT = frozenset({State.SUBMITTING, State.PROCESSING, State.DOWNLOADING})

S, E = State, Event

# (state, event) -> (new state, actions). Actions name what the caller does next, after the
# new state is committed.
TRANSITIONS: dict[tuple[State, Event], tuple[State, tuple[str, ...]]] = {
    (S.WAITING, E.SUBMIT): (S.SUBMITTING, ("send_create",)),
    (S.WAITING, E.VANISHED): (S.GONE, ()),
    (S.WAITING, E.FAIL): (S.FAILING, ("move_to_failed",)),
    (S.SUBMITTING, E.CREATED): (S.PROCESSING, ("schedule_poll",)),
    (S.SUBMITTING, E.SYNC_DONE): (S.DOWNLOADING, ("download",)),
    (S.SUBMITTING, E.CREATE_LOST): (S.WAITING, ("mark_ambiguous", "backoff")),
    (S.SUBMITTING, E.UNSENT): (S.WAITING, ()),
    (S.SUBMITTING, E.RETRY): (S.WAITING, ("backoff",)),
    (S.SUBMITTING, E.VANISHED): (S.GONE, ()),
    (S.SUBMITTING, E.FAIL): (S.FAILING, ("move_to_failed",)),
    (S.PROCESSING, E.POLL_PENDING): (S.PROCESSING, ("schedule_poll",)),
    (S.PROCESSING, E.POLL_DONE): (S.DOWNLOADING, ("download",)),
    (S.PROCESSING, E.RETRY): (S.WAITING, ("backoff",)),
    (S.PROCESSING, E.FAIL): (S.FAILING, ("move_to_failed",)),
    (S.DOWNLOADING, E.URL_EXPIRED): (S.PROCESSING, ("schedule_poll",)),
    (S.DOWNLOADING, E.RETRY): (S.WAITING, ("backoff",)),
    (S.DOWNLOADING, E.WRITTEN): (S.FINISHING, ("move_to_done",)),
    (S.DOWNLOADING, E.FAIL): (S.FAILING, ("move_to_failed",)),
    (S.FINISHING, E.MOVED): (S.DONE, ()),
    (S.FAILING, E.MOVED): (S.FAILED, ()),
    (S.FAILED, E.REQUEUE): (S.WAITING, ()),
    (S.GONE, E.REQUEUE): (S.WAITING, ()),
}


class IllegalTransition(ValueError):
    """An event that the current state does not accept; the state is left as it was."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"event {event.value!r} is not allowed in state {state.value!r}")
        self.state = state
        self.event = event


@dataclass(frozen=True)
class Step:
    state: State
    actions: tuple[str, ...]


def step(state: State | str, event: Event | str) -> Step:
    """Return the state a job moves to on `event`, and what to do next."""
    state, event = State(state), Event(event)
    try:
        new_state, actions = TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None
    return Step(new_state, actions)


def mermaid() -> str:
    """The state diagram as a Mermaid flowchart, drawn from TRANSITIONS."""
    lines = ["stateDiagram-v2", "    [*] --> waiting"]
    for (src, event), (dst, _) in TRANSITIONS.items():
        lines.append(f"    {src.value} --> {dst.value}: {event.value}")
    lines += ["    done --> [*]", "    failed --> [*]", "    gone --> [*]"]
    return "\n".join(lines)
