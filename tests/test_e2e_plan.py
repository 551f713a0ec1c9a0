"""End to end for `watchd plan`: on a mixed inbox, what plan says is what the real daemon
then sends (the simulator's upload records: ratios, mask, pixels) and refuses (error.json
codes in failed/), and its create count is the simulator's."""

from __future__ import annotations

import json
import sqlite3
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e import DaemonProcess, drop, files, run_cli, wait_for, write_config
from watchd.sim import SimConfig, Simulator

pytestmark = pytest.mark.e2e


def mask(size: tuple[int, int]) -> bytes:
    img = Image.new("L", size, 0)
    img.paste(255, (0, 0, size[0] // 4, size[1]))
    buf = BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_plan_matches_what_the_daemon_then_sends_and_refuses(tmp_path: Path) -> None:
    root = tmp_path
    (root / "mask.png").write_bytes(mask((100, 100)))
    cfg = write_config(
        root,
        "http://127.0.0.1:9",  # set below, once the simulator has a port
        folders=[
            {"name": "plain"},
            {"name": "square", "target": {"aspect": "1:1", "margin": 0.05}},
            {"name": "tall", "target": {"aspect": "1:10"}},
            {"name": "masked", "mask": str(root / "mask.png")},
            {"name": "fitted", "fit": True},
        ],
    )
    drop(root / "plain/inbox/ok.png", (200, 150), seed=1)
    drop(root / "plain/inbox/ok-again.png", (200, 150), seed=1)  # the same bytes
    drop(root / "plain/inbox/tiny.png", (40, 30), seed=2)
    drop(root / "plain/inbox/huge.png", (4200, 70), seed=3)
    (root / "plain/inbox/fake.jpg").write_bytes(b"GIF89a not really an image")
    drop(root / "square/inbox/wide.png", (300, 150), seed=4)
    drop(root / "square/inbox/tall.png", (150, 300), seed=5)
    drop(root / "tall/inbox/wide.png", (300, 150), seed=6)
    drop(root / "masked/inbox/fits.png", (100, 100), seed=7)
    drop(root / "masked/inbox/mismatch.png", (200, 150), seed=8)
    drop(root / "fitted/inbox/huge.png", (4200, 70), seed=9)

    with Simulator(SimConfig(qps=20, processing_time=(0.05, 0.1), seed=5)).start() as sim:
        cfg.write_text(cfg.read_text().replace("http://127.0.0.1:9", sim.base_url))
        planned = run_cli("plan", "--json", "-c", str(cfg))
        assert planned.returncode == 0, planned.stderr
        rows = [json.loads(line) for line in planned.stdout.splitlines()]
        total = rows.pop()["total"]
        verdict = {(r["folder"], Path(r["path"]).name): r for r in rows}
        assert sim.stats["requests"] == 0  # plan called no API
        assert not (root / "state").exists()  # nor made a ledger

        daemon = DaemonProcess(cfg).start()
        daemon.wait_started()
        wait_for(
            lambda: all(
                not files(root / f / "inbox")
                for f in ("plain", "square", "tall", "masked", "fitted")
            ),
            60,
            "every inbox empty",
        )
        daemon.stop()
        uploads = {u.image_sha256: u for u in sim.uploads if u.status == 200}

    con = sqlite3.connect(f"file:{root / 'state' / 'watchd.db'}?mode=ro", uri=True)
    sent = {
        (folder, sha): uploads[up]
        for folder, sha, up in con.execute("select folder, sha256, upload_sha256 from jobs")
        if up in uploads
    }
    con.close()
    assert total["creates"] == len(uploads) == sim.stats["tasks_created"] == 5
    for key, row in verdict.items():
        folder, name = key
        if row["verdict"] == "send":
            up = sent[(folder, row["sha256"])]
            params = {
                k: float(v) for k, v in up.params.items() if k in ("top", "bottom", "left", "right")
            }
            assert params == {k: float(v) for k, v in row["params"].items()}, key
            assert [up.width, up.height] == row["upload"], key
            assert (up.mask_sha256 is not None) == (row["mask"] is not None), key
            assert name in files(root / folder / "done"), key
        elif row["verdict"] == "refuse":
            error = json.loads((root / folder / "failed" / f"{name}.error.json").read_text())
            assert error["code"] == row["code"], (key, error)
        else:
            assert row["verdict"] == "duplicate" and name in files(root / folder / "done"), key
    assert {k for k, r in verdict.items() if r["verdict"] == "refuse"} == {
        ("plain", "tiny.png"),
        ("plain", "huge.png"),
        ("plain", "fake.jpg"),
        ("tall", "wide.png"),
        ("masked", "mismatch.png"),
    }
