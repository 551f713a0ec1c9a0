"""The ledger: watchd's only source of truth, a SQLite file at `state_dir/watchd.db`.

It owns the schema (sqlite-utils `Migrations`, one function a step), job rows keyed by
folder + content hash (+ mask hash), the event history, and the `meta` table (schema
notes, the 401 pause reason). Every state change goes through `transition()`, which applies
the pure lifecycle table and commits the new state and its event in one transaction
*before* the caller acts on it. The ledger never touches the network or the folders.

WAL lets `watchd status` read while the daemon writes; synchronous=FULL makes each commit
durable, so a kill -9 loses nothing that was committed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from watchd.lifecycle import IN_FLIGHT, TERMINAL, Event, State, Step, step
from watchd.observe import Observers, Transition

Row = dict[str, Any]
Clock = Callable[[], float]

migrations = Migrations("watchd")
UNFINISHED = tuple(s for s in State if s not in TERMINAL)


@migrations()
def m001_jobs_events_meta(db: Database) -> None:
    db["jobs"].create(
        {
            "id": int,
            "folder": str,
            "key": str,  # folder + sha256 + mask sha256: one job per content, once
            "path": str,  # where the original is now (inbox, done/ or failed/)
            "name": str,  # the original's file name as dropped
            "rel": str,  # its path relative to the inbox (recursive folders)
            "size": int,
            "sha256": str,
            "mask_path": str,
            "mask_sha256": str,
            "width": int,
            "height": int,
            "upload_sha256": str,  # the bytes actually sent (fit: true changes them)
            "upload_size": int,
            "upload_width": int,
            "upload_height": int,
            "params": str,  # JSON: the API form fields for this job
            "post": str,  # JSON: outbox settings captured when the job was made
            "state": str,
            "task_id": str,
            "attempts": int,  # creates started (counted before sending, as arq does)
            "ambiguous": int,  # creates whose answer was lost (crash or dropped connection)
            "requests": int,  # API calls spent on this job (creates + queries)
            "not_before": float,  # earliest next create or download (backoff)
            "next_poll_at": float,
            "polls": int,  # polls of the current task
            "submitted_at": float,
            "processed_at": float,  # when the current task was seen finished
            "results": str,  # JSON list of result refs (URLs; base64 is not stored)
            "outputs": str,  # JSON list of outbox paths, planned before writing
            "keep_original": int,  # `watchd process`: leave the original where it is
            "error_reason": str,
            "error_code": str,
            "error_http_status": int,
            "created_at": float,
            "updated_at": float,
            "finished_at": float,
        },
        pk="id",
        not_null={"folder", "key", "path", "name", "state"},
        defaults={"attempts": 0, "ambiguous": 0, "requests": 0, "polls": 0, "keep_original": 0},
    )
    db["jobs"].create_index(["key"], unique=True)
    db["jobs"].create_index(["state", "not_before"])
    db["jobs"].create_index(["state", "next_poll_at"])
    db["jobs"].create_index(["folder", "path"])
    db["events"].create(
        {
            "id": int,
            "job_id": int,
            "at": float,
            "event": str,
            "from_state": str,
            "to_state": str,
            "detail": str,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["events"].create_index(["job_id"])
    db["events"].create_index(["at"])
    db["meta"].create({"key": str, "value": str}, pk="key")


@migrations()
def m002_jobs_polled_at_download_tries(db: Database) -> None:
    """polled_at: when the current task was last polled (eager polling waits
    `poll_interval` from the last poll, not from the create); download_tries: failed
    attempts to save the current result (bounded by retry.max_attempts)."""
    db["jobs"].add_column("polled_at", float)
    db["jobs"].add_column("download_tries", int, not_null_default=0)


@migrations()
def m003_index_waiting_by_folder(db: Database) -> None:
    """The scheduler asks for the oldest waiting job of each folder on every decision."""
    db["jobs"].create_index(["state", "folder", "id"])


@migrations()
def m004_jobs_task_seconds(db: Database) -> None:
    """How long the task took, as learned (the API's timestamps, or between two polls).
    `processed_at - submitted_at` is only an upper bound once first polls are deferred."""
    db["jobs"].add_column("task_seconds", float)


SCHEMA_VERSION = len(migrations._migrations)


def job_key(folder: str, sha256: str, mask_sha256: str | None = None) -> str:
    return f"{folder}:{sha256}:{mask_sha256 or ''}"


class Ledger:
    """Job rows, their history and daemon notes, over one sqlite-utils Database."""

    def __init__(self, db: Database, clock: Clock = time.time) -> None:
        self.db = db
        self.clock = clock
        self.observers = Observers()  # told of every committed transition (observe.py)
        migrations.apply(db)

    @classmethod
    def open(cls, path: Path, clock: Clock = time.time) -> Ledger:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return cls(Database(conn), clock)

    def close(self) -> None:
        self.db.conn.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction; nested blocks are savepoints (sqlite-utils `atomic`).

        The outermost block begins IMMEDIATE: it takes the write lock before its first read.
        A deferred transaction that reads a row and then writes fails at once with "database
        is locked" (SQLITE_BUSY_SNAPSHOT, no busy wait) when another process, `watchd retry`
        say, committed in between; taking the lock first makes that a wait of busy_timeout.
        """
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    # -- reads --------------------------------------------------------------------------

    def _one(self, sql: str, args: Sequence[Any]) -> Row | None:
        """The first row as a dict, straight from the cursor (these lookups run for every
        file of a large drop; sqlite-utils' query() adds its own parsing to each)."""
        cursor = self.db.conn.execute(sql, args)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def get(self, job_id: int) -> Row | None:
        return self._one("select * from jobs where id = ?", [job_id])

    def by_key(self, key: str) -> Row | None:
        return self._one("select * from jobs where key = ?", [key])

    def active_at_path(self, folder: str, path: str) -> Row | None:
        """The unfinished job whose original is at `path`, if any."""
        # Unfinished includes failing (not in ACTIVE): its original is still in the inbox, and
        # a repeated hint must not read it again nor, for a file rejected before hashing,
        # record a second failing job for it.
        marks = ",".join("?" * len(UNFINISHED))
        return self._one(
            f"select * from jobs where folder = ? and path = ? and state in ({marks})",
            [folder, path, *UNFINISHED],
        )

    def in_state(
        self, *states: State, folder: str | None = None, limit: int | None = None
    ) -> list[Row]:
        marks = ",".join("?" * len(states))
        sql = f"select * from jobs where state in ({marks})"
        args: list[Any] = [*states]
        if folder is not None:
            sql += " and folder = ?"
            args.append(folder)
        sql += " order by id"
        if limit is not None:
            sql += f" limit {int(limit)}"
        return list(self.db.query(sql, args))

    def next_waiting_time(self, now: float) -> float | None:
        """When the next backoff among waiting jobs ends (an index lookup)."""
        row = self.db.execute(
            "select min(not_before) from jobs where state = 'waiting' and not_before > ?", [now]
        ).fetchone()
        return row[0] if row else None

    def oldest_waiting(
        self,
        folder: str,
        now: float,
        *,
        exclude: Iterable[int] = (),
        only: Iterable[int] | None = None,
    ) -> list[Row]:
        """The oldest waiting job of `folder` whose backoff has passed (walks the
        (state, folder, id) index and stops at the first match)."""
        sql = (
            "select id, folder from jobs where state = 'waiting' and folder = ?"
            " and coalesce(not_before, 0) <= ?"
        )
        args: list[Any] = [folder, now]
        skip = list(exclude)
        if skip:
            sql += f" and id not in ({','.join('?' * len(skip))})"
            args += skip
        if only is not None:
            wanted = list(only)
            sql += f" and id in ({','.join('?' * len(wanted))})"
            args += wanted
        return list(self.db.query(sql + " order by id limit 1", args))

    def count_in_flight(self) -> int:
        marks = ",".join("?" * len(IN_FLIGHT))
        return self.db.execute(
            f"select count(*) from jobs where state in ({marks})", [*IN_FLIGHT]
        ).fetchone()[0]

    def counts(self) -> dict[str, dict[str, int]]:
        """{folder: {state: n}}."""
        out: dict[str, dict[str, int]] = {}
        for row in self.db.query("select folder, state, count(*) n from jobs group by 1, 2"):
            out.setdefault(row["folder"], {})[row["state"]] = row["n"]
        return out

    def events_of(self, job_id: int) -> list[Row]:
        return list(self.db.query("select * from events where job_id = ? order by id", [job_id]))

    def durations(self, limit: int = 200) -> list[tuple[str, float]]:
        """(folder, processing seconds) of recent tasks, as learned when they finished: the
        polling model reloads these on start, so what it learned survives restarts."""
        rows = self.db.query(
            "select folder, task_seconds from jobs where task_seconds is not null"
            " order by processed_at desc limit ?",
            [limit],
        )
        return [(r["folder"], r["task_seconds"]) for r in rows]

    def jobs(
        self,
        *,
        state: str | None = None,
        folder: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        sql, args = "select * from jobs where 1=1", []
        if state:
            sql += " and state = ?"
            args.append(state)
        if folder:
            sql += " and folder = ?"
            args.append(folder)
        if since is not None:
            sql += " and updated_at >= ?"
            args.append(since)
        sql += " order by id desc"
        if limit:
            sql += f" limit {int(limit)}"
        return list(self.db.query(sql, args))

    # -- writes -------------------------------------------------------------------------

    def add_job(self, fields: Mapping[str, Any], *, state: State = State.WAITING) -> int:
        """Record a new job (and its first event). The caller checks `by_key` first."""
        return self.add_jobs([fields], state=state)[0]

    def add_jobs(
        self, batch: Iterable[Mapping[str, Any]], *, state: State = State.WAITING
    ) -> list[int]:
        """Record many jobs in one transaction (a 10,000-file drop is a few commits)."""
        now = self.clock()
        ids = []
        with self.atomic():
            for fields in batch:
                row = {
                    **_encode(fields),
                    "state": state.value,
                    "created_at": now,
                    "updated_at": now,
                }
                job_id = self._insert("jobs", row)
                self._event(job_id, "recorded", None, state.value, {"path": fields.get("path")})
                ids.append(job_id)
        for job_id in ids:
            self._emit(job_id, "recorded", None, state.value, None)
        return ids

    def transition(
        self, job_id: int, event: Event, detail: Mapping[str, Any] | None = None, **fields: Any
    ) -> Step:
        """Apply `event` to the job and commit the new state, the fields and the event together.

        Raises IllegalTransition (and changes nothing) when the job's state does not accept it.
        """
        with self.atomic():
            row = self.get(job_id)
            if row is None:
                raise KeyError(f"no job {job_id}")
            result = step(row["state"], event)
            now = self.clock()
            update = {**_encode(fields), "state": result.state.value, "updated_at": now}
            if result.state in (State.DONE, State.FAILED, State.GONE):
                update["finished_at"] = now
            self.db["jobs"].update(job_id, update)
            self._event(job_id, event.value, row["state"], result.state.value, detail)
        self._emit(job_id, event.value, row["state"], result.state.value, detail)
        return result

    def _emit(
        self,
        job_id: int,
        event: str,
        src: str | None,
        dst: str | None,
        detail: Mapping[str, Any] | None,
    ) -> None:
        """Tell the observers, after the commit (never of a change a crash could undo)."""
        if not self.observers:
            return
        row = self.get(job_id) or {}
        self.observers.emit(
            Transition(
                job_id=job_id,
                folder=row.get("folder", ""),
                name=row.get("name", ""),
                event=event,
                src=src,
                dst=dst,
                at=self.clock(),
                detail=dict(detail or {}),
                job=row,
            )
        )

    def update(
        self,
        job_id: int,
        detail: Mapping[str, Any] | None = None,
        *,
        note: str | None = None,
        **fields: Any,
    ) -> None:
        """Bookkeeping that does not change the state (a backoff, a request counted)."""
        with self.atomic():
            self.db["jobs"].update(job_id, {**_encode(fields), "updated_at": self.clock()})
            if note:
                self._event(job_id, note, None, None, detail)

    def add_requests(self, job_id: int, n: int = 1) -> None:
        # In a block of its own (a bare commit() would end a caller's open transaction early).
        with self.atomic():
            self.db.execute("update jobs set requests = requests + ? where id = ?", [n, job_id])

    def note(self, job_id: int, event: str, detail: Mapping[str, Any] | None = None) -> None:
        with self.atomic():
            self._event(job_id, event, None, None, detail)

    def _event(
        self,
        job_id: int,
        event: str,
        src: str | None,
        dst: str | None,
        detail: Mapping[str, Any] | None,
    ) -> None:
        self._insert(
            "events",
            {
                "job_id": job_id,
                "at": self.clock(),
                "event": event,
                "from_state": src,
                "to_state": dst,
                "detail": json.dumps(detail, default=str) if detail else None,
            },
        )

    def _insert(self, table: str, row: Mapping[str, Any]) -> int:
        """A plain INSERT: sqlite-utils' insert() introspects the table on every call, which
        is most of the cost of recording 50,000 files. The schema is ours and fixed."""
        columns = ", ".join(f"[{c}]" for c in row)
        marks = ", ".join("?" * len(row))
        cursor = self.db.execute(
            f"insert into [{table}] ({columns}) values ({marks})", list(row.values())
        )
        return int(cursor.lastrowid)

    # -- meta ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return rows[0]["value"] if rows else None

    def pause_folder(self, folder: str, reason: str, *, by: str = "operator") -> None:
        """Stop creates for `folder`: its files wait in the inbox, tasks in flight finish.
        Lives in the ledger, so it survives restarts and any process can set it."""
        note = {"reason": reason, "by": by, "at": self.clock()}
        self.set_meta(f"{_PAUSE}{folder}", json.dumps(note))

    def resume_folder(self, folder: str) -> bool:
        """Lift a folder pause; False if it was not paused."""
        was = self.get_meta(f"{_PAUSE}{folder}") is not None
        self.set_meta(f"{_PAUSE}{folder}", None)
        return was

    def paused_folders(self) -> dict[str, dict[str, Any]]:
        """{folder: {"reason", "by", "at"}} for every paused folder."""
        rows = self.db.execute(
            "select key, value from meta where key like ?", [f"{_PAUSE}%"]
        ).fetchall()
        return {key[len(_PAUSE) :]: json.loads(value) for key, value in rows}

    def set_meta(self, key: str, value: str | None) -> None:
        with self.atomic():
            if value is None:
                self.db.execute("delete from meta where key = ?", [key])
            else:
                self.db["meta"].upsert({"key": key, "value": value}, pk="key")


_PAUSE = "pause:"  # meta key prefix of a paused folder
_JSON_COLUMNS = ("params", "post", "results", "outputs")


def _encode(fields: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-encode the structured columns; paths become strings."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k in _JSON_COLUMNS and v is not None and not isinstance(v, str):
            v = json.dumps(v)
        elif isinstance(v, Path):
            v = str(v)
        out[k] = v
    return out


def decode(row: Row, column: str) -> Any:
    value = row.get(column)
    if value is not None and not isinstance(value, str):
        return value  # already decoded (a row built in memory)
    return json.loads(value) if value else None
