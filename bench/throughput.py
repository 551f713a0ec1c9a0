"""Throughput benchmark (issue 6): watchd against a client that follows the API doc literally.

One simulator (a QPS limit, processing times uniform in [lo, hi]) serves, one after another:
  - the naive client (bench/naive.py: create, poll every second, its own QPS limit) at
    concurrency = QPS (the most tasks it can poll once a second within its QPS: the doc read
    literally) and at concurrency = watchd's max_in_flight (polls then queue behind the limit);
  - the real daemon (`python -m watchd run`) in async mode, then in sync mode: it is started,
    then N images are renamed into its inbox at once; the clock runs from that drop to the last
    original landing in done/.
Requests and 429s are the simulator's own counters (deltas per client). The ceiling is
QPS / floor tasks per second (floor: 2 requests per task async, 1 sync). With a backlog of N
the ideal wall time is max(N / ceiling, N / QPS + T): the floor's requests must all be sent,
and the last create cannot be sent before N / QPS nor finish sooner than T (mean processing
time) after it. "of ideal" = ideal wall / measured wall; the "% of the ceiling" targets are
checked against it (for async with a large N it equals tasks/s ÷ ceiling; for sync it
forgives the one unavoidable T).

A separate scenario (`--done-means`, also part of the default run) checks the issue's
acceptance test: QPS 4, 2-3 s processing, 40 images over two folders, async, max_in_flight 32,
poll_interval 1.0: all done within 30 s of the daemon's start with at most 5% 429s.

Usage: python bench/throughput.py [--quick] [--done-means] [--keep]
Must never: send traffic beyond 127.0.0.1, or run inside the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
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
from naive import run_naive

from watchd.sim import SimConfig, Simulator

IMAGE_SIZE = (160, 120)


@dataclass(frozen=True)
class Plan:
    qps: float
    processing: tuple[float, float]
    n_async: int
    n_sync: int
    n_naive: int  # for the literal naive client (it is slow: ~QPS / (T + 1) tasks/s)
    n_naive_wide: int  # for the naive client with watchd's max_in_flight
    max_in_flight: int
    poll_interval: float
    seed: int

    @property
    def mean_t(self) -> float:
        return sum(self.processing) / 2

    def ideal_wall(self, tasks: int, floor: int) -> float:
        """The best wall time any client could reach for `tasks` at this QPS and floor."""
        return max(tasks * floor / self.qps, tasks / self.qps + self.mean_t)


@dataclass(frozen=True)
class Row:
    client: str
    in_flight: int
    tasks: int
    failed: int
    wall: float
    first_done: float
    requests: int
    http_429: int
    floor: int  # requests per task of the ideal client in this mode

    @property
    def req_per_task(self) -> float:
        return self.requests / max(1, self.tasks)

    @property
    def throughput(self) -> float:
        return self.tasks / self.wall if self.wall > 0 else 0.0

    @property
    def share_429(self) -> float:
        return self.http_429 / self.requests if self.requests else 0.0


def stat_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def settle_window(sim: Simulator) -> None:
    """Let the simulator's 1 s QPS window empty so one client's tail does not hit the next."""
    time.sleep(1.2)


# -- scenarios ---------------------------------------------------------------------------


def naive_row(sim: Simulator, plan: Plan, concurrency: int, n: int, label: str) -> Row:
    images = [png_bytes(10_000_000 + concurrency * 100_000 + i, *IMAGE_SIZE) for i in range(n)]
    before = sim.stats
    result = asyncio.run(
        run_naive(sim.base_url, images, qps=plan.qps, concurrency=concurrency, key=KEY)
    )
    delta = stat_delta(before, sim.stats)
    return Row(
        client=label,
        in_flight=concurrency,
        tasks=result.tasks,
        failed=result.failed,
        wall=result.wall,
        first_done=result.first_done,
        requests=delta["requests"],
        http_429=delta["http_429"],
        floor=2,
    )


def watchd_row(
    sim: Simulator,
    root: Path,
    *,
    label: str,
    mode: str,
    n: int,
    folders: list[str],
    qps: float,
    max_in_flight: int,
    poll_interval: float,
    seed_base: int,
    timeout: float,
    drop_before_start: bool = False,
) -> tuple[Row, Daemon, Path]:
    """Run the real daemon on `n` images spread over `folders`; returns its row.

    Timed from the drop (or, with drop_before_start, from spawning the daemon) to the last
    original in done/.
    """
    root.mkdir(parents=True)
    config = write_config(
        root,
        sim.base_url,
        folders,
        api={
            "qps": qps,
            "mode": mode,
            "max_in_flight": max_in_flight,
            "poll_interval": poll_interval,
        },
        folder={"settle": 0.2},
    )
    batches = []
    for i, name in enumerate(folders):
        share = n // len(folders) + (1 if i < n % len(folders) else 0)
        start = seed_base + i * 100_000
        staged = stage_images(root / "staging" / name, share, start=start, size=IMAGE_SIZE)
        batches.append((staged, root / name / "inbox"))
    done_dirs = [root / name / "done" for name in folders]
    failed_dirs = [root / name / "failed" for name in folders]
    daemon = Daemon(config)
    before = sim.stats
    if drop_before_start:
        for staged, inbox in batches:
            drop_all(staged, inbox)
        daemon.start()
        t0 = daemon.spawned_at
        daemon.wait_started()
    else:
        daemon.start()
        daemon.wait_started()
        before = sim.stats
        t0 = time.monotonic()
        for staged, inbox in batches:
            drop_all(staged, inbox)
    first_done = wait_until(lambda: count_files(done_dirs) >= 1, timeout, 0.05)
    finished = wait_until(
        lambda: count_files(done_dirs) + count_files(failed_dirs) // 2 >= n, timeout, 0.05
    )
    end = finished if finished is not None else time.monotonic()
    delta = stat_delta(before, sim.stats)
    daemon.stop()
    done = count_files(done_dirs)
    failed = count_files(failed_dirs) // 2  # original + NAME.error.json
    row = Row(
        client=label,
        in_flight=max_in_flight,
        tasks=done,
        failed=failed + (n - done - failed),
        wall=end - t0,
        first_done=(first_done or end) - t0,
        requests=delta["requests"],
        http_429=delta["http_429"],
        floor=1 if mode == "sync" else 2,
    )
    return row, daemon, config.parent / "state" / "watchd.db"


# -- output --------------------------------------------------------------------------------


def results_table(title: str, rows: list[Row], plan: Plan, baseline: Row | None) -> Table:
    table = Table(title=title)
    heads = [
        "client", "in flight", "tasks", "failed", "wall s", "ideal s", "req/task",
        "req × naive", "429s", "req/s", "tasks/s", "tasks/s × naive", "÷ ceiling", "of ideal",
    ]  # fmt: skip
    for h in heads:
        table.add_column(h, justify="left" if h == "client" else "right")
    for r in rows:
        ceiling = plan.qps / r.floor
        ideal = plan.ideal_wall(r.tasks, r.floor)
        req_ratio = r.req_per_task / baseline.req_per_task if baseline else None
        tput_ratio = r.throughput / baseline.throughput if baseline else None
        table.add_row(
            r.client,
            str(r.in_flight),
            str(r.tasks),
            str(r.failed),
            fmt(r.wall, 1),
            fmt(ideal, 1),
            fmt(r.req_per_task),
            fmt(req_ratio),
            f"{r.http_429} ({r.share_429:.1%})",
            fmt(r.requests / r.wall if r.wall else None),
            fmt(r.throughput, 3),
            fmt(tput_ratio, 1),
            f"{r.throughput / ceiling:.0%}",
            f"{ideal / r.wall:.0%}" if r.wall else "—",
        )
    return table


def per_job_requests(db: Path) -> str:
    """How the daemon's requests spread over jobs (the ledger's `requests` column)."""
    rows = ledger_rows(db, "select requests, count(*) from jobs group by 1 order by 1")
    return ", ".join(f"{req} req × {n}" for req, n in rows)


# -- main ----------------------------------------------------------------------------------


def run_main(plan: Plan, work: Path, quick: bool) -> list[Check]:
    lo, hi = plan.processing
    sim_cfg = SimConfig(qps=plan.qps, processing_time=plan.processing, seed=plan.seed)
    console.print(
        f"[bold]throughput[/]: simulator QPS {plan.qps:g}, processing uniform {lo:g}–{hi:g} s;"
        f" ceiling async {plan.qps / 2:g} tasks/s, sync {plan.qps:g} tasks/s"
    )
    rows: list[Row] = []
    notes: list[str] = []
    with Simulator(sim_cfg).start() as sim:
        literal_c = max(1, int(plan.qps))
        steps = [
            ("naive", literal_c, plan.n_naive),
            ("naive", plan.max_in_flight, plan.n_naive_wide),
            ("async", 0, plan.n_async),
            ("sync", 0, plan.n_sync),
        ]
        for kind, concurrency, n in steps:
            started = time.monotonic()
            if kind == "naive":
                label = f"naive, {concurrency} at a time"
                console.print(f"  running {label} on {n} images …")
                rows.append(naive_row(sim, plan, concurrency, n, label))
            else:
                console.print(f"  running watchd {kind} on {n} images …")
                timeout = 3 * (n / (plan.qps / (2 if kind == "async" else 1)) + hi) + 60
                row, _, db = watchd_row(
                    sim,
                    work / f"watchd-{kind}",
                    label=f"watchd {kind}",
                    mode=kind,
                    n=n,
                    folders=["bench"],
                    qps=plan.qps,
                    max_in_flight=plan.max_in_flight,
                    poll_interval=plan.poll_interval,
                    seed_base=1_000_000 * (len(rows) + 1),
                    timeout=timeout,
                )
                rows.append(row)
                notes.append(f"watchd {kind}, requests per job (ledger): {per_job_requests(db)}")
            console.print(f"    {time.monotonic() - started:.0f} s")
            settle_window(sim)
    baseline = rows[0]
    console.print(results_table("throughput: one simulator, one run", rows, plan, baseline))
    for note in notes:
        console.print(f"  {note}")
    console.print(
        "  ideal s = max(tasks / ceiling, tasks / QPS + mean T); ÷ ceiling = (tasks / wall) /"
        " ceiling; of ideal = ideal s / wall s; × naive compares with the first row;"
        f" req/s is the budget used (QPS {plan.qps:g}; watchd aims at 97% of it)."
    )
    by = {r.client: r for r in rows}
    a, s = by["watchd async"], by["watchd sync"]
    t_note = "" if (lo, hi) == (9, 11) else f"run at T {lo:g}–{hi:g} s, target is for T = 10 s"

    def of_ideal(r: Row) -> float:
        return plan.ideal_wall(r.tasks, r.floor) / r.wall

    return [
        Check("async requests per task", a.req_per_task, 2.2, True, note=t_note),
        Check(
            "async throughput vs naive (literal)",
            a.throughput / baseline.throughput,
            5.0,
            False,
            "×",
            f"naive at {baseline.in_flight} in flight; vs naive at {rows[1].in_flight}:"
            f" {a.throughput / rows[1].throughput:.2f}×",
        ),
        Check("sync requests per task", s.req_per_task, 1.05, True),
        Check(
            "async share of ceiling (ideal/wall)",
            of_ideal(a) * 100,
            90,
            False,
            "%",
            f"raw tasks/s ÷ ceiling: {a.throughput / (plan.qps / 2):.0%}",
        ),
        Check(
            "sync share of ceiling (ideal/wall)",
            of_ideal(s) * 100,
            95,
            False,
            "%",
            f"raw tasks/s ÷ ceiling: {s.throughput / plan.qps:.0%}",
        ),
        Check("async 429s share of requests", a.share_429 * 100, 1, True, "%"),
        Check("sync 429s share of requests", s.share_429 * 100, 1, True, "%"),
        Check(
            "all images done (async + sync)", a.tasks + s.tasks, plan.n_async + plan.n_sync, False
        ),
    ]


def run_done_means(work: Path, seed: int) -> list[Check]:
    console.print(
        "[bold]done means[/]: QPS 4, processing 2–3 s, 40 images over two folders (in the"
        " inboxes before start), async, max_in_flight 32, poll_interval 1.0"
    )
    with Simulator(SimConfig(qps=4, processing_time=(2, 3), seed=seed)).start() as sim:
        row, daemon, db = watchd_row(
            sim,
            work / "done-means",
            label="watchd async (done means)",
            mode="async",
            n=40,
            folders=["left", "right"],
            qps=4,
            max_in_flight=32,
            poll_interval=1.0,
            seed_base=50_000_000,
            timeout=90,
            drop_before_start=True,
        )
    started = daemon.started_after
    table = Table(title="done means: QPS 4, 2–3 s, 40 images, two folders")
    for h in ("tasks", "failed", "from spawn s", "from 'started' s", "requests", "req/task",
              "429s", "first done s"):  # fmt: skip
        table.add_column(h, justify="right")
    table.add_row(
        str(row.tasks),
        str(row.failed),
        fmt(row.wall, 1),
        fmt(row.wall - started, 1) if started is not None else "—",
        str(row.requests),
        fmt(row.req_per_task),
        f"{row.http_429} ({row.share_429:.1%})",
        fmt(row.first_done, 1),
    )
    console.print(table)
    console.print(f"  requests per job (ledger): {per_job_requests(db)}")
    return [
        Check("done means: all 40 done", row.tasks, 40, False),
        Check("done means: wall from daemon spawn", row.wall, 30, True, " s"),
        Check("done means: 429s share of requests", row.share_429 * 100, 5, True, "%"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small N and T 2-3 s (a smoke run)")
    p.add_argument("--done-means", action="store_true", help="run only the done-means check")
    p.add_argument("--no-done-means", action="store_true", help="skip the done-means check")
    p.add_argument("--qps", type=float, default=2.0)
    p.add_argument("--n-async", type=int, help="images for watchd async (default 100; quick 20)")
    p.add_argument("--n-sync", type=int, help="images for watchd sync (default 100; quick 20)")
    p.add_argument("--n-naive", type=int, help="images for the naive client (default 12)")
    p.add_argument("--n-naive-wide", type=int, help="images for the naive client at max_in_flight")
    p.add_argument("--max-in-flight", type=int, default=32)
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--keep", action="store_true", help="keep the workspace (logs, ledgers)")
    args = p.parse_args(argv)

    quick = args.quick
    plan = Plan(
        qps=args.qps,
        processing=(2.0, 3.0) if quick else (9.0, 11.0),
        n_async=args.n_async or (20 if quick else 100),
        n_sync=args.n_sync or (20 if quick else 100),
        n_naive=args.n_naive or (6 if quick else 12),
        n_naive_wide=args.n_naive_wide or (20 if quick else 60),
        max_in_flight=args.max_in_flight,
        poll_interval=1.0,
        seed=args.seed,
    )
    work = Path(tempfile.mkdtemp(prefix="watchd-bench-"))
    console.print(f"machine: {machine()}")
    console.print(f"workspace: {work}{'' if args.keep else ' (removed at the end)'}")
    began = time.monotonic()
    checks: list[Check] = []
    try:
        if not args.done_means:
            checks += run_main(plan, work, quick)
        if not args.no_done_means:
            checks += run_done_means(work, args.seed)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    console.print(summary_table("throughput targets (issue 6)", checks))
    console.print(f"total {time.monotonic() - began:.0f} s")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
