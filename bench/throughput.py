"""Throughput benchmark (issue 9): watchd against the naive loop and the oracle, side by side.

Per run, one simulator (QPS 2, processing uniform 8-12 s) serves one client after another,
at 10, 30 and 100 images each:
  - the naive loop (bench/naive.py: create, poll every second, its own evenly spaced QPS
    limit) with 2 tasks at a time (the API doc read literally) and with 32 (its polls then
    queue behind the limit, which spaces them by itself);
  - the real daemon (`python -m watchd run`, empty ledger, `max_in_flight: 32`) in async mode,
    then in sync mode: started, then the images renamed into its inbox at once; timed from
    that drop to the last original in done/;
  - a new folder on a warm daemon: one daemon with two folders learns from a warm-up batch
    in the first, then 10 images go to the first (learned times) and 10 to the second (new).
Every row has its oracle: the wall time of a client that knew each task's processing time in
advance (the simulator knows them; bench/model.py computes it), and the bound
max(n·2/QPS, n/QPS + T_min). Requests and 429s are the simulator's own counts. Each target
is printed met or missed, with where the time went (intake, requests over the floor, 429s,
the tail after the last task finished). `--runs 3` prints the ranges over three runs.

A separate scenario (`--done-means`, also part of the default run) keeps issue 6's
acceptance check: QPS 4, 2-3 s processing, 40 images over two folders, all done within 30 s
of the daemon's start with at most 5% 429s.

Usage: python bench/throughput.py [--quick] [--runs 3] [--markdown] [--keep]
Must never: send traffic beyond 127.0.0.1, or run inside the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # the bench folder is not a package: its own dir is on sys.path
    KEY,
    Check,
    Daemon,
    console,
    count_files,
    drop_all,
    fmt,
    ledger_rows,
    machine,
    png_bytes,
    stage_images,
    summary_table,
    wait_until,
    write_config,
)
from model import oracle_wall, sync_oracle_wall
from naive import run_naive

from watchd.sim import SimConfig, Simulator

IMAGE_SIZE = (160, 120)
NAIVE_WIDE = 32


@dataclass(frozen=True)
class Plan:
    qps: float
    processing: tuple[float, float]
    sizes: tuple[int, ...]
    naive2_max: int  # the literal naive loop is slow (about T + 1 s per 2 tasks): sizes up to this
    warmup: int  # images of the warm-up batch before the learned/new folder batches
    new_batch: int
    max_in_flight: int
    poll_interval: float
    seed: int

    def bound(self, n: int, floor: int) -> float:
        """No client can finish sooner: max(n·floor/QPS, n/QPS + T_min)."""
        return max(n * floor / self.qps, n / self.qps + self.processing[0])

    def saturated(self, n: int) -> bool:
        """Do requests queue for the budget (n images need more requests than fit in the
        longest task time)? Then the bound is the target; else sync's wall."""
        return n / self.qps >= self.processing[1]

    def sync_ideal(self, n: int) -> float:
        """The sync target's ideal: n/QPS + the mean T (the one unavoidable task time)."""
        return n / self.qps + sum(self.processing) / 2


@dataclass(frozen=True)
class Row:
    client: str
    n: int
    tasks: int
    failed: int
    wall: float
    first_done: float
    requests: int
    http_429: int
    floor: int  # requests per task of the ideal client in this mode
    bound: float
    oracle: float | None
    intake: float | None = None  # from the drop to the first create reaching the API
    tail: float | None = None  # from the last task's end on the API to the last file done
    notes: tuple[str, ...] = ()

    @property
    def per_task(self) -> float:
        return self.requests / max(1, self.tasks)

    @property
    def of_bound(self) -> float:
        return self.bound / self.wall if self.wall > 0 else 0.0

    @property
    def of_oracle(self) -> float | None:
        return self.oracle / self.wall if self.oracle and self.wall > 0 else None

    @property
    def share_429(self) -> float:
        return self.http_429 / self.requests if self.requests else 0.0


def first_create(sim: Simulator, since: int) -> float | None:
    """When the first create since upload record `since` reached the simulator (our
    monotonic clock: the simulator stamps uploads in epoch seconds of the same process)."""
    uploads = sim.uploads[since:]
    if not uploads:
        return None
    return min(u.at for u in uploads) - (time.time() - time.monotonic())


def task_plans(sim: Simulator, since: int) -> list[tuple[float, float]]:
    """(created, duration) of every task created since upload record `since`, in create order.

    The durations are the simulator's own (`_tasks` is private to it: read here only, to
    compute the oracle, which must know what the client could not).
    """
    ids = [u.task_id for u in sim.uploads[since:] if u.task_id is not None and u.status == 200]
    plans = [sim._tasks[i].plan for i in ids if i in sim._tasks]
    return sorted((p.created, p.duration) for p in plans)


def stat_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def settle_window() -> None:
    """Let the simulator's QPS window empty so one client's tail does not hit the next."""
    time.sleep(1.2)


# -- clients -------------------------------------------------------------------------------------


def naive_row(sim: Simulator, plan: Plan, concurrency: int, n: int, seed: int) -> Row:
    images = [png_bytes(seed + i, *IMAGE_SIZE) for i in range(n)]
    before, since = sim.stats, len(sim.uploads)
    result = asyncio.run(
        run_naive(sim.base_url, images, qps=plan.qps, concurrency=concurrency, key=KEY)
    )
    delta = stat_delta(before, sim.stats)
    durations = [d for _, d in task_plans(sim, since)]
    return Row(
        client=f"naive, {concurrency} at a time",
        n=n,
        tasks=result.tasks,
        failed=result.failed,
        wall=result.wall,
        first_done=result.first_done,
        requests=delta["requests"],
        http_429=delta["http_429"],
        floor=2,
        bound=plan.bound(n, 2),
        oracle=oracle_wall(durations, plan.qps, plan.max_in_flight) if durations else None,
    )


@dataclass
class Batch:
    """One timed drop of images into one folder of a running daemon."""

    folder: str
    n: int
    seed: int
    root: Path
    staged: list[Path] = field(default_factory=list)

    def stage(self) -> None:
        self.staged = stage_images(
            self.root / "staging" / f"{self.folder}-{self.seed}", self.n, start=self.seed,
            size=IMAGE_SIZE,
        )  # fmt: skip

    def counts(self) -> tuple[int, int]:
        """Originals in done/, and in failed/ (each has its NAME.error.json beside it)."""
        base = self.root / self.folder
        return count_files([base / "done"]), count_files([base / "failed"]) // 2

    def done_count(self) -> int:
        return sum(self.counts())


def timed_batch(
    sim: Simulator,
    plan: Plan,
    batch: Batch,
    *,
    label: str,
    mode: str,
    timeout: float,
) -> Row:
    """Drop `batch` into its inbox and wait for every original to leave it; one row."""
    done_before, failed_before = batch.counts()
    before_done = done_before + failed_before
    before, since = sim.stats, len(sim.uploads)
    t0 = time.monotonic()
    drop_all(batch.staged, batch.root / batch.folder / "inbox")
    first = wait_until(lambda: batch.done_count() > before_done, timeout, 0.02)
    end = wait_until(lambda: batch.done_count() >= before_done + batch.n, timeout, 0.02)
    end = end if end is not None else time.monotonic()
    delta = stat_delta(before, sim.stats)
    plans = task_plans(sim, since)
    durations = [d for _, d in plans]
    floor = 1 if mode == "sync" else 2
    done, failed = batch.counts()
    oracle = None
    if durations:
        oracle = (
            sync_oracle_wall(durations, plan.qps)
            if mode == "sync"
            else oracle_wall(durations, plan.qps, plan.max_in_flight)
        )
    first_request = first_create(sim, since)
    last_finish = max((c + d for c, d in plans), default=None)
    return Row(
        client=label,
        n=batch.n,
        tasks=done - done_before,
        failed=failed - failed_before,
        wall=end - t0,
        first_done=(first or end) - t0,
        requests=delta["requests"],
        http_429=delta["http_429"],
        floor=floor,
        bound=plan.bound(batch.n, floor),
        oracle=oracle,
        intake=None if first_request is None else first_request - t0,
        tail=None if last_finish is None else end - last_finish,
    )


def start_daemon(sim: Simulator, root: Path, plan: Plan, mode: str, folders: list[str]) -> Daemon:
    root.mkdir(parents=True)
    config = write_config(
        root,
        sim.base_url,
        folders,
        api={
            "qps": plan.qps,
            "mode": mode,
            "max_in_flight": plan.max_in_flight,
            "poll_interval": plan.poll_interval,
        },
        folder={"settle": 0.2},
    )
    daemon = Daemon(config).start()
    daemon.wait_started()
    return daemon


def watchd_row(sim: Simulator, plan: Plan, root: Path, mode: str, n: int, seed: int) -> Row:
    """A daemon with an empty ledger, one folder, one batch of n images."""
    timeout = 3 * (n * 2 / plan.qps + plan.processing[1]) + 60
    with start_daemon(sim, root, plan, mode, ["bench"]):
        batch = Batch("bench", n, seed, root)
        batch.stage()
        row = timed_batch(sim, plan, batch, label=f"watchd {mode}", mode=mode,
                          timeout=timeout)  # fmt: skip
    note = per_job_requests(root / "state" / "watchd.db")
    return replace(row, notes=(f"requests per job: {note}",))


def new_folder_rows(sim: Simulator, plan: Plan, root: Path, seed: int) -> list[Row]:
    """One daemon, two folders: a warm-up batch teaches it the first folder's times; then
    the same size of batch goes to the first folder (learned) and to the second (new)."""
    daemon_root = root
    timeout = 3 * (plan.warmup * 2 / plan.qps + plan.processing[1]) + 60
    rows = []
    with start_daemon(sim, daemon_root, plan, "async", ["learned", "new"]):
        batches = [
            (Batch("learned", plan.warmup, seed, daemon_root), "warm-up"),
            (Batch("learned", plan.new_batch, seed + 1000, daemon_root), "watchd async, learned"),
            (Batch("new", plan.new_batch, seed + 2000, daemon_root), "watchd async, new folder"),
        ]
        for batch, label in batches:
            batch.stage()
            row = timed_batch(sim, plan, batch, label=label, mode="async", timeout=timeout)
            if label != "warm-up":
                rows.append(row)
            settle_window()
    return rows


def per_job_requests(db: Path) -> str:
    """How the daemon's requests spread over jobs (the ledger's `requests` column)."""
    if not db.exists():
        return "no ledger"
    rows = ledger_rows(db, "select requests, count(*) from jobs group by 1 order by 1")
    return ", ".join(f"{req} req × {n}" for req, n in rows)


# -- one run -------------------------------------------------------------------------------------


def one_run(plan: Plan, work: Path, index: int) -> list[Row]:
    rows: list[Row] = []
    config = SimConfig(qps=plan.qps, processing_time=plan.processing, seed=plan.seed + index)
    with Simulator(config).start() as sim:
        for n in plan.sizes:
            steps: list[tuple[str, Callable[[], Row]]] = []
            seed = 10_000_000 * (index + 1) + 100_000 * n
            if n <= plan.naive2_max:
                steps.append(("naive, 2", lambda n=n, s=seed: naive_row(sim, plan, 2, n, s)))
            steps.append(
                ("naive, 32", lambda n=n, s=seed: naive_row(sim, plan, NAIVE_WIDE, n, s + 20_000))
            )
            for mode, offset in (("async", 40_000), ("sync", 60_000)):
                root = work / f"run{index}" / f"{mode}-{n}"
                steps.append(
                    (
                        f"watchd {mode}",
                        lambda n=n, s=seed + offset, m=mode, r=root: watchd_row(
                            sim, plan, r, m, n, s
                        ),
                    )
                )
            for label, step in steps:
                began = time.monotonic()
                console.print(f"  run {index + 1}: {label} on {n} images …", end="")
                rows.append(step())
                console.print(f" {time.monotonic() - began:.0f} s")
                settle_window()
        console.print(f"  run {index + 1}: a new folder on a warm daemon …", end="")
        began = time.monotonic()
        rows += new_folder_rows(sim, plan, work / f"run{index}" / "new-folder", 90_000_000)
        console.print(f" {time.monotonic() - began:.0f} s")
    return rows


# -- output ----------------------------------------------------------------------------------


def run_table(title: str, rows: list[Row], plan: Plan) -> Table:
    table = Table(title=title)
    heads = ["n", "client", "tasks", "wall s", "oracle s", "of oracle", "bound s", "of bound",
             "req/task", "429s", "first done s", "intake s", "tail s"]  # fmt: skip
    for h in heads:
        table.add_column(h, justify="left" if h == "client" else "right")
    for r in rows:
        table.add_row(
            str(r.n),
            r.client,
            f"{r.tasks}" + (f" ({r.failed} failed)" if r.failed else ""),
            fmt(r.wall, 1),
            fmt(r.oracle, 1),
            "—" if r.of_oracle is None else f"{r.of_oracle:.0%}",
            fmt(r.bound, 1),
            f"{r.of_bound:.0%}",
            fmt(r.per_task),
            f"{r.http_429} ({r.share_429:.1%})",
            fmt(r.first_done, 1),
            fmt(r.intake, 2),
            fmt(r.tail, 2),
        )
    return table


def ranges_table(runs: list[list[Row]]) -> Table:
    table = Table(title=f"ranges over {len(runs)} run(s)")
    for h in ("n", "client", "wall s", "of oracle", "of bound", "req/task", "429s"):
        table.add_column(h, justify="left" if h == "client" else "right")
    for key, rows in grouped(runs).items():
        n, client = key
        table.add_row(
            str(n),
            client,
            span([r.wall for r in rows], ".1f"),
            span([100 * r.of_oracle for r in rows if r.of_oracle], ".0f", "%"),
            span([100 * r.of_bound for r in rows], ".0f", "%"),
            span([r.per_task for r in rows], ".2f"),
            span([100 * r.share_429 for r in rows], ".1f", "%"),
        )
    return table


def grouped(runs: list[list[Row]]) -> dict[tuple[int, str], list[Row]]:
    out: dict[tuple[int, str], list[Row]] = {}
    for rows in runs:
        for r in rows:
            out.setdefault((r.n, r.client), []).append(r)
    return out


def span(values: list[float], spec: str, unit: str = "") -> str:
    if not values:
        return "—"
    lo, hi = f"{min(values):{spec}}", f"{max(values):{spec}}"
    return f"{lo}{unit}" if lo == hi else f"{lo}–{hi}{unit}"


def where_time_went(r: Row, qps: float) -> str:
    """The parts of a row's wall time beyond its oracle that can be measured from outside."""
    parts = []
    if r.intake is not None:
        parts.append(f"intake {r.intake:.1f} s")
    extra = r.requests - r.floor * r.tasks
    if extra > 0:
        parts.append(f"{extra} requests over the floor ({extra / qps:.1f} s of budget)")
    if r.http_429:
        parts.append(f"{r.http_429} × 429")
    if r.tail is not None:
        parts.append(f"tail {r.tail:.1f} s after the last task ended")
    if r.oracle is not None:
        parts.append(f"oracle {r.oracle:.1f} s")
    return "; ".join(parts)


@dataclass
class Goal:
    """One target of the issue, measured once per run."""

    target: str
    limit: float
    at_most: bool
    unit: str = ""
    values: list[float] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)

    def add(self, value: float, cause: str) -> None:
        self.values.append(value)
        if not self.ok(value):
            self.causes.append(cause)

    def ok(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit

    def check(self) -> Check:
        worst = max(self.values) if self.at_most else min(self.values)
        met = sum(self.ok(v) for v in self.values)
        note = f"range {span(self.values, '.2f' if self.unit != '%' else '.0f', self.unit)};"
        note += f" met in {met}/{len(self.values)} run(s)"
        if self.causes:
            note += " — miss: " + " | ".join(dict.fromkeys(self.causes))
        return Check(self.target, worst, self.limit, self.at_most, self.unit, note)


def goals(runs: list[list[Row]], plan: Plan) -> list[Check]:
    out: dict[str, Goal] = {}

    def goal(target: str, limit: float, at_most: bool, unit: str = "") -> Goal:
        return out.setdefault(target, Goal(target, limit, at_most, unit))

    for rows in runs:
        by = {(r.n, r.client): r for r in rows}
        for n in plan.sizes:
            a, s = by.get((n, "watchd async")), by.get((n, "watchd sync"))
            wide = by.get((n, f"naive, {NAIVE_WIDE} at a time"))
            if a is None or s is None or wide is None:
                continue
            why = where_time_went(a, plan.qps)
            if plan.saturated(n):
                goal(f"async {n}: share of the bound", 95, False, "%").add(100 * a.of_bound, why)
                goal(f"async {n}: requests per task", 2.05, True).add(a.per_task, why)
                ideal = plan.sync_ideal(n) / s.wall
                goal(f"sync {n}: share of the ideal", 95, False, "%").add(
                    100 * ideal, where_time_went(s, plan.qps)
                )
                goal(f"sync {n}: requests per task", 1.02, True).add(s.per_task, s.notes[0])
            else:
                luck = f"oracle ÷ sync {a.oracle / s.wall:.2f}" if a.oracle else ""
                goal(f"async {n}: wall ÷ sync's", 1.1, True, "×").add(
                    a.wall / s.wall, f"{why}; {luck}"
                )
            goal(f"async {n}: wall ÷ naive {NAIVE_WIDE}'s", 1.0, True, "×").add(
                a.wall / wide.wall, f"{why}; naive {wide.wall:.1f} s (oracle {fmt(wide.oracle, 1)})"
            )
            if a.intake is not None:
                # The naive loop is handed its files; a watch folder first waits for each file
                # to be complete (settle). The same ratio without that wait, beside the above.
                goal(f"async {n}: wall less intake ÷ naive {NAIVE_WIDE}'s", 1.0, True, "×").add(
                    (a.wall - a.intake) / wide.wall, f"intake {a.intake:.2f} s (settle 0.2 s)"
                )
        learned = by.get((plan.new_batch, "watchd async, learned"))
        new = by.get((plan.new_batch, "watchd async, new folder"))
        if learned and new and learned.of_oracle and new.of_oracle:
            # Different batches (the simulator draws new times): compare the shares of each
            # batch's own oracle.
            goal("new folder: its share of the oracle ÷ the learned folder's", 0.9, False).add(
                new.of_oracle / learned.of_oracle,
                f"new {new.wall:.1f} s, learned {learned.wall:.1f} s;"
                f" new: {where_time_went(new, plan.qps)}",
            )
    for rows in runs:
        for r in rows:
            if r.client.startswith("watchd"):
                goal("watchd: 429s share of requests", 1, True, "%").add(
                    100 * r.share_429, f"{r.client} at {r.n}"
                )
    return [g.check() for g in out.values()]


def markdown(runs: list[list[Row]]) -> str:
    lines = [
        "| n | client | wall s | of the oracle | of the bound | req/task | 429s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (n, client), rows in grouped(runs).items():
        lines.append(
            f"| {n} | {client} | {span([r.wall for r in rows], '.1f')}"
            f" | {span([100 * r.of_oracle for r in rows if r.of_oracle], '.0f', '%')}"
            f" | {span([100 * r.of_bound for r in rows], '.0f', '%')}"
            f" | {span([r.per_task for r in rows], '.2f')}"
            f" | {span([100 * r.share_429 for r in rows], '.1f', '%')} |"
        )
    return "\n".join(lines)


# -- issue 6's acceptance check ------------------------------------------------------------------


def run_done_means(work: Path, seed: int) -> list[Check]:
    console.print(
        "[bold]done means[/]: QPS 4, processing 2–3 s, 40 images over two folders (in the"
        " inboxes before start), async, max_in_flight 32, poll_interval 1.0"
    )
    folders = ["left", "right"]
    with Simulator(SimConfig(qps=4, processing_time=(2, 3), seed=seed)).start() as sim:
        root = work / "done-means"
        root.mkdir(parents=True)
        config = write_config(
            root,
            sim.base_url,
            folders,
            api={"qps": 4, "mode": "async", "max_in_flight": 32, "poll_interval": 1.0},
            folder={"settle": 0.2},
        )
        for i, name in enumerate(folders):
            staged = stage_images(root / "staging" / name, 20, start=50_000_000 + i * 100_000,
                                  size=IMAGE_SIZE)  # fmt: skip
            drop_all(staged, root / name / "inbox")
        done = [root / name / "done" for name in folders]
        before = sim.stats
        with Daemon(config).start() as daemon:
            t0 = daemon.spawned_at
            daemon.wait_started()
            end = wait_until(lambda: count_files(done) >= 40, 90, 0.05) or time.monotonic()
            delta = stat_delta(before, sim.stats)
    wall, requests, n429 = end - t0, delta["requests"], delta["http_429"]
    share = n429 / requests if requests else 0.0
    console.print(
        f"  {count_files(done)} done in {wall:.1f} s from spawn; {requests} requests"
        f" ({requests / 40:.2f} a task), {n429} × 429 ({share:.1%})"
    )
    return [
        Check("done means: all 40 done", count_files(done), 40, False),
        Check("done means: wall from daemon spawn", wall, 30, True, " s"),
        Check("done means: 429s share of requests", share * 100, 5, True, "%"),
    ]


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: T 2-3 s, 10 and 20 images")
    p.add_argument("--runs", type=int, default=1, help="runs, for the ranges (the issue: 3)")
    p.add_argument("--sizes", type=int, nargs="+", help="batch sizes (default 10 30 100)")
    p.add_argument("--naive2-max", type=int, help="largest batch for the 2-at-a-time naive loop")
    p.add_argument("--qps", type=float, default=2.0)
    p.add_argument("--max-in-flight", type=int, default=32)
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--done-means", action="store_true", help="run only the done-means check")
    p.add_argument("--no-done-means", action="store_true", help="skip the done-means check")
    p.add_argument("--markdown", action="store_true", help="also print the ranges as markdown")
    p.add_argument("--keep", action="store_true", help="keep the workspace (logs, ledgers)")
    args = p.parse_args(argv)
    quick = args.quick
    sizes = tuple(args.sizes or ((10, 20) if quick else (10, 30, 100)))
    plan = Plan(
        qps=args.qps,
        processing=(2.0, 3.0) if quick else (8.0, 12.0),
        sizes=sizes,
        naive2_max=args.naive2_max if args.naive2_max is not None else (10 if quick else 100),
        warmup=6 if quick else 20,
        new_batch=6 if quick else 10,
        max_in_flight=args.max_in_flight,
        poll_interval=1.0,
        seed=args.seed,
    )
    work = Path(tempfile.mkdtemp(prefix="watchd-bench-"))
    console.print(f"machine: {machine()}")
    console.print(f"workspace: {work}{'' if args.keep else ' (removed at the end)'}")
    lo, hi = plan.processing
    console.print(
        f"[bold]throughput[/]: simulator QPS {plan.qps:g}, processing uniform {lo:g}–{hi:g} s,"
        f" sizes {', '.join(map(str, sizes))}, {args.runs} run(s)"
    )
    began = time.monotonic()
    checks: list[Check] = []
    runs: list[list[Row]] = []
    try:
        if not args.done_means:
            for index in range(args.runs):
                rows = one_run(plan, work, index)
                runs.append(rows)
                console.print(run_table(f"run {index + 1}", rows, plan))
                for r in rows:
                    for note in r.notes:
                        console.print(f"  {r.client} at {r.n}: {note}")
            console.print(ranges_table(runs))
            console.print(
                "  of oracle: the wall of a client that knew every processing time ÷ wall (it"
                " starts at the first request: intake is ours alone); of bound: max(n·floor/QPS,"
                " n/QPS + T_min) ÷ wall; intake: drop → first create at the API; tail: last task's"
                " end on the API → last original in done/. watchd aims at 98.5% of the QPS."
            )
            if args.markdown:
                console.print(markdown(runs), markup=False)
            checks += goals(runs, plan)
        if not args.no_done_means:
            checks += run_done_means(work, args.seed)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    console.print(summary_table("throughput targets (issue 9)", checks))
    console.print(f"total {time.monotonic() - began:.0f} s")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
