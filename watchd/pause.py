"""Pause and resume a folder: the one code path for `watchd pause/resume` and the dashboard.

A paused folder takes no new creates: its files are still taken in and wait in the ledger
(and their originals in the inbox), tasks already created finish and are saved. The pause
is a ledger note (`Ledger.pause_folder`), so it survives restarts and any process may set
it; the daemon reads it before each create. Never touches files or the network.
"""

from __future__ import annotations

from watchd.config import Config
from watchd.ledger import Ledger

MAX_REASON = 500


class PauseError(Exception):
    """A folder that cannot be paused or resumed (unknown, or a bad reason)."""


def pause(cfg: Config, ledger: Ledger, folder: str, reason: str = "", *, by: str) -> bool:
    """Pause `folder`; False if it was already paused (its note is then updated)."""
    names = [f.name for f in cfg.folders]
    if folder not in names:
        raise PauseError(f"unknown folder {folder!r}; configured: {', '.join(names)}")
    reason = " ".join(reason.split())  # one line, whatever was typed
    if len(reason) > MAX_REASON:
        raise PauseError(f"the reason is too long ({len(reason)} characters; at most {MAX_REASON})")
    was = folder in ledger.paused_folders()
    ledger.pause_folder(folder, reason or f"paused by {by}", by=by)
    return not was


def resume(cfg: Config, ledger: Ledger, folder: str) -> bool:
    """Lift the pause of `folder`; False if it was not paused. A folder no longer
    configured may still be resumed (its note would otherwise stay forever)."""
    if folder not in {f.name for f in cfg.folders} and folder not in ledger.paused_folders():
        names = ", ".join(f.name for f in cfg.folders)
        raise PauseError(f"unknown folder {folder!r}; configured: {names}")
    return ledger.resume_folder(folder)
