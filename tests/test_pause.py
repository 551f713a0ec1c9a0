"""Pausing a folder: `watchd pause/resume` with or without the daemon, what `status` shows,
and the engine taking no create for a paused folder (its files wait, nothing is lost)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import structlog
from sqlite_utils import Database

from tests.e2e import KEY, drop, run_cli, write_config
from watchd.cli import main
from watchd.config import load_config
from watchd.daemon import make_client
from watchd.engine import Engine
from watchd.ledger import Ledger
from watchd.pause import PauseError, pause, resume


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    return write_config(
        tmp_path,
        "http://127.0.0.1:9",
        [{"name": "products"}, {"name": "misc"}],
        http={"listen": "127.0.0.1:8750"},
    )


def watchd(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    saved = structlog.get_config()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        structlog.configure(**saved)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_pause_and_resume_from_the_command_line_live_in_the_ledger(cfg_path, capsys) -> None:
    c = str(cfg_path)
    code, out, _ = watchd(capsys, "pause", "products", "--reason", "new [bold]backdrop", "-c", c)
    assert code == 0 and "folder products paused" in out
    code, out, _ = watchd(capsys, "pause", "products", "-c", c)
    assert code == 0 and "already paused" in out
    code, out, _ = watchd(capsys, "status", "-c", c)
    assert "folder products PAUSED: paused by watchd pause (`watchd resume products`)" in out
    assert "dashboard: http://127.0.0.1:8750/ (when run)" in out
    code, out, _ = watchd(capsys, "status", "--json", "-c", c)
    data = json.loads(out)
    assert data["paused_folders"]["products"]["by"] == "watchd pause"
    assert data["dashboard"] == "http://127.0.0.1:8750/"
    code, out, _ = watchd(capsys, "resume", "products", "-c", c)
    assert code == 0 and out.strip() == "folder products resumed"
    code, out, _ = watchd(capsys, "resume", "products", "-c", c)
    assert code == 0 and out.strip() == "folder products was not paused"


def test_a_reason_with_markup_is_shown_as_typed(cfg_path, capsys) -> None:
    watchd(capsys, "pause", "misc", "--reason", "[red]not red[/red]", "-c", str(cfg_path))
    _, out, _ = watchd(capsys, "status", "-c", str(cfg_path))
    assert "[red]not red[/red]" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["pause", "nope"], "unknown folder 'nope'; configured: products, misc"),
        (["resume", "nope"], "unknown folder 'nope'"),
        (["pause", "misc", "--reason", "x" * 600], "the reason is too long"),
    ],
)
def test_mistakes_are_one_line(cfg_path, capsys, args, says) -> None:
    code, out, err = watchd(capsys, *args, "-c", str(cfg_path))
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [f"watchd: {err.strip()[len('watchd: ') :]}"]
    assert says in err


def test_resume_before_anything_ran_says_so(cfg_path, capsys) -> None:
    code, out, _ = watchd(capsys, "resume", "misc", "-c", str(cfg_path))
    assert code == 0 and out.strip() == "folder misc was not paused"
    assert not (cfg_path.parent / "state" / "watchd.db").exists()  # resume made no ledger


def test_a_folder_paused_then_removed_from_the_config_can_still_be_resumed(tmp_path) -> None:
    cfg = load_config(write_config(tmp_path, "http://127.0.0.1:9", [{"name": "a"}]))
    ledger = Ledger(Database(memory=True))
    ledger.pause_folder("gone", "old", by="test")
    assert resume(cfg, ledger, "gone") is True
    with pytest.raises(PauseError):
        pause(cfg, ledger, "gone", "x", by="test")


def test_the_command_works_while_the_daemon_holds_the_ledger(cfg_path, tmp_path) -> None:
    """Like `watchd retry`: a second writer through SQLite's own locking."""
    cfg = load_config(cfg_path)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    daemon_ledger = Ledger.open(cfg.state_dir / "watchd.db")
    try:
        done = run_cli("pause", "misc", "--reason", "busy", "-c", str(cfg_path))
        assert done.returncode == 0, done.stderr
        assert daemon_ledger.paused_folders()["misc"]["reason"] == "busy"
    finally:
        daemon_ledger.close()


def test_the_engine_creates_nothing_for_a_paused_folder_and_its_files_wait(tmp_path) -> None:
    cfg = load_config(write_config(tmp_path, "http://127.0.0.1:9", [{"name": "f"}, {"name": "g"}]))
    ledger = Ledger(Database(memory=True))
    engine = Engine(cfg, ledger, make_client(cfg, KEY))
    for folder in ("f", "g"):
        drop(tmp_path / folder / "inbox" / "a.png", seed=ord(folder))

    async def scenario() -> tuple[set[str], set[str]]:
        for folder in ("f", "g"):
            await engine.take(folder, tmp_path / folder / "inbox" / "a.png")
        engine.flush()
        ledger.pause_folder("f", "testing", by="test")
        now = engine.clock.mono()
        paused = {c.folder for c in engine._candidates(now)}
        resume(cfg, ledger, "f")
        resumed = {c.folder for c in engine._candidates(now)}
        await engine.aclose()
        return paused, resumed

    paused, resumed = asyncio.run(scenario())
    assert paused == {"g"}
    assert resumed == {"f", "g"}
    assert {r["state"] for r in ledger.jobs()} == {"waiting"}
    assert (tmp_path / "f/inbox/a.png").exists()
