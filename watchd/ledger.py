"""The ledger: watchd's only source of truth, a SQLite file at `state_dir/watchd.db`.

It owns the schema (sqlite-utils `Migrations`, one function a step), job rows keyed by
folder + content hash (+ mask hash), the event history, images waiting for their sidecar
masks, and the `meta` table (the 401 pause, folder pauses, the clock's anchor).

`commit()` is the only writer of a job's fields: it applies the pure lifecycle table
(lifecycle.py) and commits the new state, its bookkeeping and its event row in one
transaction *before* the caller acts on it, then tells the observers (observe.py). The
ledger never touches the network or the folders.

Times: `*_at` columns are wall-clock seconds, for display. `due`, `deadline`,
`result_deadline`, `started` and `polled` are in the ledger's own monotonic time
(`self.clock.mono()`): the system's monotonic clock, which every process of one boot
shares, shifted after a reboot so that it goes on from where the last run left it (a
backoff or a deadline keeps its remaining time; the downtime does not count).

Names are bytes on Linux: a file name that is not UTF-8 reaches Python with surrogate
escapes, which SQLite cannot store as text. Such values are stored as BLOBs of the exact
bytes and read back as the same `str`, so any name a filesystem accepts round-trips.

WAL lets `watchd status` read while the daemon writes; synchronous=FULL makes each commit
durable, so a kill -9 loses nothing that was committed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from watchd.clock import Clock, SystemClock
from watchd.lifecycle import IN_FLIGHT, TERMINAL, Event, State, Step, step
from watchd.naming import from_sql, to_sql
from watchd.observe import Observers, Transition

Row = dict[str, Any]

migrations = Migrations("watchd")
UNFINISHED = tuple(s for s in State if s not in TERMINAL)

@migrations()
def m001_jobs_events_meta(db: Database) -> None:
    db.table("jobs").create(
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
    db.table("jobs").create_index(["key"], unique=True)
    db.table("jobs").create_index(["state", "not_before"])
    db.table("jobs").create_index(["state", "next_poll_at"])
    db.table("jobs").create_index(["folder", "path"])
    db.table("events").create(
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
    db.table("events").create_index(["job_id"])
    db.table("events").create_index(["at"])
    db.table("meta").create({"key": str, "value": str}, pk="key")


@migrations()
def m002_jobs_polled_at_download_tries(db: Database) -> None:
    """polled_at: when the current task was last polled (eager polling waits
    `poll_interval` from the last poll, not from the create); download_tries: failed
    attempts to save the current result (bounded by retry.max_attempts)."""
    db.table("jobs").add_column("polled_at", float)
    db.table("jobs").add_column("download_tries", int, not_null_default=0)


@migrations()
def m003_index_waiting_by_folder(db: Database) -> None:
    """The scheduler asks for the oldest waiting job of each folder on every decision."""
    db.table("jobs").create_index(["state", "folder", "id"])


@migrations()
def m004_jobs_task_seconds(db: Database) -> None:
    """How long the task took, as learned (the API's timestamps, or between two polls).
    `processed_at - submitted_at` is only an upper bound once first polls are deferred."""
    db.table("jobs").add_column("task_seconds", float)


@migrations()
def m005_one_clock_and_table_driven_bookkeeping(db: Database) -> None:
    """Deadlines move to the ledger's monotonic time, and the lifecycle table owns every
    counter: `due` (when the job's next step is due) replaces not_before and next_poll_at,
    `tries` (failures of the current step) replaces download_tries, `polled` (monotonic)
    replaces polled_at. `deadline` and `result_deadline` bound a task and its result;
    `started` is when the current create left; `dest` is an original's recorded
    destination; `cause` is why the next create would be a second one. Old backoffs are
    dropped: every unfinished job is simply due at once.
    Images waiting for a sidecar mask get a table, so their deadlines survive restarts."""
    jobs = db.table("jobs")
    for name, kind in (
        ("due", float),
        ("deadline", float),
        ("result_deadline", float),
        ("started", float),
        ("polled", float),
        ("dest", str),
        ("cause", str),
    ):
        jobs.add_column(name, kind)
    jobs.add_column("tries", int, not_null_default=0)
    db.execute("update jobs set tries = coalesce(download_tries, 0)")
    for index in jobs.indexes:
        if {"not_before", "next_poll_at"} & set(index.columns):
            db.execute(f"drop index [{index.name}]")
    for old in ("not_before", "next_poll_at", "download_tries", "polled_at"):
        db.execute(f"alter table jobs drop column [{old}]")
    jobs.create_index(["state", "due"])
    db.table("mask_waits").create(
        {"folder": str, "path": str, "due": float, "created_at": float},
        pk=("folder", "path"),
    )


SCHEMA_VERSION = len(migrations._migrations)
_CLOCK_META = "clock"


def job_key(folder: str, sha256: str, mask_sha256: str | None = None) -> str:
    return f"{folder}:{sha256}:{mask_sha256 or ''}"


def storable(value: Any) -> Any:
    """A value SQLite can take: paths as text, and names that are not UTF-8 as their exact
    bytes (naming.to_sql)."""
    if isinstance(value, Path):
        value = str(value)
    return to_sql(value) if isinstance(value, str) else value


def _row_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Read BLOBs (only names stored by `storable`; watchd keeps no other) back as str."""
    if any(isinstance(v, bytes) for v in row):
        return tuple(from_sql(v) if isinstance(v, bytes) else v for v in row)
    return row


class LedgerClock:
    """The injected clock, its monotonic time anchored in the ledger (see the module doc)."""

    def __init__(self, clock: Clock, offset: float) -> None:
        self.base = clock
        self.offset = offset

    def wall(self) -> float:
        return self.base.wall()

    def mono(self) -> float:
        return self.base.mono() + self.offset

    async def sleep(self, seconds: float) -> None:
        await self.base.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        await self.base.wait(event, timeout)

    def boot_id(self) -> str:
        return self.base.boot_id()


class Ledger:
    """Job rows, their history and daemon notes, over one sqlite-utils Database."""

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        db.conn.row_factory = _row_factory
        self.observers = Observers()  # told of every committed transition (observe.py)
        self._unsent: list[tuple[Any, ...]] = []
        self._depth = 0  # savepoints open inside the current transaction
        migrations.apply(db)
        self.clock = self._anchor(clock or SystemClock())

    @classmethod
    def open(cls, path: Path, clock: Clock | None = None, *, readonly: bool = False) -> Ledger:
        """Open (and create, unless `readonly`) the ledger file. Raises LedgerError with
        one line that says what to do when the file is not a usable ledger."""
        try:
            if readonly:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(str(path), timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            if readonly:
                view = cls._view(Database(conn), clock)
                if view is None:  # an older schema: this open may migrate it after all
                    return cls.open(path, clock)
                return view
            return cls(Database(conn), clock)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(path, exc) from None
        except OSError as exc:
            raise LedgerError(path, exc) from None

    @classmethod
    def _view(cls, db: Database, clock: Clock | None) -> Ledger | None:
        """A read-only ledger: no migrations, no anchor written; None for a ledger of an
        older schema (its reader needs the newer columns)."""
        self = cls.__new__(cls)
        self.db = db
        db.conn.row_factory = _row_factory
        self.observers = Observers()
        self._unsent = []
        self._depth = 0
        db.execute("select count(*) from jobs").fetchone()  # a broken file fails here
        if migrations.pending(db):
            db.conn.close()
            return None
        saved = self.get_meta(_CLOCK_META)
        note = json.loads(saved) if saved else {}
        clock = clock or SystemClock()
        same_boot = note.get("boot") == clock.boot_id()
        self.clock = LedgerClock(clock, float(note.get("offset", 0.0)) if same_boot else 0.0)
        return self

    def close(self) -> None:
        self.db.conn.close()

    # -- the clock's anchor -------------------------------------------------------------

    def _anchor(self, clock: Clock) -> LedgerClock:
        """Keep the ledger's monotonic time continuous across restarts and reboots."""
        saved = self.get_meta(_CLOCK_META)
        note = json.loads(saved) if saved else {}
        boot = clock.boot_id()
        if note.get("boot") == boot:
            offset = float(note.get("offset", 0.0))
        else:  # first open, or a reboot: go on from the last time this ledger saw
            offset = float(note.get("seen", clock.mono())) - clock.mono()
        ledger_clock = LedgerClock(clock, offset)
        self._save_anchor(ledger_clock, boot)
        return ledger_clock

    def _save_anchor(self, clock: LedgerClock, boot: str | None = None) -> None:
        note = {"boot": boot or clock.boot_id(), "offset": clock.offset, "seen": clock.mono()}
        self.set_meta(_CLOCK_META, json.dumps(note))

    def touch_clock(self) -> None:
        """Note how far the ledger's time has come (the daemon calls this now and then, so
        a reboot loses at most that much of each deadline's remaining time)."""
        self._save_anchor(self.clock)

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
            mark = len(self._unsent)
            # A savepoint named by depth: nested blocks are strictly nested, so the name is
            # unique while it lives (sqlite-utils draws a random name for each).
            self._depth += 1
            savepoint = f"watchd_{self._depth}"
            conn.execute(f"SAVEPOINT {savepoint}")
            try:
                yield
            except BaseException:
                del self._unsent[mark:]  # that savepoint was rolled back
                if conn.in_transaction:  # an error may have ended the whole transaction
                    conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                    conn.execute(f"RELEASE SAVEPOINT {savepoint}")
                raise
            else:
                conn.execute(f"RELEASE SAVEPOINT {savepoint}")
            finally:
                self._depth -= 1
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            self._unsent.clear()  # observers never hear of what was rolled back
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            self._unsent.clear()
            raise
        self._flush_emits()

    # -- reads --------------------------------------------------------------------------

    def _one(self, sql: str, args: Sequence[Any]) -> Row | None:
        """The first row as a dict, straight from the cursor (these lookups run for every
        file of a large drop; sqlite-utils' query() adds its own parsing to each)."""
        cursor = self.db.conn.execute(sql, [storable(a) for a in args])
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        cursor = self.db.conn.execute(sql, [storable(a) for a in args])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def get(self, job_id: int) -> Row | None:
        return self._one("select * from jobs where id = ?", [job_id])

    def by_key(self, key: str) -> Row | None:
        return self._one("select * from jobs where key = ?", [key])

    def active_at_path(self, folder: str, path: str) -> Row | None:
        """The unfinished job whose original is at `path`, if any."""
        # Unfinished includes failing: its original is still in the inbox, and a repeated
        # hint must not read it again nor record a second failing job for it.
        marks = ",".join("?" * len(UNFINISHED))
        return self._one(
            f"select * from jobs where folder = ? and path = ? and state in ({marks})",
            [folder, path, *UNFINISHED],
        )

    def processing(self) -> list[Row]:
        """The tasks at the API, with only what the scheduler reads (asked before every
        request: at QPS 50 with 128 in flight, whole rows cost more than the request)."""
        return self._all(
            "select id, folder, started, due, polled, tries, result_deadline from jobs"
            " where state = ? order by id",
            [State.PROCESSING],
        )

    def in_state(
        self, *states: State | str, folder: str | None = None, limit: int | None = None
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
        return self._all(sql, args)

    def due(
        self,
        states: Iterable[State],
        now: float,
        *,
        exclude: Iterable[int] = (),
        only: Iterable[int] | None = None,
        limit: int = 64,
    ) -> list[Row]:
        """Jobs in `states` whose next step is due by `now`, most overdue first (an index
        walk on (state, due))."""
        wanted = list(states)
        marks = ",".join("?" * len(wanted))
        sql = f"select * from jobs where state in ({marks}) and coalesce(due, 0) <= ?"
        args: list[Any] = [*wanted, now]
        sql, args = _filter_ids(sql, args, exclude, only)
        return self._all(sql + f" order by due, id limit {int(limit)}", args)

    def next_due(self, states: Iterable[State], after: float) -> float | None:
        """The earliest `due` still to come among jobs in `states` (an index lookup each)."""
        times = [
            self.db.execute(
                "select min(due) from jobs where state = ? and due > ?", [state, after]
            ).fetchone()[0]
            for state in states
        ]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def oldest_waiting(
        self,
        folder: str,
        now: float,
        *,
        exclude: Iterable[int] = (),
        only: Iterable[int] | None = None,
    ) -> list[Row]:
        """The oldest waiting job of `folder` that is due (walks the (state, folder, id)
        index and stops at the first match)."""
        sql = (
            "select id, folder from jobs where state = 'waiting' and folder = ?"
            " and coalesce(due, 0) <= ?"
        )
        sql, args = _filter_ids(sql, [folder, now], exclude, only)
        return self._all(sql + " order by id limit 1", args)

    def count_due(self, state: State, now: float, limit: int) -> int:
        """How many jobs in `state` are due by `now`, counted up to `limit` (an index walk
        that stops there, so a backlog of 50,000 costs no more than `limit`)."""
        return self.db.execute(
            "select count(*) from (select 1 from jobs where state = ?"
            " and coalesce(due, 0) <= ? limit ?)",
            [state, now, limit],
        ).fetchone()[0]

    def count_in_flight(self) -> int:
        marks = ",".join("?" * len(IN_FLIGHT))
        return self.db.execute(
            f"select count(*) from jobs where state in ({marks})", [*IN_FLIGHT]
        ).fetchone()[0]

    def counts(self) -> dict[str, dict[str, int]]:
        """{folder: {state: n}}."""
        out: dict[str, dict[str, int]] = {}
        for row in self._all("select folder, state, count(*) n from jobs group by 1, 2"):
            out.setdefault(row["folder"], {})[row["state"]] = row["n"]
        return out

    def events_of(self, job_id: int) -> list[Row]:
        return self._all("select * from events where job_id = ? order by id", [job_id])

    def durations(self, limit: int = 200) -> list[tuple[str, float]]:
        """(folder, processing seconds) of recent tasks, as learned when they finished: the
        polling model reloads these on start, so what it learned survives restarts."""
        rows = self._all(
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
        sql, args = "select * from jobs where 1=1", list[Any]()
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
        return self._all(sql, args)

    # -- writes -------------------------------------------------------------------------

    def add_job(self, fields: Mapping[str, Any], *, state: State = State.WAITING) -> int:
        """Record a new job (and its first event). The caller checks `by_key` first."""
        return self.add_jobs([fields], state=state)[0]

    def add_jobs(
        self, batch: Iterable[Mapping[str, Any]], *, state: State = State.WAITING
    ) -> list[int]:
        """Record many jobs in one transaction (a 10,000-file drop is a few commits)."""
        wall, mono = self.clock.wall(), self.clock.mono()
        ids = []
        with self.atomic():
            for fields in batch:
                row = {
                    "due": mono,
                    **_encode(fields),
                    "state": state.value,
                    "created_at": wall,
                    "updated_at": wall,
                }
                job_id = self._insert("jobs", row)
                detail = {"path": fields.get("path")}
                for extra in ("error_code", "error_reason"):
                    if fields.get(extra):
                        detail[extra.removeprefix("error_")] = fields[extra]
                # The row as written: 50,000 new files are not read back one by one.
                written = {**row, "id": job_id}
                self._record(job_id, "recorded", None, state.value, detail, wall, written)
                ids.append(job_id)
        return ids

    def commit(
        self, job_id: int, event: Event, detail: Mapping[str, Any] | None = None, **data: Any
    ) -> Step:
        """Apply `event` to the job through the lifecycle table and commit the new state,
        its bookkeeping and the event row together. The only writer of a job's fields.

        Raises IllegalTransition or IllegalData (and changes nothing) when the table does
        not allow it.
        """
        wall, mono = self.clock.wall(), self.clock.mono()
        with self.atomic():
            row = self.get(job_id)
            if row is None:
                raise KeyError(f"no job {job_id}")
            result = step(row, event, data, wall=wall, mono=mono)
            self._update(job_id, result.fields)
            self._record(job_id, Event(event).value, row["state"], result.state.value, detail, wall)
        return result

    def note(self, job_id: int, event: str, detail: Mapping[str, Any] | None = None) -> None:
        """An event row that changes nothing about the job (a duplicate seen, a retry
        asked for): history for the operator, told to the observers too."""
        wall = self.clock.wall()
        with self.atomic():
            self._record(job_id, event, None, None, detail, wall)

    def _update(self, job_id: int, fields: Mapping[str, Any]) -> None:
        encoded = _encode(fields)
        sets = ", ".join(f"[{name}] = ?" for name in encoded)
        self.db.execute(f"update jobs set {sets} where id = ?", [*encoded.values(), job_id])

    def _record(
        self,
        job_id: int,
        event: str,
        src: str | None,
        dst: str | None,
        detail: Mapping[str, Any] | None,
        at: float,
        row: Row | None = None,
    ) -> None:
        """The event row, inside the caller's transaction; the observers hear of it once
        that transaction commits (never of a change a rollback or a crash undoes). `row`:
        the job as written, when the caller has it (else it is read back at the commit)."""
        self._insert(
            "events",
            {
                "job_id": job_id,
                "at": at,
                "event": event,
                "from_state": src,
                "to_state": dst,
                "detail": json.dumps(detail, default=str) if detail else None,
            },
        )
        if self.observers:
            self._unsent.append((job_id, event, src, dst, detail, at, row))

    def _flush_emits(self) -> None:
        pending, self._unsent = self._unsent, []
        for job_id, event, src, dst, detail, at, known in pending:
            row = known if known is not None else (self.get(job_id) or {})
            self.observers.emit(
                Transition(
                    job_id=job_id,
                    folder=row.get("folder", ""),
                    name=row.get("name", ""),
                    event=event,
                    src=src,
                    dst=dst,
                    at=at,
                    detail=dict(detail or {}),
                    job=row,
                )
            )

    def _insert(self, table: str, row: Mapping[str, Any]) -> int:
        """A plain INSERT: sqlite-utils' insert() introspects the table on every call, which
        is most of the cost of recording 50,000 files. The schema is ours and fixed."""
        columns = ", ".join(f"[{c}]" for c in row)
        marks = ", ".join("?" * len(row))
        cursor = self.db.execute(
            f"insert into [{table}] ({columns}) values ({marks})",
            [storable(v) for v in row.values()],
        )
        return int(cursor.lastrowid or 0)

    # -- images waiting for their sidecar masks -----------------------------------------

    def wait_for_mask(self, folder: str, path: str, due: float) -> None:
        """Note an image whose mask has not come; kept if already noted (the first
        deadline counts, so a repeated hint does not extend the wait)."""
        with self.atomic():
            self.db.execute(
                "insert or ignore into mask_waits (folder, path, due, created_at)"
                " values (?, ?, ?, ?)",
                [folder, storable(path), due, self.clock.wall()],
            )

    def end_mask_wait(self, folder: str, path: str) -> None:
        sql, args = "delete from mask_waits where folder = ? and path = ?", [folder, path]
        if self.db.conn.in_transaction:  # one statement: atomic as it is (run per new file)
            self.db.conn.execute(sql, [storable(a) for a in args])
            return
        with self.atomic():
            self.db.conn.execute(sql, [storable(a) for a in args])

    def mask_waits(self) -> list[Row]:
        return self._all("select * from mask_waits order by due")

    # -- meta ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("select value from meta where key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self.atomic():
            if value is None:
                self.db.execute("delete from meta where key = ?", [key])
            else:
                self.db.execute(
                    "insert into meta (key, value) values (?, ?)"
                    " on conflict(key) do update set value = excluded.value",
                    [key, value],
                )

    def pause_folder(self, folder: str, reason: str, *, by: str = "operator") -> None:
        """Stop creates for `folder`: its files wait in the inbox, tasks in flight finish.
        Lives in the ledger, so it survives restarts and any process can set it."""
        note = {"reason": reason, "by": by, "at": self.clock.wall()}
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


class LedgerError(Exception):
    """The ledger file cannot be opened or read as a ledger."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        self.path = path
        self.cause = cause
        super().__init__(
            f"the ledger {path} cannot be used ({cause}). If it is damaged, stop watchd, move"
            " the file (with its -wal and -shm files) aside and start again: files still in"
            " the inboxes are taken again, results already in the outboxes stay"
        )


def _filter_ids(
    sql: str, args: list[Any], exclude: Iterable[int], only: Iterable[int] | None
) -> tuple[str, list[Any]]:
    skip = list(exclude)
    if skip:
        sql += f" and id not in ({','.join('?' * len(skip))})"
        args = [*args, *skip]
    if only is not None:
        wanted = list(only)
        sql += f" and id in ({','.join('?' * len(wanted))})"
        args = [*args, *wanted]
    return sql, args


_PAUSE = "pause:"  # meta key prefix of a paused folder
_JSON_COLUMNS = ("params", "post", "results", "outputs")


def _encode(fields: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-encode the structured columns; paths and non-UTF-8 names become storable."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k in _JSON_COLUMNS and v is not None and not isinstance(v, str):
            v = json.dumps(v)
        out[k] = storable(v)
    return out


def decode(row: Row, column: str) -> Any:
    value = row.get(column)
    if value is not None and not isinstance(value, str):
        return value  # already decoded (a row built in memory)
    return json.loads(value) if value else None
