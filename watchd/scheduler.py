"""Which API request goes next (a create, a poll, or nothing yet), and when each task will
likely be done.

Pure: it takes the time (monotonic seconds) and small views of the ledger, and returns
decisions; it never sends, sleeps or reads the clock. It remembers, in memory only, what the
answers said about each task in flight; after a restart it starts again from the ledger.

How it decides (the README explains this to users):
- Every pending answer says how far the task has come: `data.state` (0 queued, 2-6 being
  processed), `progress` (a percentage), `time_elapsed` (seconds since the create) and the
  `created_at`/`processed_at` timestamps. From one answer, the share done and the time since
  processing began give the time left; from two, the rate of progress gives it closely. With
  what finished tasks took (per folder; a folder with few samples borrows everyone's), each
  task gets a window: the earliest and the latest time it will likely be done.
- A poll is "due" at the latest likely time: then it almost surely finds the task done.
  Due polls come first (a result sooner, a slot freed), but never more than two in a row
  while a create waits, and never while the batch is so small that delaying a create would
  make the last task finish later (the creates are then the slow path).
- Then creates: the oldest waiting job of the folder served least recently (fair across
  folders), while fewer than `max_in_flight` tasks are in flight.
- A token that nothing needs is spent on a "probe", `poll_interval` or more after the
  task's last poll: first a task never answered (any answer gives it a window), then the
  one most likely done, never one whose window is already narrower than a token, and never
  when another task's due poll would wait for it. When requests queue for the budget there
  is no such token, so requests per task stay at the floor of two; with room to spare a
  probe costs nothing, finds a result as soon as it is ready or narrows the window.

The engine tells it each create (`created`), each pending answer (`pending`, with
`Progress.of(result.state, result.progress, result.raw)`), each task found done
(`finished`, which returns the seconds to keep in the ledger) and each task that left
processing another way (`forget`); it asks `pick` for every token of the budget.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

QUEUED = 0  # data.state of a task waiting in the API's queue
FOLDER_SAMPLES = 3  # a folder's own times are used once it has this many; before, everyone's
MIN_SAMPLES = 1  # one exact time from the API already beats guessing
LOW_QUANTILE, HIGH_QUANTILE = 0.05, 0.95  # the window of a task's likely finish
PRIOR_SPREAD = 0.5  # with n samples, the window is at least ± median × this / n wide
MAX_POLLS_IN_A_ROW = 2
# Nothing known at all (no finished task, no progress): the latest likely time is this many
# poll intervals after the create. Probes (spare tokens) find the task long before; this only
# matters when the budget is saturated by creates from the first second.
PRIOR_POLLS = 30
SURE_MARGIN = 0.05  # seconds after the latest likely time (timestamps and rounding)
MIN_GAP = 0.25  # × poll_interval: the least time between two polls of one task
LEAD_MARGIN = 2.0  # seconds of slack kept when due polls go ahead of creates
STRETCH_SAMPLES = 5  # checks of the progress clock before its error is corrected
MAX_STRETCH = 4.0
# A probe gives way when another task's due poll would wait more than this share of a token.
PROBE_YIELD = 0.5
BACKOFF_STEPS = 3  # a pending answer that tells nothing: the next sure poll 1, 2, 4, 8 × interval


@dataclass(frozen=True)
class Candidate:
    """The oldest waiting job of one folder, ready for a create."""

    job_id: int
    folder: str


@dataclass(frozen=True)
class Task:
    """A created task that is being polled (a ledger row; times are monotonic seconds).

    `next_poll_at` is a floor: the task is not polled before it (the scheduler's own answer
    after a poll, or the engine's backoff after a failed one).
    """

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
    probe: bool = False  # a poll on a spare token, before the task is surely done
    wake_at: float | None = None  # IDLE: when a request may next be useful (None: no task)


IDLE = Decision(Kind.IDLE)


# -- what one answer says ------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far a pending task has come, as one answer of the API says it."""

    state: int
    percent: int | None  # 1..99 while being processed; None when the answer gives none
    elapsed: float | None  # server seconds since the create (`time_elapsed`)
    created: float | None = None  # the API's epoch seconds at the create (`created_at`)
    begun: float | None = None  # ... when processing began (`processed_at`)
    resolution: float = 1.0  # of those timestamps (whole seconds: 1 s)

    @classmethod
    def of(cls, state: int, progress: int | None, raw: dict[str, Any]) -> Progress:
        """Read a pending answer (`TaskResult.state`, `.progress`, `.raw`); bad fields are
        read as missing, never as an error."""
        created, created_res = _timestamp(raw.get("created_at"))
        begun, begun_res = _timestamp(raw.get("processed_at"))
        if state == QUEUED or created is None or begun is None or not 0 <= begun - created < 86_400:
            begun = None
        percent = progress if state != QUEUED and progress is not None else None
        if percent is not None and not 1 <= percent <= 99:
            percent = None  # 0 and 100 say nothing about the rate
        elapsed = _seconds(raw.get("time_elapsed"))
        return cls(state, percent, elapsed, created, begun, max(created_res, begun_res))

    @property
    def started(self) -> tuple[float, float] | None:
        """Seconds from the create to the start of processing, as a range (both timestamps
        may be rounded down by up to their resolution)."""
        if self.created is None or self.begun is None:
            return None
        gap = self.begun - self.created
        return max(0.0, gap - self.resolution), gap + self.resolution


class ApiClock:
    """Where the API's clock stands against ours, learned from whole-second timestamps.

    A task created at our time `a` has `created_at` = floor(a + offset): every create
    narrows the offset to an interval; a few dozen pin it to milliseconds. A `processed_at`
    (also whole seconds) then places the start of processing within one second, not two.
    An answer that contradicts what was learned (the API's clock stepped) starts it over.
    """

    SLACK = 0.05  # seconds: the answer's way back makes our reading of `a` a little late

    def __init__(self) -> None:
        self.low: float | None = None
        self.high = 0.0

    def learn(self, created_local: float, created_stamp: float, resolution: float) -> None:
        low = created_stamp - created_local - self.SLACK
        high = created_stamp + resolution - created_local + self.SLACK
        if self.low is None or max(self.low, low) > min(self.high, high):
            self.low, self.high = low, high
        else:
            self.low, self.high = max(self.low, low), min(self.high, high)

    def local(self, stamp: float, resolution: float) -> tuple[float, float] | None:
        """The range of our times at which the API's clock read `stamp` (rounded down)."""
        if self.low is None:
            return None
        return stamp - self.high, stamp + resolution - self.low


def _seconds(value: Any) -> float | None:
    """`time_elapsed`: seconds ("9.512"); a value over 1000 can only be milliseconds."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or not 0 < number < 86_400_000:
        return None
    return number / 1000 if number > 1000 else number


def _timestamp(value: Any) -> tuple[float | None, float]:
    """Epoch seconds (or milliseconds) as a number or string, or an ISO date-time; with the
    resolution it was given in (1 s for whole seconds)."""
    if value in (None, "") or isinstance(value, bool):
        return None, 1.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is not None:
        if not math.isfinite(number) or number <= 0:
            return None, 1.0
        if number > 1e11:  # milliseconds
            return number / 1000, 0.001
        fraction = "." in value if isinstance(value, str) else not number.is_integer()
        return number, 0.001 if fraction else 1.0
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None, 1.0
    if when.tzinfo is None:  # no zone: not comparable with anything; ignore it
        return None, 1.0
    return when.timestamp(), 1.0 if when.microsecond == 0 else 0.001


def learned_seconds(
    raw: dict[str, Any], submitted: float, last_pending: float | None, now: float
) -> float | None:
    """How long a finished task took (create to done), to learn when to poll the next ones.

    The API's own `time_elapsed` or timestamps when it gives them; else the middle between
    the last poll that found it pending and the poll that found it done. Not `now - submitted`
    alone: a first poll put off to the latest likely time only says "at most", and learning
    from it made the estimate creep up (in the benchmark, 10 s became 22 s).
    """
    elapsed = _seconds(raw.get("time_elapsed"))
    if elapsed is not None:
        return elapsed
    start, _ = _timestamp(raw.get("created_at"))
    end, _ = _timestamp(raw.get("completed_at"))
    if start is not None and end is not None and 0 <= end - start < 86_400:
        return end - start
    if last_pending is not None and last_pending >= submitted:
        return (last_pending + now) / 2 - submitted
    return None


# -- what finished tasks took ----------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """The likely range of a task's total time (create to done), in seconds."""

    low: float
    high: float
    median: float
    queued: float  # typical seconds in the API's queue before processing starts


class DurationModel:
    """Recent processing times, per folder and overall; and how far the progress clock
    (the time left read from a percentage) can be trusted."""

    def __init__(self, window: int = 200) -> None:
        self.window = window
        self._by_folder: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._all: deque[float] = deque(maxlen=window)
        self._queued: deque[float] = deque(maxlen=window)
        self._errors: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window // 4))
        self._all_errors: deque[float] = deque(maxlen=window // 4)
        self._cache: dict[str | None, Spread | None] = {}
        self.version = 0  # changes whenever something is learned

    def observe(self, folder: str, seconds: float, queued: float | None = None) -> None:
        """A finished task took `seconds` (of which `queued` waiting in the API's queue)."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        self._by_folder[folder].append(seconds)
        self._all.append(seconds)
        if queued is not None and 0 <= queued <= seconds:
            self._queued.append(queued)
        self._cache.clear()
        self.version += 1

    def spread(self, folder: str | None) -> Spread | None:
        """The folder's likely range once it has FOLDER_SAMPLES times, else everyone's (the
        prior of a new folder); None before anything was learned."""
        if folder not in self._cache:
            samples = self._by_folder.get(folder) if folder is not None else None
            if samples is None or len(samples) < FOLDER_SAMPLES:
                samples = self._all
            self._cache[folder] = self._spread(samples) if len(samples) >= MIN_SAMPLES else None
        return self._cache[folder]

    def _spread(self, samples: deque[float]) -> Spread:
        ordered = sorted(samples)
        n = len(ordered)
        low = ordered[math.floor(LOW_QUANTILE * (n - 1))]
        high = ordered[math.ceil(HIGH_QUANTILE * (n - 1))]
        median = ordered[(n - 1) // 2]
        # Few samples say little about the spread: widen it, less with every sample.
        widen = max(high - low, PRIOR_SPREAD * median) / n
        queued = sorted(self._queued)[(len(self._queued) - 1) // 2] if self._queued else 0.0
        return Spread(max(0.0, low - widen), high + widen, median, min(queued, median))

    def quantile(self, folder: str, q: float) -> float | None:
        """The q-quantile of the folder's recent times, else of all folders', else None."""
        samples = self._by_folder.get(folder)
        if samples is None or len(samples) < FOLDER_SAMPLES:
            samples = self._all
        if len(samples) < MIN_SAMPLES:
            return None
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    def check_progress(self, folder: str, ratio: float) -> None:
        """A task read from its progress finished after `ratio` × the latest time left that
        its progress predicted (≤ 1: the prediction held)."""
        if math.isfinite(ratio) and ratio >= 0:
            self._errors[folder].append(ratio)
            self._all_errors.append(ratio)
            self.version += 1

    def stretch(self, folder: str) -> float:
        """How much to stretch the time left read from a percentage: 1 while the progress
        clock keeps its word (a linear progress), more when tasks outlast it."""
        samples = self._errors.get(folder)
        if samples is None or len(samples) < STRETCH_SAMPLES:
            samples = self._all_errors
        if len(samples) < STRETCH_SAMPLES:
            return 1.0
        ordered = sorted(samples)
        return min(MAX_STRETCH, max(1.0, ordered[math.ceil(0.9 * (len(ordered) - 1))]))


# -- one task's window -----------------------------------------------------------------------


@dataclass
class _Track:
    """What the answers said about one task in flight (memory only)."""

    folder: str
    created: float  # local time of the create's answer
    anchor: float  # local time of the API's create (from `time_elapsed`): finish = anchor + total
    last: Progress | None = None
    last_at: float | None = None  # local time of `last`
    first: tuple[float, int] | None = None  # the first (elapsed, percent) while processing
    began: tuple[float, float] | None = None  # processing began this long after the create
    queued_until: float = 0.0  # elapsed at the last answer that found it queued
    blank: int = 0  # pending answers in a row that gave no window
    clock_high: float | None = None  # total time the progress clock gave as its latest (elapsed)
    clock_at: float = 0.0  # elapsed at that reading
    low: float = 0.0  # likely total time (server seconds from the create), earliest
    high: float | None = None  # latest; None: nothing to go by
    version: int = -1  # the model's version the window was computed with


@dataclass(frozen=True)
class _View:
    task: Task
    floor: float  # not before
    sure: float  # the latest likely finish: a poll then almost surely finds it done
    probe: float  # a spare token may poll it from then on
    low: float  # the earliest likely finish
    unread: bool  # no answer yet

    def doubt(self, now: float) -> float:
        """How much a poll now could still save: the part of its window ahead."""
        return self.sure - max(now, self.low)

    def chance(self, now: float) -> float:
        """How likely a poll now finds it done (its window read as uniform)."""
        return (now - self.low) / max(1e-9, self.sure - self.low)


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
        self._tracks: dict[int, _Track] = {}
        self.api_clock = ApiClock()

    # -- what the engine tells it ------------------------------------------------------

    def created(self, job_id: int, folder: str, now: float) -> float:
        """A create answered with a task id at `now`; returns the task's `next_poll_at`."""
        self._tracks[job_id] = _Track(folder, created=now, anchor=now)
        self._limit_memory()
        return now + self._min_gap

    def pending(self, job_id: int, folder: str, now: float, progress: Progress) -> float:
        """A poll found the task still pending; returns its `next_poll_at` (a floor: the
        scheduler decides within it)."""
        track = self._tracks.get(job_id)
        if track is None or track.folder != folder:
            # Created before a restart: the answer says how old it is.
            age = progress.elapsed if progress.elapsed is not None else 0.0
            track = self._tracks[job_id] = _Track(folder, created=now - age, anchor=now - age)
            self._limit_memory()
        if progress.elapsed is not None:
            # The answer left the API after `elapsed`; it cannot have been created later than
            # now - elapsed (the earliest reading is the nearest).
            track.anchor = min(track.anchor, now - progress.elapsed)
        elapsed = progress.elapsed if progress.elapsed is not None else now - track.anchor
        if progress.percent is not None and track.first is None:
            track.first = (elapsed, progress.percent)  # the rate is read against it
        if progress.state == QUEUED:
            track.queued_until = max(track.queued_until, elapsed)
        track.began = self._began(track, progress)
        track.last = Progress(progress.state, progress.percent, elapsed)
        track.last_at = now
        self._estimate(track)
        track.blank = track.blank + 1 if track.high is None else 0
        return now + self._min_gap

    def finished(
        self, job_id: int, folder: str, now: float, raw: dict[str, Any], submitted: float
    ) -> float | None:
        """A poll (or a sync create) found the task done: learn from it. Returns the seconds
        it took (for the ledger's `task_seconds`), or None when the answer cannot tell."""
        track = self._tracks.pop(job_id, None)
        last_pending = track.last_at if track is not None else None
        seconds = learned_seconds(raw, submitted, last_pending, now)
        if seconds is None:
            return None
        created, _ = _timestamp(raw.get("created_at"))
        begun, _ = _timestamp(raw.get("processed_at"))
        queued = begun - created if created is not None and begun is not None else None
        if track is not None and track.clock_high is not None:
            left = track.clock_high - track.clock_at
            if left > 0:
                self.model.check_progress(folder, (seconds - track.clock_at) / left)
        self.model.observe(folder, seconds, queued)
        return seconds

    def _began(self, track: _Track, progress: Progress) -> tuple[float, float] | None:
        """When processing began, in seconds after the create, as narrow as the answers allow."""
        if progress.created is not None and progress.resolution >= 1.0:
            self.api_clock.learn(track.anchor, progress.created, progress.resolution)
        began = progress.started
        if began is None or progress.begun is None:
            return track.began
        low, high = began
        local = self.api_clock.local(progress.begun, 1.0) if progress.resolution >= 1 else None
        if local is not None:
            tight = max(low, local[0] - track.anchor), min(high, local[1] - track.anchor)
            if tight[0] <= tight[1]:
                low, high = tight
        low = max(low, min(high, track.queued_until))  # it was still queued then
        return low, high

    def forget(self, job_id: int) -> None:
        """The task left processing another way (failed, retried, timed out)."""
        self._tracks.pop(job_id, None)

    # -- the window ----------------------------------------------------------------------

    @property
    def _min_gap(self) -> float:
        return MIN_GAP * self.poll_interval

    def _limit_memory(self) -> None:
        """Tracks of tasks the engine never reported back on must not pile up."""
        limit = 4 * max(self.max_in_flight, 64)
        while len(self._tracks) > limit:
            del self._tracks[next(iter(self._tracks))]

    def _estimate(self, track: _Track) -> None:
        """Set the track's likely total time [low, high] from its answers and the model."""
        track.version = self.model.version
        spread = self.model.spread(track.folder)
        last = track.last
        low, high = (spread.low, spread.high) if spread is not None else (0.0, None)
        track.clock_high = None
        if last is None:
            track.low, track.high = low, high
            return
        e = last.elapsed or 0.0
        low = max(low, e)
        if high is not None and high <= e + SURE_MARGIN:
            high = None  # later than the learned times: they say nothing more
        if last.state == QUEUED and spread is not None:
            # Still in the queue: at least the processing part is ahead of it.
            processing = spread.high - spread.queued
            high = max(high if high is not None else 0.0, e + processing)
        clock = self._progress_clock(track, e)
        if clock is not None:
            clock_low, clock_high = clock
            track.clock_high, track.clock_at = e + clock_high, e
            stretched = e + clock_high * self.model.stretch(track.folder)
            if high is not None and clock_low + e <= high and low <= stretched:
                low, high = max(low, e + clock_low), min(high, stretched)
            else:  # the learned times disagree with this task's own progress: trust the task
                low, high = e + clock_low, stretched
        track.low, track.high = low, high

    def _progress_clock(self, track: _Track, e: float) -> tuple[float, float] | None:
        """The time left [low, high] read from the percentage, if the answers give one."""
        last = track.last
        if last is None or last.percent is None:
            return None
        p = last.percent
        lows: list[float] = []
        highs: list[float] = []
        if track.began is not None:
            # Processing began `began` after the create, and `p`% (rounded down) of it is
            # done after e - began.
            ran_low = max(0.0, e - track.began[1])
            ran_high = max(0.0, e - track.began[0])
            done_low, done_high = p / 100, min(1.0, (p + 1) / 100)
            lows.append(ran_low * (1 - done_high) / done_high)
            highs.append(ran_high * (1 - done_low) / done_low)
        if track.first is not None:
            e1, p1 = track.first
            span = e - e1
            if span >= self._min_gap:
                gained_low, gained_high = max(0.0, p - p1 - 1), p - p1 + 1
                lows.append((99 - p) * span / gained_high if gained_high > 0 else 0.0)
                highs.append((100 - p) * span / gained_low if gained_low > 0 else math.inf)
        if not lows:
            return None
        low, high = max(lows), min(highs)
        if low > high or not math.isfinite(high):
            return None  # the readings contradict each other: not a linear progress
        return low, high

    def _view(self, task: Task) -> _View:
        contact = _last_contact(task)
        track = self._tracks.get(task.job_id)
        if track is None:
            # No answers in memory (a restart, or the old call path): the learned times alone.
            track = _Track(task.folder, created=task.submitted_at, anchor=task.submitted_at)
            if task.last_poll_at is not None:
                track.blank = 1  # polled before, and still processing
        if track.version != self.model.version:
            self._estimate(track)
        if track.high is not None and track.anchor + track.high > contact:
            sure = track.anchor + track.high + SURE_MARGIN
        elif track.last is None and track.blank == 0 and track.high is None:
            sure = track.created + PRIOR_POLLS * self.poll_interval
        else:  # past every likely time, or answers that tell nothing: back off
            sure = contact + self.poll_interval * 2 ** min(max(0, track.blank - 1), BACKOFF_STEPS)
        low = track.anchor + track.low
        if track.last is None:
            probe = contact + self.poll_interval  # a first answer is worth a spare token
        else:
            probe = max(contact + self.poll_interval, low)
        return _View(
            task,
            task.next_poll_at,
            max(sure, contact + self._min_gap),
            probe,
            low,
            track.last is None,
        )

    # -- what goes next ------------------------------------------------------------------

    def pick(
        self,
        now: float,
        candidates: list[Candidate],
        tasks: list[Task],
        in_flight: int,
        *,
        waiting: int | None = None,
        rate: float | None = None,
    ) -> Decision:
        """The request for the token available at `now`.

        `candidates`: the oldest ready job of each folder; `tasks`: the tasks in flight that
        are not busy (a poll of theirs on the wire); `in_flight`: tasks created or being
        created; `waiting`: how many jobs wait for a create in all (default: the candidates);
        `rate`: the budget's requests per second (without it, due polls always go first).
        """
        decision = self._choose(now, candidates, tasks, in_flight, waiting, rate)
        if decision.kind is Kind.CREATE:
            assert decision.folder is not None
            self._served += 1
            self._last_create[decision.folder] = self._served
            self._polls_in_a_row = 0
        elif decision.kind is Kind.POLL and not decision.probe:
            self._polls_in_a_row += 1
        return decision

    def wake_time(
        self,
        now: float,
        tasks: list[Task],
        *,
        rate: float | None = None,
    ) -> float | None:
        """When a poll next becomes useful, if nothing else happens first."""
        decision = self._choose(now, [], tasks, 0, 0, rate)
        return now if decision.kind is not Kind.IDLE else decision.wake_at

    def _choose(
        self,
        now: float,
        candidates: list[Candidate],
        tasks: list[Task],
        in_flight: int,
        waiting: int | None,
        rate: float | None,
    ) -> Decision:
        can_create = bool(candidates) and in_flight < self.max_in_flight
        views = [self._view(t) for t in tasks]
        due = [v for v in views if v.floor <= now and v.sure <= now]
        if due and (not can_create or self._polls_may_lead(in_flight, waiting, rate, candidates)):
            v = min(due, key=lambda v: (v.sure, v.task.job_id))
            return Decision(Kind.POLL, v.task.job_id, v.task.folder)
        if can_create:
            chosen = min(candidates, key=lambda c: (self._last_create.get(c.folder, 0), c.job_id))
            return Decision(Kind.CREATE, chosen.job_id, chosen.folder)
        # A spare token: a probe, unless a due poll would have to wait for it.
        interval = 1.0 / rate if rate else 0.0
        sures = sorted((max(v.floor, v.sure), v.task.job_id) for v in views)

        def may_probe(v: _View, at: float) -> bool:
            if v.doubt(at) < max(interval, self._min_gap):
                return False  # a narrow window: its due poll is as good
            other = next((t for t, job_id in sures if job_id != v.task.job_id), math.inf)
            return other >= at + PROBE_YIELD * interval

        probes = [v for v in views if max(v.floor, v.probe) <= now and may_probe(v, now)]
        if probes:
            # A task never answered first (any answer gives it a window), then the one most
            # likely done.
            v = min(probes, key=lambda v: (not v.unread, -v.chance(now), v.task.job_id))
            return Decision(Kind.POLL, v.task.job_id, v.task.folder, probe=True)
        later = [
            max(v.floor, v.probe)
            for v in views
            if max(v.floor, v.probe) > now and may_probe(v, max(v.floor, v.probe))
        ]
        wake = min([sures[0][0] if sures else math.inf, *later])
        return Decision(Kind.IDLE, wake_at=None if math.isinf(wake) else wake)

    def enough_waiting(self, rate: float) -> int:
        """How many waiting jobs `pick` needs to be told of at most: beyond this count the
        answer is the same (the engine may cap its count of waiting jobs here)."""
        spread = self.model.spread(None)
        longest = spread.high if spread is not None else PRIOR_POLLS * self.poll_interval
        return math.ceil(rate * (longest + LEAD_MARGIN)) + 1

    def _polls_may_lead(
        self, in_flight: int, waiting: int | None, rate: float | None, candidates: list[Candidate]
    ) -> bool:
        """May a due poll go before a waiting create?

        Never more than MAX_POLLS_IN_A_ROW. And only while the batch is large: the last
        create, sent after all the others, still needs a task's time to finish; if the
        remaining requests take less than that, every poll put first delays the end.
        """
        if self._polls_in_a_row >= MAX_POLLS_IN_A_ROW:
            return False
        if not rate:
            return True
        spread = self.model.spread(None)
        longest = spread.high if spread is not None else PRIOR_POLLS * self.poll_interval
        remaining = (waiting if waiting is not None else len(candidates)) + in_flight
        return remaining / rate > longest + LEAD_MARGIN
