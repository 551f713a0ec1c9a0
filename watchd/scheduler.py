"""Which API request goes next: a create, a poll, or nothing yet.

Pure: it takes the time and small views of the ledger, and returns a decision; it never
sends, sleeps or reads the clock. The engine asks it each time the budget has a token.

How it decides (the README explains this to users):
- Polls that are due come first (a finished task frees a slot and delivers a result), but
  never more than two in a row while a create is waiting, so creates are never starved.
- Creates take the oldest waiting job of the folder served least recently (fair across
  folders), while fewer than `max_in_flight` tasks are in flight.
- When the budget has room (nothing waiting for it), tasks are polled every
  `poll_interval` for the lowest latency.
- When requests queue for the budget, a task's first poll is put off until the time by
  which 95% of recent tasks of its folder had finished (learned from the ledger), then it
  is polled every `poll_interval`: near the floor of two requests per task.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from enum import StrEnum

FIRST_POLL_QUANTILE = 0.95
MIN_SAMPLES = 1  # one exact time from the API's timestamps already beats guessing
FOLDER_SAMPLES = 3  # a folder's own times are used once it has this many; before, everyone's
MAX_POLLS_IN_A_ROW = 2


@dataclass(frozen=True)
class Candidate:
    """The oldest waiting job of one folder, ready for a create."""

    job_id: int
    folder: str


@dataclass(frozen=True)
class Task:
    """A created task that is being polled."""

    job_id: int
    folder: str
    submitted_at: float
    next_poll_at: float
    last_poll_at: float | None = None


def _last_contact(task: Task) -> float:
    """The task's last poll, else its create (`is None`: a poll at 0.0 is still a poll)."""
    return task.submitted_at if task.last_poll_at is None else task.last_poll_at


class Kind(StrEnum):
    CREATE = "create"
    POLL = "poll"
    IDLE = "idle"


@dataclass(frozen=True)
class Decision:
    kind: Kind
    job_id: int | None = None
    folder: str | None = None


IDLE = Decision(Kind.IDLE)


class DurationModel:
    """Recent processing times (create → finished), per folder and overall."""

    def __init__(self, window: int = 200) -> None:
        self._by_folder: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._all: deque[float] = deque(maxlen=window)

    def observe(self, folder: str, seconds: float) -> None:
        self._by_folder[folder].append(seconds)
        self._all.append(seconds)

    def quantile(self, folder: str, q: float) -> float | None:
        """The q-quantile of the folder's recent times, else of all folders', else None."""
        samples = self._by_folder.get(folder)
        if samples is None or len(samples) < FOLDER_SAMPLES:
            samples = self._all
        if len(samples) < MIN_SAMPLES:
            return None
        ordered = sorted(samples)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index]


class Scheduler:
    def __init__(self, *, max_in_flight: int, poll_interval: float, model: DurationModel) -> None:
        self.max_in_flight = max_in_flight
        self.poll_interval = poll_interval
        self.model = model
        self._polls_in_a_row = 0
        # When each folder last got a create, as a serial number rather than `now`: two picks
        # at the same instant (a coarse clock, a test) must still take turns.
        self._served = 0
        self._last_create: dict[str, int] = {}

    def pick(
        self,
        now: float,
        candidates: list[Candidate],
        tasks: list[Task],
        in_flight: int,
        contended: bool,
    ) -> Decision:
        can_create = bool(candidates) and in_flight < self.max_in_flight
        due = [t for t in tasks if t.next_poll_at <= now]
        if due and (not can_create or self._polls_in_a_row < MAX_POLLS_IN_A_ROW):
            task = min(due, key=lambda t: (t.next_poll_at, t.job_id))
            self._polls_in_a_row += 1
            return Decision(Kind.POLL, task.job_id, task.folder)
        if can_create:
            chosen = min(candidates, key=lambda c: (self._last_create.get(c.folder, 0), c.job_id))
            self._served += 1
            self._last_create[chosen.folder] = self._served
            self._polls_in_a_row = 0
            return Decision(Kind.CREATE, chosen.job_id, chosen.folder)
        if not contended:
            eager = [t for t in tasks if _last_contact(t) + self.poll_interval <= now]
            if eager:
                task = min(eager, key=lambda t: (t.next_poll_at, t.job_id))
                return Decision(Kind.POLL, task.job_id, task.folder)
        return IDLE

    def wake_time(self, now: float, tasks: list[Task], contended: bool) -> float | None:
        """When a poll next becomes useful, if nothing else happens first."""
        times = [t.next_poll_at for t in tasks]
        if not contended:
            times += [_last_contact(t) + self.poll_interval for t in tasks]
        return min(times) if times else None

    def next_poll_at(
        self, now: float, folder: str, submitted_at: float, polls_done: int, contended: bool
    ) -> float:
        """When to poll a task next (after its create, or after a poll that found it pending)."""
        at = now + self.poll_interval
        if not contended:
            return at
        expected = self.model.quantile(folder, FIRST_POLL_QUANTILE)
        if expected is None:
            # Nothing learned yet and requests queue for the budget: back off (1, 2, 4, 8 ×
            # poll_interval) rather than spend a token a second on every young task.
            return now + self.poll_interval * 2 ** min(polls_done, 3)
        # Never before the learned time: tasks polled by the backoff before anything was
        # learned also wait for it once it is known.
        return max(at, submitted_at + expected)
