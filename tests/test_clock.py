"""The one clock: fake time moves only when told, and the wall can step alone."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from watchd.clock import FakeClock, SystemClock


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(wall=100.0, mono=5.0)
    assert (clock.wall(), clock.mono()) == (100.0, 5.0)
    clock.advance(2.5)
    assert (clock.wall(), clock.mono()) == (102.5, 7.5)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_a_wall_step_leaves_monotonic_time_alone() -> None:
    clock = FakeClock(wall=100.0, mono=5.0)
    clock.step_wall(-3600)
    assert clock.wall() == 100.0 - 3600 and clock.mono() == 5.0
    clock.step_wall(7200)
    assert clock.mono() == 5.0


def test_a_reboot_restarts_monotonic_time_under_a_new_boot_id() -> None:
    clock = FakeClock(mono=5000.0)
    boot = clock.boot_id()
    clock.reboot(downtime=30)
    assert clock.boot_id() != boot and clock.mono() < 5000.0


def test_fake_sleep_advances_to_the_deadline_without_waiting() -> None:
    clock = FakeClock(mono=0.0)
    asyncio.run(clock.sleep(3600))
    assert clock.mono() == 3600 and clock.slept == 3600


def test_system_clock_reads_the_kernel_boot_id() -> None:
    boot = SystemClock().boot_id()
    assert boot == SystemClock().boot_id()
    if Path("/proc/sys/kernel/random/boot_id").exists():
        assert re.fullmatch(r"[0-9a-f-]{36}", boot)


def test_no_module_reads_the_time_directly() -> None:
    """Only clock.py (and the simulator, a separate program) may call time.time() or
    time.monotonic(): everything else takes the injected clock."""
    package = Path(__file__).parent.parent / "watchd"
    offenders = [
        f"{path.relative_to(package)}:{n}"
        for path in package.rglob("*.py")
        if path.name != "clock.py" and "sim" not in path.relative_to(package).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\btime\.(time|monotonic)\(\)", line)
    ]
    assert offenders == [], offenders
