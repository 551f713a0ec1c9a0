"""Read-only views of the ledger for `watchd status` and `watchd jobs`.

Plain data out (dicts that are JSON-able); the CLI renders them. Never writes the ledger,
so it is safe while the daemon runs (WAL readers do not block the writer).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from watchd import __version__, spend
from watchd.config import Config
from watchd.filters import InboxFilter, mask_stem
from watchd.ledger import Ledger
from watchd.lock import StateLock

RECENT_FAILURES = 10
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float) -> float:
    """'90m', '2h', '3d' (ago) or an ISO date/time → epoch seconds."""
    match = _DURATION.match(text.strip())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since: expected a duration like 30m, 2h, 3d or an ISO date, got {text!r}"
        ) from None
    return moment.timestamp()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def job_view(row: dict[str, Any], now: float) -> dict[str, Any]:
    return {
        "id": row["id"],
        "folder": row["folder"],
        "file": row["name"],
        "path": row["path"],
        "state": row["state"],
        "attempts": row["attempts"],
        "requests": row["requests"],
        "task_id": row["task_id"],
        "age": round(now - (row["created_at"] or now), 1),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "error": row["error_reason"] if row["state"] in ("failed", "failing") else None,
        "last_error": row["error_reason"],
    }


def status(cfg: Config, ledger: Ledger | None, now: float) -> dict[str, Any]:
    holder = StateLock.holder(cfg.state_dir)
    folders: dict[str, dict[str, int]] = {f.name: {} for f in cfg.folders}
    out: dict[str, Any] = {
        "version": __version__,
        "daemon": {"running": holder is not None, "pid": holder},
        "state_dir": str(cfg.state_dir),
        "folders": folders,
        "paused": None,
        "paused_folders": {},
        "dashboard": cfg.http.url(),
        "recent_failures": [],
        "last_hour": {"tasks_done": 0, "tasks_per_minute": 0.0, "requests_per_task": None},
        "lone_masks": lone_masks(cfg),
        "spend": spend.report(cfg, ledger.db.conn if ledger else None, now),
    }
    if ledger is None:
        return out
    for folder, counts in ledger.counts().items():
        folders.setdefault(folder, {}).update(counts)
    out["paused"] = ledger.get_meta("paused")
    out["paused_folders"] = ledger.paused_folders()
    failures = ledger.db.query(
        "select * from jobs where state = 'failed' order by finished_at desc limit ?",
        [RECENT_FAILURES],
    )
    out["recent_failures"] = [
        {
            "id": r["id"],
            "folder": r["folder"],
            "file": r["name"],
            "reason": r["error_reason"],
            "code": r["error_code"],
            "at": iso(r["finished_at"]),
        }
        for r in failures
    ]
    hour = now - 3600
    row = ledger.db.execute(
        "select count(*), sum(requests) from jobs where state = 'done' and finished_at >= ?",
        [hour],
    ).fetchone()
    done, requests = row[0], row[1] or 0
    out["last_hour"] = {
        "tasks_done": done,
        "tasks_per_minute": round(done / 60, 2),
        "requests_per_task": round(requests / done, 2) if done else None,
    }
    return out


def lone_masks(cfg: Config, limit: int = 50) -> list[str]:
    """Sidecar masks in an inbox with no image beside them (they wait; status lists them)."""
    found: list[str] = []
    for folder in cfg.folders:
        if folder.mask != "sidecar":
            continue
        flt = InboxFilter(ignore=tuple(folder.ignore), sidecar=True)
        try:
            names = os.listdir(folder.inbox)
        except OSError:
            continue
        stems = {Path(n).stem.lower() for n in names if flt.wants(n)}
        for name in names:
            stem = mask_stem(name)
            if stem is not None and flt.is_mask(name) and stem.lower() not in stems:
                found.append(f"{folder.name}/{name}")
                if len(found) >= limit:
                    return found
    return found
