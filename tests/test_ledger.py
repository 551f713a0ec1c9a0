"""The ledger over an in-memory sqlite-utils Database and a fake clock; one file-backed test
checks the pragmas and that readers and a second writer get along with the daemon."""

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from watchd.clock import FakeClock as SimClock
from watchd.ledger import (
    SCHEMA_VERSION,
    Ledger,
    decode,
    job_key,
    migrations,
)
from watchd.lifecycle import Event, IllegalData, IllegalTransition, State

S, E = State, Event


class FakeClock(SimClock):
    """The fake clock, with `now` (wall) that a test moves forward."""

    def __init__(self) -> None:
        super().__init__(wall=1_000.0, mono=1_000.0)

    @property
    def now(self) -> float:
        return self.wall()

    @now.setter
    def now(self, value: float) -> None:
        self.advance(value - self.wall())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(clock: FakeClock) -> Ledger:
    return Ledger(Database(memory=True), clock=clock)


def states_sequence(rows) -> list[str]:
    """The `to_state` chain of a job's events."""
    return [r["to_state"] for r in rows if r["to_state"]]


def fields(name: str = "a.png", folder: str = "photos", data: bytes | None = None, **extra):
    sha = hashlib.sha256(data if data is not None else os.fsencode(name)).hexdigest()
    return {
        "folder": folder,
        "key": job_key(folder, sha),
        "path": f"/in/{folder}/{name}",
        "name": name,
        "size": 10,
        "sha256": sha,
        **extra,
    }


def ids(rows: list[dict]) -> list[int]:
    return [r["id"] for r in rows]


def walk(ledger: Ledger, job_id: int, *events: Event) -> None:
    for event in events:
        ledger.commit(job_id, event)


def state_of(ledger: Ledger, job_id: int) -> str:
    row = ledger.get(job_id)
    assert row is not None
    return row["state"]


# -- schema -----------------------------------------------------------------------------


def test_migrations_apply_once_and_are_recorded():
    db = Database(memory=True)
    Ledger(db)
    Ledger(db)  # a second open must not run m001 again (it would fail: the tables exist)
    rows = list(db.query("select migration_set, name from _sqlite_migrations"))
    assert [r["name"] for r in rows] == [m.name for m in migrations._migrations]
    assert rows[0] == {"migration_set": "watchd", "name": "m001_jobs_events_meta"}
    assert len(rows) == SCHEMA_VERSION
    assert migrations.pending(db) == []
    assert {"jobs", "events", "meta"} <= set(db.table_names())


def test_a_ledger_made_by_the_first_schema_is_migrated_forward(tmp_path: Path):
    """An older ledger gains the new columns; its jobs are kept."""
    path = tmp_path / "watchd.db"
    db = Database(path)
    migrations.apply(db, stop_before="m002_jobs_polled_at_download_tries")  # an m001 ledger
    db["jobs"].insert({"folder": "f", "key": "k", "path": "/p", "name": "p", "state": "waiting"})
    db.close()
    ledger = Ledger.open(path)
    row = ledger.by_key("k")
    assert row is not None and row["tries"] == 0 and row["due"] is None
    assert "not_before" not in row and "polled_at" not in row  # the table owns bookkeeping


def test_reopening_a_file_keeps_the_jobs(tmp_path: Path):
    path = tmp_path / "state" / "watchd.db"  # the state dir does not exist yet
    first = Ledger.open(path)
    job_id = first.add_job(fields())
    first.close()
    again = Ledger.open(path)
    assert state_of(again, job_id) == "waiting"
    count = again.db.execute("select count(*) from _sqlite_migrations").fetchone()[0]
    assert count == SCHEMA_VERSION  # not applied twice
    again.close()


def test_a_ledger_file_uses_wal_full_sync_and_foreign_keys(tmp_path: Path):
    ledger = Ledger.open(tmp_path / "watchd.db")
    assert ledger.db.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert ledger.db.execute("pragma synchronous").fetchone()[0] == 2  # FULL
    assert ledger.db.execute("pragma foreign_keys").fetchone()[0] == 1
    with pytest.raises(sqlite3.IntegrityError):
        ledger.note(999, "orphan")  # an event needs its job
    ledger.close()


def test_a_reader_sees_the_last_commit_while_a_write_is_open(tmp_path: Path):
    """`watchd status` reads while the daemon writes; the daemon commits while it reads."""
    path = tmp_path / "watchd.db"
    ledger = Ledger.open(path)
    ledger.db.execute("pragma busy_timeout = 200")  # a regression fails fast, not in 30 s
    job_id = ledger.add_job(fields())
    reader = sqlite3.connect(path, timeout=0)  # no waiting: blocked would raise at once
    with ledger.atomic():
        ledger.commit(job_id, E.SUBMIT)
        assert reader.execute("select state from jobs").fetchone() == ("waiting",)
    assert reader.execute("select state from jobs").fetchone() == ("submitting",)
    # An open read transaction does not stop the writer from committing (WAL).
    reader.execute("begin")
    assert reader.execute("select state from jobs").fetchone() == ("submitting",)
    ledger.commit(job_id, E.CREATED, task_id="t1")
    assert reader.execute("select state from jobs").fetchone() == ("submitting",)  # snapshot
    reader.execute("commit")
    assert reader.execute("select state from jobs").fetchone() == ("processing",)
    reader.close()
    ledger.close()


def test_a_transition_survives_another_writer_committing_during_it(tmp_path: Path):
    """`watchd retry` writing at the wrong moment must not make the daemon's transition fail
    with "database is locked": the transition holds the write lock from its first read."""
    path = tmp_path / "watchd.db"
    refused: list[str] = []

    class Meddled(Ledger):
        other: sqlite3.Connection | None = None

        def get(self, job_id: int):  # type: ignore[no-untyped-def]
            # commit() reads the row, then writes: another writer tries in between.
            if self.other is not None and not refused:
                try:
                    self.other.execute("insert into meta (key, value) values ('by', 'other')")
                    self.other.commit()
                    refused.append("no")
                except sqlite3.OperationalError as exc:
                    refused.append(str(exc))
            return super().get(job_id)

    conn = sqlite3.connect(str(path), timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    ledger = Meddled(Database(conn))
    job_id = ledger.add_job(fields())
    Meddled.other = sqlite3.connect(path, timeout=0)
    ledger.commit(job_id, E.SUBMIT)
    assert state_of(ledger, job_id) == "submitting"
    assert refused == ["database is locked"]  # the other writer waits its turn instead
    Meddled.other.close()
    ledger.close()


# -- jobs -------------------------------------------------------------------------------


def test_a_new_job_is_found_by_its_key_with_its_first_event(ledger: Ledger, clock: FakeClock):
    f = fields()
    job_id = ledger.add_job(f)
    row = ledger.by_key(f["key"])
    assert row is not None and row["id"] == job_id
    assert row["state"] == "waiting"
    assert row["created_at"] == row["updated_at"] == clock.now
    assert row["attempts"] == row["ambiguous"] == row["requests"] == row["polls"] == 0
    assert ledger.by_key(job_key("photos", "0" * 64)) is None
    assert ledger.get(job_id + 1) is None
    [event] = ledger.events_of(job_id)
    assert (event["event"], event["from_state"], event["to_state"]) == (
        "recorded",
        None,
        "waiting",
    )
    assert json.loads(event["detail"]) == {"path": f["path"]}


def test_a_job_can_be_recorded_in_another_state(ledger: Ledger):
    job_id = ledger.add_job(fields(), state=S.FAILING)
    assert state_of(ledger, job_id) == "failing"


def test_the_same_key_twice_is_refused_by_the_database(ledger: Ledger):
    """The engine checks by_key first; the unique index is the last line of defence."""
    ledger.add_job(fields())
    with pytest.raises(sqlite3.IntegrityError):
        ledger.add_job(fields())
    assert ledger.db.execute("select count(*) from jobs").fetchone()[0] == 1


def test_same_bytes_twice_make_one_job(ledger: Ledger):
    data = b"\x89PNG same bytes"
    first = fields("a.png", data=data)
    second = fields("copy of a.png", data=data)
    assert first["key"] == second["key"]
    for f in (first, second):  # what the engine does with each drop
        if ledger.by_key(f["key"]) is None:
            ledger.add_job(f)
    assert ledger.db.execute("select count(*) from jobs").fetchone()[0] == 1


def test_the_key_separates_folders_and_masks():
    sha = hashlib.sha256(b"x").hexdigest()
    assert job_key("a", sha) != job_key("b", sha)
    assert job_key("a", sha) != job_key("a", sha, "m" * 64)
    assert job_key("a", sha, None) == job_key("a", sha)


def test_add_jobs_records_a_batch_in_one_transaction(ledger: Ledger):
    statements: list[str] = []
    ledger.db.conn.set_trace_callback(statements.append)
    ids = ledger.add_jobs([fields(f"{i}.png") for i in range(50)])
    ledger.db.conn.set_trace_callback(None)
    assert len(ids) == 50 and ids == sorted(ids)
    assert sum(s.strip().upper().startswith("COMMIT") for s in statements) == 1
    assert ledger.db.execute("select count(*) from events").fetchone()[0] == 50


def test_a_batch_with_a_bad_row_records_nothing(ledger: Ledger):
    batch = [fields("1.png"), fields("2.png"), fields("1.png")]  # the last repeats a key
    with pytest.raises(sqlite3.IntegrityError):
        ledger.add_jobs(batch)
    assert ledger.db.execute("select count(*) from jobs").fetchone()[0] == 0
    assert ledger.db.execute("select count(*) from events").fetchone()[0] == 0


def test_structured_columns_are_stored_as_json_and_paths_as_text(ledger: Ledger):
    job_id = ledger.add_job(
        fields(
            params={"top": 0.1},
            post={"done": "/d"},
            mask_path=Path("/in/m.png"),
            outputs=[{"path": "/out/a.png"}],
            results=["https://x/r.png"],
        )
    )
    row = ledger.get(job_id)
    assert row is not None
    assert row["params"] == '{"top": 0.1}'
    assert decode(row, "params") == {"top": 0.1}
    assert decode(row, "post") == {"done": "/d"}
    assert decode(row, "outputs") == [{"path": "/out/a.png"}]
    assert decode(row, "results") == ["https://x/r.png"]
    assert decode(row, "task_id") is None
    assert row["mask_path"] == "/in/m.png"


def test_names_that_are_not_utf8_round_trip_exactly(ledger: Ledger):
    """A Latin-1 name from an old SMB client reaches Python with surrogate escapes; SQLite
    cannot store that as text, so it goes in as its exact bytes and comes back the same."""


    name = os.fsdecode(b"caf\xe9.png")
    path = f"/in/photos/{name}"
    job_id = ledger.add_job({**fields(name), "path": path})
    row = ledger.get(job_id)
    assert row is not None and row["path"] == path and row["name"] == name
    assert os.fsencode(row["path"]) == b"/in/photos/caf\xe9.png"
    found = ledger.active_at_path("photos", path)
    assert found is not None and found["id"] == job_id
    ledger.commit(job_id, E.RENAMED, path=path + "2")
    assert ledger.active_at_path("photos", path + "2")["id"] == job_id  # type: ignore[index]
    ledger.commit(job_id, E.SUBMIT)
    assert ledger.jobs()[0]["name"] == name


# -- transitions ------------------------------------------------------------------------


def test_a_transition_commits_the_state_fields_and_an_event(ledger: Ledger, clock: FakeClock):
    job_id = ledger.add_job(fields())
    clock.now = 1_010.0
    result = ledger.commit(job_id, E.SUBMIT, {"attempt": 1}, submitted_at=1_010.0, started=7.0)
    assert result.state is S.SUBMITTING and result.work is not None
    assert not ledger.db.conn.in_transaction  # committed, before the caller acts
    row = ledger.get(job_id)
    assert row is not None
    assert (row["state"], row["attempts"], row["submitted_at"]) == ("submitting", 1, 1_010.0)
    assert row["started"] == 7.0 and row["due"] == ledger.clock.mono()
    assert row["updated_at"] == 1_010.0 and row["finished_at"] is None
    event = ledger.events_of(job_id)[-1]
    assert event["event"] == "submit"
    assert (event["from_state"], event["to_state"]) == ("waiting", "submitting")
    assert event["at"] == 1_010.0
    assert json.loads(event["detail"]) == {"attempt": 1}


def test_bookkeeping_outside_the_table_is_refused(ledger: Ledger):
    """No writer but the table: an event may set only the fields it declares."""
    job_id = ledger.add_job(fields())
    before = ledger.get(job_id)
    with pytest.raises(IllegalData):
        ledger.commit(job_id, E.SUBMIT, attempts=7)
    assert ledger.get(job_id) == before
    assert not hasattr(ledger, "update") and not hasattr(ledger, "add_requests")


def test_an_illegal_transition_raises_and_changes_nothing(ledger: Ledger, clock: FakeClock):
    job_id = ledger.add_job(fields())
    before, events_before = ledger.get(job_id), ledger.events_of(job_id)
    clock.now += 60
    with pytest.raises(IllegalTransition):
        ledger.commit(job_id, E.MOVED, task_id="t-should-not-stick", attempts=9)
    assert ledger.get(job_id) == before
    assert ledger.events_of(job_id) == events_before
    assert not ledger.db.conn.in_transaction


def test_a_transition_of_an_unknown_job_raises_key_error(ledger: Ledger):
    with pytest.raises(KeyError):
        ledger.commit(42, E.SUBMIT)


def test_an_outer_atomic_block_rolls_back_its_transitions_together(ledger: Ledger):
    job_id = ledger.add_job(fields())
    with pytest.raises(RuntimeError), ledger.atomic():
        ledger.commit(job_id, E.SUBMIT)
        ledger.commit(job_id, E.CREATED, task_id="t-1")
        raise RuntimeError("crash before the block ends")
    row = ledger.get(job_id)
    assert row is not None
    assert (row["state"], row["requests"]) == ("waiting", 0)
    assert [e["event"] for e in ledger.events_of(job_id)] == ["recorded"]


@pytest.mark.parametrize(
    ("events", "end"),
    [
        ((E.SUBMIT, E.CREATED, E.POLL_DONE, E.WRITTEN, E.MOVED), "done"),
        ((E.FAIL, E.MOVED), "failed"),
        ((E.VANISHED,), "gone"),
    ],
)
def test_finished_at_is_set_when_a_job_ends(ledger: Ledger, clock: FakeClock, events, end):
    job_id = ledger.add_job(fields())
    for event in events[:-1]:
        clock.now += 1
        ledger.commit(job_id, event)
        row = ledger.get(job_id)
        assert row is not None and row["finished_at"] is None
    clock.now += 1
    ledger.commit(job_id, events[-1])
    row = ledger.get(job_id)
    assert row is not None
    assert (row["state"], row["finished_at"]) == (end, clock.now)


def test_the_event_history_reads_as_the_state_chain(ledger: Ledger):
    job_id = ledger.add_job(fields())
    walk(ledger, job_id, E.SUBMIT, E.CREATED, E.POLL_PENDING, E.POLL_DONE)
    ledger.note(job_id, "duplicate", {"path": "/in/x"})
    assert states_sequence(ledger.events_of(job_id)) == [
        "waiting",
        "submitting",
        "processing",
        "processing",
        "downloading",
    ]
    assert ledger.events_of(job_id)[-1]["event"] == "duplicate"


def test_a_rename_is_a_transition_that_keeps_the_state(ledger: Ledger, clock: FakeClock):
    job_id = ledger.add_job(fields())
    clock.now += 5
    ledger.commit(job_id, E.RENAMED, {"from": "/in/a", "to": "/in/b"}, path="/in/b")
    row = ledger.get(job_id)
    assert row is not None
    assert (row["state"], row["path"], row["updated_at"]) == ("waiting", "/in/b", clock.now)
    event = ledger.events_of(job_id)[-1]
    assert (event["event"], event["from_state"], event["to_state"]) == (
        "renamed",
        "waiting",
        "waiting",
    )
    assert json.loads(event["detail"]) == {"from": "/in/a", "to": "/in/b"}


def test_a_note_writes_an_event_and_changes_nothing_else(ledger: Ledger):
    job_id = ledger.add_job(fields())
    before = ledger.get(job_id)
    ledger.note(job_id, "duplicate", {"path": "/in/x"})
    assert ledger.get(job_id) == before
    assert ledger.events_of(job_id)[-1]["event"] == "duplicate"


def test_requests_are_counted_by_the_events_that_record_answers(ledger: Ledger):
    job_id = ledger.add_job(fields())
    walk(ledger, job_id, E.SUBMIT, E.CREATED, E.POLL_PENDING, E.POLL_ERROR, E.POLL_DONE)
    row = ledger.get(job_id)
    assert row is not None and row["requests"] == 4 and row["polls"] == 2


# -- queries ----------------------------------------------------------------------------


def test_oldest_waiting_respects_backoff_busy_jobs_folders_and_age(ledger: Ledger):
    now = 1_000.0
    later = ledger.add_job(fields("1.png", due=now + 10))
    plain = ledger.add_job(fields("2.png", due=None))
    past = ledger.add_job(fields("3.png", due=now - 1))
    submitted = ledger.add_job(fields("0.png"))
    ledger.commit(submitted, E.SUBMIT)
    assert ids(ledger.oldest_waiting("photos", now)) == [plain]
    assert ids(ledger.oldest_waiting("photos", now + 10)) == [later]
    assert ids(ledger.oldest_waiting("photos", now, exclude=[plain])) == [past]
    assert ids(ledger.oldest_waiting("photos", now, only=[past, later])) == [past]
    assert ledger.oldest_waiting("other", now) == []


def test_next_due_is_the_earliest_due_time_still_to_come(ledger: Ledger):
    assert ledger.next_due([S.WAITING], 0.0) is None
    ledger.add_job(fields("1.png", due=50.0))
    ledger.add_job(fields("2.png", due=20.0))
    ledger.add_job(fields("3.png", due=None))  # due at once: not a time to wait for
    assert ledger.next_due([S.WAITING], 0.0) == 20.0
    assert ledger.next_due([S.WAITING], 30.0) == 50.0
    assert ledger.next_due([S.WAITING], 60.0) is None
    assert ledger.next_due([S.PROCESSING], 0.0) is None


def test_due_lists_the_jobs_whose_step_is_due_most_overdue_first(ledger: Ledger):
    a = ledger.add_job(fields("1.png", due=30.0), state=S.FAILING)
    b = ledger.add_job(fields("2.png", due=10.0), state=S.FAILING)
    ledger.add_job(fields("3.png", due=99.0), state=S.FAILING)
    ledger.add_job(fields("4.png", due=5.0))  # waiting: not asked for
    assert ids(ledger.due([S.FAILING], 40.0)) == [b, a]
    assert ids(ledger.due([S.FAILING], 40.0, exclude=[b])) == [a]
    assert ids(ledger.due([S.FAILING], 40.0, only=[a])) == [a]


def test_the_ledgers_monotonic_time_goes_on_across_a_reboot(tmp_path: Path):
    """Deadlines are monotonic; a reboot restarts the system's monotonic clock, so the
    ledger shifts it to go on from where the last run left off."""
    clock = SimClock(mono=50_000.0)
    path = tmp_path / "watchd.db"
    first = Ledger.open(path, clock)
    job_id = first.add_job(fields(due=first.clock.mono() + 100))  # a backoff: 100 s left
    first.touch_clock()
    first.close()
    clock.reboot(downtime=3600)  # the system clock restarts near zero
    again = Ledger.open(path, clock)
    row = again.get(job_id)
    assert row is not None
    assert 99.0 <= row["due"] - again.clock.mono() <= 100.0  # still 100 s to go
    clock.step_wall(-7200)  # and a wall step changes nothing
    assert 99.0 <= row["due"] - again.clock.mono() <= 100.0
    again.close()


def test_a_restart_in_the_same_boot_keeps_the_same_time(tmp_path: Path):
    clock = SimClock(mono=500.0)
    path = tmp_path / "watchd.db"
    first = Ledger.open(path, clock)
    mono = first.clock.mono()
    first.close()
    clock.advance(10)
    again = Ledger.open(path, clock)
    assert again.clock.mono() == mono + 10
    again.close()


def test_a_damaged_ledger_file_is_one_clear_error(tmp_path: Path):
    from watchd.ledger import LedgerError

    path = tmp_path / "watchd.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError) as info:
        Ledger.open(path)
    message = str(info.value)
    assert str(path) in message and "move the file" in message and "\n" not in message


def test_count_in_flight_counts_submitting_processing_and_downloading(ledger: Ledger):
    chains = {
        "waiting": (),
        "submitting": (E.SUBMIT,),
        "processing": (E.SUBMIT, E.CREATED),
        "downloading": (E.SUBMIT, E.SYNC_DONE),
        "finishing": (E.SUBMIT, E.SYNC_DONE, E.WRITTEN),
        "failing": (E.FAIL,),
        "done": (E.SUBMIT, E.SYNC_DONE, E.WRITTEN, E.MOVED),
        "gone": (E.VANISHED,),
    }
    for name, chain in chains.items():
        walk(ledger, ledger.add_job(fields(name)), *chain)
    assert ledger.count_in_flight() == 3


def test_counts_are_per_folder_and_state(ledger: Ledger):
    a1 = ledger.add_job(fields("1.png", folder="a"))
    ledger.add_job(fields("2.png", folder="a"))
    ledger.add_job(fields("3.png", folder="b"))
    ledger.commit(a1, E.SUBMIT)
    assert ledger.counts() == {"a": {"waiting": 1, "submitting": 1}, "b": {"waiting": 1}}


def test_durations_are_the_learned_task_times_newest_first(ledger: Ledger):
    def task(name, folder, processed, seconds):
        ledger.add_job(fields(name, folder=folder, processed_at=processed, task_seconds=seconds))

    task("1.png", "a", 112.0, 12.0)
    task("2.png", "b", 130.0, 30.0)
    task("3.png", "a", 205.0, 5.0)
    task("4.png", "a", None, None)  # still processing
    task("5.png", "a", 400.0, None)  # finished at the first poll: nothing was learned
    assert ledger.durations() == [("a", 5.0), ("b", 30.0), ("a", 12.0)]
    assert ledger.durations(limit=1) == [("a", 5.0)]


def test_active_at_path_finds_only_unfinished_jobs_of_that_folder(ledger: Ledger):
    job_id = ledger.add_job(fields("a.png"))
    path = "/in/photos/a.png"
    row = ledger.active_at_path("photos", path)
    assert row is not None and row["id"] == job_id
    assert ledger.active_at_path("other", path) is None
    assert ledger.active_at_path("photos", "/in/photos/b.png") is None
    ledger.commit(job_id, E.FAIL)
    # failing: the original is still in the inbox, waiting for its move
    row = ledger.active_at_path("photos", path)
    assert row is not None and row["id"] == job_id
    ledger.commit(job_id, E.MOVED)
    assert ledger.active_at_path("photos", path) is None


def test_in_state_and_jobs_filter_and_limit(ledger: Ledger, clock: FakeClock):
    a = ledger.add_job(fields("1.png", folder="a"))
    b = ledger.add_job(fields("2.png", folder="b"))
    clock.now += 100
    c = ledger.add_job(fields("3.png", folder="a"))
    ledger.commit(c, E.SUBMIT)
    assert [r["id"] for r in ledger.in_state(S.WAITING)] == [a, b]
    assert [r["id"] for r in ledger.in_state(S.WAITING, S.SUBMITTING, folder="a")] == [a, c]
    assert [r["id"] for r in ledger.in_state(S.WAITING, limit=1)] == [a]
    assert [r["id"] for r in ledger.jobs()] == [c, b, a]  # newest first
    assert [r["id"] for r in ledger.jobs(state="waiting", folder="a")] == [a]
    assert [r["id"] for r in ledger.jobs(since=clock.now)] == [c]
    assert [r["id"] for r in ledger.jobs(limit=2)] == [c, b]


# -- meta -------------------------------------------------------------------------------


def test_meta_values_are_set_replaced_and_deleted(ledger: Ledger):
    assert ledger.get_meta("paused") is None
    ledger.set_meta("paused", "HTTP 401")
    assert ledger.get_meta("paused") == "HTTP 401"
    ledger.set_meta("paused", "HTTP 401 again")
    assert ledger.get_meta("paused") == "HTTP 401 again"
    ledger.set_meta("paused", None)
    assert ledger.get_meta("paused") is None
    ledger.set_meta("never-set", None)  # deleting a missing key is fine


def test_a_folder_pause_lives_in_the_ledger_and_is_lifted_by_resume(tmp_path) -> None:
    path = tmp_path / "watchd.db"
    ledger = Ledger.open(path)
    ledger.pause_folder("banners", "checking the new mask", by="cli")
    ledger.close()
    again = Ledger.open(path)  # a restart keeps it
    paused = again.paused_folders()
    assert list(paused) == ["banners"]
    assert paused["banners"]["reason"] == "checking the new mask"
    assert paused["banners"]["by"] == "cli"
    assert again.resume_folder("banners") is True
    assert again.paused_folders() == {}
    assert again.resume_folder("banners") is False
