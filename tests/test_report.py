"""`--since` parsing and the per-job view that `watchd jobs` prints."""

from datetime import UTC, datetime

import pytest
from sqlite_utils import Database

from watchd.clock import FakeClock
from watchd.ledger import Ledger, job_key
from watchd.lifecycle import Event
from watchd.report import job_view, parse_since

NOW = 1_800_000_000.0
NOW_ISO = "2027-01-15T08:00:00Z"  # NOW in UTC


@pytest.mark.parametrize(
    ("text", "seconds_ago"),
    [
        ("30m", 30 * 60),
        ("2h", 2 * 3600),
        ("3d", 3 * 86400),
        ("90s", 90),
        ("1w", 7 * 86400),
        ("1.5h", 5400),
        (" 2 h ", 7200),
        ("0m", 0),
    ],
)
def test_a_duration_means_that_long_ago(text, seconds_ago):
    assert parse_since(text, now=NOW) == NOW - seconds_ago


def test_an_iso_time_with_an_offset_is_that_instant():
    expected = datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp()
    assert parse_since("2026-11-26T10:00:00+00:00", now=NOW) == expected
    assert parse_since("2026-11-26T12:00:00+02:00", now=NOW) == expected


def test_an_iso_date_is_local_midnight():
    assert parse_since("2026-11-26", now=NOW) == datetime(2026, 11, 26).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "", "5x", "-3d", "3 days", "2026-13-01", "h"])
def test_bad_input_is_refused_with_a_clear_message(text):
    with pytest.raises(ValueError) as info:
        parse_since(text, now=NOW)
    message = str(info.value)
    assert "--since" in message
    assert "30m" in message and "ISO date" in message
    assert repr(text) in message


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(Database(memory=True), clock=FakeClock(wall=NOW))


def add(ledger: Ledger, name: str = "a.png") -> int:
    return ledger.add_job(
        {"folder": "photos", "key": job_key("photos", name), "path": f"/in/{name}", "name": name}
    )


def test_job_view_shows_a_ledger_row(ledger: Ledger):
    job_id = add(ledger)
    ledger.commit(job_id, Event.SUBMIT)
    ledger.commit(job_id, Event.CREATED, task_id="t-1")
    row = ledger.get(job_id)
    assert row is not None
    view = job_view(row, now=NOW + 90.04)
    assert view == {
        "id": job_id,
        "folder": "photos",
        "file": "a.png",
        "path": "/in/a.png",
        "state": "processing",
        "attempts": 1,
        "requests": 1,
        "task_id": "t-1",
        "age": 90.0,
        "created_at": NOW_ISO,
        "updated_at": NOW_ISO,
        "error": None,
        "last_error": None,
    }


@pytest.mark.parametrize(
    ("events", "error"),
    [
        ((Event.FAIL,), "too large"),
        ((Event.FAIL, Event.MOVED), "too large"),
        ((Event.SUBMIT, Event.RETRY), None),  # a retry's reason is history, not the error
    ],
)
def test_the_error_shows_only_for_failing_and_failed_jobs(ledger: Ledger, events, error):
    job_id = add(ledger)
    for event in events:
        reason = {"error_reason": "too large"} if event in (Event.FAIL, Event.RETRY) else {}
        ledger.commit(job_id, event, **reason)
    row = ledger.get(job_id)
    assert row is not None
    view = job_view(row, now=NOW)
    assert view["error"] == error
    assert view["last_error"] == "too large"


def test_a_row_without_a_creation_time_has_age_zero():
    row = {
        "id": 1,
        "folder": "f",
        "name": "a",
        "path": "/a",
        "state": "waiting",
        "attempts": 0,
        "requests": 0,
        "task_id": None,
        "created_at": None,
        "updated_at": None,
        "error_reason": None,
    }
    view = job_view(row, now=NOW)
    assert (view["age"], view["created_at"], view["updated_at"]) == (0, None, None)
