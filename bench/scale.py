"""Scale benchmark (issue 6): big drops, a big backlog at start, and idle CPU of the real daemon.

1. drop: 10,000 small unique PNGs renamed into one inbox of a running daemon at once. The
   simulator is slow (QPS 0.2, the daemon's qps likewise), so nearly all of them stay waiting:
   this measures intake, not the API. Timed from the first rename to the ledger holding
   10,000 rows (counted through a read-only sqlite connection); the daemon's peak RSS is
   sampled every 0.1 s and read from VmHWM at the end.
2. start: 50,000 files already in the inbox when the daemon starts; timed from spawning
   `python -m watchd run` to all 50,000 rows recorded.
3. idle: 20 folders with empty inboxes; the daemon's CPU time (user + system, all threads)
   over 60 s after a warm-up, as a share of one CPU; with thread count and wake-ups
   (context switches) per second to explain it.

Usage: python bench/scale.py [--quick] [--only drop|start|idle] [--keep]
`--quick` uses 2,000 / 5,000 files and 15 s idle (a smoke run; the targets are for the full
sizes). Every folder keeps watchd's default settle (1 s) and rescan interval (300 s).
Must never: send traffic beyond 127.0.0.1, or run inside the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # the bench folder is not a package: its own dir is on sys.path
    Check,
    Daemon,
    RssSampler,
    console,
    ledger_count,
    machine,
    stage_images,
    summary_table,
    write_config,
)

from watchd.sim import SimConfig, Simulator

# The backlog must stay a backlog: one create every 5 s at most.
SLOW_API = {"qps": 0.2, "max_in_flight": 2, "poll_interval": 1.0}


@dataclass(frozen=True)
class Intake:
    label: str
    files: int
    recorded: int
    seconds: float | None  # None: not all recorded before the timeout
    milestones: dict[int, float]  # rows -> seconds
    rss_idle_mb: float
    rss_peak_mb: float
    vm_hwm_mb: float | None
    stage_seconds: float
    cpu_seconds: float  # the daemon's CPU time (all threads) during the measurement


def _wait_recorded(
    db: Path, n: int, t0: float, timeout: float, marks: list[int]
) -> tuple[float | None, int, dict[int, float]]:
    milestones: dict[int, float] = {}
    deadline = t0 + timeout
    count = 0
    while time.monotonic() < deadline:
        count = ledger_count(db)
        now = time.monotonic() - t0
        for m in marks:
            if count >= m and m not in milestones:
                milestones[m] = now
        if count >= n:
            return now, count, milestones
        time.sleep(0.2)
    return None, count, milestones


def _marks(n: int) -> list[int]:
    return sorted({n // 10, n // 4, n // 2, 3 * n // 4, n})


def bench_drop(sim: Simulator, work: Path, n: int, timeout: float) -> Intake:
    root = work / "drop"
    root.mkdir(parents=True)
    config = write_config(root, sim.base_url, ["bulk"], api=SLOW_API)
    began = time.monotonic()
    staged = stage_images(root / "staging", n)
    stage_seconds = time.monotonic() - began
    inbox = root / "bulk" / "inbox"
    with Daemon(config).start() as daemon:
        daemon.wait_started()
        time.sleep(1.0)  # let start-up allocations settle before the idle reading
        rss_idle = psutil.Process(daemon.pid).memory_info().rss / 2**20
        proc = psutil.Process(daemon.pid)
        with RssSampler(daemon.pid) as rss:
            cpu0 = sum(proc.cpu_times()[:2])
            t0 = time.monotonic()
            for path in staged:
                os.replace(path, inbox / path.name)
            seconds, count, milestones = _wait_recorded(
                root / "state" / "watchd.db", n, t0, timeout, _marks(n)
            )
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            time.sleep(0.5)  # one more RSS sample after the last row
        hwm = daemon.vm_hwm_mb()
    return Intake(
        f"{n:,} files dropped at once", n, count, seconds, milestones,
        rss_idle, rss.peak_mb, hwm, stage_seconds, cpu,
    )  # fmt: skip


def bench_start(sim: Simulator, work: Path, n: int, timeout: float) -> Intake:
    root = work / "start"
    root.mkdir(parents=True)
    config = write_config(root, sim.base_url, ["bulk"], api=SLOW_API)
    began = time.monotonic()
    stage_images(root / "bulk" / "inbox", n)
    stage_seconds = time.monotonic() - began
    # Cold-ish start: the inbox was just written, so its inodes are in the page cache
    # (as they would be on a server that received them recently).
    with Daemon(config).start() as daemon:
        proc = psutil.Process(daemon.pid)
        with RssSampler(daemon.pid) as rss:
            t0 = daemon.spawned_at
            seconds, count, milestones = _wait_recorded(
                root / "state" / "watchd.db", n, t0, timeout, _marks(n)
            )
            cpu = sum(proc.cpu_times()[:2])
            time.sleep(0.5)
        hwm = daemon.vm_hwm_mb()
        started = daemon.started_after
    label = f"{n:,} files in the inbox at start"
    if started is not None:
        label += f" (started log line at {started:.1f} s)"
    return Intake(
        label, n, count, seconds, milestones, 0.0, rss.peak_mb, hwm, stage_seconds, cpu
    )  # fmt: skip


def _switches(pid: int) -> int:
    """Context switches of every thread of `pid` (each one is a wake-up or a preemption)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


@dataclass(frozen=True)
class Idle:
    folders: int
    seconds: float
    cpu_seconds: float
    threads: int
    wakeups_per_s: float
    rss_mb: float

    @property
    def share(self) -> float:
        return self.cpu_seconds / self.seconds


def bench_idle(sim: Simulator, work: Path, folders: int, seconds: float, warmup: float) -> Idle:
    root = work / "idle"
    root.mkdir(parents=True)
    names = [f"folder{i:02d}" for i in range(folders)]
    config = write_config(root, sim.base_url, names, api={"qps": 2})
    with Daemon(config).start() as daemon:
        daemon.wait_started()
        time.sleep(warmup)
        proc = psutil.Process(daemon.pid)
        cpu0, sw0, t0 = proc.cpu_times(), _switches(daemon.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, sw1, t1 = proc.cpu_times(), _switches(daemon.pid), time.monotonic()
        threads = proc.num_threads()
        rss = proc.memory_info().rss / 2**20
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return Idle(folders, t1 - t0, used, threads, (sw1 - sw0) / (t1 - t0), rss)


def intake_table(rows: list[Intake]) -> Table:
    table = Table(title="intake: time until every file is a ledger row, and the daemon's memory")
    heads = ["scenario", "recorded", "seconds", "files/s", "CPU s", "milestones (rows @ s)",
             "RSS idle MB", "peak RSS MB (sampled)", "VmHWM MB", "staging s"]  # fmt: skip
    left = ("scenario", "milestones (rows @ s)")
    for h in heads:
        table.add_column(h, justify="left" if h in left else "right")
    for r in rows:
        table.add_row(
            r.label,
            f"{r.recorded:,}/{r.files:,}",
            "timeout" if r.seconds is None else f"{r.seconds:.1f}",
            "—" if not r.seconds else f"{r.files / r.seconds:,.0f}",
            f"{r.cpu_seconds:.1f}",
            ", ".join(f"{m:,}@{s:.1f}" for m, s in sorted(r.milestones.items())),
            f"{r.rss_idle_mb:.0f}" if r.rss_idle_mb else "—",
            f"{r.rss_peak_mb:.0f}",
            "—" if r.vm_hwm_mb is None else f"{r.vm_hwm_mb:.0f}",
            f"{r.stage_seconds:.1f}",
        )
    return table


def idle_table(idle: Idle) -> Table:
    table = Table(title=f"idle: {idle.folders} folders, empty inboxes")
    for h in ("seconds", "CPU seconds", "CPU share", "threads", "wake-ups/s", "RSS MB"):
        table.add_column(h, justify="right")
    table.add_row(
        f"{idle.seconds:.0f}",
        f"{idle.cpu_seconds:.2f}",
        f"{idle.share:.2%}",
        str(idle.threads),
        f"{idle.wakeups_per_s:.1f}",
        f"{idle.rss_mb:.0f}",
    )
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 / 5,000 files, 15 s idle")
    p.add_argument("--only", choices=("drop", "start", "idle"), action="append")
    p.add_argument("--drop-files", type=int)
    p.add_argument("--start-files", type=int)
    p.add_argument("--idle-seconds", type=float)
    p.add_argument("--keep", action="store_true", help="keep the workspace (logs, ledgers)")
    args = p.parse_args(argv)
    only = set(args.only or ("drop", "start", "idle"))
    drop_n = args.drop_files or (2_000 if args.quick else 10_000)
    start_n = args.start_files or (5_000 if args.quick else 50_000)
    idle_s = args.idle_seconds or (15.0 if args.quick else 60.0)
    full = not args.quick

    work = Path(tempfile.mkdtemp(prefix="watchd-scale-"))
    console.print(f"machine: {machine()}")
    console.print(f"workspace: {work}{'' if args.keep else ' (removed at the end)'}")
    began = time.monotonic()
    checks: list[Check] = []
    intakes: list[Intake] = []
    try:
        with Simulator(SimConfig(qps=0.2, processing_time=(5, 10), seed=1)).start() as sim:
            if "drop" in only:
                console.print(f"  drop: {drop_n:,} files into a running daemon …")
                d = bench_drop(sim, work, drop_n, timeout=300)
                intakes.append(d)
                size_note = "" if full else f"quick: {drop_n:,} files, target is for 10,000"
                peak = max(d.rss_peak_mb, d.vm_hwm_mb or 0)
                checks.append(Check("drop: peak RSS", peak, 150, True, " MB", size_note))
                checks.append(
                    Check(
                        "drop: all recorded",
                        d.seconds,
                        300,
                        True,
                        " s",
                        "no target in the issue; bounded by the bench timeout",
                    )
                )
            if "start" in only:
                console.print(f"  start: {start_n:,} files in the inbox before start …")
                s = bench_start(sim, work, start_n, timeout=600 if full else 120)
                intakes.append(s)
                size_note = "" if full else f"quick: {start_n:,} files, target is for 50,000"
                checks.append(
                    Check("start: all recorded (from spawn)", s.seconds, 10, True, " s", size_note)
                )
                peak = max(s.rss_peak_mb, s.vm_hwm_mb or 0)
                checks.append(
                    Check("start: peak RSS", peak, 150, True, " MB", "no target; for reference")
                )
            if intakes:
                console.print(intake_table(intakes))
            if "idle" in only:
                console.print(f"  idle: 20 folders for {idle_s:g} s …")
                idle = bench_idle(sim, work, 20, idle_s, warmup=5.0 if args.quick else 10.0)
                console.print(idle_table(idle))
                checks.append(
                    Check(
                        "idle CPU, 20 folders",
                        idle.share * 100,
                        0.2,
                        True,
                        "%",
                        f"over {idle.seconds:.0f} s",
                    )
                )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    console.print(summary_table("scale targets (issue 6)", checks))
    console.print(f"total {time.monotonic() - began:.0f} s")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
