"""The daemon's own part of each loop pass: hints and settling in bounded slices.

A scan of 50,000 files once held the loop for seconds (every hint, then every due file,
in one pass), so the first file could not be checked, recorded or sent until all were
seen and stat'ed. Each pass now takes at most PER_TURN of each and asks to run again.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from watchd.daemon import PER_TURN, Daemon
from watchd.settle import SettleTracker


def _daemon(tmp_path: Path, count: int) -> tuple[Daemon, list[Path]]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    files = []
    for i in range(count):
        path = inbox / f"img{i:05d}.png"
        path.write_bytes(b"x")
        files.append(path)
    daemon = Daemon(tmp_path / "watchd.yaml")
    daemon.engine = SimpleNamespace(  # type: ignore[assignment]
        is_known=lambda folder, path: False, folders={"f": SimpleNamespace(mask="none")}
    )
    daemon.trackers["f"] = SettleTracker(1.0)
    daemon.hints.extend(("f", p) for p in files)
    return daemon, files


def test_a_big_scan_is_taken_a_bounded_slice_per_pass(tmp_path: Path) -> None:
    daemon, files = _daemon(tmp_path, 2 * PER_TURN + 5)
    daemon._drain_hints(0.0)
    assert len(daemon.hints) == len(files) - PER_TURN  # the rest waits for the next pass
    while daemon.hints:
        daemon._drain_hints(0.0)
    daemon._settle(1.0)  # every file is due: only a slice is confirmed in this pass
    assert daemon.intake_queue.qsize() == PER_TURN
    while daemon.confirming:
        daemon._settle(1.0)
    assert daemon.intake_queue.qsize() == len(files)  # none lost, none twice
    assert len({daemon.intake_queue.get_nowait() for _ in files}) == len(files)


def test_a_file_due_when_a_reload_changes_settle_waits_anew_not_lost(tmp_path: Path) -> None:
    daemon, files = _daemon(tmp_path, PER_TURN + 1)
    while daemon.hints:
        daemon._drain_hints(0.0)
    daemon._settle(1.0)  # one file is left, handed out by the old tracker
    assert len(daemon.confirming) == 1
    daemon.trackers["f"] = SettleTracker(2.0)  # what a reload with a new `settle` does
    daemon._settle(1.5)
    assert not daemon.confirming
    assert daemon.trackers["f"].due(3.5) == [files[-1]]  # waits its new quiet period
