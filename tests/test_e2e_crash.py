"""SIGKILL at each point of a job's life, then a restart: it converges, nothing is lost,
nothing is written twice, and a created task is polled again rather than paid for again.

Two points are hit with real kills in windows the simulator widens (a slow create, a long
task). The two narrow ones (during the download, right after the outbox write) are made
exact by putting the ledger in the state a kill there leaves, with the files to match.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.e2e import KEY, DaemonProcess, drop, files, sha, wait_for, write_config
from watchd.sim import SimConfig, Simulator

pytestmark = pytest.mark.e2e


def job_row(root: Path, name: str) -> dict:
    if not (root / "state/watchd.db").exists():
        return {}
    with sqlite3.connect(root / "state/watchd.db") as conn:
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute("select * from jobs where name = ?", [name]).fetchone()
        except sqlite3.OperationalError:  # the daemon is still creating the schema
            return {}
        return dict(row) if row else {}


def set_row(root: Path, job_id: int, **fields) -> None:
    with sqlite3.connect(root / "state/watchd.db") as conn:
        sets = ", ".join(f"{k} = ?" for k in fields)
        conn.execute(f"update jobs set {sets} where id = ?", [*fields.values(), job_id])


def uploads_of(sim: Simulator, data: bytes) -> int:
    return sum(1 for u in sim.uploads if u.image_sha256 == sha(data) and u.task_id)


@pytest.fixture
def sim():
    with Simulator(SimConfig(qps=30, processing_time=(0.1, 0.2), seed=21)).start() as s:
        yield s


def test_killed_while_a_create_is_on_the_wire_resubmits_once(tmp_path: Path, sim) -> None:
    sim.update(slow=1.0, slow_delay=4.0)  # every request hangs 4 s: the create is on the wire
    cfg = write_config(tmp_path, sim.base_url, folders=[{"name": "f"}])
    data = drop(tmp_path / "f/inbox/a.png", seed=1)
    daemon = DaemonProcess(cfg).start()
    wait_for(lambda: job_row(tmp_path, "a.png").get("state") == "submitting", 20, "submitting")
    daemon.stop(signal.SIGKILL)
    sim.update(slow=0.0)
    daemon = DaemonProcess(cfg).start()
    wait_for(lambda: files(tmp_path / "f/done") == ["a.png"], 30, "done after restart")
    assert daemon.stop() == 0
    row = job_row(tmp_path, "a.png")
    assert row["state"] == "done" and row["ambiguous"] == 1
    assert files(tmp_path / "f/outbox") == ["a.png"]
    # The first create may or may not have reached the API: at most one extra charge.
    assert 1 <= uploads_of(sim, data) <= 2


def test_killed_after_the_task_id_polls_the_same_task(tmp_path: Path, sim) -> None:
    sim.update(processing_time=(3.0, 3.0))
    cfg = write_config(tmp_path, sim.base_url, folders=[{"name": "f"}])
    data = drop(tmp_path / "f/inbox/b.png", seed=2)
    daemon = DaemonProcess(cfg).start()
    wait_for(lambda: job_row(tmp_path, "b.png").get("state") == "processing", 20, "processing")
    task_id = job_row(tmp_path, "b.png")["task_id"]
    daemon.stop(signal.SIGKILL)
    daemon = DaemonProcess(cfg).start()
    wait_for(lambda: files(tmp_path / "f/done") == ["b.png"], 30, "done after restart")
    assert daemon.stop() == 0
    row = job_row(tmp_path, "b.png")
    assert row["task_id"] == task_id and row["attempts"] == 1 and row["ambiguous"] == 0
    assert uploads_of(sim, data) == 1  # polled again, not created again
    assert files(tmp_path / "f/outbox") == ["b.png"]


def _park_in_processing(tmp_path: Path, sim: Simulator, name: str, seed: int):
    """Run until the task exists, SIGKILL, and return (config, original bytes, row, url)."""
    sim.update(processing_time=(1.5, 1.5))
    cfg = write_config(tmp_path, sim.base_url, folders=[{"name": "f"}])
    data = drop(tmp_path / "f/inbox" / name, seed=seed)
    daemon = DaemonProcess(cfg).start()
    wait_for(lambda: job_row(tmp_path, name).get("state") == "processing", 20, "processing")
    daemon.stop(signal.SIGKILL)
    row = job_row(tmp_path, name)

    def finished_url() -> str | None:
        body = httpx.get(
            f"{sim.base_url}/api/tasks/visual/advanced-image-expand/{row['task_id']}",
            headers={"X-API-KEY": KEY},
        ).json()
        return body["data"].get("image") if body["data"]["state"] == 1 else None

    url = wait_for(finished_url, 10, "the task to finish")
    return cfg, data, row, url


def test_killed_during_the_download_finishes_without_a_new_task(tmp_path: Path, sim) -> None:
    cfg, data, row, url = _park_in_processing(tmp_path, sim, "c.png", seed=3)
    # The state a kill mid-download leaves: downloading, result known, nothing written.
    set_row(tmp_path, row["id"], state="downloading", results=json.dumps([url]))
    daemon = DaemonProcess(cfg).start()
    wait_for(lambda: files(tmp_path / "f/done") == ["c.png"], 30, "done after restart")
    assert daemon.stop() == 0
    assert uploads_of(sim, data) == 1
    assert files(tmp_path / "f/outbox") == ["c.png"]


def _written_result(tmp_path: Path, name: str, url: str) -> tuple[Path, bytes, list[dict]]:
    """The result as the daemon would have written it to the outbox, and its ledger plan."""
    result = httpx.get(url).content
    out = tmp_path / "f/outbox" / name
    out.write_bytes(result)
    return out, result, [{"path": str(out), "sha256": hashlib.sha256(result).hexdigest()}]


def test_killed_after_the_outbox_write_writes_nothing_twice(tmp_path: Path, sim) -> None:
    cfg, data, row, url = _park_in_processing(tmp_path, sim, "d.png", seed=4)
    # The result is durable in the outbox and planned in the ledger, but the kill came
    # before the state moved on: the replay must recognise its own file.
    out, result, planned = _written_result(tmp_path, "d.png", url)
    set_row(
        tmp_path,
        row["id"],
        state="downloading",
        results=json.dumps([url]),
        outputs=json.dumps(planned),
    )
    daemon = DaemonProcess(cfg).start()
    wait_for(lambda: files(tmp_path / "f/done") == ["d.png"], 30, "done after restart")
    assert daemon.stop() == 0
    assert files(tmp_path / "f/outbox") == ["d.png"]  # no d_2.png
    assert out.read_bytes() == result
    assert uploads_of(sim, data) == 1


def test_killed_before_the_original_moved_moves_it_on_restart(tmp_path: Path, sim) -> None:
    cfg, data, row, url = _park_in_processing(tmp_path, sim, "e.png", seed=5)
    _, _, planned = _written_result(tmp_path, "e.png", url)
    set_row(tmp_path, row["id"], state="finishing", outputs=json.dumps(planned))
    daemon = DaemonProcess(cfg).start()
    wait_for(lambda: files(tmp_path / "f/done") == ["e.png"], 30, "done after restart")
    assert daemon.stop() == 0
    assert files(tmp_path / "f/outbox") == ["e.png"]
    assert (tmp_path / "f/done/e.png").read_bytes() == data
    assert uploads_of(sim, data) == 1
