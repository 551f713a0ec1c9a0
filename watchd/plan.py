"""`watchd plan`: what the files in the inboxes (or the paths given) would cost, before paying.

For each file, the verdict the daemon would reach, from the daemon's own checks
(`intake.prepare()`: read once, check, fit, ratios) and the ledger (same content known
already?): sent as what (ratios, fit, mask), or why it fails before paying, or why no create
is needed. Then the totals: creates, how long at the current `qps` and the learned task time,
and whether a cap would stop it.

Never calls the API, never writes the ledger (it opens it read-only: `mode=ro`, so it works
while the daemon runs), never moves or writes a file. Files are checked in a few threads and
the verdicts come back in order, as they are ready (10,000 files stream; nothing waits for
the end).
"""

from __future__ import annotations

import os
import re
import sqlite3
import statistics
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from watchd import spend
from watchd.config import Config, FolderConfig
from watchd.filters import InboxFilter, sidecar_names
from watchd.geometry import Ratios, expanded_size
from watchd.intake import (
    NeedsMask,
    Outcome,
    Prepared,
    Rejected,
    StillWriting,
    Unreadable,
    prepare,
)

SEND, REFUSE, DUPLICATE, IN_WORK, WAIT, IGNORED = (
    "send",
    "refuse",
    "duplicate",
    "in work",
    "wait",
    "ignored",
)
WORKERS = min(4, (os.cpu_count() or 1) + 1)
_IN_WORK = ("submitting", "processing", "downloading", "finishing", "failing")


class PlanError(Exception):
    """The plan cannot be made as asked (a path in no inbox, an unknown folder)."""


@dataclass(frozen=True)
class FilePlan:
    """One file's verdict: what it would be sent as, or why not."""

    folder: str
    path: Path
    verdict: str  # send | refuse | duplicate | in work | wait | ignored
    detail: str  # the human sentence
    code: str | None = None  # the preflight code of a refusal
    params: dict[str, Any] | None = None  # the API form fields that would be sent
    size: tuple[int, int] | None = None  # the original's pixels
    upload: tuple[int, int] | None = None  # the pixels sent (differs with fit)
    mask: str | None = None
    job: int | None = None  # the ledger's job for this content, if known
    sha256: str | None = None  # the original's content hash, when it was read

    @property
    def creates(self) -> int:
        return 1 if self.verdict == SEND else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "path": shown(self.path),
            "verdict": self.verdict,
            "creates": self.creates,
            "detail": self.detail,
            "code": self.code,
            "params": self.params,
            "size": list(self.size) if self.size else None,
            "upload": list(self.upload) if self.upload else None,
            "fit": bool(self.upload and self.size and self.upload != self.size),
            "mask": self.mask,
            "job": self.job,
            "sha256": self.sha256,
        }


def shown(path: Path | str) -> str:
    """A path as one line of text any terminal or JSON reader takes: undecodable bytes and
    control characters (a newline in a name) as \\xNN."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# -- which files -------------------------------------------------------------------------


def inbox_files(folder: FolderConfig) -> Iterator[Path]:
    """The files the daemon would take from this inbox, in name order (masks of a sidecar
    folder are not inputs: they travel with their image)."""
    flt = _filter(folder)
    stack = [(Path(folder.inbox), "")]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if folder.recursive and flt.enters(rel):
                    subdirs.append((Path(entry.path), rel))
            elif flt.wants(rel):
                yield Path(entry.path)
        stack.extend(reversed(subdirs))


def _filter(folder: FolderConfig) -> InboxFilter:
    return InboxFilter(ignore=tuple(folder.ignore), sidecar=folder.mask == "sidecar")


def targets(
    cfg: Config, folder: str | None = None, paths: Iterable[Path] = ()
) -> Iterator[tuple[FolderConfig, Path, bool]]:
    """(folder, file, wanted) for every file to plan: the inboxes' (of one folder, if named),
    or the paths given (a folder walks like an inbox). `wanted` is False for a file the
    daemon would leave alone in its inbox (hidden, junk, ignored)."""
    by_name = {f.name: f for f in cfg.folders}
    if folder is not None and folder not in by_name:
        raise PlanError(f"unknown folder {folder!r}; configured: {', '.join(by_name)}")
    paths = list(paths)
    if not paths:
        for f in cfg.folders:
            if folder is None or f.name == folder:
                for p in inbox_files(f):
                    yield f, p, True
        return
    for path in paths:
        owner = by_name[folder] if folder else _owner(cfg, path)
        if path.is_dir() and not path.is_symlink():
            walk = owner.model_copy(update={"inbox": path})
            for p in inbox_files(walk):
                yield owner, p, True
            continue
        if not path.exists() and not path.is_symlink():
            raise PlanError(f"no such file: {shown(path)}")
        yield owner, path, _wanted(owner, path)


def _owner(cfg: Config, path: Path) -> FolderConfig:
    real = Path(os.path.realpath(path.parent if not path.is_dir() else path))
    for f in cfg.folders:
        inbox = Path(os.path.realpath(f.inbox))
        if real == inbox or (f.recursive and real.is_relative_to(inbox)):
            return f
    raise PlanError(f"{shown(path)} is in no folder's inbox: name the folder with --folder")


def _wanted(folder: FolderConfig, path: Path) -> bool:
    inbox = Path(os.path.realpath(folder.inbox))
    real = Path(os.path.realpath(path.parent)) / path.name
    if not real.is_relative_to(inbox):
        return True  # a file from elsewhere, as `watchd process` would take it
    return _filter(folder).wants(str(real.relative_to(inbox)))


# -- verdicts ----------------------------------------------------------------------------


def open_ledger(cfg: Config) -> sqlite3.Connection | None:
    """The ledger, read-only (never created, never migrated, never written); None if absent."""
    path = cfg.state_dir / "watchd.db"
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class Judge:
    """Turns `prepare()`'s outcome into a verdict, against the ledger and earlier files."""

    def __init__(self, conn: sqlite3.Connection | None) -> None:
        self.conn = conn
        self.seen: dict[str, Path] = {}  # content key -> the first file planned with it

    def __call__(self, folder: FolderConfig, path: Path, outcome: Outcome) -> FilePlan:
        name = folder.name
        if isinstance(outcome, Rejected):
            return FilePlan(
                name,
                path,
                REFUSE,
                f"fails before paying ({outcome.code}): {outcome.reason}",
                code=outcome.code,
                sha256=outcome.sha256,
            )
        if isinstance(outcome, NeedsMask):
            wanted = ", ".join(sidecar_names(path.name))
            return FilePlan(
                name,
                path,
                WAIT,
                f"waits for its sidecar mask ({wanted}); without one it fails after"
                f" {folder.sidecar_wait:g} s",
            )
        if isinstance(outcome, StillWriting):
            return FilePlan(name, path, WAIT, "still being written: taken once it settles")
        if isinstance(outcome, Unreadable):
            return FilePlan(name, path, WAIT, f"stays in the inbox: {outcome.reason}")
        assert isinstance(outcome, Prepared)
        fields = outcome.fields
        sent = _sent_as(folder, fields)
        base: dict[str, Any] = {
            "params": fields["params"],
            "size": (fields["width"], fields["height"]),
            "upload": (fields["upload_width"], fields["upload_height"]),
            "mask": fields["mask_path"],
            "sha256": fields["sha256"],
        }
        first = self.seen.setdefault(outcome.key, path)
        if first != path:
            return FilePlan(
                name,
                path,
                DUPLICATE,
                f"same content as {shown(first.name)}: not sent again",
                sha256=fields["sha256"],
            )
        row = self._known(outcome.key)
        if row is None:
            return FilePlan(name, path, SEND, sent, **base)
        job, state, where = row
        if state == "waiting":
            return FilePlan(name, path, SEND, f"{sent} (job {job} waits)", job=job, **base)
        if state in ("failed", "gone"):
            return FilePlan(
                name, path, SEND, f"{sent} (again: job {job} {state} before)", job=job, **base
            )
        if state in _IN_WORK and where == str(path):
            return FilePlan(
                name,
                path,
                IN_WORK,
                f"job {job} is {state}: no new create",
                job=job,
                sha256=fields["sha256"],
            )
        return FilePlan(
            name,
            path,
            DUPLICATE,
            f"same content as job {job} ({state}): moved to done/ without a create",
            job=job,
            sha256=fields["sha256"],
        )

    def _known(self, key: str) -> tuple[int, str, str] | None:
        if self.conn is None:
            return None
        row = self.conn.execute("select id, state, path from jobs where key = ?", [key]).fetchone()
        return None if row is None else (row[0], row[1], row[2])


def _sent_as(folder: FolderConfig, fields: dict[str, Any]) -> str:
    w, h = fields["upload_width"], fields["upload_height"]
    parts = []
    if (w, h) != (fields["width"], fields["height"]):
        parts.append(f"fit {fields['width']}×{fields['height']} → {w}×{h}")
    p = fields["params"]
    if fields["mask_path"]:
        parts.append(f"canvas with mask {shown(Path(fields['mask_path']).name)}, {w}×{h}")
    else:
        r = Ratios(p["top"], p["bottom"], p["left"], p["right"])
        ew, eh = expanded_size(w, h, r)
        parts.append(
            f"top {r.top:.3f} bottom {r.bottom:.3f} left {r.left:.3f} right {r.right:.3f}"
            f" → {ew}×{eh}"
        )
        if folder.target is not None:
            aw, ah = folder.target.ratio
            parts.append(f"cropped to {aw}:{ah}")
    return ", ".join(parts)


def plan_files(
    cfg: Config,
    files: Iterable[tuple[FolderConfig, Path, bool]],
    conn: sqlite3.Connection | None,
    now_wall: float,
    *,
    workers: int = WORKERS,
) -> Iterator[FilePlan]:
    """Verdicts in the order of `files`, each as soon as it and those before it are ready."""
    judge = Judge(conn)

    def check(item: tuple[FolderConfig, Path, bool]) -> tuple[Any, ...]:
        folder, path, wanted = item
        return (folder, path, prepare(folder, path, now=now_wall) if wanted else None)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for folder, path, outcome in _ordered(pool, check, files, window=workers * 16):
            if outcome is None:
                yield FilePlan(
                    folder.name, path, IGNORED, "left alone: hidden, junk or an ignore pattern"
                )
            else:
                yield judge(folder, path, outcome)


def _ordered(
    pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any], window: int
) -> Iterator[Any]:
    """`pool.map` that keeps at most `window` items in flight (a 10,000-file inbox is never
    all submitted, nor all held, at once)."""
    pending = []
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


# -- totals ------------------------------------------------------------------------------


@dataclass
class Totals:
    files: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    creates: dict[str, int] = field(default_factory=dict)  # per folder

    def add(self, p: FilePlan) -> None:
        self.files += 1
        self.verdicts[p.verdict] = self.verdicts.get(p.verdict, 0) + 1
        if p.creates:
            self.creates[p.folder] = self.creates.get(p.folder, 0) + p.creates


@dataclass(frozen=True)
class Learned:
    """What the ledger knows of recent tasks: their processing time and requests per task."""

    task_seconds: float | None = None
    requests_per_task: float | None = None


def learned(conn: sqlite3.Connection | None, limit: int = 200) -> Learned:
    if conn is None:
        return Learned()
    times = [
        r[0]
        for r in conn.execute(
            "select task_seconds from jobs where task_seconds is not null"
            " order by processed_at desc limit ?",
            [limit],
        )
    ]
    asked = [
        r[0]
        for r in conn.execute(
            "select requests from jobs where state = 'done' and requests > 0"
            " order by finished_at desc limit ?",
            [limit],
        )
    ]
    return Learned(
        statistics.median(times) if times else None,
        statistics.mean(asked) if asked else None,
    )


def summary(
    cfg: Config, totals: Totals, conn: sqlite3.Connection | None, now_wall: float
) -> dict[str, Any]:
    """The totals: creates, time at the current qps and learned task time, and the caps."""
    creates = sum(totals.creates.values())
    know = learned(conn)
    # Requests per task: learned, else the floor (sync: the create; async: create + 1 poll).
    rpt = know.requests_per_task or (1.0 if cfg.api.mode == "sync" else 2.0)
    by_budget = creates * rpt / cfg.api.qps
    seconds: float | None = by_budget
    if know.task_seconds is not None:
        by_slots = creates * know.task_seconds / cfg.api.max_in_flight
        seconds = max(by_budget, by_slots) + (know.task_seconds if creates else 0.0)
    tz = spend.timezone_of(cfg)
    caps = spend.Caps.from_config(cfg)
    tally = spend.read_tally(conn, now_wall, tz) if conn is not None else spend.Tally(tz)
    counts = tally.counts(now_wall, caps.folder_day)
    room = spend.room(caps, counts, totals.creates)
    stop = None
    if room.allowed < creates:
        stop = {
            "cap": room.cap,
            "creates_before_it": room.allowed,
            "waiting_after_it": creates - room.allowed,
            "until": room.until_text(now_wall, tz),
        }
    return {
        "files": totals.files,
        "verdicts": totals.verdicts,
        "creates": creates,
        "creates_per_folder": totals.creates,
        "qps": cfg.api.qps,
        "requests_per_task": round(rpt, 2),
        "requests_per_task_learned": know.requests_per_task is not None,
        "task_seconds": None if know.task_seconds is None else round(know.task_seconds, 1),
        "seconds": None if seconds is None else round(seconds, 1),
        "cap_stops_it": stop,
    }


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration_text(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


def summary_lines(total: dict[str, Any]) -> list[str]:
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(total["verdicts"].items()))
    lines = [f"{total['files']} files: {verdicts or 'none'}"]
    creates = total["creates"]
    line = plural(creates, "create")
    if creates and total["seconds"] is not None:
        how = "learned" if total["requests_per_task_learned"] else "at least"
        line += (
            f", about {duration_text(total['seconds'])} at qps {total['qps']:g}"
            f" ({how} {total['requests_per_task']:g} requests per task"
        )
        if total["task_seconds"] is not None:
            line += f", tasks take {total['task_seconds']:g} s"
        else:
            line += ", task time not learned yet"
        line += ")"
    lines.append(line)
    stop = total["cap_stops_it"]
    if stop:
        rest = stop["waiting_after_it"]
        lines.append(
            f"a cap stops it: {stop['cap']} lets {plural(stop['creates_before_it'], 'create')}"
            f" go now; {rest} more {'waits' if rest == 1 else 'wait'} until {stop['until']}"
            " or later"
        )
    elif creates:
        lines.append("no cap stops it")
    return lines
