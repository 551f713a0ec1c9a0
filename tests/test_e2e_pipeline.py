"""End to end: the real simulator over a socket and the real `watchd run` process."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.e2e import (
    DaemonProcess,
    drop,
    files,
    image_bytes,
    image_size,
    run_cli,
    sha,
    wait_for,
    write_config,
)
from watchd.sim import SimConfig, Simulator

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim():
    with Simulator(SimConfig(qps=20, processing_time=(0.1, 0.3), seed=3)).start() as s:
        yield s


def expanded(size: tuple[int, int], t: float, b: float, left: float, r: float) -> tuple[int, int]:
    w, h = size
    return round(w * (1 + left + r)), round(h * (1 + t + b))


def test_three_folders_end_to_end(tmp_path: Path, sim: Simulator) -> None:
    """Issue 3 acceptance: waiting and dropped files, ignored junk, three kinds of folder."""
    mask = tmp_path / "mask.png"
    mask.write_bytes(image_bytes((200, 150), "PNG", seed=99))
    cfg = write_config(
        tmp_path,
        sim.base_url,
        presets={
            "banner": {
                "expand": {"top": 0.1, "bottom": 0.1, "left": 0.6, "right": 0.6},
                "prompt": "clean studio background",
            }
        },
        folders=[
            {"name": "plain", "expand": {"top": 0.2, "bottom": 0.2, "left": 0.1, "right": 0.1}},
            {"name": "canvas", "mask": str(mask)},
            {"name": "promo", "preset": "banner", "expand": {"top": 0.05}},
        ],
    )
    root = tmp_path
    # Two images already waiting before the daemon starts.
    before = {
        ("plain", "early.png"): drop(root / "plain/inbox/early.png", (200, 150), seed=1),
        ("promo", "early.JPG"): drop(root / "promo/inbox/early.JPG", (160, 120), seed=2),
    }
    daemon = DaemonProcess(cfg).start()
    try:
        daemon.wait_started()
        dropped = {}
        names = [
            ("plain", "Photo ONE.PNG"),
            ("plain", "café straße.jpg"),
            ("plain", "x.JPEG"),
            ("plain", "d.png"),
            ("canvas", "c1.png"),
            ("canvas", "C2.JPG"),
            ("canvas", "c 3.png"),
            ("promo", "p1.png"),
            ("promo", "Ünïcødé banner.jpeg"),
            ("promo", "p3.PNG"),
        ]
        for i, (folder, name) in enumerate(names, start=10):
            size = (200, 150) if folder == "canvas" else (180 + i, 140)
            dropped[(folder, name)] = drop(root / folder / "inbox" / name, size, seed=i)
        (root / "plain/inbox/.hidden.png").write_bytes(image_bytes((100, 100), seed=50))
        (root / "plain/inbox/upload.png.part").write_bytes(image_bytes((100, 100), seed=51))
        everything = {**before, **dropped}

        status = run_cli("status", "--json", "-c", str(cfg))
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["daemon"]["running"] is True

        def all_done() -> bool:
            return all((root / f / "done" / n).exists() for f, n in everything)

        wait_for(all_done, 60, "every original in done/")
    finally:
        code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.log()[-3000:]

    # Every result is in its outbox at the expanded size (canvas: the input's size).
    for folder, name in everything:
        out = root / folder / "outbox" / name
        assert out.exists(), (folder, name, files(root / folder / "outbox"))
        src = image_size(root / folder / "done" / name)
        if folder == "plain":
            assert image_size(out) == expanded(src, 0.2, 0.2, 0.1, 0.1)
        elif folder == "canvas":
            assert image_size(out) == src
        else:
            assert image_size(out) == expanded(src, 0.05, 0.1, 0.6, 0.6)
    # The ignored files are untouched in the inbox; nothing failed.
    assert files(root / "plain/inbox") == [".hidden.png", "upload.png.part"]
    assert all(files(root / f / "failed") == [] for f in ("plain", "canvas", "promo"))
    # The simulator saw each image exactly once, with the folder's parameters.
    uploads = [u for u in sim.uploads if u.status == 200]
    by_sha = {u.image_sha256: u for u in uploads}
    assert len(uploads) == len(everything) == len(by_sha)
    for (folder, _), data in everything.items():
        up = by_sha[sha(data)]
        assert up.complete
        if folder == "plain":
            assert float(up.params["top"]) == 0.2 and float(up.params["left"]) == 0.1
            assert up.mask_sha256 is None
        elif folder == "canvas":
            assert up.mask_sha256 == sha(mask.read_bytes())
            assert "top" not in up.params
        else:
            assert up.params["prompt"] == "clean studio background"
            assert float(up.params["top"]) == 0.05 and float(up.params["left"]) == 0.6
    # Every log line about a job carries job, folder and file.
    job_lines = [e for e in daemon.events() if "job" in e]
    assert job_lines and all({"folder", "file"} <= e.keys() for e in job_lines)


def test_sync_mode_spends_one_request_per_task(tmp_path: Path, sim: Simulator) -> None:
    """api.mode: sync: the create answers with the result; no polls at all."""
    cfg = write_config(
        tmp_path,
        sim.base_url,
        api={"mode": "sync", "return_type": "base64"},
        folders=[{"name": "s"}],
    )
    for i in range(4):
        drop(tmp_path / f"s/inbox/s{i}.png", (120, 100), seed=200 + i)
    daemon = DaemonProcess(cfg).start()
    try:
        daemon.wait_started()
        wait_for(lambda: len(files(tmp_path / "s/done")) == 4, 30, "4 done in sync mode")
    finally:
        assert daemon.stop() == 0
    assert sim.stats["creates"] == 4 and sim.stats["queries"] == 0
    assert all(u.sync for u in sim.uploads)
    for i in range(4):
        assert image_size(tmp_path / f"s/outbox/s{i}.png") == expanded((120, 100), *[0.1] * 4)
