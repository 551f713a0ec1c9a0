"""Spend: what the API accepted, what was created again, and the caps no create may cross.

Everything here is a view of the ledger's events (observe.py's contract):
- a `submit` is committed *before* a create may leave, so it counts as spent at once;
- `unsent` says that create never reached the API: it gives its unit back, to the day and
  the folder of its own `submit` (a create sent at 23:59:59 and refused at 00:00:01 never
  makes the new day's count negative);
- `created` and `sync_done` say the API accepted it: that is what the account pays for.
  Accepted creates whose submit had a `cause` are extra creates (the same content created
  again), counted by cause.

Caps count what was *spent* (submits minus unsents), never only what was accepted: a create
whose answer is still on the wire, or was lost, may have been charged. So a cap is reached
exactly and never crossed, across restarts (the counts come from the ledger), reloads (the
caps are an argument) and ambiguous resubmits (each is a submit of its own).

Periods are local days and months in `api.timezone` (default: the system's), with zoneinfo,
so a day that loses or gains an hour to DST is still one day.

Pure parts: `Caps`, `Counts`, `cap_block()`, `period()`, `Tally`. Ledger parts: `read_tally()`
(one index-backed read: status, plan and the daemon's start) and `SpendCounter` (a transition
observer seeded from the ledger; O(1) to ask before every create). Never writes the ledger,
never reads the clock (times are arguments), never logs.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from watchd.observe import Transition

# -- config ------------------------------------------------------------------------------

ACCOUNT_DAY_CAP = (
    "Most creates the account may spend per local day (all folders together); null: no cap."
    " At the cap files wait in their inbox until midnight in api.timezone; tasks already"
    " created still finish and download. A create whose answer was lost counts as spent."
)
ACCOUNT_MONTH_CAP = (
    "Most creates the account may spend per calendar month in api.timezone; null: no cap."
)
FOLDER_DAY_CAP = (
    "Most creates this folder may spend per local day (also in defaults: and presets);"
    " null: no cap of its own (the account's caps still apply)."
)
TIMEZONE = (
    "The IANA time zone whose days and months the caps and summaries count in, like"
    ' "Europe/Berlin"; null: the system\'s.'
)


def _fail(message: str) -> None:
    # The same error type config.py uses for its own human messages, shown as written.
    raise PydanticCustomError("watchd", "{detail}", {"detail": message})


def _cap(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"must be a whole number ≥ 0, or null for no cap (got {value!r})")
    if isinstance(value, float) and not value.is_integer():
        _fail(f"must be a whole number ≥ 0, or null for no cap (got {value!r})")
    if value < 0:
        _fail(f"must be ≥ 0 (0 stops every create), or null for no cap (got {value!r})")
    return int(value)


def _timezone(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        _fail(f'must be an IANA time zone name like "Europe/Berlin" (got {value!r})')
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f'unknown time zone {value!r}; use an IANA name like "Europe/Berlin" or "UTC"')
    return value.strip()


Cap = Annotated[int | None, BeforeValidator(_cap)]
TimezoneName = Annotated[str | None, BeforeValidator(_timezone)]


def system_timezone(env: Mapping[str, str] | None = None) -> ZoneInfo:
    """The system's zone: $TZ if it names one, else /etc/localtime, else UTC."""
    env = os.environ if env is None else env
    name = env.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in target:
            return ZoneInfo(target.split("/zoneinfo/", 1)[1])
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError, ZoneInfoNotFoundError):
        return ZoneInfo("UTC")


def timezone_of(cfg: Any) -> ZoneInfo:
    """`api.timezone`, or the system's."""
    name = getattr(cfg.api, "timezone", None)
    return ZoneInfo(name) if name else system_timezone()


# -- periods -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The local day and month that hold one instant, as epoch bounds [start, end)."""

    day: date
    day_start: float
    day_end: float
    month: str  # "2026-03"
    month_start: float
    month_end: float


def _midnight(d: date, tz: ZoneInfo) -> float:
    # A midnight that DST skips (a few zones move their clocks at 00:00) resolves with the
    # offset before the change: the instant the day actually begins.
    return datetime.combine(d, dtime(0), tzinfo=tz).timestamp()


def local_day(at: float, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(at, tz).date()


def period(now_wall: float, tz: ZoneInfo) -> Period:
    today = local_day(now_wall, tz)
    first = today.replace(day=1)
    next_month = (first + timedelta(days=32)).replace(day=1)
    return Period(
        day=today,
        day_start=_midnight(today, tz),
        day_end=_midnight(today + timedelta(days=1), tz),
        month=first.strftime("%Y-%m"),
        month_start=_midnight(first, tz),
        month_end=_midnight(next_month, tz),
    )


# -- caps --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caps:
    """The caps in force: the account's per day and per month, and each folder's per day."""

    day: int | None = None
    month: int | None = None
    folder_day: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any) -> Caps:
        return cls(
            day=getattr(cfg.api, "max_creates_per_day", None),
            month=getattr(cfg.api, "max_creates_per_month", None),
            folder_day={
                f.name: f.max_creates_per_day
                for f in cfg.folders
                if getattr(f, "max_creates_per_day", None) is not None
            },
        )

    def __bool__(self) -> bool:
        return self.day is not None or self.month is not None or bool(self.folder_day)


@dataclass(frozen=True)
class Counts:
    """Creates spent (submits that may have left) in the current local day and month."""

    day: int = 0
    month: int = 0
    folder_day: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Block:
    """A cap that is reached: which one, its limit, what was spent, and until when."""

    cap: str  # "api.max_creates_per_day", "api.max_creates_per_month", "folders.NAME.max_..."
    limit: int
    spent: int
    until: float  # epoch seconds: the next local midnight or the first of next month
    folder: str | None = None  # set for a folder's own cap

    def until_text(self, tz: ZoneInfo) -> str:
        return datetime.fromtimestamp(self.until, tz).isoformat(timespec="minutes")

    def text(self, tz: ZoneInfo) -> str:
        return (
            f"{self.cap} reached ({self.spent} of {self.limit}): no create leaves until"
            f" {self.until_text(tz)}"
        )

    def to_json(self, tz: ZoneInfo) -> dict[str, Any]:
        return {
            "cap": self.cap,
            "folder": self.folder,
            "limit": self.limit,
            "spent": self.spent,
            "until": self.until_text(tz),
        }


def blocks(caps: Caps, counts: Counts, now_wall: float, tz: ZoneInfo) -> list[Block]:
    """Every cap that is reached now: the account's, then each folder's."""
    p = period(now_wall, tz)
    found = []
    if caps.month is not None and counts.month >= caps.month:
        found.append(Block("api.max_creates_per_month", caps.month, counts.month, p.month_end))
    if caps.day is not None and counts.day >= caps.day:
        found.append(Block("api.max_creates_per_day", caps.day, counts.day, p.day_end))
    for name, limit in sorted(caps.folder_day.items()):
        spent = counts.folder_day.get(name, 0)
        if spent >= limit:
            found.append(
                Block(f"folders.{name}.max_creates_per_day", limit, spent, p.day_end, name)
            )
    return found


def cap_block(
    caps: Caps, counts: Counts, now_wall: float, tz: ZoneInfo, folder: str | None = None
) -> Block | None:
    """Why one more create (of `folder`, if given) may not leave now, or None if it may.

    At `limit` spent the cap is reached: a create is allowed only while spent < limit, so
    the count never passes the limit. When several caps hold, the one that lasts longest.
    """
    held = [b for b in blocks(caps, counts, now_wall, tz) if b.folder in (None, folder)]
    return max(held, key=lambda b: b.until) if held else None


@dataclass(frozen=True)
class Room:
    """How many of the creates asked for may leave now, and the cap that stops the rest."""

    allowed: int
    cap: str | None = None
    monthly: bool = False  # the cap that stops them turns over with the month

    def until_text(self, now_wall: float, tz: ZoneInfo) -> str:
        p = period(now_wall, tz)
        until = p.month_end if self.monthly else p.day_end
        return datetime.fromtimestamp(until, tz).isoformat(timespec="minutes")


def room(caps: Caps, counts: Counts, wanted: Mapping[str, int]) -> Room:
    """Of `wanted` creates per folder, how many the caps let leave before a period turns."""
    total, cap, monthly = 0, None, False
    for name, n in sorted(wanted.items()):
        limit = caps.folder_day.get(name)
        if limit is not None:
            left = max(0, limit - counts.folder_day.get(name, 0))
            if left < n:
                n, cap = left, f"folders.{name}.max_creates_per_day"
        total += n
    allowed = total
    if caps.day is not None and caps.day - counts.day < allowed:
        allowed, cap = max(0, caps.day - counts.day), "api.max_creates_per_day"
    # The month's cap stops them too when it leaves no more: then it is the one that lasts.
    month_left = None if caps.month is None else max(0, caps.month - counts.month)
    if month_left is not None and (month_left < allowed or (month_left == allowed and cap)):
        allowed, cap, monthly = month_left, "api.max_creates_per_month", True
    return Room(allowed, cap if allowed < sum(wanted.values()) else None, monthly)


# -- accounting --------------------------------------------------------------------------

ACCEPTED = ("created", "sync_done")
_READ_EVENTS = ("submit", "unsent", *ACCEPTED)


@dataclass
class Tally:
    """Per local day and month, per folder: creates spent, accepted, and extra by cause.

    Fed one event at a time (from the ledger at start, then from transitions); it pairs
    each `unsent` and each acceptance with the job's last `submit` it has seen. That is
    exact because the lifecycle enters `submitting` only by a submit and leaves it by one
    outcome: a later submit of the same job replaces an earlier one that stays spent (its
    answer was lost, or it failed: it may have been charged).
    """

    tz: ZoneInfo
    spent: dict[tuple[Any, str], int] = field(default_factory=lambda: defaultdict(int))
    spent_all: dict[Any, int] = field(default_factory=lambda: defaultdict(int))  # all folders
    accepted: dict[tuple[Any, str], int] = field(default_factory=lambda: defaultdict(int))
    extra: dict[tuple[Any, str, str], int] = field(default_factory=lambda: defaultdict(int))
    # job id -> (day, month, folder, cause) of its last submit still without an outcome
    _open: dict[int, tuple[date, str, str, str | None]] = field(default_factory=dict)

    def add(
        self, job_id: int, folder: str, event: str, at: float, detail: Mapping[str, Any]
    ) -> None:
        if event == "submit":
            day = local_day(at, self.tz)
            month = day.strftime("%Y-%m")
            self.spent[(day, folder)] += 1
            self.spent[(month, folder)] += 1
            self.spent_all[day] += 1
            self.spent_all[month] += 1
            self._open[job_id] = (day, month, folder, _cause(detail))
        elif event == "unsent":
            opened = self._open.pop(job_id, None)
            if opened is not None:  # its submit is in what this tally has seen
                day, month, f, _ = opened
                self.spent[(day, f)] -= 1
                self.spent[(month, f)] -= 1
                self.spent_all[day] -= 1
                self.spent_all[month] -= 1
        elif event in ACCEPTED:
            opened = self._open.pop(job_id, None)
            day = local_day(at, self.tz)
            month = day.strftime("%Y-%m")
            self.accepted[(day, folder)] += 1
            self.accepted[(month, folder)] += 1
            cause = opened[3] if opened is not None else None
            if cause is not None:
                self.extra[(day, folder, cause)] += 1
                self.extra[(month, folder, cause)] += 1

    def counts(self, now_wall: float, folders: Iterable[str] = ()) -> Counts:
        """Spent now: the account's day and month, and the day of each folder named (the
        capped ones): a few dict lookups, whatever the history."""
        p = period(now_wall, self.tz)
        return Counts(
            day=self.spent_all.get(p.day, 0),
            month=self.spent_all.get(p.month, 0),
            folder_day={f: self.spent.get((p.day, f), 0) for f in folders},
        )

    def view(self, now_wall: float) -> dict[str, Any]:
        """Today and this month, per folder and in total: JSON-able, for status and plan."""
        p = period(now_wall, self.tz)
        return {
            "timezone": str(self.tz.key),
            "today": self._one(p.day, p.day.isoformat()),
            "month": self._one(p.month, p.month),
        }

    def day(self, d: date) -> dict[str, Any]:
        """One local day: accepted, spent and extra creates, per folder and in total."""
        return self._one(d, d.isoformat())

    def _one(self, key: Any, label: str) -> dict[str, Any]:
        folders: dict[str, dict[str, Any]] = {}

        def slot(f: str) -> dict[str, Any]:
            return folders.setdefault(f, {"accepted": 0, "spent": 0, "extra": {}})

        for (k, f), n in self.accepted.items():
            if k == key and n:
                slot(f)["accepted"] += n
        for (k, f), n in self.spent.items():
            if k == key and n:
                slot(f)["spent"] += n
        for (k, f, cause), n in self.extra.items():
            if k == key and n:
                slot(f)["extra"][cause] = slot(f)["extra"].get(cause, 0) + n
        extra: dict[str, int] = {}
        for v in folders.values():
            for cause, n in v["extra"].items():
                extra[cause] = extra.get(cause, 0) + n
        return {
            "period": label,
            "accepted": sum(v["accepted"] for v in folders.values()),
            "spent": sum(v["spent"] for v in folders.values()),
            "extra": extra,
            "folders": dict(sorted(folders.items())),
        }


def _cause(detail: Mapping[str, Any]) -> str | None:
    if "cause" in detail:
        cause = detail["cause"]
        return None if cause is None else str(cause)
    # An event written before causes were recorded: a second attempt is still a re-create.
    attempt = detail.get("attempt")
    return "earlier attempt" if isinstance(attempt, int) and attempt > 1 else None


# The query that seeds a tally: events since a moment, in commit order, with their folder.
# Walks the events(at) index for the range and the jobs primary key for the folder, then
# sorts that range by id. (`+e.id`: ordering by the bare rowid would tempt the planner
# into a scan of the whole table to save the sort.)
SEED_SQL = (
    "select e.job_id, j.folder, e.event, e.at, e.detail from events e"
    " join jobs j on j.id = e.job_id"
    " where e.at >= ? and e.event in ({marks}) order by +e.id"
).format(marks=",".join("?" * len(_READ_EVENTS)))

# Submits may precede their outcome by this much (a held sync create, a slow answer): read
# from that far before the month, so an acceptance early on the 1st still finds its cause.
LOOKBACK = 86400.0


def read_tally(conn: sqlite3.Connection, now_wall: float, tz: ZoneInfo) -> Tally:
    """A tally of the current month (and the day before it), from the ledger, read-only."""
    return read_tally_since(conn, period(now_wall, tz).month_start - LOOKBACK, tz)


def read_tally_since(conn: sqlite3.Connection, since: float, tz: ZoneInfo) -> Tally:
    tally = Tally(tz)
    for job_id, folder, event, at, detail in conn.execute(SEED_SQL, [since, *_READ_EVENTS]):
        tally.add(job_id, folder, event, at, json.loads(detail) if detail else {})
    return tally


class SpendCounter:
    """Creates spent, per local day and month, kept as an observer of transitions.

    Seeded from the ledger when made, then told of every committed transition
    (`ledger.observers.add(counter)`), so asking it costs no query. Ask it inside the
    transaction that commits the `submit`, before that commit:

        with ledger.atomic():
            block = counter.block(folder, clock.wall())
            if block is None:
                ledger.commit(job_id, Event.SUBMIT, ...)

    Only the daemon submits, and it submits through its own ledger, so the count it holds
    is exact; a restart seeds it again from the ledger.
    """

    def __init__(self, conn: sqlite3.Connection, caps: Caps, tz: ZoneInfo, now_wall: float) -> None:
        self.caps = caps
        self.tz = tz
        self.tally = read_tally(conn, now_wall, tz)
        self._conn = conn

    def __call__(self, t: Transition) -> None:
        if t.event in _READ_EVENTS:
            self.tally.add(t.job_id, t.folder, t.event, t.at, t.detail)

    def set_caps(self, caps: Caps, tz: ZoneInfo, now_wall: float) -> None:
        """A reload: new caps apply at once; a new time zone recounts from the ledger."""
        self.caps = caps
        if tz.key != self.tz.key:
            self.tz = tz
            self.tally = read_tally(self._conn, now_wall, tz)

    def counts(self, now_wall: float) -> Counts:
        return self.tally.counts(now_wall, self.caps.folder_day)

    def block(self, folder: str | None, now_wall: float) -> Block | None:
        """Why a create of `folder` may not leave now, or None if it may."""
        if not self.caps:
            return None
        return cap_block(self.caps, self.counts(now_wall), now_wall, self.tz, folder)


def report(cfg: Any, conn: sqlite3.Connection | None, now_wall: float) -> dict[str, Any]:
    """`status`'s view of spend: today, this month, extra creates by cause, caps, blocks."""
    tz = timezone_of(cfg)
    caps = Caps.from_config(cfg)
    tally = read_tally(conn, now_wall, tz) if conn is not None else Tally(tz)
    counts = tally.counts(now_wall, caps.folder_day)
    out = tally.view(now_wall)
    out["caps"] = {
        "api.max_creates_per_day": _cap_view(caps.day, counts.day),
        "api.max_creates_per_month": _cap_view(caps.month, counts.month),
        **{
            f"folders.{name}.max_creates_per_day": _cap_view(limit, counts.folder_day.get(name, 0))
            for name, limit in sorted(caps.folder_day.items())
        },
    }
    out["blocked"] = [b.to_json(tz) for b in blocks(caps, counts, now_wall, tz)]
    return out


def _cap_view(limit: int | None, spent: int) -> dict[str, Any] | None:
    if limit is None:
        return None
    return {"limit": limit, "spent": spent, "left": max(0, limit - spent)}


def status_lines(view: Mapping[str, Any]) -> list[str]:
    """`report()`'s view as the few lines `watchd status` prints (rich markup)."""

    def one(label: str, part: Mapping[str, Any]) -> str:
        extra = ", ".join(f"{cause} {n}" for cause, n in sorted(part["extra"].items()))
        line = f"{label} {part['period']}: {part['accepted']} creates accepted"
        if part["spent"] != part["accepted"]:
            line += f" ({part['spent']} spent: lost or unanswered ones count)"
        return line + (f"; extra creates: {extra}" if extra else "")

    lines = [
        one(f"spend ({view['timezone']}) today", view["today"]),
        one("this month", view["month"]),
    ]
    for name, cap in view["caps"].items():
        if cap is not None:
            lines.append(f"cap {name}: {cap['spent']} of {cap['limit']}")
    for b in view["blocked"]:
        lines.append(
            f"[bold red]CAP REACHED:[/] {b['cap']} ({b['spent']} of {b['limit']}):"
            f" no create leaves until {b['until']}"
        )
    return lines
