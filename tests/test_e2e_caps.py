"""End to end for spending caps: the real `watchd run`, the simulator and an Apprise json://
target. With a cap of 5 creates a day and 8 files, exactly 5 creates leave and 3 files wait;
`status` names the cap and until when; one `cap_reached` message is sent. Raising the cap
and reloading (SIGHUP) finishes the rest at once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e import KEY, DaemonProcess, drop, files, wait_for, write_config
from tests.test_notifications import Receiver
from watchd.sim import SimConfig, Simulator

pytestmark = pytest.mark.e2e


def status(config: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "watchd", "status", "--json", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"WATCHD_API_KEY": KEY, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_daily_cap_is_reached_exactly_announced_once_and_a_raise_resumes(tmp_path) -> None:
    receiver = Receiver()
    with Simulator(SimConfig(qps=20, processing_time=(0.1, 0.2), seed=7)).start() as sim:
        config = write_config(
            tmp_path,
            sim.base_url,
            [{"name": "plain"}],
            api={"max_creates_per_day": 5, "timezone": "UTC"},
            notify=[{"url": receiver.url, "on": ["cap_reached", "resumed"]}],
        )
        inbox = tmp_path / "plain" / "inbox"
        for n in range(8):
            drop(inbox / f"photo{n}.png", seed=n)
        daemon = DaemonProcess(config).start()
        try:
            daemon.wait_started()
            wait_for(lambda: len(files(tmp_path / "plain" / "done")) == 5, 30, "5 files done")
            receiver.wait_hits(1, timeout=30)
            time.sleep(1.5)  # more turns of the loop: still 5 creates, still one message
            assert sim.stats["tasks_created"] == 5
            assert len(files(inbox)) == 3  # the rest wait in their inbox
            blocked = status(config)["spend"]["blocked"]
            assert blocked and blocked[0]["cap"] == "api.max_creates_per_day"
            assert blocked[0]["until"].startswith(time.strftime("%Y-", time.gmtime()))
            data = yaml.safe_load(config.read_text())
            data["api"]["max_creates_per_day"] = 8
            config.write_text(yaml.safe_dump(data, sort_keys=False))
            daemon.proc.send_signal(signal.SIGHUP)  # a reload that raises the cap resumes
            wait_for(lambda: len(files(tmp_path / "plain" / "done")) == 8, 30, "all 8 done")
        finally:
            assert daemon.stop() == 0
            receiver.close()
        assert sim.stats["tasks_created"] == 8
    titles = [b["title"] for b in receiver.bodies]
    assert sum("cap" in t for t in titles) == 1, titles
    assert KEY not in json.dumps(receiver.bodies)
