"""Throughput with the dashboard open and live-updating, against the same run without it.

The daemon (`python -m watchd run`, async, max_in_flight 32, poll_interval 1.0) gets N images
dropped into two inboxes at once, against one simulator; the clock runs from the drop to the
last original in done/. Runs alternate: the daemon alone, then the daemon while headless
Chromium shows the overview (refreshed by its own script every 3 s, thumbnails and all)
and the Jobs page in a second tab. Requests and 429s are the simulator's counters.
Compare requests per task and the share of the ceiling (QPS / 2 tasks per second).

Usage: python bench/dashboard.py [--quick] [--rounds 2] [--keep]
Needs Debian's chromium and the playwright package (never `playwright install`).
Must never: send traffic beyond 127.0.0.1, or run inside the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # the bench folder is not a package: its own dir is on sys.path
    Daemon,
    console,
    count_files,
    drop_all,
    fmt,
    machine,
    stage_images,
    wait_until,
    write_config,
)

from watchd.sim import SimConfig, Simulator

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FOLDERS = ["left", "right"]


@dataclass(frozen=True)
class Run:
    label: str
    tasks: int
    wall: float
    requests: int
    http_429: int
    refreshes: int

    @property
    def req_per_task(self) -> float:
        return self.requests / max(1, self.tasks)

    def of_ceiling(self, qps: float) -> float:
        return (self.tasks / self.wall) / (qps / 2) if self.wall else 0.0


class Viewer:
    """Chromium with the overview and the Jobs page open, in a thread of its own."""

    def __init__(self, url: str, profile: Path) -> None:
        self.url, self.profile = url, profile
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.refreshes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Viewer:
        self.thread.start()
        if not self.ready.wait(60):
            raise RuntimeError("the browser did not open the dashboard")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(self.profile), executable_path=CHROMIUM, args=FLAGS,
                viewport={"width": 1360, "height": 900},
            )  # fmt: skip
            overview, jobs = context.new_page(), context.new_page()

            def count(response: Any) -> None:
                if response.request.headers.get("x-live") == "1":
                    self.refreshes += 1

            for page, path in ((overview, "/"), (jobs, "/jobs")):
                page.on("response", count)
                page.goto(self.url + path)
            self.ready.set()
            while not self.stop.is_set():
                overview.wait_for_timeout(250)  # lets the pages' own timers run
            context.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_run(sim: Simulator, root: Path, n: int, qps: float, seed: int, watched: bool) -> Run:
    root.mkdir(parents=True)
    config = write_config(
        root,
        sim.base_url,
        FOLDERS,
        api={"qps": qps, "mode": "async", "max_in_flight": 32, "poll_interval": 1.0},
        folder={"settle": 0.2},
    )
    port = free_port()
    data = yaml.safe_load(config.read_text())
    data["http"] = {"listen": f"127.0.0.1:{port}"}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    batches = []
    for i, name in enumerate(FOLDERS):
        share = n // 2 + (1 if i < n % 2 else 0)
        staged = stage_images(root / "staging" / name, share, start=seed + i * 100_000)
        batches.append((staged, root / name / "inbox"))
    done_dirs = [root / name / "done" for name in FOLDERS]
    daemon = Daemon(config).start()
    daemon.wait_started()
    viewer = Viewer(f"http://127.0.0.1:{port}", root / "profile") if watched else None
    if viewer is not None:
        viewer.__enter__()
    try:
        time.sleep(1.2)  # the simulator's 1 s QPS window empties
        before = sim.stats
        t0 = time.monotonic()
        for staged, inbox in batches:
            drop_all(staged, inbox)
        finished = wait_until(lambda: count_files(done_dirs) >= n, 600, 0.05)
        end = finished if finished is not None else time.monotonic()
        after = sim.stats
    finally:
        if viewer is not None:
            viewer.__exit__()
        daemon.stop()
    return Run(
        label="dashboard open" if watched else "no browser",
        tasks=count_files(done_dirs),
        wall=end - t0,
        requests=after["requests"] - before["requests"],
        http_429=after.get("http_429", 0) - before.get("http_429", 0),
        refreshes=viewer.refreshes if viewer is not None else 0,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="QPS 4, 2–3 s, 40 images (~20 s a run)")
    p.add_argument("--rounds", type=int, default=2, help="runs each way, alternating")
    p.add_argument("--keep", action="store_true", help="keep the workspace")
    args = p.parse_args(argv)
    qps, processing, n = (4.0, (2.0, 3.0), 40) if args.quick else (2.0, (9.0, 11.0), 100)
    console.print(f"[bold]dashboard load[/]: {machine()}")
    console.print(
        f"QPS {qps:g}, processing {processing[0]:g}–{processing[1]:g} s, {n} images over two"
        f" folders, async, max_in_flight 32; {args.rounds} runs each way, alternating"
    )
    work = Path(tempfile.mkdtemp(prefix="watchd-bench-dashboard-"))
    runs: list[Run] = []
    try:
        with Simulator(SimConfig(qps=qps, processing_time=processing, seed=11)).start() as sim:
            for r in range(args.rounds):
                for watched in (False, True):
                    seed = 1_000_000 * (2 * r + watched + 1)
                    run = one_run(sim, work / f"r{r}-{int(watched)}", n, qps, seed, watched)
                    console.print(
                        f"  {run.label}: {run.tasks} tasks in {run.wall:.1f} s,"
                        f" {run.req_per_task:.2f} req/task, {run.http_429} × 429,"
                        f" {run.refreshes} live refreshes"
                    )
                    runs.append(run)
    finally:
        if args.keep:
            console.print(f"workspace kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    table = Table(title="throughput with and without the dashboard open")
    for h in ("", "runs", "tasks", "req/task", "429s", "tasks/s", "of the ceiling", "refreshes"):
        table.add_column(h, justify="right")
    for label in ("no browser", "dashboard open"):
        mine = [r for r in runs if r.label == label]
        table.add_row(
            label,
            str(len(mine)),
            str(sum(r.tasks for r in mine)),
            " / ".join(fmt(r.req_per_task) for r in mine),
            str(sum(r.http_429 for r in mine)),
            " / ".join(fmt(r.tasks / r.wall, 3) for r in mine),
            " / ".join(f"{r.of_ceiling(qps):.0%}" for r in mine)
            + f" (mean {statistics.mean(r.of_ceiling(qps) for r in mine):.0%})",
            str(sum(r.refreshes for r in mine)),
        )
    console.print(table)
    return 0 if all(r.tasks == n for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
