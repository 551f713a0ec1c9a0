"""The core's promises through the real `watchd run`: a SIGTERM in sync mode pays nothing
twice, a crash's temporary files are swept at start, a damaged ledger is one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e import KEY, DaemonProcess, drop, files, image_bytes, wait_for, write_config
from watchd.sim import SimConfig, Simulator

pytestmark = pytest.mark.e2e


def test_sigterm_in_sync_mode_awaits_the_held_creates_and_pays_nothing_twice(tmp_path) -> None:
    """Sync creates are held open while the task runs: cutting them off on SIGTERM made them
    ambiguous, and the restart paid for them again (6 creates for 3 files)."""
    # Longer than the 8 s that steps in flight get in async mode: the old cut-off point.
    with Simulator(SimConfig(qps=20, processing_time=(11.0, 11.0), seed=3)).start() as sim:
        cfg = write_config(tmp_path, sim.base_url, [{"name": "f"}], api={"mode": "sync"})
        for i in range(3):
            drop(tmp_path / f"f/inbox/s{i}.png", seed=i)
        daemon = DaemonProcess(cfg).start()
        daemon.wait_started()
        wait_for(lambda: sim.stats["tasks_created"] == 3, 20, "three creates on the wire")
        assert daemon.stop(signal.SIGTERM, timeout=40) == 0  # waits for the held answers
        again = DaemonProcess(cfg).start()
        again.wait_started()
        wait_for(lambda: len(files(tmp_path / "f/done")) == 3, 30, "all three done")
        assert again.stop() == 0
        assert sim.stats["tasks_created"] == 3  # not one paid twice


def test_temporary_files_a_crash_left_are_swept_at_start_and_nothing_else(tmp_path) -> None:
    with Simulator(SimConfig(qps=20, processing_time=(0.1, 0.2), seed=4)).start() as sim:
        cfg = write_config(tmp_path, sim.base_url, [{"name": "f"}])
        outbox = tmp_path / "f/outbox"
        outbox.mkdir(parents=True, exist_ok=True)
        ours = outbox / ".watchd-0123456789abcdef.part"
        fresh = outbox / ".watchd-fedcba9876543210.part"  # may belong to a write under way
        users = outbox / "holiday.part"
        for path in (ours, fresh, users):
            path.write_bytes(b"half a result")
        old = time.time() - 3600
        os.utime(ours, (old, old))
        os.utime(users, (old, old))
        daemon = DaemonProcess(cfg).start()
        daemon.wait_started()
        wait_for(lambda: not ours.exists(), 20, "the crash's temporary file swept")
        assert daemon.stop() == 0
        assert fresh.exists() and users.exists()


def test_a_damaged_ledger_stops_run_with_one_line_that_says_what_to_do(tmp_path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9", [{"name": "f"}])
    db = tmp_path / "state" / "watchd.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"\x00garbage, not SQLite" * 500)
    done = subprocess.run(
        [sys.executable, "-m", "watchd", "run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WATCHD_API_KEY": KEY},
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if "ledger" in line]
    assert len(lines) == 1 and str(db) in lines[0] and "move the file" in lines[0]
    assert db.read_bytes().startswith(b"\x00garbage")  # left as it was, for the operator


def test_a_latin1_name_beside_good_files_does_not_stop_run(tmp_path: Path) -> None:
    """A crash loop at start from one odd name kept every good file waiting forever."""
    with Simulator(SimConfig(qps=20, processing_time=(0.1, 0.2), seed=5)).start() as sim:
        cfg = write_config(tmp_path, sim.base_url, [{"name": "f"}])
        inbox = tmp_path / "f/inbox"
        drop(inbox / "good.png", seed=1)
        odd = os.fsencode(inbox) + b"/\xe9t\xe9 \xff.png"
        with open(odd, "wb") as fh:
            fh.write(image_bytes((200, 150), "PNG", seed=2))
        daemon = DaemonProcess(cfg).start()
        daemon.wait_started()
        wait_for(lambda: len(os.listdir(tmp_path / "f/done")) == 2, 30, "both files done")
        assert daemon.stop() == 0
        assert sorted(os.listdir(os.fsencode(tmp_path / "f/done"))) == [
            b"good.png",
            b"\xe9t\xe9 \xff.png",
        ]
