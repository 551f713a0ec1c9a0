"""A deterministic model of watchd's request scheduling: no real time, no network.

A discrete-event simulation runs watchd's own `Scheduler` and `Budget` (the classes the
daemon uses) against a model of the API with the simulator's exact behaviour (its task
timeline `watchd.sim.tasks.timeline_fields`, its sliding-window QPS limit, whole-second timestamps,
`time_elapsed` in milliseconds), on tasks whose processing times are drawn from a seed. The
same times, in the order of the creates, are given to every client:

- `naive`: the API doc read literally (create, then query every second until done), with an
  evenly spaced FIFO limiter at QPS + 10 ms, at 2 tasks at a time and at 32;
- `watchd`: the engine's request loop as a model (a token, a pick, a request, an answer);
- `sync`: watchd with `mode: sync` (creates paced by the budget, each held until done);
- `oracle`: a client that knew each task's processing time in advance (best of a few
  greedy orders; it polls each task once, the moment it is done, at the full QPS).

Each run reports its wall time (from the drop to the last result written), requests per
task, 429s, and shares of the bound max(n·2/QPS, n/QPS + T_min) and of the oracle. The
numbers are noise-free: a change to the scheduler shows its effect exactly, which a shared
2-core machine cannot. What it leaves out: intake (files are jobs at time 0), CPU time, and
the engine's own delays (a constant RTT and a constant time to write each result).

Usage: python bench/model.py [--seeds 3] [--n 10 30 100] [--qps 2] [--t 8 12]
Must never: read a clock, sleep, or open a socket.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from watchd.budget import Budget
from watchd.scheduler import (
    Candidate,
    DurationModel,
    Kind,
    Progress,
    Scheduler,
    Task,
)
from watchd.sim.tasks import RateWindow, TaskPlan, timeline_fields

RTT = 0.01  # seconds from a send to its answer (the request reaches the API halfway)
WRITE = 0.05  # seconds from a result to the original in done/ (download, outbox, move)
EPOCH = 1_780_000_000.37  # the API's wall clock at model time 0 (a fraction: timestamps floor)
NAIVE_POLL_EVERY = 1.0
NAIVE_MARGIN = 0.01  # bench/naive.py: seconds added to 1/QPS


@dataclass(frozen=True)
class Setup:
    """One batch: n images dropped at once into one folder of an idle client."""

    n: int
    qps: float = 2.0
    processing: tuple[float, float] = (8.0, 12.0)
    seed: int = 1
    max_in_flight: int = 32
    poll_interval: float = 1.0
    load: float = 0.0  # a loaded host: 10% of sends leave up to this late after their slot
    # (the event loop was busy) and 10% reach the API up to this late after they left

    def durations(self) -> list[float]:
        """The processing time of the 1st, 2nd, ... task created (the same for every client)."""
        rng = random.Random(self.seed * 7919 + self.n)
        return [rng.uniform(*self.processing) for _ in range(self.n)]

    @property
    def bound(self) -> float:
        """No async client can finish sooner: max(n·2/QPS, n/QPS + T_min)."""
        return max(self.n * 2 / self.qps, self.n / self.qps + self.processing[0])

    @property
    def sync_bound(self) -> float:
        return self.n / self.qps + self.processing[0]


@dataclass(frozen=True)
class Run:
    client: str
    tasks: int
    wall: float
    requests: int
    http_429: int
    first_done: float
    probes: int = 0

    @property
    def per_task(self) -> float:
        return self.requests / max(1, self.tasks)


# -- the event loop and the API ---------------------------------------------------------------


class Events:
    """Callbacks at model times, in time order (ties in the order they were scheduled)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), fn))

    def run(self, until: float = 1e7) -> None:
        while self._heap:
            when, _, fn = heapq.heappop(self._heap)
            if when > until:
                raise RuntimeError(f"the model did not finish by t={until:g}")
            self.now = when
            fn()


@dataclass
class Answer:
    status: int  # 200 or 429
    state: int = 0
    progress: int | None = None
    raw: dict[str, object] = field(default_factory=dict)
    task_id: str | None = None


class Api:
    """The simulator's behaviour for creates and queries, at model times."""

    def __init__(self, setup: Setup, durations: list[float], seed: int = 0) -> None:
        self.qps = setup.qps
        self.window = RateWindow()
        self.plans: dict[str, TaskPlan] = {}
        self.durations = deque(durations)
        self.requests = 0
        self.http_429 = 0
        self.load = setup.load
        self.rng = random.Random(seed)

    def lateness(self) -> float:
        """How late a send or an arrival is on a loaded host (0 on a quiet one)."""
        return self.rng.uniform(0, self.load) if self.load and self.rng.random() < 0.1 else 0.0

    def arrival(self, sent: float) -> float:
        return sent + RTT / 2 + self.lateness()

    def _admit(self, at: float) -> bool:
        self.requests += 1
        if self.window.try_acquire(at, self.qps):
            return True
        self.http_429 += 1
        return False

    def create(self, at: float) -> Answer:
        if not self._admit(at):
            return Answer(429)
        task_id = f"t{len(self.plans)}"
        self.plans[task_id] = TaskPlan(task_id, at, self.durations.popleft(), 1, 1)
        return Answer(200, task_id=task_id)

    def query(self, at: float, task_id: str) -> Answer:
        if not self._admit(at):
            return Answer(429)
        raw = timeline_fields(self.plans[task_id], at, EPOCH)
        return Answer(200, raw["state"], raw["progress"], raw, task_id)


# -- watchd ------------------------------------------------------------------------------------


@dataclass
class _Job:
    job_id: int
    folder: str
    task_id: str | None = None
    submitted_at: float = 0.0
    next_poll_at: float = 0.0
    last_poll_at: float | None = None
    done_at: float | None = None


class WatchdModel:
    """The engine's request loop as a model, around the real Scheduler and Budget.

    One scheduler (with what it learned) serves every batch given to `run`, as in a daemon
    that keeps running; each batch gets a fresh API model (and budget) on the same clock.
    """

    def __init__(self, setup: Setup, *, mode: str = "async") -> None:
        self.setup = setup
        self.mode = mode
        self.model = DurationModel()
        self.scheduler = Scheduler(
            max_in_flight=setup.max_in_flight, poll_interval=setup.poll_interval, model=self.model
        )
        self.clock = 0.0
        self._ids = itertools.count(1)

    def run(self, durations: list[float], folder: str = "bench", label: str = "watchd") -> Run:
        setup, scheduler = self.setup, self.scheduler
        events = Events()
        events.now = self.clock
        start = self.clock
        api = Api(setup, durations, seed=setup.seed)
        budget = Budget(setup.qps)
        waiting = deque(_Job(next(self._ids), folder) for _ in durations)
        processing: dict[int, _Job] = {}
        busy: set[int] = set()
        creating = 0
        done: list[float] = []
        probes = 0
        pumps: set[float] = set()

        def pump_at(when: float) -> None:
            if when not in pumps:
                pumps.add(when)
                events.at(when, lambda: (pumps.discard(when), pump()))

        def pump() -> None:
            nonlocal creating, probes
            now = events.now
            while True:
                ready = budget.next_time(now)
                if ready > now:
                    pump_at(ready)
                    return
                if self.mode == "sync":
                    if not waiting or creating >= setup.max_in_flight:
                        return
                    job = waiting.popleft()
                    send(job, now, create=True)
                    creating += 1
                    continue
                tasks = [
                    Task(j.job_id, j.folder, j.submitted_at, j.next_poll_at, j.last_poll_at)
                    for j in processing.values()
                    if j.job_id not in busy
                ]
                candidates = [Candidate(waiting[0].job_id, folder)] if waiting else []
                decision = scheduler.pick(
                    now,
                    candidates,
                    tasks,
                    len(processing) + creating,
                    waiting=len(waiting),
                    rate=budget.rate,
                )
                if decision.kind is Kind.IDLE:
                    if decision.wake_at is not None:
                        if decision.wake_at <= now:
                            raise AssertionError(f"idle at {now} with a wake time not later")
                        pump_at(decision.wake_at)
                    return
                if decision.kind is Kind.CREATE:
                    job = waiting.popleft()
                    assert job.job_id == decision.job_id
                    creating += 1
                    send(job, now, create=True)
                else:
                    probes += decision.probe
                    job = processing[decision.job_id]
                    busy.add(job.job_id)
                    send(job, now, create=False)

        def send(job: _Job, now: float, *, create: bool) -> None:
            assert budget.try_take(now)
            late = api.lateness()
            budget.note_lag(late)  # the engine sees its loop wake late
            events.at(now + late, lambda: pace(job, create))

        def pace(job: _Job, create: bool) -> None:
            """The engine's pacing loop: ask, sleep as told (and wake late on a busy host)."""
            delay = budget.try_send(events.now)
            if delay > 0:
                events.at(events.now + delay + api.lateness(), lambda: pace(job, create))
                return
            arrival = api.arrival(events.now)
            answer = api.create(arrival) if create else api.query(arrival, job.task_id or "")
            if create and self.mode == "sync" and answer.status == 200:
                plan = api.plans[answer.task_id or ""]
                back = plan.finished + RTT / 2
                final = Answer(200, 1, 100, {"time_elapsed": f"{plan.duration:.3f}"})
                events.at(back, lambda: answered(job, final, create))
                return
            events.at(arrival + RTT / 2, lambda: answered(job, answer, create))

        def answered(job: _Job, answer: Answer, create: bool) -> None:
            nonlocal creating
            now = events.now
            if answer.status == 429:
                budget.on_rate_limited(now, 1.0)
                if create:
                    creating -= 1
                    waiting.appendleft(job)
                else:
                    busy.discard(job.job_id)
                    job.next_poll_at, job.last_poll_at = now + setup.poll_interval, now
                pump()
                return
            budget.on_success()
            if create:
                creating -= 1
                job.submitted_at = now
                if self.mode == "sync":
                    scheduler.finished(job.job_id, job.folder, now, answer.raw, now)
                    finish(job, now)
                else:
                    job.task_id = answer.task_id
                    job.next_poll_at = scheduler.created(job.job_id, job.folder, now)
                    processing[job.job_id] = job
            else:
                busy.discard(job.job_id)
                if answer.state == 1:
                    scheduler.finished(job.job_id, job.folder, now, answer.raw, job.submitted_at)
                    del processing[job.job_id]
                    finish(job, now)
                else:
                    progress = Progress.of(answer.state, answer.progress, answer.raw)
                    job.next_poll_at = scheduler.pending(job.job_id, job.folder, now, progress)
                    job.last_poll_at = now
            pump()

        def finish(job: _Job, now: float) -> None:
            job.done_at = now + WRITE
            done.append(job.done_at)

        events.at(start, pump)
        events.run()
        self.clock = max(done) + 5.0
        return Run(
            label,
            len(done),
            max(done) - start,
            api.requests,
            api.http_429,
            min(done) - start,
            probes,
        )


# -- the baselines -------------------------------------------------------------------------------


def run_naive(setup: Setup, durations: list[float], concurrency: int) -> Run:
    """bench/naive.py: `concurrency` workers; each creates, then queries every second until
    done; every request waits its turn at one evenly spaced FIFO limiter."""
    events = Events()
    api = Api(setup, durations, seed=setup.seed)
    interval = 1.0 / setup.qps + NAIVE_MARGIN
    pacer = {"next": 0.0}
    jobs = deque(range(setup.n))
    done: list[float] = []

    def take(now: float) -> float:
        at = max(now, pacer["next"])
        pacer["next"] = at + interval
        return at

    def worker() -> None:
        if not jobs:
            return
        jobs.popleft()
        create(events.now)

    def create(now: float) -> None:
        at = take(now)

        def answered() -> None:
            answer = api.create(api.arrival(at))
            if answer.status == 429:
                events.at(at + RTT + 1.0, lambda: create(events.now))
                return
            events.at(at + RTT + NAIVE_POLL_EVERY, lambda: poll(answer.task_id or ""))

        events.at(at, answered)

    def poll(task_id: str) -> None:
        at = take(events.now)

        def answered() -> None:
            answer = api.query(api.arrival(at), task_id)
            if answer.status == 200 and answer.state == 1:
                done.append(at + RTT + WRITE)
                events.at(at + RTT + WRITE, worker)
                return
            wait = 1.0 if answer.status == 429 else NAIVE_POLL_EVERY
            events.at(at + RTT + wait, lambda: poll(task_id))

        events.at(at, answered)

    for _ in range(concurrency):
        events.at(0.0, worker)
    events.run()
    return Run(
        f"naive, {concurrency} at a time",
        len(done),
        max(done),
        api.requests,
        api.http_429,
        min(done),
    )


def oracle_wall(
    durations: list[float], qps: float, max_in_flight: int = 32, rtt: float = RTT
) -> float:
    """The wall time of a client that knew every task's processing time in advance.

    It creates in the given order (the API decides the times in the order of the creates),
    sends at most one request per 1/QPS, polls each task once, the moment it is done, and
    writes each result in WRITE seconds. Best of three greedy orders: creates first, polls
    first, and polls first only while the creates left do not become the slow path.
    """
    return min(_oracle(durations, qps, max_in_flight, rtt, order) for order in range(3))


def _oracle(durations: list[float], qps: float, cap: int, rtt: float, order: int) -> float:
    gap = 1.0 / qps
    n = len(durations)
    longest = max(durations, default=0.0)
    last = -gap
    created = 0
    ready: list[float] = []  # finish times of tasks created and not yet polled
    end = 0.0
    while created < n or ready:
        earliest = last + gap
        can_create = created < n and len(ready) < cap
        poll_at = max(earliest, min(ready) - rtt / 2) if ready else None
        create_first = {
            0: True,
            1: False,
            2: (n - created + len(ready)) * gap <= longest + 2 * gap,
        }[order]
        if can_create and (poll_at is None or create_first or poll_at > earliest):
            t = earliest
            heapq.heappush(ready, t + rtt / 2 + durations[created])
            created += 1
        else:
            assert poll_at is not None
            t = poll_at
            heapq.heappop(ready)
            end = max(end, t + rtt + WRITE)
        last = t
    return end


def sync_oracle_wall(durations: list[float], qps: float, rtt: float = RTT) -> float:
    """A sync client that sends every create as soon as the QPS allows: each answers when done."""
    return max(i / qps + rtt + d + WRITE for i, d in enumerate(durations))


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    setup: Setup
    run: Run
    oracle: float

    @property
    def of_bound(self) -> float:
        bound = self.setup.sync_bound if self.run.client == "watchd sync" else self.setup.bound
        return bound / self.run.wall

    @property
    def of_oracle(self) -> float:
        return self.oracle / self.run.wall


def batch(setup: Setup) -> list[Row]:
    """Every client on the same batch (same processing times in create order)."""
    durations = setup.durations()
    oracle = oracle_wall(durations, setup.qps, setup.max_in_flight)
    sync_oracle = sync_oracle_wall(durations, setup.qps)
    rows = [
        Row(setup, run_naive(setup, durations, 2), oracle),
        Row(setup, run_naive(setup, durations, 32), oracle),
        Row(setup, WatchdModel(setup).run(durations, label="watchd async"), oracle),
        Row(
            setup, WatchdModel(setup, mode="sync").run(durations, label="watchd sync"), sync_oracle
        ),
    ]
    return rows


def warm(setup: Setup, warmup: int = 20) -> tuple[Run, Run]:
    """The same batch on a daemon that has learned (a warm-up batch in folder `a`), into
    folder `a` (learned times) and, on another daemon warmed the same way, into a new
    folder `b` (only the other folder's times to go by)."""
    pre = Setup(warmup, setup.qps, setup.processing, setup.seed + 1000, setup.max_in_flight)
    out = []
    for folder in ("a", "b"):
        daemon = WatchdModel(setup)
        daemon.run(pre.durations(), folder="a", label="warm-up")
        out.append(daemon.run(setup.durations(), folder=folder, label=f"watchd async, {folder}"))
    return out[0], out[1]


def busy_host(setup: Setup) -> Run:
    """A daemon on a loaded host (sends and arrivals up to `setup.load` late)."""
    return WatchdModel(setup).run(setup.durations(), label=f"watchd async, load {setup.load:g}")


@dataclass(frozen=True)
class Goal:
    """One of the issue's targets, checked on every seed: `values` per seed."""

    name: str
    values: list[float]
    limit: float
    at_most: bool
    unit: str = ""

    def ok(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit

    @property
    def met(self) -> int:
        return sum(self.ok(v) for v in self.values)


def evaluate(
    seeds: range,
    qps: float = 2.0,
    processing: tuple[float, float] = (8.0, 12.0),
    max_in_flight: int = 32,
    sizes: tuple[int, ...] = (10, 30, 100),
    load: float = 0.05,
) -> tuple[dict[int, dict[str, list[Row]]], list[Goal]]:
    """Every client at every size and seed, and the issue's targets checked on them."""
    table: dict[int, dict[str, list[Row]]] = {}
    for n in sizes:
        by: dict[str, list[Row]] = {}
        for seed in seeds:
            for row in batch(Setup(n, qps, processing, seed, max_in_flight)):
                by.setdefault(row.run.client, []).append(row)
        table[n] = by
    goals: list[Goal] = []

    def runs(n: int, client: str) -> list[Row]:
        return table[n][client]

    for n in (s for s in sizes if s >= 30):
        a = runs(n, "watchd async")
        goals.append(
            Goal(f"async {n}: share of the bound", [100 * r.of_bound for r in a], 95, False, "%")
        )
        goals.append(Goal(f"async {n}: requests per task", [r.run.per_task for r in a], 2.05, True))
        sy = runs(n, "watchd sync")
        ideal = [(r.setup.n / r.setup.qps + sum(r.setup.processing) / 2) / r.run.wall for r in sy]
        goals.append(
            Goal(f"sync {n}: share of the ideal", [100 * v for v in ideal], 95, False, "%")
        )
        goals.append(Goal(f"sync {n}: requests per task", [r.run.per_task for r in sy], 1.02, True))
    if 10 in sizes:
        pairs = zip(runs(10, "watchd async"), runs(10, "watchd sync"), strict=True)
        goals.append(
            Goal(
                "async 10: wall ÷ sync's",
                [a.run.wall / s.run.wall for a, s in pairs],
                1.1,
                True,
                "×",
            )
        )
    for n in sizes:
        pairs = zip(runs(n, "watchd async"), runs(n, "naive, 32 at a time"), strict=True)
        goals.append(
            Goal(
                f"async {n}: wall ÷ naive 32's",
                [a.run.wall / b.run.wall for a, b in pairs],
                1.0,
                True,
                "×",
            )
        )
    ratios = []
    for seed in seeds:
        learned, new = warm(Setup(10, qps, processing, seed, max_in_flight))
        ratios.append(new.wall / learned.wall)
    goals.append(Goal("new folder, 10: wall ÷ learned folder's", ratios, 1.1, True, "×"))
    shares, rates = [], []
    for seed in seeds:
        setup = Setup(100, qps, processing, seed, max_in_flight, load=load)
        run = busy_host(setup)
        shares.append(100 * run.http_429 / run.requests)
        rates.append(100 * run.requests / run.wall / qps)
    goals.append(Goal(f"busy host (load {load:g} s), 100: 429s", shares, 1.0, True, "%"))
    goals.append(Goal(f"busy host (load {load:g} s), 100: requests/s ÷ QPS", rates, 90, False, "%"))
    return table, goals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="batches per size (seeds 1..N)")
    p.add_argument("--n", type=int, nargs="+", default=[10, 30, 100])
    p.add_argument("--qps", type=float, default=2.0)
    p.add_argument("--t", type=float, nargs=2, default=[8.0, 12.0], metavar=("LO", "HI"))
    p.add_argument("--max-in-flight", type=int, default=32)
    p.add_argument("--load", type=float, default=0.05, help="lateness on the busy host, s")
    args = p.parse_args(argv)
    processing = (args.t[0], args.t[1])
    print(
        f"model: QPS {args.qps:g}, processing uniform {args.t[0]:g}-{args.t[1]:g} s,"
        f" max_in_flight {args.max_in_flight}, seeds 1..{args.seeds}: ranges over the seeds"
    )
    table, goals = evaluate(
        range(1, args.seeds + 1), args.qps, processing, args.max_in_flight, tuple(args.n), args.load
    )
    head = f"{'n':>4} {'client':<20} {'wall s':>13} {'req/task':>11} {'of bound':>11}"
    print(head + f" {'of oracle':>11} {'429s':>5}")
    for n, by in table.items():
        for client, rows in by.items():
            print(
                f"{n:>4} {client:<20} {_range([r.run.wall for r in rows], '.1f'):>13}"
                f" {_range([r.run.per_task for r in rows], '.2f'):>11}"
                f" {_range([100 * r.of_bound for r in rows], '.0f'):>11}"
                f" {_range([100 * r.of_oracle for r in rows], '.0f'):>11}"
                f" {sum(r.run.http_429 for r in rows):>5}"
            )
    print(
        "of bound: max(n·2/QPS, n/QPS + T_min) ÷ wall (sync: n/QPS + T_min); of oracle: the wall"
        " of a client that knew every processing time ÷ wall (sync: a sync client's oracle)"
    )
    print(f"\n{'target':<44} {'limit':>8} {'range over seeds':>18} {'met':>9}")
    for g in goals:
        op = "≤" if g.at_most else "≥"
        spec = ".0f" if g.unit == "%" else ".2f"
        print(
            f"{g.name:<44} {op + ' ' + format(g.limit, 'g') + g.unit:>8}"
            f" {_range(g.values, spec) + g.unit:>18} {g.met:>4}/{len(g.values):<4}"
        )
    return 0


def _range(values: list[float], spec: str) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:{spec}}" if f"{lo:{spec}}" == f"{hi:{spec}}" else f"{lo:{spec}}–{hi:{spec}}"


if __name__ == "__main__":
    sys.exit(main())
