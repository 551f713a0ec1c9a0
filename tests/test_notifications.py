"""Notifications: real Apprise to a local HTTP receiver; digest, stuck and daily timing driven
through `tick()` with plain numbers (no sleeps); nothing blocks the engine or leaks a secret."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
import yaml
from sqlite_utils import Database
from structlog.testing import capture_logs

from watchd import logs
from watchd.cli import main
from watchd.clock import FakeClock
from watchd.config import ConfigError, describe, load_config
from watchd.ledger import Ledger
from watchd.lifecycle import Event
from watchd.notifications import (
    LISTED,
    LedgerView,
    Notifier,
    NotifyTarget,
    next_at,
    send_test,
)
from watchd.observe import Transition
from watchd.spend import Block

BERLIN = ZoneInfo("Europe/Berlin")
KEY = "sk-notify-test-KEY-4242"
TOKEN = "tok3nS3cretPath99"


class Receiver:
    """A JSON webhook on 127.0.0.1: records each POST; answers `statuses` in turn (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict[str, Any]] = []
        self.hits = 0
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.cond:
                    receiver.hits += 1
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status == 200:
                        receiver.bodies.append(json.loads(data))
                    receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_port}/hook/{TOKEN}"

    def wait_hits(self, n: int, timeout: float = 20) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.hits >= n, timeout), self.hits

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def target(url: str, **kw: Any) -> NotifyTarget:
    return NotifyTarget(url=url, **kw)


class View:
    def __init__(self, pending: dict[str, int] | None = None) -> None:
        self.pending_now = pending or {}
        self.asked: list[Any] = []

    def pending(self) -> dict[str, int]:
        self.asked.append("pending")
        return self.pending_now

    def day_summary(self, day: date) -> dict[str, Any]:
        self.asked.append(day)
        return {"products": {"done": 12, "failed": 1, "creates": 13, "extra": {"ambiguous": 1}}}


class Recorder:
    """A sender that records; `fail` makes it answer with an error."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.fail = fail

    def __call__(self, url: str, title: str, body: str) -> str | None:
        self.sent.append((url, title, body))
        if self.fail:
            self.fail -= 1
            return f"HTTP 500 from {url}"
        return None


def failed(n: int, folder: str = "products", reason: str = "too small") -> Transition:
    return Transition(
        job_id=n,
        folder=folder,
        name=f"file{n:03d}.jpg",
        event="moved",
        src="failing",
        dst="failed",
        at=0.0,
        job={"error_reason": reason},
    )


def done(n: int) -> Transition:
    return Transition(n, "products", f"f{n}.jpg", "moved", "finishing", "done", 0.0)


def notifier(send: Any, *targets: NotifyTarget, **kw: Any) -> Notifier:
    return Notifier(list(targets), BERLIN, send=send, retry_delays=(0, 0), **kw).start()


def sent_by(n: Notifier, rec: Recorder) -> list[tuple[str, str, str]]:
    assert n.wait_idle(20)
    return rec.sent


# -- real Apprise over a real socket -----------------------------------------------------


def test_failures_reach_a_json_webhook_through_apprise(receiver: Receiver) -> None:
    n = Notifier([target(receiver.url, on=["failed"])], BERLIN).start()
    ledger = Ledger(Database(memory=True))
    ledger.observers.add(n)
    job = ledger.add_job({"folder": "products", "key": "k", "path": "/in/a.jpg", "name": "a.jpg"})
    ledger.commit(job, Event.FAIL, {"reason": "x"}, error_reason="image is 20×15 px")
    ledger.commit(job, Event.MOVED)
    n.tick(0.0, 0.0, View())
    receiver.wait_hits(1)
    n.stop()
    [body] = receiver.bodies
    assert body["title"] == "watchd: 1 file failed"
    assert body["message"] == "products/a.jpg: image is 20×15 px"


def test_a_target_that_is_down_is_tried_a_bounded_number_of_times_then_logged() -> None:
    down = Receiver(statuses=[500] * 10)
    try:
        n = Notifier([target(down.url)], BERLIN, retry_delays=(0, 0), tries=3).start()
        with capture_logs() as captured:
            n.paused("HTTP 401 from the API")
            assert n.wait_idle(20)
        assert down.hits == 3
        [given_up] = [e for e in captured if e["event"].startswith("notification not delivered")]
        assert given_up["target"] == "notify[0] json://…" and given_up["tries"] == 3
        assert TOKEN not in repr(captured)
        n.stop()
    finally:
        down.close()


def test_a_target_back_after_one_refusal_gets_the_message() -> None:
    flaky = Receiver(statuses=[503])
    try:
        n = Notifier([target(flaky.url)], BERLIN, retry_delays=(0, 0)).start()
        n.paused("HTTP 401")
        assert n.wait_idle(20)
        assert flaky.hits == 2 and len(flaky.bodies) == 1
        n.stop()
    finally:
        flaky.close()


def test_no_message_holds_the_api_key_or_a_target_url(receiver: Receiver) -> None:
    logs.add_secret(KEY)
    n = Notifier([target(receiver.url)], BERLIN).start()
    n(failed(1, reason=f"the API said: bad key {KEY}"))
    n(failed(2).__class__(**{**failed(2).__dict__, "name": f"{KEY}.jpg"}))
    n(failed(3, reason=f"posted to {receiver.url}"))
    n.paused(f"HTTP 401: key {KEY} refused")
    n.tick(0.0, 0.0, View())
    receiver.wait_hits(2)
    n.stop()
    text = json.dumps(receiver.bodies)
    assert KEY not in text and TOKEN not in text
    assert text.count("***") >= 4


def test_notify_test_reports_each_target(receiver: Receiver) -> None:
    down = Receiver(statuses=[500])
    try:
        results = send_test([target(receiver.url), target(down.url)])
    finally:
        down.close()
    assert [(r.label, r.ok) for r in results] == [
        ("notify[0] json://…", True),
        ("notify[1] json://…", False),
    ]
    assert receiver.bodies[0]["title"] == "watchd: test"
    assert TOKEN not in (results[1].error or "")


# -- batching and dedup (a recording sender; times are plain numbers) --------------------


def test_failures_are_batched_one_message_per_digest_listing_twenty() -> None:
    rec = Recorder()
    n = notifier(rec, target("json://h/x", on=["failed"], digest=600))
    for i in range(LISTED + 5):
        n(failed(i))
    n.tick(0.0, 100.0, View())
    [(_, title, body)] = sent_by(n, rec)
    assert title == "watchd: 25 files failed"
    lines = body.splitlines()
    assert len(lines) == LISTED + 1 and lines[-1] == "and 5 more"
    assert lines[0] == "products/file000.jpg: too small"
    n(failed(99))
    n.tick(0.0, 100.0 + 599, View())
    assert len(sent_by(n, rec)) == 1  # inside the digest: held
    n(failed(100))
    n.tick(0.0, 100.0 + 600, View())
    assert sent_by(n, rec)[-1][1] == "watchd: 2 files failed"
    n.tick(0.0, 100.0 + 5000, View())
    assert len(sent_by(n, rec)) == 2  # nothing new: nothing sent
    n.stop()


def test_a_hostile_file_name_stays_one_line_of_the_message() -> None:
    rec = Recorder()
    n = notifier(rec, target("json://h/x"))
    hostile = failed(1).__class__(**{**failed(1).__dict__, "name": "a\nb\x1b[31m\udce9.jpg"})
    n(hostile)
    n.tick(0.0, 0.0, View())
    [(_, _, body)] = sent_by(n, rec)
    assert body == "products/a\\nb\\x1b[31m\\xe9.jpg: too small"
    n.stop()


def test_each_target_has_its_own_digest_and_events() -> None:
    rec = Recorder()
    n = notifier(
        rec,
        target("json://a/x", on=["failed"], digest=60),
        target("json://b/x", on=["paused"]),
    )
    n(failed(1))
    n.paused("401")
    n.tick(0.0, 0.0, View())
    assert sorted((url, title) for url, title, _ in sent_by(n, rec)) == [
        ("json://a/x", "watchd: 1 file failed"),
        ("json://b/x", "watchd: creates paused (all folders)"),
    ]
    n.stop()


def test_a_pause_is_one_message_and_its_end_one_more() -> None:
    rec = Recorder()
    n = notifier(rec, target("json://h/x"))
    for _ in range(5):
        n.paused("HTTP 401 from the API: unauthorized")
    n.resumed("the API key file changed")
    n.resumed("the API key file changed")
    n.resumed("nothing was paused", folder="products")
    titles = [t for _, t, _ in sent_by(n, rec)]
    assert titles == [
        "watchd: creates paused (all folders)",
        "watchd: creates resumed (all folders)",
    ]
    n.paused("operator", folder="products")
    n.resumed("operator", folder="products")
    assert [t for _, t, _ in sent_by(n, rec)][2:] == [
        "watchd: creates paused (folder products)",
        "watchd: creates resumed (folder products)",
    ]
    n.stop()


def test_a_cap_is_one_message_per_period_and_a_raise_resumes() -> None:
    rec = Recorder()
    n = notifier(rec, target("json://h/x"))
    today = Block("api.max_creates_per_day", 5, 5, datetime(2026, 6, 11, tzinfo=BERLIN).timestamp())
    for _ in range(3):
        n.cap_reached(today)
    [(_, title, body)] = sent_by(n, rec)
    assert title == "watchd: spending cap reached (api.max_creates_per_day)"
    assert "no create leaves until 2026-06-11T00:00+02:00" in body
    n.tick(today.until, 0.0, View())  # midnight: the block is over, silently
    tomorrow = Block("api.max_creates_per_day", 5, 5, today.until + 86400)
    n.cap_reached(tomorrow)
    n.resumed("caps raised by a reload")
    assert [t for _, t, _ in sent_by(n, rec)][1:] == [
        "watchd: spending cap reached (api.max_creates_per_day)",
        "watchd: creates resumed (all folders)",
    ]
    n.stop()


def test_nothing_the_engine_calls_waits_for_a_target() -> None:
    release = threading.Event()
    calls: list[str] = []

    def hanging(url: str, title: str, body: str) -> str | None:
        calls.append(title)
        release.wait(30)
        return None

    n = Notifier([target("json://h/x")], BERLIN, send=hanging, queue_limit=3).start()
    with capture_logs() as captured:
        for i in range(50):
            n.paused(f"reason {i}", folder=f"f{i}")  # all while the first send hangs
            n(failed(i))
            n.tick(0.0, float(i * 1000), View())
    assert n.dropped > 0
    assert any("queue full" in e["event"] for e in captured)
    release.set()
    assert n.wait_idle(20)
    n.stop()


def test_a_sender_that_raises_does_not_stop_the_worker() -> None:
    seen: list[str] = []

    def broken(url: str, title: str, body: str) -> str | None:
        seen.append(title)
        if len(seen) == 1:
            raise RuntimeError("plugin bug")
        return None

    n = Notifier([target("json://h/x")], BERLIN, send=broken).start()
    n.paused("a")
    n.resumed("b")
    assert n.wait_idle(20)
    assert len(seen) == 2
    n.stop()


def test_stop_sends_what_is_batched() -> None:
    rec = Recorder()
    n = notifier(rec, target("json://h/x", digest=600))
    n(failed(1))
    n.tick(0.0, 0.0, View())
    n(failed(2))  # inside the digest: batched
    n.stop()
    assert [t for _, t, _ in rec.sent] == ["watchd: 1 file failed", "watchd: 1 file failed"]


# -- stuck and the daily summary (the clock is the test's numbers) -----------------------


def test_stuck_when_files_wait_and_none_finished_for_stuck_after() -> None:
    rec = Recorder()
    n = notifier(rec, target("json://h/x", on=["stuck"], stuck_after=3600))
    view = View({"products": 3, "banners": 0})
    n.tick(0.0, 1000.0, view)  # start: the quiet time counts from here
    n.tick(0.0, 1000.0 + 3599, view)
    assert sent_by(n, rec) == [] and view.asked == []  # no ledger query before it may be due
    n.tick(0.0, 1000.0 + 3600, view)
    [(_, title, body)] = sent_by(n, rec)
    assert title == "watchd: stuck, no file finished for 1 h"
    assert "3 files wait or are in flight (products 3)" in body
    n.tick(0.0, 1000.0 + 9000, view)
    assert len(sent_by(n, rec)) == 1  # one per episode
    n(done(1))
    n.tick(0.0, 1000.0 + 9001, view)
    n.tick(0.0, 1000.0 + 9001 + 3600, view)
    assert len(sent_by(n, rec)) == 2  # a success re-armed it
    n.stop()


def test_not_stuck_when_nothing_waits_or_creates_are_held() -> None:
    rec = Recorder()
    n = notifier(rec, target("json://h/x", on=["stuck"], stuck_after=60))
    idle = View({})
    n.tick(0.0, 0.0, idle)
    n.tick(0.0, 100.0, idle)
    assert sent_by(n, rec) == []
    n.paused("HTTP 401")  # not announced to this target, but files wait for a known reason
    n.tick(0.0, 1000.0, View({"products": 5}))
    n.tick(0.0, 2000.0, View({"products": 5}))
    assert sent_by(n, rec) == []
    n.stop()


def test_the_daily_summary_goes_at_notify_at_for_the_day_before() -> None:
    rec = Recorder()
    n = notifier(rec, target("json://h/x", on=["daily_summary"], notify_at="08:00"))
    view = View()

    def wall(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()

    n.tick(wall("2026-06-10 07:00"), 0.0, view)
    n.tick(wall("2026-06-10 07:59"), 1.0, view)
    assert sent_by(n, rec) == []
    n.tick(wall("2026-06-10 08:00"), 2.0, view)
    n.tick(wall("2026-06-10 08:01"), 3.0, view)
    [(_, title, body)] = sent_by(n, rec)
    assert title == "watchd: summary of 2026-06-09"
    assert body == "products: 12 done, 1 failed, 13 creates, 1 extra creates (ambiguous 1)"
    # A suspend over three mornings sends one summary, not three.
    n.tick(wall("2026-06-13 09:00"), 4.0, view)
    n.tick(wall("2026-06-13 09:01"), 5.0, view)
    assert [t for _, t, _ in sent_by(n, rec)] == [
        "watchd: summary of 2026-06-09",
        "watchd: summary of 2026-06-12",
    ]
    n.stop()


def test_next_at_across_a_dst_change() -> None:
    before = datetime(2026, 3, 28, 9, 0, tzinfo=BERLIN).timestamp()
    nxt = next_at(before, "08:00", BERLIN)
    assert datetime.fromtimestamp(nxt, BERLIN).isoformat() == "2026-03-29T08:00:00+02:00"
    assert nxt - before == 22 * 3600  # the night lost an hour


def test_ledger_view_summarises_a_local_day(tmp_path: Path) -> None:
    day = datetime(2026, 6, 9, 12, tzinfo=BERLIN).timestamp()
    ledger = Ledger(Database(memory=True), clock=FakeClock(wall=day))
    for n, cause in ((1, None), (2, "task_failed")):
        job = ledger.add_job({"folder": "products", "key": f"k{n}", "path": "/x", "name": "x"})
        ledger.commit(job, Event.SUBMIT, {"attempt": 1, "cause": cause})
        ledger.commit(job, Event.SYNC_DONE)
        ledger.commit(job, Event.WRITTEN)
        ledger.commit(job, Event.MOVED)
    view = LedgerView(ledger.db.conn, BERLIN)
    assert view.day_summary(date(2026, 6, 9)) == {
        "products": {"done": 2, "creates": 2, "extra": {"task_failed": 1}}
    }
    assert view.day_summary(date(2026, 6, 10)) == {}
    assert view.pending() == {}


# -- config --------------------------------------------------------------------------------


def _cfg(tmp_path: Path, notify: str) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / "watchd.yaml"
    path.write_text(f"folders:\n  - {{name: a, inbox: in, outbox: out}}\nnotify:\n{notify}")
    return path


def test_notify_targets_load_with_defaults_and_a_bare_on_key(tmp_path: Path) -> None:
    (tmp_path / "hook.url").write_text(f"json://127.0.0.1:9/{TOKEN}\n")
    cfg = load_config(
        _cfg(
            tmp_path,
            f"  - url: json://127.0.0.1:9/{TOKEN}\n"
            "    on: [failed, cap_reached]\n"
            "    digest: 5m\n"
            '    notify_at: "07:30"\n'
            "  - url_file: hook.url\n",
        ),
        env={},
    )
    first, second = cfg.notify
    assert first.on == ("failed", "cap_reached") and first.digest == 300.0
    assert first.notify_at == "07:30" and first.stuck_after == 3600.0
    assert second.url_file == tmp_path / "hook.url" and second.on[0] == "failed"
    shown = json.dumps(describe(cfg, {}), ensure_ascii=False)
    assert TOKEN not in shown and "json://…" in shown


@pytest.mark.parametrize(
    ("entry", "where", "words"),
    [
        ("  - url: nosuch://x/" + TOKEN + "\n", "notify[0].url", "not a notification URL"),
        ("  - {url: 'json://h/x', on: [explode]}\n", "notify[0].on", "unknown event"),
        ("  - {url: 'json://h/x', notify_at: 8:30}\n", "notify[0].notify_at", "quoted"),
        ("  - {url: 'json://h/x', notify_at: '25:00'}\n", "notify[0].notify_at", "HH:MM"),
        ("  - {url: 'json://h/x', digest: 0}\n", "notify[0].digest", "> 0"),
        ("  - {url: 'json://h/x', digest: soon}\n", "notify[0].digest", "like 10m"),
        ("  - {url: 'json://h/x', url_file: x}\n", "notify[0].url_file", "does not exist"),
        ("  - {on: [failed]}\n", "notify[0]", "needs url or url_file"),
        ("  - {url: 'json://h/x', colour: red}\n", "notify[0].colour", "unknown key"),
        ("  - json://h/x\n", "notify[0]", "must be a map"),
        ("  {url: 'json://h/x'}\n", "notify", "must be a list"),
    ],
)
def test_bad_notify_entries_are_reported_at_their_key_without_the_url(
    tmp_path: Path, entry: str, where: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_cfg(tmp_path, entry), env={})
    issues = [(i.path, i.message) for i in err.value.issues]
    assert any(p == where and words in m for p, m in issues), issues
    assert TOKEN not in str(err.value)


def test_watchd_notify_test_and_check_redact_urls(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    down = Receiver(statuses=[500])
    path = _cfg(tmp_path, "")
    doc = yaml.safe_load(path.read_text())
    doc["notify"] = [{"url": receiver.url}, {"url": down.url}]
    doc["state_dir"] = str(tmp_path / "state")
    path.write_text(yaml.safe_dump(doc))
    saved = structlog.get_config()
    try:
        with pytest.raises(SystemExit) as exit_code:
            main(["notify-test", "-c", str(path)])
        main(["check", "-c", str(path)])
    finally:
        structlog.configure(**saved)
        down.close()
    captured = capsys.readouterr()
    assert exit_code.value.code == 1
    assert "ok     notify[0] json://…" in captured.out
    assert "FAILED notify[1] json://…" in captured.out
    assert "1 of 2 targets failed" in captured.err
    assert TOKEN not in captured.out + captured.err
