"""The ledger reads behind the dashboard: plain rows out, each an index walk.

Every function takes the reader's connection first and runs in the reader's thread. The
queries are shaped for the ledger's indexes so that a ledger of 100,000 jobs costs a page
what a ledger of 100 does:
- job lists walk `(state, folder, id)` one (state, folder) pair at a time, newest id first,
  and merge the pairs (keyset paging: `id < before`, never OFFSET); with no state or folder
  chosen they walk the primary key instead. `statements()` is what the tests EXPLAIN.
- per-folder views (in flight, last result, recent failures) are the same walk, a few rows.
- the tasks-per-minute chart reads the last hour of `events` through its `at` index.
A name or time filter narrows a walk; it cannot make one longer than its (state, folder)
ranges. Never writes (the connection is read-only anyway).
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from watchd.lifecycle import IN_FLIGHT, State

Row = dict[str, Any]
STATES: tuple[str, ...] = tuple(s.value for s in State)
IN_FLIGHT_STATES: tuple[str, ...] = tuple(s.value for s in State if s in IN_FLIGHT)
PAGE = 50
NO_ID = 2**63 - 1  # above every rowid: the first page's keyset bound
LIST_COLUMNS = (
    "id, folder, name, path, state, attempts, requests, task_id, created_at, updated_at,"
    " finished_at, submitted_at, error_reason, error_code, error_http_status"
)


def _rows(conn: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> list[Row]:
    cursor = conn.execute(sql, list(args))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# -- counts, pauses -----------------------------------------------------------------------


def counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """{folder: {state: n}} (a walk of the covering (state, folder, id) index)."""
    out: dict[str, dict[str, int]] = {}
    for state, folder, n in conn.execute(
        "select state, folder, count(*) from jobs group by state, folder"
    ):
        out.setdefault(folder, {})[state] = n
    return out


def meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("select value from meta where key = ?", [key]).fetchone()
    return row[0] if row else None


def paused_folders(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The folder pauses the ledger holds (what `Ledger.paused_folders()` reads)."""
    out = {}
    for key, value in conn.execute("select key, value from meta where key like 'pause:%'"):
        try:
            note = json.loads(value)
        except ValueError:
            note = {"reason": str(value)}
        out[key[len("pause:") :]] = note if isinstance(note, dict) else {"reason": str(note)}
    return out


# -- per folder ---------------------------------------------------------------------------


def in_flight(conn: sqlite3.Connection, folder: str, limit: int = 20) -> list[Row]:
    marks = ",".join("?" * len(IN_FLIGHT_STATES))
    return _rows(
        conn,
        f"select {LIST_COLUMNS} from jobs where state in ({marks}) and folder = ?"
        " order by id limit ?",
        [*IN_FLIGHT_STATES, folder, limit],
    )


def last_done(conn: sqlite3.Connection, folder: str) -> Row | None:
    found = _rows(
        conn,
        "select id, name, outputs, finished_at from jobs where state = 'done' and folder = ?"
        " order by id desc limit 1",
        [folder],
    )
    return found[0] if found else None


def recent_failures(conn: sqlite3.Connection, folders: Iterable[str], limit: int = 10) -> list[Row]:
    """The newest failed jobs of each folder, latest failure first."""
    found: list[Row] = []
    for folder in folders:
        found += _rows(
            conn,
            f"select {LIST_COLUMNS} from jobs where state = 'failed' and folder = ?"
            " order by id desc limit ?",
            [folder, limit],
        )
    found.sort(key=lambda r: (r["finished_at"] or 0, r["id"]), reverse=True)
    return found[:limit]


def finished_per_minute(
    conn: sqlite3.Connection, now: float, minutes: int = 60
) -> list[tuple[int, int]]:
    """(done, failed) per minute for the last `minutes`, oldest first, from the events."""
    start = now - minutes * 60
    buckets = [[0, 0] for _ in range(minutes)]
    for at, to_state in conn.execute(
        "select at, to_state from events where at >= ? and event = 'moved'", [start]
    ):
        index = min(int((at - start) // 60), minutes - 1)  # now (or a wall step back): last
        if index >= 0 and to_state in ("done", "failed"):
            buckets[index][to_state == "failed"] += 1
    return [(d, f) for d, f in buckets]


def failure_codes(conn: sqlite3.Connection, limit: int = 40) -> list[tuple[str, int]]:
    """The error codes of failed jobs with their counts, most common first."""
    return [
        (code or "", n)
        for code, n in conn.execute(
            "select error_code, count(*) from jobs where state = 'failed'"
            " group by error_code order by 2 desc limit ?",
            [limit],
        )
    ]


# -- one job ------------------------------------------------------------------------------


def job(conn: sqlite3.Connection, job_id: int) -> Row | None:
    found = _rows(conn, "select * from jobs where id = ?", [job_id])
    return found[0] if found else None


def events(conn: sqlite3.Connection, job_id: int, limit: int = 500) -> tuple[list[Row], int]:
    """A job's events, oldest first: the first and the last `limit // 2` when there are more
    (a task polled for an hour has thousands). Returns (events, how many left out)."""
    total = conn.execute("select count(*) from events where job_id = ?", [job_id]).fetchone()[0]
    if total <= limit:
        return _rows(conn, "select * from events where job_id = ? order by id", [job_id]), 0
    half = limit // 2
    head = _rows(conn, "select * from events where job_id = ? order by id limit ?", [job_id, half])
    tail = _rows(
        conn, "select * from events where job_id = ? order by id desc limit ?", [job_id, half]
    )
    return head + tail[::-1], total - 2 * half


# -- job lists ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    """What the Jobs and Failed pages search by. Strings are matched as typed (no patterns)."""

    state: str | None = None
    folder: str | None = None
    name: str | None = None  # part of the file name, any case (ASCII)
    since: float | None = None  # updated at or after (wall seconds)
    until: float | None = None  # updated before
    code: str | None = None  # error code, exactly
    reason: str | None = None  # part of the error reason
    before: int | None = None  # keyset: only ids below this (the next page)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _narrowing(f: JobFilter) -> tuple[str, list[Any]]:
    sql, args = "", list[Any]()
    if f.name:
        sql += " and name like ? escape '\\'"
        args.append(_like(f.name))
    if f.since is not None:
        sql += " and updated_at >= ?"
        args.append(f.since)
    if f.until is not None:
        sql += " and updated_at < ?"
        args.append(f.until)
    if f.code is not None:
        sql += " and coalesce(error_code, '') = ?"
        args.append(f.code)
    if f.reason:
        sql += " and error_reason like ? escape '\\'"
        args.append(_like(f.reason))
    return sql, args


def statements(
    f: JobFilter, pairs: Iterable[tuple[str, str]], limit: int = PAGE
) -> list[tuple[str, list[Any]]]:
    """The SQL a job list runs: one walk per (state, folder) pair, or of the primary key."""
    extra, extra_args = _narrowing(f)
    before = f.before if f.before is not None else NO_ID
    if f.state is None and f.folder is None:
        return [
            (
                f"select {LIST_COLUMNS} from jobs where id < ?{extra} order by id desc limit ?",
                [before, *extra_args, limit + 1],
            )
        ]
    return [
        (
            f"select {LIST_COLUMNS} from jobs where state = ? and folder = ? and id < ?{extra}"
            " order by id desc limit ?",
            [state, folder, before, *extra_args, limit + 1],
        )
        for state, folder in pairs
    ]


def pairs_for(f: JobFilter, known: dict[str, dict[str, int]]) -> list[tuple[str, str]]:
    """The (state, folder) pairs that can hold matches (from the counts: none are empty)."""
    return [
        (state, folder)
        for folder, per_state in sorted(known.items())
        for state in STATES
        if per_state.get(state)
        and (f.state is None or state == f.state)
        and (f.folder is None or folder == f.folder)
    ]


def job_list(
    conn: sqlite3.Connection,
    f: JobFilter,
    limit: int = PAGE,
    known: dict[str, dict[str, int]] | None = None,
) -> tuple[list[Row], int | None]:
    """One page of matching jobs, newest first, and the `before` of the next page (or None)."""
    pairs = pairs_for(f, known if known is not None else counts(conn))
    walks = [_rows(conn, sql, args) for sql, args in statements(f, pairs, limit)]
    merged = list(heapq.merge(*walks, key=lambda r: -r["id"]))[: limit + 1]
    if len(merged) > limit:
        return merged[:limit], merged[limit - 1]["id"]
    return merged, None


def failed_ids(
    conn: sqlite3.Connection, f: JobFilter, limit: int, known: dict[str, dict[str, int]]
) -> list[int]:
    """Ids of the failed jobs a filter shows on one page (for "retry all shown")."""
    rows, _ = job_list(conn, replace(f, state="failed"), limit, known)
    return [r["id"] for r in rows]
