"""Spend accounting and caps: pure over numbers and over ledger events, on a fake clock."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlite_utils import Database

from watchd.clock import FakeClock
from watchd.config import ConfigError, load_config
from watchd.ledger import Ledger
from watchd.lifecycle import Event
from watchd.spend import (
    SEED_SQL,
    Block,
    Caps,
    Counts,
    SpendCounter,
    cap_block,
    period,
    read_tally,
    report,
)

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")


def at(text: str, tz: ZoneInfo = BERLIN) -> float:
    """Epoch seconds of a local time like '2026-03-29 12:00'."""
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def local(ts: float, tz: ZoneInfo = BERLIN) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="minutes")


# -- pure: caps over plain numbers --------------------------------------------------------


def test_the_cap_is_reached_exactly_at_its_limit() -> None:
    caps, now = Caps(day=5), at("2026-06-10 15:00")
    assert cap_block(caps, Counts(day=4, month=4), now, BERLIN) is None
    block = cap_block(caps, Counts(day=5, month=5), now, BERLIN)
    assert block == Block("api.max_creates_per_day", 5, 5, at("2026-06-11 00:00"))
    assert "until 2026-06-11T00:00+02:00" in block.text(BERLIN)


def test_no_cap_means_no_block_however_much_was_spent() -> None:
    assert cap_block(Caps(), Counts(day=10**6, month=10**7), 0.0, UTC) is None


def test_a_cap_of_zero_stops_every_create() -> None:
    assert cap_block(Caps(day=0), Counts(), at("2026-06-10 15:00"), BERLIN) is not None


def test_a_reached_month_cap_says_until_the_first_of_next_month() -> None:
    block = cap_block(
        Caps(day=100, month=50), Counts(day=100, month=50), at("2026-06-10 15:00"), BERLIN
    )
    assert block is not None and block.cap == "api.max_creates_per_month"
    assert local(block.until) == "2026-07-01T00:00+02:00"


def test_a_folder_cap_holds_only_its_own_folder() -> None:
    caps = Caps(folder_day={"products": 3})
    counts = Counts(day=3, month=3, folder_day={"products": 3})
    now = at("2026-06-10 15:00")
    block = cap_block(caps, counts, now, BERLIN, folder="products")
    assert block is not None and block.folder == "products"
    assert block.cap == "folders.products.max_creates_per_day"
    assert cap_block(caps, counts, now, BERLIN, folder="banners") is None


def test_an_account_cap_holds_every_folder() -> None:
    block = cap_block(Caps(day=3), Counts(day=3, month=3), at("2026-06-10 15:00"), BERLIN, "x")
    assert block is not None and block.folder is None


def test_a_reload_that_raises_the_cap_lifts_the_block_at_once() -> None:
    counts, now = Counts(day=5, month=5), at("2026-06-10 15:00")
    assert cap_block(Caps(day=5), counts, now, BERLIN) is not None
    assert cap_block(Caps(day=8), counts, now, BERLIN) is None
    assert cap_block(Caps(day=None), counts, now, BERLIN) is None


def test_a_day_that_loses_an_hour_to_dst_still_ends_at_local_midnight() -> None:
    p = period(at("2026-03-29 12:00"), BERLIN)  # clocks go 02:00 -> 03:00 that night
    assert p.day_end - p.day_start == 23 * 3600
    assert local(p.day_end) == "2026-03-30T00:00+02:00"
    q = period(at("2026-10-25 12:00"), BERLIN)  # 03:00 -> 02:00
    assert q.day_end - q.day_start == 25 * 3600


def test_a_zone_that_skips_midnight_starts_its_day_when_the_clock_jumps() -> None:
    havana = ZoneInfo("America/Havana")  # 2026-03-08: 00:00 -> 01:00
    p = period(at("2026-03-08 12:00", havana), havana)
    assert local(p.day_start, havana) == "2026-03-08T01:00-04:00"
    assert p.day_end - p.day_start == 23 * 3600


def test_month_turns_at_local_midnight_not_utc() -> None:
    p = period(at("2026-03-31 23:30"), BERLIN)  # 21:30 UTC: still March here
    assert p.month == "2026-03"
    assert local(p.month_end) == "2026-04-01T00:00+02:00"
    assert period(at("2026-04-01 00:30"), BERLIN).month == "2026-04"  # 22:30 UTC on the 31st


# -- the counter over ledger events ------------------------------------------------------


def _ledger(clock: FakeClock, path: Path | None = None) -> Ledger:
    if path is None:
        return Ledger(Database(memory=True), clock=clock)
    ledger = Ledger.open(path, clock=clock)
    return ledger


def _job(ledger: Ledger, n: int, folder: str = "f") -> int:
    return ledger.add_job(
        {"folder": folder, "key": f"{folder}:{n}:", "path": f"/in/{n}.png", "name": f"{n}.png"}
    )


def _submit(ledger: Ledger, job: int, cause: str | None = None, attempt: int = 1) -> None:
    ledger.commit(job, Event.SUBMIT, {"attempt": attempt, "cause": cause})


def _counter(ledger: Ledger, clock: FakeClock, caps: Caps, tz: ZoneInfo = BERLIN) -> SpendCounter:
    counter = SpendCounter(ledger.db.conn, caps, tz, clock.wall())
    ledger.observers.add(counter)
    return counter


def _create_until_blocked(ledger: Ledger, counter: SpendCounter, clock: FakeClock, jobs: list[int]):
    """What a runtime does: ask inside the transaction that commits the submit."""
    sent = []
    for job in jobs:
        with ledger.atomic():
            if counter.block("f", clock.wall()) is not None:
                break
            _submit(ledger, job)
        sent.append(job)
    return sent


def test_creates_on_the_wire_count_so_the_cap_is_never_crossed() -> None:
    clock = FakeClock(wall=at("2026-06-10 15:00"))
    ledger = _ledger(clock)
    counter = _counter(ledger, clock, Caps(day=5))
    jobs = [_job(ledger, n) for n in range(8)]
    # Submits with no answer yet: each may have been charged.
    sent = _create_until_blocked(ledger, counter, clock, jobs)
    assert len(sent) == 5
    assert counter.block("f", clock.wall()).spent == 5
    # Answers come back, one lost: still 5 spent, still blocked.
    ledger.commit(sent[0], Event.CREATED, {"task_id": "t0"})
    ledger.commit(sent[1], Event.CREATE_LOST, {"reason": "connection reset"})
    assert counter.block("f", clock.wall()) is not None
    # An ambiguous resubmit is a create of its own: it cannot pass the cap either.
    assert _create_until_blocked(ledger, counter, clock, [sent[1]]) == []


def test_a_create_that_never_left_gives_its_unit_back() -> None:
    clock = FakeClock(wall=at("2026-06-10 15:00"))
    ledger = _ledger(clock)
    counter = _counter(ledger, clock, Caps(day=2))
    a, b, c = (_job(ledger, n) for n in range(3))
    _submit(ledger, a)
    _submit(ledger, b)
    assert counter.block("f", clock.wall()) is not None
    ledger.commit(b, Event.UNSENT, {"reason": "connect refused"})
    assert counter.block("f", clock.wall()) is None
    assert _create_until_blocked(ledger, counter, clock, [c, b]) == [c]


def test_the_day_turns_at_local_midnight_and_creates_resume() -> None:
    clock = FakeClock(wall=at("2026-03-28 23:59"))  # the night DST starts
    ledger = _ledger(clock)
    counter = _counter(ledger, clock, Caps(day=2))
    jobs = [_job(ledger, n) for n in range(4)]
    assert _create_until_blocked(ledger, counter, clock, jobs) == jobs[:2]
    block = counter.block("f", clock.wall())
    assert local(block.until) == "2026-03-29T00:00+01:00"
    clock.advance(block.until - clock.wall() - 0.001)
    assert counter.block("f", clock.wall()) is not None  # a millisecond before midnight
    clock.advance(0.002)
    assert _create_until_blocked(ledger, counter, clock, jobs[2:]) == jobs[2:]
    # The 23-hour day that follows ends at its own local midnight.
    assert local(counter.block("f", clock.wall()).until) == "2026-03-30T00:00+02:00"


def test_a_create_refused_after_midnight_gives_back_the_day_it_was_sent() -> None:
    clock = FakeClock(wall=at("2026-06-10 23:59:59"))
    ledger = _ledger(clock)
    counter = _counter(ledger, clock, Caps(day=1))
    a, b = _job(ledger, 1), _job(ledger, 2)
    _submit(ledger, a)
    clock.advance(2)  # 00:00:01: the new day
    _submit(ledger, b)
    ledger.commit(a, Event.UNSENT, {"reason": "connect refused"})
    # Yesterday's refusal frees yesterday, not today: today's one create still holds the cap.
    assert counter.block("f", clock.wall()) is not None
    assert counter.counts(clock.wall()).day == 1


def test_the_month_cap_turns_on_the_first_in_the_given_zone() -> None:
    clock = FakeClock(wall=at("2026-03-31 23:00"))
    ledger = _ledger(clock)
    counter = _counter(ledger, clock, Caps(month=3))
    jobs = [_job(ledger, n) for n in range(5)]
    assert len(_create_until_blocked(ledger, counter, clock, jobs)) == 3
    assert local(counter.block("f", clock.wall()).until) == "2026-04-01T00:00+02:00"
    clock.advance(3600)
    assert counter.block("f", clock.wall()) is None


def test_a_restart_at_the_cap_stays_at_the_cap(tmp_path: Path) -> None:
    clock = FakeClock(wall=at("2026-06-10 15:00"))
    ledger = _ledger(clock, tmp_path / "watchd.db")
    counter = _counter(ledger, clock, Caps(day=3))
    jobs = [_job(ledger, n) for n in range(5)]
    assert len(_create_until_blocked(ledger, counter, clock, jobs)) == 3
    ledger.close()
    clock.advance(60)
    again = _ledger(clock, tmp_path / "watchd.db")
    fresh = _counter(again, clock, Caps(day=3))  # seeded from the ledger alone
    assert fresh.block("f", clock.wall()) == Block(
        "api.max_creates_per_day", 3, 3, at("2026-06-11 00:00")
    )


def test_a_reload_that_raises_the_cap_lets_the_next_create_go() -> None:
    clock = FakeClock(wall=at("2026-06-10 15:00"))
    ledger = _ledger(clock)
    counter = _counter(ledger, clock, Caps(day=2))
    jobs = [_job(ledger, n) for n in range(5)]
    assert len(_create_until_blocked(ledger, counter, clock, jobs)) == 2
    counter.set_caps(Caps(day=4), BERLIN, clock.wall())
    assert len(_create_until_blocked(ledger, counter, clock, jobs[2:])) == 2


def test_a_new_time_zone_on_reload_recounts_the_day() -> None:
    clock = FakeClock(wall=at("2026-06-10 01:00"))  # 23:00 UTC the day before
    ledger = _ledger(clock)
    counter = _counter(ledger, clock, Caps(day=1))
    _submit(ledger, _job(ledger, 1))
    assert counter.block("f", clock.wall()) is not None
    clock.advance(3600)  # 00:00 UTC: a new day in UTC, not in Berlin
    counter.set_caps(Caps(day=1), UTC, clock.wall())
    assert counter.block("f", clock.wall()) is None


def test_folder_caps_count_their_own_folder() -> None:
    clock = FakeClock(wall=at("2026-06-10 15:00"))
    ledger = _ledger(clock)
    counter = _counter(ledger, clock, Caps(folder_day={"a": 1}))
    _submit(ledger, _job(ledger, 1, "a"))
    _submit(ledger, _job(ledger, 2, "b"))
    assert counter.block("a", clock.wall()).cap == "folders.a.max_creates_per_day"
    assert counter.block("b", clock.wall()) is None


# -- accounting ----------------------------------------------------------------------------


def test_accepted_and_extra_creates_by_cause_per_folder_today_and_this_month() -> None:
    clock = FakeClock(wall=at("2026-06-09 10:00"))
    ledger = _ledger(clock)
    yesterday = _job(ledger, 0, "a")
    _submit(ledger, yesterday)
    ledger.commit(yesterday, Event.CREATED, {"task_id": "t"})
    clock.advance(86400)
    a, b, c = _job(ledger, 1, "a"), _job(ledger, 2, "b"), _job(ledger, 3, "b")
    _submit(ledger, a)
    ledger.commit(a, Event.CREATE_LOST, {"reason": "lost"})
    _submit(ledger, a, cause="ambiguous", attempt=2)
    ledger.commit(a, Event.CREATED, {"task_id": "t1"})
    _submit(ledger, b)
    ledger.commit(b, Event.SYNC_DONE, {"task_id": "t2"})
    _submit(ledger, c)
    ledger.commit(c, Event.UNSENT, {"reason": "401"})
    view = read_tally(ledger.db.conn, clock.wall(), BERLIN).view(clock.wall())
    today = view["today"]
    assert today["period"] == "2026-06-10"
    assert (today["accepted"], today["spent"]) == (2, 3)  # the lost create counts as spent
    assert today["extra"] == {"ambiguous": 1}
    assert today["folders"]["a"] == {"accepted": 1, "spent": 2, "extra": {"ambiguous": 1}}
    assert today["folders"]["b"] == {"accepted": 1, "spent": 1, "extra": {}}
    month = view["month"]
    assert (month["period"], month["accepted"], month["spent"]) == ("2026-06", 3, 4)


def test_events_from_before_causes_were_recorded_count_a_second_attempt_as_extra() -> None:
    clock = FakeClock(wall=at("2026-06-10 10:00"))
    ledger = _ledger(clock)
    job = _job(ledger, 1)
    ledger.commit(job, Event.SUBMIT, {"attempt": 2})
    ledger.commit(job, Event.CREATED, {"task_id": "t"})
    assert read_tally(ledger.db.conn, clock.wall(), BERLIN).view(clock.wall())["today"][
        "extra"
    ] == {"earlier attempt": 1}


def test_the_seed_query_walks_the_events_time_index() -> None:
    ledger = Ledger(Database(memory=True))
    plan = ledger.db.conn.execute(
        "explain query plan " + SEED_SQL, [0.0, "submit", "unsent", "created", "sync_done"]
    ).fetchall()
    steps = " | ".join(row[-1] for row in plan)
    assert "SEARCH e USING INDEX idx_events_at (at>?)" in steps
    assert "SEARCH j USING INTEGER PRIMARY KEY (rowid=?)" in steps
    assert "SCAN" not in steps.replace("SCAN CONSTANT ROW", "")


def test_asking_the_counter_costs_no_query() -> None:
    clock = FakeClock(wall=at("2026-06-10 15:00"))
    ledger = _ledger(clock)
    counter = _counter(ledger, clock, Caps(day=5))
    statements: list[str] = []
    ledger.db.conn.set_trace_callback(statements.append)
    counter.block("f", clock.wall())
    assert statements == []


def test_the_counter_reads_only_this_month_from_the_ledger(tmp_path: Path) -> None:
    """A year of history is not read at start: only the month (and a day before it)."""
    clock = FakeClock(wall=at("2025-06-10 15:00"))
    ledger = _ledger(clock)
    job = _job(ledger, 1)
    _submit(ledger, job)
    ledger.commit(job, Event.CREATED, {"task_id": "t"})
    clock.advance(365 * 86400)
    statements: list[str] = []
    ledger.db.conn.set_trace_callback(statements.append)
    counter = SpendCounter(ledger.db.conn, Caps(day=1), BERLIN, clock.wall())
    assert counter.counts(clock.wall()) == Counts(0, 0, {})
    assert len(statements) == 1


# -- config and the status view ----------------------------------------------------------


def _config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / "watchd.yaml"
    path.write_text(text)
    return path


FOLDERS = """
defaults:
  max_creates_per_day: 7
presets:
  p: {max_creates_per_day: 3}
folders:
  - {name: a, inbox: in, outbox: out}
  - {name: b, inbox: in2, outbox: out2, preset: p}
  - {name: c, inbox: in3, outbox: out3, max_creates_per_day: null}
"""


def test_caps_load_from_api_defaults_presets_and_folders(tmp_path: Path) -> None:
    cfg = load_config(
        _config(
            tmp_path,
            "api: {max_creates_per_day: 500, max_creates_per_month: 9000, timezone: Asia/Tokyo}"
            + FOLDERS,
        ),
        env={},
    )
    caps = Caps.from_config(cfg)
    assert caps == Caps(day=500, month=9000, folder_day={"a": 7, "b": 3})
    assert cfg.api.timezone == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("api", "where", "words"),
    [
        ("{max_creates_per_day: -1}", "api.max_creates_per_day", "must be ≥ 0"),
        ("{max_creates_per_day: 2.5}", "api.max_creates_per_day", "whole number"),
        ("{max_creates_per_month: true}", "api.max_creates_per_month", "whole number"),
        ("{max_creates_per_month: '10'}", "api.max_creates_per_month", "whole number"),
        ("{timezone: Mars/Olympus}", "api.timezone", "unknown time zone"),
        ("{timezone: ../../etc/passwd}", "api.timezone", "unknown time zone"),
        ("{timezone: 5}", "api.timezone", "IANA"),
    ],
)
def test_bad_caps_and_zones_are_refused_at_their_key(
    tmp_path: Path, api: str, where: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, f"api: {api}" + FOLDERS), env={})
    assert [i.path for i in err.value.issues] == [where]
    assert words in err.value.issues[0].message


def test_a_bad_folder_cap_in_a_preset_is_reported_there(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(
            _config(
                tmp_path, FOLDERS.replace("{max_creates_per_day: 3}", "{max_creates_per_day: x}")
            ),
            env={},
        )
    assert "presets.p.max_creates_per_day" in {i.path for i in err.value.issues}


def test_status_view_names_the_cap_and_until_when(tmp_path: Path) -> None:
    cfg = load_config(
        _config(tmp_path, "api: {max_creates_per_day: 2, timezone: Europe/Berlin}" + FOLDERS),
        env={},
    )
    clock = FakeClock(wall=at("2026-06-10 15:00"))
    ledger = _ledger(clock)
    for n in range(2):
        _submit(ledger, _job(ledger, n, "a"))
    data = report(cfg, ledger.db.conn, clock.wall())
    assert data["caps"]["api.max_creates_per_day"] == {"limit": 2, "spent": 2, "left": 0}
    assert data["caps"]["folders.a.max_creates_per_day"] == {"limit": 7, "spent": 2, "left": 5}
    assert data["blocked"] == [
        {
            "cap": "api.max_creates_per_day",
            "folder": None,
            "limit": 2,
            "spent": 2,
            "until": "2026-06-11T00:00+02:00",
        }
    ]
    assert report(cfg, None, clock.wall())["blocked"] == []


def test_status_view_reads_a_read_only_ledger(tmp_path: Path) -> None:
    clock = FakeClock(wall=at("2026-06-10 15:00"))
    ledger = _ledger(clock, tmp_path / "watchd.db")
    _submit(ledger, _job(ledger, 1))
    conn = sqlite3.connect(f"file:{tmp_path / 'watchd.db'}?mode=ro", uri=True)
    assert read_tally(conn, clock.wall(), BERLIN).counts(clock.wall()).day == 1
    ledger.close()


def test_watchd_status_names_the_cap_and_until_when(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import structlog

    from watchd.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    path = _config(tmp_path, "api: {max_creates_per_day: 1, timezone: UTC}\n" + FOLDERS)
    path.write_text(path.read_text() + f"state_dir: {tmp_path / 'state'}\n")
    ledger = Ledger.open(tmp_path / "state" / "watchd.db")  # the real clock, as status reads
    _submit(ledger, _job(ledger, 1, "a"))
    ledger.close()
    saved = structlog.get_config()
    try:
        for args in (["status"], ["status", "--json"]):
            main([*args, "-c", str(path)])
        out = capsys.readouterr().out
    finally:
        structlog.configure(**saved)
    text, _, js = out.partition("{\n")
    assert "CAP REACHED: api.max_creates_per_day (1 of 1): no create leaves until" in text
    assert "today" in text and "0 creates accepted (1 spent" in text
    data = json.loads("{\n" + js)
    assert data["spend"]["blocked"][0]["cap"] == "api.max_creates_per_day"
    assert data["spend"]["today"]["spent"] == 1
