"""End to end, issue 5: the service side of the real `watchd run` process and the operator's
commands against it.

The systemd side is a real AF_UNIX datagram socket bound in tmp_path (what systemd passes as
$NOTIFY_SOCKET); the API is the real simulator over loopback; the daemon is a subprocess
stopped with real signals. Two daemon runs per test at most, so the file stays well under a
minute.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import (
    DaemonProcess,
    drop,
    files,
    folder_paths,
    run_cli,
    wait_for,
)
from watchd.sim import SimConfig, Simulator

pytestmark = pytest.mark.e2e

# Two distinct secrets: the one the daemon uses (key_file wins) and one left in the
# environment. Neither may show up in any output or log.
FILE_KEY = "sk-FILEKEY-7f3a9c21d4e8b6"
ENV_KEY = "sk-ENVKEY-51b0e2d9a7c4f3"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(
        SimConfig(qps=50, processing_time=(0.1, 0.2), seed=5, fail_prompt={"FAILME": -10})
    ).start() as s:
        yield s


class Notifications:
    """The systemd end of sd_notify: a bound datagram socket read by a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, list[str]]] = []  # (monotonic time, fields)
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode().splitlines()))

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def since(self, t: float = 0.0) -> list[tuple[float, list[str]]]:
        with self._lock:
            return [(at, f) for at, f in self.messages if at >= t]

    def with_field(self, prefix: str, t: float = 0.0) -> list[tuple[float, list[str]]]:
        return [(at, f) for at, f in self.since(t) if any(x.startswith(prefix) for x in f)]


@pytest.fixture
def notifications(tmp_path: Path) -> Iterator[Notifications]:
    path = tmp_path / "notify.sock"
    if len(str(path)) > 100:  # sun_path holds 108 bytes; a long tmp_path falls back to /tmp
        path = Path(tempfile.mkdtemp(prefix="wd-")) / "n.sock"
    n = Notifications(path)
    yield n
    n.close()


def make_config(
    root: Path,
    base_url: str,
    folders: list[dict[str, Any]],
    *,
    qps: float = 20,
    key_file: Path,
    extra_api: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "api": {
            "base_url": base_url,
            "qps": qps,
            "poll_interval": 0.2,
            "key_file": str(key_file),
            **(extra_api or {}),
        },
        "state_dir": str(root / "state"),
        "retry": {"max_attempts": 3, "base_delay": 0.1, "max_delay": 1},
        "log": {"format": "json", "level": "info"},
        "folders": [{**folder_paths(root, f["name"]), "settle": 0.2, **f} for f in folders],
    }


def save(path: Path, cfg: dict[str, Any]) -> Path:
    # Written aside and renamed in, as an editor or config manager would.
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    os.replace(tmp, path)
    return path


def key_file(root: Path) -> Path:
    path = root / "api-key"
    path.write_text(FILE_KEY + "\n")
    path.chmod(0o600)
    return path


def cli(*args: str) -> Any:
    return run_cli(*args, env={"WATCHD_API_KEY": ENV_KEY})


def one_clear_line(result: Any) -> str:
    """A refusal: non-zero, one line on stderr, no traceback, nothing on stdout."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def ledger_rows(root: Path, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{root / 'state' / 'watchd.db'}?mode=ro", uri=True, timeout=5)
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute(sql, args))
    finally:
        db.close()


def job_state(root: Path, folder: str, name: str) -> str | None:
    rows = ledger_rows(root, "select state from jobs where folder=? and name=?", (folder, name))
    return rows[0]["state"] if rows else None


def job_id(root: Path, folder: str, name: str) -> int:
    rows = ledger_rows(root, "select id from jobs where folder=? and name=?", (folder, name))
    assert len(rows) == 1, (folder, name, rows)
    return int(rows[0]["id"])


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert FILE_KEY not in text
        assert ENV_KEY not in text


def test_systemd_notifications_and_live_reload(
    tmp_path: Path, sim: Simulator, notifications: Notifications
) -> None:
    """READY after start, STATUS lines, WATCHDOG pings while idle, RELOADING/READY around a
    SIGHUP that adds, removes and changes folders and qps live, a broken config refused
    without harm, STOPPING and exit 0 on SIGTERM."""
    root = tmp_path
    keyf = key_file(root)
    cfg_path = root / "watchd.yaml"
    first = make_config(
        root, sim.base_url, [{"name": "plain"}, {"name": "old"}], qps=20, key_file=keyf
    )
    save(cfg_path, first)
    # A folder not configured yet, with a file already waiting in its inbox.
    late = folder_paths(root, "late")
    drop(Path(late["inbox"]) / "waiting.png", seed=1)

    daemon = DaemonProcess(
        cfg_path,
        env={
            "NOTIFY_SOCKET": str(notifications.path),
            "WATCHDOG_USEC": "2000000",
            "WATCHD_API_KEY": ENV_KEY,
        },
    )
    daemon.start()
    try:
        # READY=1 comes once the daemon has started (folders watched), with a STATUS line.
        ready = wait_for(lambda: notifications.with_field("READY=1"), 20, "READY=1")
        assert "watchd started" in daemon.log()
        assert any(f.startswith("STATUS=") for f in ready[0][1]), ready
        started = next(e for e in daemon.events() if e.get("event") == "watchd started")
        assert started["folders"] == ["plain", "old"]

        # Idle: WATCHDOG=1 at least once a second (WATCHDOG_USEC=2 s, pinged at half of it).
        t0 = time.monotonic()
        time.sleep(3.2)
        pings = [at for at, _ in notifications.with_field("WATCHDOG=1", t0)]
        assert len(pings) >= 3, pings
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 1.5, gaps  # well inside the 2 s timeout

        # A second daemon on the same state_dir refuses, naming the pid of the first.
        second = cli("run", "-c", str(cfg_path))
        line = one_clear_line(second)
        assert str(daemon.proc.pid) in line, line
        assert daemon.proc.poll() is None

        # -- live reload: add `late`, remove `old`, qps 20 -> 7 ------------------------------
        reloaded = make_config(
            root, sim.base_url, [{"name": "plain"}, {"name": "late"}], qps=7, key_file=keyf
        )
        save(cfg_path, reloaded)
        t_hup = time.monotonic()
        mono_before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        daemon.send(signal.SIGHUP)
        reloading = wait_for(
            lambda: notifications.with_field("RELOADING=1", t_hup), 10, "RELOADING=1"
        )
        at_reloading, fields = reloading[0]
        usec = [int(f.split("=", 1)[1]) for f in fields if f.startswith("MONOTONIC_USEC=")]
        assert usec and mono_before <= usec[0] <= mono_before + 10_000_000, fields
        wait_for(
            lambda: notifications.with_field("READY=1", at_reloading), 10, "READY=1 after reload"
        )
        line = wait_for(
            lambda: [e for e in daemon.events() if e.get("event") == "config reloaded"],
            10,
            "config reloaded",
        )[0]
        assert line["qps"] == 7
        assert line["folders"] == ["plain", "late"]

        # The added folder takes the file that was already waiting, without a restart.
        wait_for(lambda: (root / "late/done/waiting.png").exists(), 20, "late/done/waiting.png")
        assert files(root / "late/outbox") == ["waiting.png"]
        # The removed folder is no longer watched: a file dropped there stays, while one
        # dropped at the same time into a watched folder is done.
        drop(root / "old/inbox/ignored.png", seed=2)
        drop(root / "plain/inbox/control.png", seed=3)
        wait_for(lambda: (root / "plain/done/control.png").exists(), 20, "plain/done/control")
        time.sleep(0.5)  # a few more settle periods (0.2 s) for the removed folder
        assert files(root / "old/inbox") == ["ignored.png"]
        assert files(root / "old/outbox") == []
        assert job_state(root, "old", "ignored.png") is None

        # -- a broken config is refused; the daemon keeps running the old one ---------------
        broken = make_config(root, sim.base_url, [{"name": "plain"}], qps=-1, key_file=keyf)
        broken["folders"][0]["expnd"] = {"top": 0.2}
        save(cfg_path, broken)
        t_bad = time.monotonic()
        n_events = len(daemon.events())
        daemon.send(signal.SIGHUP)
        wait_for(lambda: notifications.with_field("RELOADING=1", t_bad), 10, "2nd RELOADING=1")
        wait_for(
            lambda: any(e.get("level") == "error" for e in daemon.events()[n_events:]),
            10,
            "reload refused log lines",
        )
        time.sleep(0.3)  # every issue is logged in the same loop turn; let the file flush
        refused = [e for e in daemon.events()[n_events:] if e.get("level") == "error"]
        keys = sorted(str(e.get("key")) for e in refused)
        assert keys == ["api.qps", "folders[0].expnd"], refused
        assert all("refused" in e["event"] for e in refused), refused
        expnd = next(e for e in refused if e["key"] == "folders[0].expnd")
        assert "did you mean 'expand'" in json.dumps(expnd), expnd
        # The next STATUS= line says the reload was refused.
        status = wait_for(lambda: notifications.with_field("STATUS=", t_bad), 10, "STATUS=")
        text = next(f for f in status[0][1] if f.startswith("STATUS="))
        assert "reload refused" in text, text
        assert daemon.proc.poll() is None, daemon.log()[-2000:]
        # Still working with the old config: `late` is still watched, qps still 7.
        drop(root / "late/inbox/after.png", seed=4)
        wait_for(lambda: (root / "late/done/after.png").exists(), 20, "late/done/after.png")
        assert not [e for e in daemon.events()[n_events:] if e.get("event") == "config reloaded"]

        t_term = time.monotonic()
    finally:
        code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.log()[-3000:]
    stopping = notifications.with_field("STOPPING=1", t_term)
    assert stopping, notifications.since(t_term)
    # STATUS lines came along the way (with READY, and on their own every few seconds).
    assert len(notifications.with_field("STATUS=")) >= 3
    assert_no_key(daemon.log())


def test_operator_commands_with_the_daemon_running_then_stopped(
    tmp_path: Path, sim: Simulator
) -> None:
    """status, jobs, retry and process against a running daemon, then retry while it is
    stopped and the next start doing the work."""
    root = tmp_path
    keyf = key_file(root)
    cfg_path = save(
        root / "watchd.yaml",
        make_config(
            root,
            sim.base_url,
            [
                {"name": "plain"},
                {"name": "fails", "prompt": "FAILME please"},
                {"name": "fails2", "prompt": "FAILME too"},
            ],
            key_file=keyf,
        ),
    )
    c = str(cfg_path)
    outputs: list[str] = []

    def cmd(*args: str) -> Any:
        result = cli(*args, "-c", c)
        outputs.extend([result.stdout, result.stderr])
        assert "Traceback" not in result.stderr, result.stderr
        return result

    daemon = DaemonProcess(cfg_path, env={"WATCHD_API_KEY": ENV_KEY}).start()
    try:
        daemon.wait_started()
        drop(root / "plain/inbox/ok.png", seed=10)
        (root / "plain/inbox/bad.png").write_text("this is not an image at all\n")
        drop(root / "fails/inbox/a.png", seed=11)
        drop(root / "fails/inbox/b.png", seed=12)
        drop(root / "fails2/inbox/c.png", seed=13)
        expected = [
            "plain/done/ok.png",
            "plain/failed/bad.png",
            "fails/failed/a.png",
            "fails/failed/b.png",
            "fails2/failed/c.png",
        ]
        wait_for(lambda: all((root / p).exists() for p in expected), 30, "all finished")
        wait_for(lambda: job_state(root, "fails2", "c.png") == "failed", 10, "c.png failed")

        # -- status --json while the daemon runs -------------------------------------------
        st = cmd("status", "--json")
        assert st.returncode == 0, st.stderr
        data = json.loads(st.stdout)
        assert data["daemon"] == {"running": True, "pid": daemon.proc.pid}
        assert data["folders"]["plain"] == {"done": 1, "failed": 1}
        assert data["folders"]["fails"] == {"failed": 2}
        assert data["folders"]["fails2"] == {"failed": 1}
        failures = {f["file"]: f for f in data["recent_failures"]}
        assert set(failures) == {"bad.png", "a.png", "b.png", "c.png"}
        assert failures["bad.png"]["folder"] == "plain" and failures["bad.png"]["reason"]
        assert "prohibited" in failures["a.png"]["reason"], failures["a.png"]
        assert data["last_hour"]["tasks_done"] == 1
        assert data["last_hour"]["requests_per_task"] >= 2  # a create and at least one poll

        # -- jobs --state failed --folder F --since 1h --json -----------------------------
        js = cmd("jobs", "--state", "failed", "--folder", "fails", "--since", "1h", "--json")
        assert js.returncode == 0, js.stderr
        rows = [json.loads(line) for line in js.stdout.splitlines()]
        assert sorted(r["file"] for r in rows) == ["a.png", "b.png"]
        assert {(r["state"], r["folder"]) for r in rows} == {("failed", "fails")}
        everything = cmd("jobs", "--json")
        assert len([json.loads(line) for line in everything.stdout.splitlines()]) == 5

        # -- process refuses while the daemon holds the state_dir --------------------------
        shot = root / "shots/x.png"
        drop(shot, seed=20)
        line = one_clear_line(cmd("process", str(shot), "--folder", "plain"))
        assert str(daemon.proc.pid) in line, line
        assert shot.exists() and files(root / "plain/outbox") == ["ok.png"]

        # -- retry with the daemon running: by id, then --failed --folder ------------------
        sim.update(fail_prompt={})  # the "content" is now accepted
        a_id = job_id(root, "fails", "a.png")
        r = cmd("retry", str(a_id))
        assert r.returncode == 0, r.stderr
        wait_for(lambda: (root / "fails/done/a.png").exists(), 20, "fails/done/a.png")
        wait_for(lambda: job_state(root, "fails", "a.png") == "done", 10, "a.png done")
        assert files(root / "fails/outbox") == ["a.png"]
        events = [
            e["event"]
            for e in ledger_rows(
                root, "select event from events where job_id=? order by id", (a_id,)
            )
        ]
        assert "fail" in events and "requeue" in events, events
        assert events.index("fail") < events.index("requeue"), events
        assert "retry_requested" in events, events

        r = cmd("retry", "--failed", "--folder", "fails")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: (root / "fails/done/b.png").exists(), 20, "fails/done/b.png")
        # The other folder's failure was left alone.
        assert files(root / "fails2/failed") == ["c.png", "c.png.error.json"]

        # Refusals: a job that is not failed, a job that does not exist.
        line = one_clear_line(cmd("retry", str(a_id)))
        assert str(a_id) in line and "done" in line, line
        line = one_clear_line(cmd("retry", "98765"))
        assert "98765" in line, line
    finally:
        code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.log()[-3000:]

    # -- the daemon is stopped: status says so, retry puts the file back ----------------
    st = cmd("status", "--json")
    assert st.returncode == 0
    data = json.loads(st.stdout)
    assert data["daemon"] == {"running": False, "pid": None}
    assert data["folders"]["fails"] == {"done": 2}

    c_id = job_id(root, "fails2", "c.png")
    r = cmd("retry", str(c_id))
    assert r.returncode == 0, r.stderr
    assert files(root / "fails2/inbox") == ["c.png"]
    assert files(root / "fails2/failed") == []
    assert job_state(root, "fails2", "c.png") == "failed"  # nothing happens until a start

    again = DaemonProcess(cfg_path, env={"WATCHD_API_KEY": ENV_KEY}).start()
    try:
        again.wait_started()
        wait_for(lambda: (root / "fails2/done/c.png").exists(), 20, "fails2/done/c.png")
        wait_for(lambda: job_state(root, "fails2", "c.png") == "done", 10, "c.png done")
    finally:
        code = again.stop(signal.SIGTERM)
    assert code == 0, again.log()[-3000:]
    assert files(root / "fails2/outbox") == ["c.png"]
    assert_no_key(daemon.log(), again.log(), *outputs)
