"""`watchd plan`: the daemon's checks, the ledger read-only, totals and caps; no side effects."""

from __future__ import annotations

import json
import os
import sqlite3
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from PIL import Image

from tests.e2e import image_bytes
from watchd.cli import main
from watchd.clock import FakeClock
from watchd.config import Config, load_config
from watchd.intake import Prepared, Rejected, prepare
from watchd.ledger import Ledger
from watchd.lifecycle import Event
from watchd.plan import (
    DUPLICATE,
    IGNORED,
    IN_WORK,
    REFUSE,
    SEND,
    WAIT,
    PlanError,
    Totals,
    open_ledger,
    plan_files,
    shown,
    summary,
    summary_lines,
    targets,
)
from watchd.spend import Caps, Counts, room

NOW = 4_000_000_000.0  # after every file's mtime: nothing looks freshly written


def png(size: tuple[int, int], seed: int = 0) -> bytes:
    return image_bytes(size, "PNG", seed)


def mask_png(size: tuple[int, int]) -> bytes:
    img = Image.new("L", size, 0)
    img.paste(255, (0, 0, size[0] // 4, size[1]))
    buf = BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def gif() -> bytes:
    buf = BytesIO()
    Image.new("RGB", (200, 150)).save(buf, "GIF")
    return buf.getvalue()


def make_config(root: Path, api: dict[str, Any] | None = None) -> Config:
    (root / "banner-mask.png").write_bytes(mask_png((100, 100)))
    folders = [
        {"name": "plain"},
        {"name": "masked", "mask": str(root / "banner-mask.png")},
        {"name": "square", "target": {"aspect": "1:1", "margin": 0.05}},
        {"name": "tall", "target": {"aspect": "1:10"}},
        {"name": "sidecar", "mask": "sidecar", "settle": 0},
        {"name": "fitted", "fit": True},
    ]
    for f in folders:
        for sub in ("inbox", "outbox"):
            (root / f["name"] / sub).mkdir(parents=True, exist_ok=True)
        f.update(inbox=str(root / f["name"] / "inbox"), outbox=str(root / f["name"] / "outbox"))
    path = root / "watchd.yaml"
    doc = {"api": api or {}, "state_dir": str(root / "state"), "folders": folders}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(path, env={})


def mixed_inbox(root: Path) -> dict[str, tuple[str, str | None]]:
    """Drop the mixed files; return {folder/name: (expected verdict, expected code)}."""

    def put(rel: str, data: bytes) -> None:
        (root / rel.split("/")[0] / "inbox" / rel.split("/")[1]).write_bytes(data)

    put("plain/a-valid.png", png((200, 150), 1))
    put("plain/b-copy.png", png((200, 150), 1))
    put("plain/tiny.png", png((40, 30), 2))
    put("plain/huge.png", png((4200, 70), 3))
    put("plain/gif-inside.jpg", gif())
    put("plain/empty.jpg", b"")  # nothing to decode
    put("plain/.hidden.png", png((200, 150), 4))
    put("masked/fits.png", png((100, 100), 5))
    put("masked/mismatch.png", png((200, 150), 6))
    put("square/wide.png", png((300, 150), 7))
    put("tall/wide.png", png((300, 150), 8))
    put("sidecar/alone.png", png((200, 150), 9))
    put("sidecar/paired.png", png((200, 150), 10))
    put("sidecar/paired.mask.png", mask_png((200, 150)))
    put("fitted/huge.png", png((4200, 70), 11))
    return {
        "plain/a-valid.png": (SEND, None),
        "plain/b-copy.png": (DUPLICATE, None),
        "plain/tiny.png": (REFUSE, "too_small"),
        "plain/huge.png": (REFUSE, "too_big_dims"),
        "plain/gif-inside.jpg": (REFUSE, "bad_format"),
        "plain/empty.jpg": (REFUSE, "bad_format"),
        "masked/fits.png": (SEND, None),
        "masked/mismatch.png": (REFUSE, "mask_size"),
        "square/wide.png": (SEND, None),
        "tall/wide.png": (REFUSE, "target_unreachable"),
        "sidecar/alone.png": (WAIT, None),
        "sidecar/paired.png": (SEND, None),
        "fitted/huge.png": (SEND, None),
    }


def run_plan(cfg: Config, conn: sqlite3.Connection | None = None, **kw: Any) -> list[Any]:
    return list(plan_files(cfg, targets(cfg, **kw), conn, NOW))


def test_verdicts_on_a_mixed_inbox_are_what_the_daemon_checks_decide(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    expected = mixed_inbox(tmp_path)
    plans = run_plan(cfg)
    got = {f"{p.folder}/{p.path.name}": (p.verdict, p.code) for p in plans}
    assert got == expected  # the hidden file is not an input, as for the daemon
    folders = {f.name: f for f in cfg.folders}
    for p in plans:
        outcome = prepare(folders[p.folder], p.path, now=NOW)
        if p.verdict == SEND:
            assert isinstance(outcome, Prepared)
            assert p.params == outcome.fields["params"]
            assert p.upload == (outcome.fields["upload_width"], outcome.fields["upload_height"])
        if p.verdict == REFUSE:
            assert isinstance(outcome, Rejected) and outcome.code == p.code


def test_what_each_file_would_be_sent_as(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    mixed_inbox(tmp_path)
    plans = {f"{p.folder}/{p.path.name}": p for p in run_plan(cfg)}
    valid = plans["plain/a-valid.png"]
    assert valid.params == {"top": 0.1, "bottom": 0.1, "left": 0.1, "right": 0.1}
    assert "→ 240×180" in valid.detail
    square = plans["square/wide.png"]
    assert square.params["left"] == square.params["right"] == 0.05
    assert square.params["top"] > 0.5 and "cropped to 1:1" in square.detail
    assert plans["masked/fits.png"].mask == str(tmp_path / "banner-mask.png")
    assert plans["masked/fits.png"].params == {}  # canvas mode: no ratios
    assert plans["sidecar/paired.png"].mask.endswith("paired.mask.png")
    fitted = plans["fitted/huge.png"]
    assert fitted.size == (4200, 70) and fitted.upload[0] <= 4096
    assert fitted.to_json()["fit"] is True and "fit 4200×70 →" in fitted.detail
    assert "mask" in plans["sidecar/alone.png"].detail


def test_the_ledger_says_which_contents_need_no_new_create(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    inbox = tmp_path / "plain" / "inbox"
    for n in range(5):
        (inbox / f"{n}.png").write_bytes(png((200, 150), 20 + n))
    plain = cfg.folders[0]
    ledger = Ledger.open(cfg.state_dir / "watchd.db")
    ids = []
    for n in range(4):
        fields = dict(prepare(plain, inbox / f"{n}.png", now=NOW).fields)  # type: ignore[union-attr]
        if n == 0:
            fields["path"] = str(tmp_path / "plain" / "done" / "0.png")
        ids.append(ledger.add_job(fields))
    ledger.commit(ids[0], Event.SUBMIT)
    ledger.commit(ids[0], Event.FAIL)
    ledger.commit(ids[0], Event.MOVED)  # failed before: dropped again, it is sent again
    ledger.commit(ids[1], Event.SUBMIT)  # in work at this very path
    ledger.commit(ids[2], Event.SUBMIT)
    ledger.commit(ids[2], Event.SYNC_DONE)
    ledger.commit(ids[2], Event.WRITTEN)
    done_path = str(tmp_path / "plain" / "done" / "2.png")
    ledger.commit(ids[2], Event.MOVED, path=done_path)  # done: its original moved to done/
    ledger.close()
    conn = open_ledger(cfg)
    got = {p.path.name: (p.verdict, p.job) for p in run_plan(cfg, conn, folder="plain")}
    assert got == {
        "0.png": (SEND, ids[0]),
        "1.png": (IN_WORK, ids[1]),
        "2.png": (DUPLICATE, ids[2]),
        "3.png": (SEND, ids[3]),  # waiting: its create is still to come
        "4.png": (SEND, None),
    }


def test_plan_writes_nothing_and_reads_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    mixed_inbox(tmp_path)
    ledger = Ledger.open(cfg.state_dir / "watchd.db")
    ledger.add_job({"folder": "plain", "key": "k", "path": "/x", "name": "x"})
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if "state" not in p.parts}
    ledger.db.conn.execute("BEGIN IMMEDIATE")  # the daemon in the middle of a transaction
    ledger.db.conn.execute("update jobs set state = 'done'")
    conn = open_ledger(cfg)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    assert len(run_plan(cfg, conn)) == 13
    ledger.db.conn.rollback()
    assert not any(
        s.split()[0].lower() in ("insert", "update", "delete", "create") for s in statements
    )
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("insert into meta values ('x', 'y')")
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if "state" not in p.parts}
    assert after == before  # no file moved, written or touched


def test_without_a_ledger_none_is_made(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    assert open_ledger(cfg) is None
    assert not (tmp_path / "state").exists()


def test_hostile_names_are_planned_and_shown_readably(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    inbox = os.fsencode(tmp_path / "plain" / "inbox")
    for name in (b"caf\xe9.png", b"new\nline.png", b"[bold]x[b].png"):
        with open(os.path.join(inbox, name), "wb") as fh:
            fh.write(png((200, 150), name[0]))
    plans = run_plan(cfg, folder="plain")
    assert {p.verdict for p in plans} == {SEND}
    lines = [json.dumps(p.to_json()) for p in plans]
    assert any("caf\\\\xe9.png" in line for line in lines)
    assert all(json.loads(line)["path"] for line in lines)
    assert any(shown(p.path).endswith("new\\x0aline.png") for p in plans)  # one line each


def test_paths_given_use_their_inbox_or_the_folder_named(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    mixed_inbox(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "shot.png").write_bytes(png((200, 150), 30))
    (elsewhere / ".hidden.png").write_bytes(png((200, 150), 31))
    with pytest.raises(PlanError, match="in no folder's inbox"):
        run_plan(cfg, paths=[elsewhere / "shot.png"])
    with pytest.raises(PlanError, match="unknown folder"):
        run_plan(cfg, folder="nope")
    with pytest.raises(PlanError, match="no such file"):
        run_plan(cfg, folder="plain", paths=[elsewhere / "gone.png"])
    [shot] = run_plan(cfg, folder="square", paths=[elsewhere / "shot.png"])
    assert shot.folder == "square" and shot.verdict == SEND
    walked = run_plan(cfg, folder="plain", paths=[elsewhere])
    assert [p.path.name for p in walked] == ["shot.png"]  # a folder walks like an inbox
    [hidden] = run_plan(cfg, paths=[tmp_path / "plain" / "inbox" / ".hidden.png"])
    assert hidden.verdict == IGNORED


def test_totals_count_creates_and_time_from_what_was_learned(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, api={"qps": 4, "max_in_flight": 2})
    for n in range(8):
        (tmp_path / "plain" / "inbox" / f"{n}.png").write_bytes(png((200, 150), 40 + n))
    totals = Totals()
    for p in run_plan(cfg, folder="plain"):
        totals.add(p)
    fresh = summary(cfg, totals, None, NOW)
    assert (fresh["creates"], fresh["requests_per_task"], fresh["seconds"]) == (8, 2.0, 4.0)
    assert "task time not learned yet" in summary_lines(fresh)[1]
    ledger = Ledger.open(cfg.state_dir / "watchd.db")
    for n in range(3):
        job = ledger.add_job(
            {"folder": "plain", "key": f"k{n}", "path": "/x", "name": "x", "requests": 3,
             "task_seconds": 10.0, "processed_at": NOW},
        )
        ledger.db.execute(
            "update jobs set state = 'done', finished_at = ? where id = ?", [NOW, job]
        )
    ledger.db.conn.commit()
    ledger.close()
    known = summary(cfg, totals, open_ledger(cfg), NOW)
    # 8 tasks of 10 s, 2 at a time: 40 s, plus the last one's 10 s; the budget allows 6 s.
    assert (known["task_seconds"], known["requests_per_task"], known["seconds"]) == (
        10.0,
        3.0,
        50.0,
    )


def test_the_total_says_when_a_cap_would_stop_it(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, api={"max_creates_per_day": 5, "timezone": "UTC"})
    ledger = Ledger.open(cfg.state_dir / "watchd.db", clock=FakeClock(wall=NOW))
    for n in range(3):
        job = ledger.add_job({"folder": "plain", "key": f"k{n}", "path": "/x", "name": "x"})
        ledger.commit(job, Event.SUBMIT, {"attempt": 1, "cause": None})
    ledger.close()
    for n in range(4):
        (tmp_path / "plain" / "inbox" / f"{n}.png").write_bytes(png((200, 150), 50 + n))
    totals = Totals()
    for p in run_plan(cfg, folder="plain"):
        totals.add(p)
    stop = summary(cfg, totals, open_ledger(cfg), NOW)["cap_stops_it"]
    assert stop["cap"] == "api.max_creates_per_day"
    assert (stop["creates_before_it"], stop["waiting_after_it"]) == (2, 2)
    assert stop["until"] == "2096-10-03T00:00+00:00"


def test_room_under_caps_names_the_cap_that_stops_the_rest() -> None:
    assert room(Caps(), Counts(), {"a": 9}).cap is None
    r = room(
        Caps(day=10, folder_day={"a": 2}), Counts(day=1, folder_day={"a": 1}), {"a": 5, "b": 3}
    )
    assert (r.allowed, r.cap) == (4, "folders.a.max_creates_per_day")
    r = room(Caps(folder_day={"a": 2}), Counts(folder_day={"a": 1}), {"a": 5, "b": 3})
    assert (r.allowed, r.cap) == (4, "folders.a.max_creates_per_day")
    r = room(Caps(day=5, month=5), Counts(day=2, month=2), {"a": 9})
    assert (r.allowed, r.cap, r.monthly) == (3, "api.max_creates_per_month", True)
    r = room(Caps(day=5, month=50), Counts(day=5, month=5), {"a": 1})
    assert (r.allowed, r.cap) == (0, "api.max_creates_per_day")
    assert room(Caps(day=5), Counts(day=2), {"a": 3}).cap is None  # exactly fits


def test_watchd_plan_streams_json_lines_then_the_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config(tmp_path)
    mixed_inbox(tmp_path)
    saved = structlog.get_config()
    try:
        main(["plan", "--json", "-c", str(cfg.path)])
        main(["plan", "--folder", "plain", "-c", str(cfg.path)])
    finally:
        structlog.configure(**saved)
    out = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in out[:14]]
    assert [r["verdict"] for r in rows[:-1]] and "total" in rows[-1]
    assert rows[-1]["total"]["creates"] == 5
    text = out[14:]
    assert text[0].startswith("send      plain/a-valid.png  top 0.100")
    assert any(
        line.startswith("refuse    plain/tiny.png  fails before paying (too_small)")
        for line in text
    )


def test_a_corrupt_ledger_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config(tmp_path)
    mixed_inbox(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "watchd.db").write_bytes(b"this is not a database" * 100)
    saved = structlog.get_config()
    try:
        with pytest.raises(SystemExit) as exit_code:
            main(["plan", "-c", str(cfg.path)])
    finally:
        structlog.configure(**saved)
    err = capsys.readouterr().err
    assert exit_code.value.code == 1
    assert err.strip().splitlines()[-1].startswith("watchd: cannot read the ledger ")
    assert "Traceback" not in err
