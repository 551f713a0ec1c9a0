"""Shared helpers for the benchmarks: images, configs, the real daemon, measurements, tables.

Owns: generating unique small PNGs fast, writing a watchd config for a temp workspace,
running `python -m watchd run` as a child process, sampling its RSS and CPU, reading the
ledger read-only, and the pass/miss formatting of the summary tables.
Must never: send traffic anywhere but 127.0.0.1, write to the ledger, or run in the test suite.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from rich.console import Console
from rich.table import Table

KEY = "bench-key-0123456789"
# Wide enough for the result tables when the output is a file or a pipe (rich assumes 80).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


# -- images -----------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(seed: int, width: int = 64, height: int = 64) -> bytes:
    """A valid RGB PNG whose pixels (hence sha256) differ with `seed`.

    Written by hand (zlib level 1) because PIL is ~10x slower and 50,000 files are needed.
    """
    shade = bytes(((seed * 37) % 256, (seed * 91) % 256, 120))
    row = b"\x00" + shade * width  # filter byte 0, then the pixels
    stamp = seed.to_bytes(8, "big") * 3  # 24 bytes = 8 unique pixels in the first row
    first = b"\x00" + stamp + shade * (width - 8)
    raw = first + row * (height - 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw, 1))
        + _chunk(b"IEND", b"")
    )


def stage_images(
    staging: Path, count: int, *, start: int = 0, size: tuple[int, int] = (64, 64)
) -> list[Path]:
    """Write `count` unique PNGs into `staging` (same filesystem as the inbox)."""
    staging.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = staging / f"img{i:06d}.png"
        path.write_bytes(png_bytes(i, *size))
        paths.append(path)
    return paths


def drop_all(paths: Iterable[Path], inbox: Path) -> int:
    """Move staged files into the inbox with rename(2): each appears complete, all at once."""
    n = 0
    for path in paths:
        os.replace(path, inbox / path.name)
        n += 1
    return n


# -- config and the daemon ------------------------------------------------------------------


def folder_dirs(root: Path, name: str) -> dict[str, str]:
    base = root / name
    for sub in ("inbox", "outbox", "done", "failed"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return {sub: str(base / sub) for sub in ("inbox", "outbox", "done", "failed")}


def write_config(
    root: Path,
    base_url: str,
    folder_names: Sequence[str],
    *,
    api: dict[str, Any] | None = None,
    folder: dict[str, Any] | None = None,
) -> Path:
    """A watchd.yaml in `root`: one folder per name under root/NAME/{inbox,outbox,done,failed}."""
    cfg = {
        "api": {"base_url": base_url, **(api or {})},
        "state_dir": str(root / "state"),
        "log": {"format": "json", "level": "info"},
        "folders": [
            {"name": name, **folder_dirs(root, name), **(folder or {})} for name in folder_names
        ],
    }
    path = root / "watchd.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class Daemon:
    """`python -m watchd run -c CONFIG` as a child process; its logs go to a file."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.parent / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.started_after: float | None = None  # seconds from spawn to 'watchd started'

    def start(self) -> Daemon:
        env = {**os.environ, "WATCHD_API_KEY": KEY}
        env.pop("NOTIFY_SOCKET", None)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watchd", "run", "-c", str(self.config)],
            stdout=self._log,
            stderr=self._log,
            env=env,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_started(self, timeout: float = 30.0) -> float:
        """Block until the daemon logs 'watchd started'; returns seconds since spawn."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if '"watchd started"' in self.log():
                self.started_after = time.monotonic() - self.spawned_at
                return self.started_after
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited early:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not start within {timeout:g} s:\n{self.log()[-3000:]}")

    def vm_hwm_mb(self) -> float | None:
        """Peak resident set size so far (VmHWM), in MB, read from /proc."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread; `peak_mb` is the max seen."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak_mb = max(self.peak_mb, self.proc.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ledger_count(db_path: Path, where: str = "1=1") -> int:
    """Rows of `jobs` matching `where`, read through a read-only connection (0 if no db yet)."""
    if not db_path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return 0
    try:
        return int(conn.execute(f"select count(*) from jobs where {where}").fetchone()[0])
    except sqlite3.Error:  # the schema may not exist yet during start-up
        return 0
    finally:
        conn.close()


def ledger_rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.1
) -> float | None:
    """Poll `condition`; returns monotonic time when it first held, None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def count_files(dirs: Iterable[Path]) -> int:
    total = 0
    for d in dirs:
        with contextlib.suppress(FileNotFoundError):
            total += sum(1 for e in os.scandir(d) if e.is_file())
    return total


# -- reporting ------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPU ({model}), Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}"
    )


@dataclass(frozen=True)
class Check:
    """One target: `measured` against `limit`; `at_most` False means the value must be >=."""

    target: str
    measured: float | None
    limit: float
    at_most: bool
    unit: str = ""
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured <= self.limit if self.at_most else self.measured >= self.limit

    def verdict(self) -> str:
        if self.passed is None:
            return "[yellow]not measured[/]"
        if self.passed:
            return "[green]pass[/]"
        assert self.measured is not None
        gap = abs(self.measured - self.limit)
        if self.unit == "%":  # a share: say points, and how far off relative to the limit
            return f"[red]miss by {_num(gap)} points ({gap / self.limit:.0%} of the limit)[/]"
        rel = f" ({gap / self.limit:.0%})" if self.limit else ""
        return f"[red]miss by {_num(gap)}{self.unit}{rel}[/]"


def _num(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.3f}"


def summary_table(title: str, checks: Sequence[Check]) -> Table:
    table = Table(title=title)
    for col in ("target", "limit", "measured", "result", "note"):
        table.add_column(col, justify="right" if col in ("limit", "measured") else "left")
    for c in checks:
        op = "≤" if c.at_most else "≥"
        measured = "—" if c.measured is None else f"{_num(c.measured)}{c.unit}"
        table.add_row(c.target, f"{op} {_num(c.limit)}{c.unit}", measured, c.verdict(), c.note)
    return table


def fmt(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"
