"""Scale benchmark (issue 9): big drops (on a quiet and on a loaded host), a big backlog at
start, an idle daemon, and a big account, all with the real daemon and the simulator.

1. drop: 10,000 small unique PNGs renamed into one inbox of a running daemon at once, with
   the simulator and the daemon at QPS 2 (T 2-3 s) so that requests flow while the files are
   recorded. Timed from the first rename to the ledger holding every row (read-only sqlite,
   every 0.2 s); the daemon's peak RSS (sampled every 0.1 s, and VmHWM); and, over the
   first BACKLOG_WINDOW seconds of the backlog, the simulator's requests per second and the
   share answered 429.
2. drop, loaded: the same while two busy-loop processes keep both CPUs busy.
3. start: 50,000 files in the inbox before the daemon starts (slow API: QPS 0.2, so the
   backlog stays waiting); time from spawn to the first create reaching the API, and to all
   rows recorded.
4. idle: 20 folders with empty inboxes; the daemon's CPU time (all threads) over 60 s after
   a 10 s warm-up, as a share of one CPU, and second by second (a periodic burst shows as
   a spike every few seconds); threads and wake-ups (context switches) per second.
5. big account: simulator and daemon at QPS 50, T 2-3 s, 2,000 images, `max_in_flight`
   128; wall time against the bound max(n·2/QPS, n/QPS + T_min), the daemon's CPU share
   of one core, and its CPU milliseconds per API call.

Usage: python bench/scale.py [--quick] [--only drop|drop-loaded|start|idle|qps50] [--keep]
`--quick` uses 2,000 / 5,000 / 300 files and 15 s idle (a smoke run; the targets are for
the full sizes). Folders keep watchd's default settle (1 s) and rescan interval (300 s).
Must never: send traffic beyond 127.0.0.1, or run inside the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
    count_files,
    drop_all,
    ledger_count,
    machine,
    stage_images,
    summary_table,
    wait_until,
    write_config,
)

from watchd.sim import SimConfig, Simulator

# The start backlog must stay a backlog: one create every 5 s at most.
SLOW_API = {"qps": 0.2, "max_in_flight": 2, "poll_interval": 1.0}
FLOWING_API = {"qps": 2, "max_in_flight": 32, "poll_interval": 1.0}
BACKLOG_WINDOW = 60.0  # seconds of the drop's backlog over which requests are counted
HOGS = 2


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
    first_create: float | None = None  # seconds to the first create reaching the API
    requests: int = 0  # API requests over the backlog window
    http_429: int = 0
    window: float = 0.0  # seconds the requests were counted over
    qps: float = 0.0

    @property
    def share_429(self) -> float:
        return self.http_429 / self.requests if self.requests else 0.0

    @property
    def rate_share(self) -> float:
        return self.requests / self.window / self.qps if self.window and self.qps else 0.0


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


def first_create(sim: Simulator, since: int) -> float | None:
    """When the first create since upload record `since` reached the simulator, on our
    monotonic clock (it stamps uploads in epoch seconds; same process, same clocks)."""
    uploads = sim.uploads[since:]
    if not uploads:
        return None
    return min(u.at for u in uploads) - (time.time() - time.monotonic())


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[list[int]]:
    """`count` busy-loop processes for the duration; each is ended by its own pid."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def bench_drop(
    sim: Simulator, work: Path, n: int, timeout: float, hogs: int, window: float
) -> Intake:
    name = "drop-loaded" if hogs else "drop"
    root = work / name
    root.mkdir(parents=True)
    config = write_config(root, sim.base_url, ["bulk"], api=FLOWING_API)
    began = time.monotonic()
    staged = stage_images(root / "staging", n)
    stage_seconds = time.monotonic() - began
    inbox = root / "bulk" / "inbox"
    with Daemon(config).start() as daemon:
        daemon.wait_started()
        time.sleep(1.0)  # let start-up allocations settle before the idle reading
        proc = psutil.Process(daemon.pid)
        rss_idle = proc.memory_info().rss / 2**20
        with cpu_hogs(hogs), RssSampler(daemon.pid) as rss:
            before, since = sim.stats, len(sim.uploads)
            cpu0 = sum(proc.cpu_times()[:2])
            t0 = time.monotonic()
            drop_all(staged, inbox)
            seconds, count, milestones = _wait_recorded(
                root / "state" / "watchd.db", n, t0, timeout, _marks(n)
            )
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            started = first_create(sim, since)
            # Requests over the backlog's first `window` seconds, from the first create on.
            if started is not None:
                rest = started + window - time.monotonic()
                if rest > 0:
                    time.sleep(rest)
            after = sim.stats
            time.sleep(0.5)  # one more RSS sample after the last row
        hwm = daemon.vm_hwm_mb()
    label = f"{n:,} files dropped at once" + (f", {hogs} CPU hogs" if hogs else "")
    return Intake(
        label, n, count, seconds, milestones, rss_idle, rss.peak_mb, hwm, stage_seconds, cpu,
        None if started is None else started - t0,
        after["requests"] - before["requests"], after["http_429"] - before["http_429"],
        window if started is not None else 0.0, float(FLOWING_API["qps"]),
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
    since = len(sim.uploads)
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
    created = first_create(sim, since)
    label = f"{n:,} files in the inbox at start"
    if started is not None:
        label += f" (started log line at {started:.1f} s)"
    return Intake(
        label, n, count, seconds, milestones, 0.0, rss.peak_mb, hwm, stage_seconds, cpu,
        None if created is None else created - t0,
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


def _cpu_ms(pid: int) -> float:
    """CPU time of every live thread of `pid` in milliseconds, to the nanosecond.

    /proc/PID/task/TID/schedstat counts nanoseconds; psutil's cpu_times count clock ticks
    (10 ms), which would show a 0.1 ms wake-up as a 10 ms "burst" whenever it crosses a tick.
    """
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total / 1e6


@dataclass(frozen=True)
class Idle:
    folders: int
    seconds: float
    cpu_seconds: float
    threads: int
    wakeups_per_s: float
    rss_mb: float
    per_second_ms: list[float]  # the daemon's CPU in each second of the measurement

    @property
    def share(self) -> float:
        return self.cpu_seconds / self.seconds

    @property
    def spikes(self) -> list[int]:
        """The seconds (from the start of the measurement) with a burst of CPU."""
        return [i for i, ms in enumerate(self.per_second_ms) if ms >= SPIKE_MS]


SPIKE_MS = 5.0  # a second with this much CPU is a burst (idle costs well under 1 ms a second)


def bench_idle(sim: Simulator, work: Path, folders: int, seconds: float, warmup: float) -> Idle:
    root = work / "idle"
    root.mkdir(parents=True)
    names = [f"folder{i:02d}" for i in range(folders)]
    config = write_config(root, sim.base_url, names, api={"qps": 2})
    with Daemon(config).start() as daemon:
        daemon.wait_started()
        time.sleep(warmup)
        proc = psutil.Process(daemon.pid)
        cpu0, sw0, t0 = _cpu_ms(daemon.pid), _switches(daemon.pid), time.monotonic()
        per_second: list[float] = []
        last = cpu0
        for i in range(int(seconds)):
            time.sleep(max(0.0, t0 + i + 1 - time.monotonic()))
            now = _cpu_ms(daemon.pid)
            per_second.append(now - last)
            last = now
        cpu1, sw1, t1 = _cpu_ms(daemon.pid), _switches(daemon.pid), time.monotonic()
        threads = proc.num_threads()
        rss = proc.memory_info().rss / 2**20
    used = (cpu1 - cpu0) / 1000
    return Idle(folders, t1 - t0, used, threads, (sw1 - sw0) / (t1 - t0), rss, per_second)


@dataclass(frozen=True)
class BigAccount:
    qps: float
    n: int
    done: int
    wall: float | None
    bound: float
    requests: int
    http_429: int
    cpu_seconds: float

    @property
    def of_bound(self) -> float:
        return self.bound / self.wall if self.wall else 0.0

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.wall if self.wall else 0.0

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_seconds / self.requests if self.requests else 0.0


def bench_qps50(work: Path, n: int, qps: float, processing: tuple[float, float]) -> BigAccount:
    root = work / "qps50"
    root.mkdir(parents=True)
    with Simulator(SimConfig(qps=qps, processing_time=processing, seed=5)).start() as sim:
        api = {"qps": qps, "max_in_flight": 128, "poll_interval": 1.0}
        config = write_config(root, sim.base_url, ["big"], api=api, folder={"settle": 0.2})
        staged = stage_images(root / "staging", n)
        done_dir = [root / "big" / "done", root / "big" / "failed"]
        with Daemon(config).start() as daemon:
            daemon.wait_started()
            proc = psutil.Process(daemon.pid)
            before = sim.stats
            cpu0 = sum(proc.cpu_times()[:2])
            t0 = time.monotonic()
            drop_all(staged, root / "big" / "inbox")
            timeout = 3 * (n * 2 / qps + processing[1]) + 60
            end = wait_until(lambda: count_files(done_dir) >= n, timeout, 0.1)
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            delta = {k: sim.stats[k] - before.get(k, 0) for k in ("requests", "http_429")}
    bound = max(n * 2 / qps, n / qps + processing[0])
    return BigAccount(
        qps, n, count_files(done_dir[:1]), None if end is None else end - t0, bound,
        delta["requests"], delta["http_429"], cpu,
    )  # fmt: skip


# -- output ----------------------------------------------------------------------------------


def intake_table(rows: list[Intake]) -> Table:
    table = Table(title="intake: time until every file is a ledger row, and the daemon's memory")
    heads = ["scenario", "recorded", "seconds", "first create s", "files/s", "CPU s",
             "milestones (rows @ s)", "peak RSS MB", "VmHWM MB", "req/s (÷ QPS)",
             "429s"]  # fmt: skip
    left = ("scenario", "milestones (rows @ s)")
    for h in heads:
        table.add_column(h, justify="left" if h in left else "right")
    for r in rows:
        table.add_row(
            r.label,
            f"{r.recorded:,}/{r.files:,}",
            "timeout" if r.seconds is None else f"{r.seconds:.1f}",
            "—" if r.first_create is None else f"{r.first_create:.2f}",
            "—" if not r.seconds else f"{r.files / r.seconds:,.0f}",
            f"{r.cpu_seconds:.1f}",
            ", ".join(f"{m:,}@{s:.1f}" for m, s in sorted(r.milestones.items())),
            f"{r.rss_peak_mb:.0f}",
            "—" if r.vm_hwm_mb is None else f"{r.vm_hwm_mb:.0f}",
            "—" if not r.window else f"{r.requests / r.window:.2f} ({r.rate_share:.0%})",
            "—" if not r.window else f"{r.http_429} ({r.share_429:.1%})",
        )
    return table


def idle_table(idle: Idle) -> Table:
    table = Table(title=f"idle: {idle.folders} folders, empty inboxes")
    for h in ("seconds", "CPU seconds", "CPU share", "max CPU in a second", "bursts (s ≥ 5 ms)",
              "threads", "wake-ups/s", "RSS MB"):  # fmt: skip
        table.add_column(h, justify="right")
    table.add_row(
        f"{idle.seconds:.0f}",
        f"{idle.cpu_seconds:.3f}",
        f"{idle.share:.3%}",
        f"{max(idle.per_second_ms, default=0):.2f} ms",
        ", ".join(map(str, idle.spikes)) or "none",
        str(idle.threads),
        f"{idle.wakeups_per_s:.1f}",
        f"{idle.rss_mb:.0f}",
    )
    return table


def big_table(b: BigAccount) -> Table:
    table = Table(title=f"big account: QPS {b.qps:g}, {b.n:,} images")
    for h in ("done", "wall s", "bound s", "of bound", "requests", "429s", "CPU s",
              "CPU of one core", "CPU ms per API call"):  # fmt: skip
        table.add_column(h, justify="right")
    table.add_row(
        f"{b.done:,}",
        "timeout" if b.wall is None else f"{b.wall:.1f}",
        f"{b.bound:.1f}",
        f"{b.of_bound:.0%}",
        f"{b.requests:,}",
        str(b.http_429),
        f"{b.cpu_seconds:.1f}",
        f"{b.cpu_share:.0%}",
        f"{b.cpu_ms_per_call:.2f}",
    )
    return table


PARTS = ("drop", "drop-loaded", "start", "idle", "qps50")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 / 5,000 / 300 files, 15 s idle")
    p.add_argument("--only", choices=PARTS, action="append", help="one part (repeatable)")
    p.add_argument("--drop-files", type=int)
    p.add_argument("--start-files", type=int)
    p.add_argument("--idle-seconds", type=float)
    p.add_argument("--big-files", type=int)
    p.add_argument("--keep", action="store_true", help="keep the workspace (logs, ledgers)")
    args = p.parse_args(argv)
    only = set(args.only or PARTS)
    quick = args.quick
    drop_n = args.drop_files or (2_000 if quick else 10_000)
    start_n = args.start_files or (5_000 if quick else 50_000)
    idle_s = args.idle_seconds or (15.0 if quick else 60.0)
    big_n = args.big_files or (300 if quick else 2_000)
    window = 20.0 if quick else BACKLOG_WINDOW
    size_note = "quick run: the targets are for the full sizes" if quick else ""

    work = Path(tempfile.mkdtemp(prefix="watchd-scale-"))
    console.print(f"machine: {machine()}")
    console.print(f"workspace: {work}{'' if args.keep else ' (removed at the end)'}")
    began = time.monotonic()
    checks: list[Check] = []
    intakes: list[Intake] = []
    try:
        flowing = SimConfig(qps=2, processing_time=(2, 3), seed=1)
        for hogs, part in ((0, "drop"), (HOGS, "drop-loaded")):
            if part not in only:
                continue
            console.print(f"  {part}: {drop_n:,} files into a running daemon …")
            with Simulator(flowing).start() as sim:
                d = bench_drop(sim, work, drop_n, 300, hogs, window)
            intakes.append(d)
            peak = max(d.rss_peak_mb, d.vm_hwm_mb or 0)
            checks.append(Check(f"{part}: all recorded", d.seconds, 30, True, " s", size_note))
            checks.append(Check(f"{part}: peak RSS", peak, 150, True, " MB", size_note))
            checks.append(
                Check(
                    f"{part}: 429s share of requests",
                    100 * d.share_429,
                    1,
                    True,
                    "%",
                    f"over {d.window:.0f} s of backlog",
                )
            )
            checks.append(
                Check(
                    f"{part}: requests/s ÷ QPS",
                    100 * d.rate_share,
                    90,
                    False,
                    "%",
                    f"{d.requests} requests over {d.window:.0f} s",
                )
            )
        if "start" in only:
            console.print(f"  start: {start_n:,} files in the inbox before start …")
            with Simulator(SimConfig(qps=0.2, processing_time=(5, 10), seed=1)).start() as sim:
                s = bench_start(sim, work, start_n, timeout=600 if not quick else 120)
            intakes.append(s)
            checks.append(
                Check("start: first create (from spawn)", s.first_create, 2, True, " s", size_note)
            )
            checks.append(
                Check("start: all recorded (from spawn)", s.seconds, 10, True, " s", size_note)
            )
        if intakes:
            console.print(intake_table(intakes))
        if "idle" in only:
            console.print(f"  idle: 20 folders for {idle_s:g} s …")
            with Simulator(SimConfig(qps=2, seed=1)).start() as sim:
                idle = bench_idle(sim, work, 20, idle_s, warmup=5.0 if quick else 10.0)
            console.print(idle_table(idle))
            checks.append(
                Check(
                    "idle CPU, 20 folders",
                    idle.share * 100,
                    0.05,
                    True,
                    "%",
                    f"over {idle.seconds:.0f} s",
                )
            )
            checks.append(
                Check(
                    "idle: seconds with a burst (≥ 5 ms CPU)",
                    len(idle.spikes),
                    0,
                    True,
                    "",
                    "at " + (", ".join(f"{s} s" for s in idle.spikes) or "none"),
                )
            )
        if "qps50" in only:
            console.print(f"  big account: QPS 50, {big_n:,} images …")
            big = bench_qps50(work, big_n, 50.0, (2.0, 3.0))
            console.print(big_table(big))
            checks.append(
                Check("QPS 50: share of the bound", 100 * big.of_bound, 90, False, "%", size_note)
            )
            checks.append(Check("QPS 50: CPU of one core", 100 * big.cpu_share, 100, True, "%"))
            checks.append(Check("QPS 50: CPU ms per API call", big.cpu_ms_per_call, 2, True, " ms"))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    console.print(summary_table("scale targets (issue 9)", checks))
    console.print(f"total {time.monotonic() - began:.0f} s")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
