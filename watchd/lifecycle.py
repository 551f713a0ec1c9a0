"""The job lifecycle: one pure, table-driven state machine that decides every change of a job.

Every change of a job, its state *and* its bookkeeping (attempts, requests, polls, tries,
when its next step is due, its give-up deadline, planned names and destinations), is one
transition: `step(job, event, data, wall=, mono=)` checks the event against TRANSITIONS,
applies the event's declared EFFECTS and returns the new state with the exact fields to
commit. An event the state does not accept, or data the event may not carry, raises and
changes nothing. The ledger commits the result with its event row in one transaction
(`Ledger.commit`), and only then does the runtime act. The module knows nothing of files,
HTTP, clocks or logs: the times come in as arguments.

Each active state has exactly one piece of WORK that the runtime carries out when the job
is due (`due`, in the ledger's monotonic time), so a job can only leave a state through a
transition, and every state has a way out: its work ends in an event, and a step that
keeps failing ends in GIVE_UP.

    waiting ──submit──▶ submitting ──created──▶ processing ──poll_done──▶ downloading
       ▲                   │  │ sync_done ───────────────────────────────▶  │  │
       │    create_lost, unsent, retry        poll_pending ⟲  ◀─url_expired─┘  written
       └───────────────────┘                                                   ▼
                                                     done ◀──moved── finishing
    any active state ──fail, give_up──▶ failing ──moved, give_up──▶ failed ──requeue──▶ waiting
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    WAITING = "waiting"  # checked and hashed; waiting for a create (maybe after a backoff)
    SUBMITTING = "submitting"  # a create may be on the wire; no task id yet
    PROCESSING = "processing"  # task id recorded; querying it
    DOWNLOADING = "downloading"  # result known; fetching it and writing the outbox
    FINISHING = "finishing"  # outputs durable in the outbox; moving the original to done/
    FAILING = "failing"  # failure recorded; moving the original to failed/
    DONE = "done"
    FAILED = "failed"
    GONE = "gone"  # the original vanished or changed before upload: nothing was paid


class Event(StrEnum):
    SUBMIT = "submit"  # the scheduler picked the job for a create (an attempt, counted first)
    CREATED = "created"  # the create answered with a task id
    SYNC_DONE = "sync_done"  # sync mode: the create answered with the result
    CREATE_LOST = "create_lost"  # sent, answer lost (or a crash): the task may exist
    UNSENT = "unsent"  # the create never reached the API (429, connect error, 401): no charge
    RETRY = "retry"  # a transient failure that needs a new task
    POLL_PENDING = "poll_pending"  # the task is still queued or processing
    POLL_ERROR = "poll_error"  # the query itself failed (429, 5xx, connection): ask again
    POLL_DONE = "poll_done"  # the task finished with a result
    URL_EXPIRED = "url_expired"  # the result could not be fetched: query for a fresh URL
    PLANNED = "planned"  # outbox names or the original's destination, recorded before writing
    WRITTEN = "written"  # every result is durable in the outbox
    MOVED = "moved"  # the original reached done/ or failed/
    STEP_FAILED = "step_failed"  # this step failed for a reason that may pass: try it again
    INTERNAL_ERROR = "internal_error"  # a bug in a step: noted, retried later, bounded
    FAIL = "fail"  # a permanent failure (or attempts exhausted)
    GIVE_UP = "give_up"  # a step that kept failing, or a deadline that passed
    RENAMED = "renamed"  # the original was renamed in the inbox while waiting
    VANISHED = "vanished"  # the original is gone (or changed) before upload
    REQUEUE = "requeue"  # `watchd retry`, or the same bytes dropped again
    REQUERY = "requery"  # the same, for a job whose finished task may still hold its result


class Work(StrEnum):
    """What the runtime does for a job of a state once the job is due."""

    CREATE = "create"  # when the scheduler and the budget allow
    RECOVER = "recover"  # a create that is not in flight in this process: its answer is lost
    QUERY = "query"  # when the scheduler and the budget allow
    DOWNLOAD = "download"
    MOVE_TO_DONE = "move_to_done"
    MOVE_TO_FAILED = "move_to_failed"


S, E = State, Event

WORK: dict[State, Work] = {
    S.WAITING: Work.CREATE,
    S.SUBMITTING: Work.RECOVER,
    S.PROCESSING: Work.QUERY,
    S.DOWNLOADING: Work.DOWNLOAD,
    S.FINISHING: Work.MOVE_TO_DONE,
    S.FAILING: Work.MOVE_TO_FAILED,
}

TERMINAL = frozenset({S.DONE, S.FAILED, S.GONE})
ACTIVE = frozenset(WORK)
IN_FLIGHT = frozenset({S.SUBMITTING, S.PROCESSING, S.DOWNLOADING})
_ALL_ACTIVE = tuple(ACTIVE)

# (state, event) -> new state.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.WAITING, E.SUBMIT): S.SUBMITTING,
    (S.WAITING, E.RENAMED): S.WAITING,
    (S.WAITING, E.VANISHED): S.GONE,
    (S.SUBMITTING, E.CREATED): S.PROCESSING,
    (S.SUBMITTING, E.SYNC_DONE): S.DOWNLOADING,
    (S.SUBMITTING, E.CREATE_LOST): S.WAITING,
    (S.SUBMITTING, E.UNSENT): S.WAITING,
    (S.SUBMITTING, E.RETRY): S.WAITING,
    (S.SUBMITTING, E.VANISHED): S.GONE,
    (S.PROCESSING, E.POLL_PENDING): S.PROCESSING,
    (S.PROCESSING, E.POLL_ERROR): S.PROCESSING,
    (S.PROCESSING, E.POLL_DONE): S.DOWNLOADING,
    (S.PROCESSING, E.RETRY): S.WAITING,
    (S.DOWNLOADING, E.URL_EXPIRED): S.PROCESSING,
    (S.DOWNLOADING, E.PLANNED): S.DOWNLOADING,
    (S.DOWNLOADING, E.WRITTEN): S.FINISHING,
    (S.FINISHING, E.PLANNED): S.FINISHING,
    (S.FINISHING, E.MOVED): S.DONE,
    (S.FINISHING, E.GIVE_UP): S.DONE,  # results are in the outbox; the original stays put
    (S.FAILING, E.PLANNED): S.FAILING,
    (S.FAILING, E.MOVED): S.FAILED,
    (S.FAILING, E.GIVE_UP): S.FAILED,  # the reason is in the ledger; the original stays put
    (S.FAILED, E.REQUEUE): S.WAITING,
    (S.GONE, E.REQUEUE): S.WAITING,
    (S.FAILED, E.REQUERY): S.PROCESSING,
    # From every active state: bounded retries of the same step, and the ways to fail.
    **{(s, E.STEP_FAILED): s for s in _ALL_ACTIVE},
    **{(s, E.INTERNAL_ERROR): s for s in _ALL_ACTIVE if s != S.SUBMITTING},
    **{(s, E.FAIL): S.FAILING for s in _ALL_ACTIVE if s != S.FAILING},
    **{(s, E.GIVE_UP): S.FAILING for s in _ALL_ACTIVE if s not in (S.FINISHING, S.FAILING)},
}
# SUBMITTING has no INTERNAL_ERROR: a create that broke after its commit may have left, so
# the runtime records it as CREATE_LOST (ambiguous), never as a plain retry.

_ERROR = frozenset({"error_reason", "error_code", "error_http_status"})
_RESULT = frozenset({"task_id", "results", "processed_at", "task_seconds"})


@dataclass(frozen=True)
class Effect:
    """The bookkeeping an event does, wherever it happens.

    counts: counters that go up by one; `attempts` goes down by one for `uncounts`.
    may_set: the fields the event's data may set (anything else raises).
    clears: fields reset to nothing (counters to 0). A change of state resets `tries`.
    fixed: fields always set to one value, such as `cause`: why the job's next create
    would be a second one (spend accounting tells extra creates apart by it).
    """

    counts: tuple[str, ...] = ()
    uncounts: tuple[str, ...] = ()
    may_set: frozenset[str] = frozenset()
    clears: tuple[str, ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()  # fields the event always sets to these values


_ANY = frozenset({"due"})
# What a file dropped again (or put back by `watchd retry`) brings: where it is now, and the
# folder's settings as they are now. `cause` says which of the two it was.
_REDROP = _ANY | {
    "path", "name", "rel", "params", "post", "upload_sha256", "upload_size", "upload_width",
    "upload_height", "width", "height", "mask_path", "mask_sha256", "keep_original", "cause",
}  # fmt: skip
EFFECTS: dict[Event, Effect] = {
    E.SUBMIT: Effect(
        counts=("attempts",),
        may_set=_ANY | {"submitted_at", "started", "deadline"},
        clears=("task_id", "polls", "polled", "results", "result_deadline", "processed_at"),
    ),
    E.CREATED: Effect(counts=("requests",), may_set=_ANY | {"task_id", "deadline"}),
    E.SYNC_DONE: Effect(
        counts=("requests",), may_set=_ANY | _RESULT | {"deadline", "result_deadline"}
    ),
    E.CREATE_LOST: Effect(
        counts=("requests", "ambiguous"), may_set=_ANY | _ERROR, fixed=(("cause", "ambiguous"),)
    ),
    E.UNSENT: Effect(uncounts=("attempts",), may_set=_ANY | _ERROR),
    E.RETRY: Effect(
        counts=("requests",),
        may_set=_ANY | _ERROR,
        clears=("deadline",),
        fixed=(("cause", "task_failed"),),
    ),
    E.POLL_PENDING: Effect(counts=("requests", "polls"), may_set=_ANY | {"polled"}),
    E.POLL_ERROR: Effect(counts=("requests", "tries"), may_set=_ANY | _ERROR),
    E.POLL_DONE: Effect(
        counts=("requests", "polls"),
        may_set=_ANY | _RESULT | {"polled", "deadline", "result_deadline"},
    ),
    E.URL_EXPIRED: Effect(counts=("tries",), may_set=_ANY | _ERROR, clears=("results",)),
    E.PLANNED: Effect(may_set=_ANY | {"outputs", "dest"}),
    E.WRITTEN: Effect(may_set=_ANY | {"outputs"}, clears=("deadline",)),
    E.MOVED: Effect(may_set=_ANY | {"path"}),
    E.STEP_FAILED: Effect(counts=("tries",), may_set=_ANY | _ERROR | {"dest"}),
    E.INTERNAL_ERROR: Effect(counts=("tries",), may_set=_ANY | _ERROR),
    E.FAIL: Effect(may_set=_ANY | _ERROR, clears=("deadline",)),
    E.GIVE_UP: Effect(may_set=_ANY | _ERROR | {"dest"}, clears=("deadline",)),
    E.RENAMED: Effect(may_set=_ANY | {"path", "name", "rel"}),
    E.VANISHED: Effect(),
    E.REQUEUE: Effect(
        may_set=_REDROP,
        clears=("attempts", "task_id", "results", "outputs", "dest", "deadline",
                "result_deadline", "error_reason", "error_code", "error_http_status",
                "processed_at"),
    ),
    # A retried job whose task had finished: query that task before paying for a new one.
    E.REQUERY: Effect(
        may_set=_REDROP | {"deadline"},
        clears=("attempts", "results", "outputs", "dest", "result_deadline", "error_reason",
                "error_code", "error_http_status"),
    ),
}  # fmt: skip

_COUNTERS = ("attempts", "requests", "polls", "ambiguous", "tries")


class IllegalTransition(ValueError):
    """An event that the current state does not accept; the state is left as it was."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"event {event.value!r} is not allowed in state {state.value!r}")
        self.state = state
        self.event = event


class IllegalData(ValueError):
    """An event carrying fields it may not set: bookkeeping outside the table."""


@dataclass(frozen=True)
class Step:
    state: State
    fields: dict[str, Any] = field(default_factory=dict)  # exactly what to commit

    @property
    def work(self) -> Work | None:
        return WORK.get(self.state)


def next_state(state: State | str, event: Event | str) -> State:
    """Where `event` takes a job in `state` (IllegalTransition if nowhere)."""
    state, event = State(state), Event(event)
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def step(
    job: Mapping[str, Any],
    event: Event | str,
    data: Mapping[str, Any] | None = None,
    *,
    wall: float,
    mono: float,
) -> Step:
    """The new state of `job` on `event`, and every field to commit with it.

    `due` (when the new state's work is due, monotonic) defaults to `mono`, at once; a
    terminal state has none. A change of state resets `tries`.
    """
    event = Event(event)
    state = State(job["state"])
    new = next_state(state, event)
    effect = EFFECTS[event]
    data = dict(data or {})
    extra = set(data) - effect.may_set
    if extra:
        raise IllegalData(f"event {event.value!r} may not set {', '.join(sorted(extra))}")
    fields: dict[str, Any] = {n: 0 if n in _COUNTERS else None for n in effect.clears}
    for name in effect.counts:
        fields[name] = (job.get(name) or 0) + 1
    for name in effect.uncounts:
        fields[name] = max(0, (job.get(name) or 0) - 1)
    fields.update(effect.fixed)
    if new != state and "tries" not in effect.counts:
        fields["tries"] = 0
    fields.update(data)
    fields["state"] = new.value
    fields["updated_at"] = wall
    if new in TERMINAL:
        fields["due"] = None
        fields["finished_at"] = wall
    elif fields.get("due") is None:
        fields["due"] = mono
    return Step(new, fields)


def mermaid() -> str:
    """The state diagram as a Mermaid flowchart, drawn from TRANSITIONS (the bounded
    same-state retries, internal errors and give-ups of every state are one line each)."""
    lines = ["stateDiagram-v2", "    [*] --> waiting"]
    common = {E.STEP_FAILED, E.INTERNAL_ERROR, E.FAIL, E.GIVE_UP}
    for (src, event), dst in TRANSITIONS.items():
        if event in common and not (event == E.GIVE_UP and dst != S.FAILING):
            continue
        lines.append(f"    {src.value} --> {dst.value}: {event.value}")
    lines += [
        "    note right of failing: fail and give_up reach failing from every active state",
        "    done --> [*]",
        "    failed --> [*]",
        "    gone --> [*]",
    ]
    return "\n".join(lines)
