"""The one clock: the only place in watchd (outside the simulator) that reads the time.

Two kinds of time, never mixed:
- `wall()`: epoch seconds, for what is recorded and shown (a job's "submitted at", a log
  line, error.json). It may step (NTP, a VM resume, an operator's `date -s`).
- `mono()`: seconds that only move forward, for every timeout, deadline, backoff and pacing.
  A wall step of an hour changes no job's fate because no decision reads the wall.

Deadlines kept in the ledger are in the ledger's own monotonic domain (see `LedgerClock` in
ledger.py): CLOCK_MONOTONIC is shared by every process of one boot, so a restart keeps them;
across a reboot the ledger shifts them so that they keep their remaining time.

`FakeClock` is the test double: time moves only when a test (or a sleep) moves it, and the
wall can be stepped apart from the monotonic time. Nothing here logs or touches files,
except `SystemClock.boot_id()` reading the kernel's boot id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> float:
        """Epoch seconds: for records and display only."""
        ...

    def mono(self) -> float:
        """Monotonic seconds: for every timeout, deadline, backoff and pacing."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Let `seconds` of monotonic time pass."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        """Return when `event` is set or `timeout` seconds have passed."""
        ...

    def boot_id(self) -> str:
        """Changes when the monotonic clock restarts (a reboot)."""
        ...


class SystemClock:
    """The real clocks."""

    def wall(self) -> float:
        return time.time()

    def mono(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        if event.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout))

    def boot_id(self) -> str:
        try:
            with open("/proc/sys/kernel/random/boot_id") as fh:
                return fh.read().strip()
        except OSError:  # not Linux: a process-wide id (deadlines then restart with it)
            return _PROCESS_BOOT


_PROCESS_BOOT = f"process-{uuid.uuid4()}"
SYSTEM = SystemClock()  # the real clocks, for defaults


class FakeClock:
    """A clock that moves only when told: `advance()` moves both times, `step_wall()` only
    the wall (an NTP step), `reboot()` restarts the monotonic clock under a new boot id.

    `sleep()` advances the clock to the sleeper's deadline and yields once, so code that
    paces itself runs at full speed in tests, deterministically.
    """

    SETTLE_TURNS = 20  # loop turns `wait` gives other tasks before it jumps ahead

    def __init__(self, wall: float = 1_700_000_000.0, mono: float = 1000.0) -> None:
        self._wall = wall
        self._mono = mono
        self._boot = "boot-0"
        self.slept = 0.0

    def wall(self) -> float:
        return self._wall

    def mono(self) -> float:
        return self._mono

    def boot_id(self) -> str:
        return self._boot

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("monotonic time cannot go back")
        self._wall += seconds
        self._mono += seconds

    def advance_to(self, mono: float) -> None:
        if mono > self._mono:
            self.advance(mono - self._mono)

    def step_wall(self, seconds: float) -> None:
        """The wall clock jumps (either way); monotonic time does not."""
        self._wall += seconds

    def reboot(self, downtime: float = 60.0) -> None:
        self._wall += downtime
        self._mono = 10.0
        self._boot = f"boot-{int(self._wall)}"

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.slept += seconds
            self.advance(seconds)
        await asyncio.sleep(0)

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        """Let the other tasks run first (their work takes no fake time); if none sets
        `event`, jump to the timeout."""
        for _ in range(self.SETTLE_TURNS):
            if event.is_set():
                return
            await asyncio.sleep(0)
        if not event.is_set() and timeout > 0:
            self.advance(timeout)
