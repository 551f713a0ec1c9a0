"""End to end for notifications: the real `watchd run`, the simulator, and an Apprise json://
target pointing at a local HTTP receiver. A wrong key makes one `paused` and no spam; fixing
the key makes one `resumed`; a file refused before paying makes one `failed`. No message
holds a key or the target's URL."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e import DaemonProcess, drop, files, wait_for, write_config
from tests.test_notifications import TOKEN, Receiver
from watchd.sim import SimConfig, Simulator

pytestmark = pytest.mark.e2e

GOOD = "good-key-0123456789"
BAD = "wrong-key-9876543210"


def test_a_wrong_key_pauses_once_and_the_fixed_key_resumes_once(tmp_path: Path) -> None:
    receiver = Receiver()
    sim = Simulator(SimConfig(qps=20, processing_time=(0.1, 0.2), valid_keys={GOOD}, seed=3))
    sim.start()
    key = tmp_path / "api-key"
    key.write_text(BAD + "\n")
    key.chmod(0o600)
    config = write_config(
        tmp_path,
        sim.base_url,
        [{"name": "plain"}],
        api={"key_file": str(key)},
        notify=[{"url": receiver.url, "on": ["failed", "paused", "resumed"]}],
    )
    daemon = DaemonProcess(config).start()
    try:
        daemon.wait_started()
        inbox = tmp_path / "plain" / "inbox"
        for n in range(3):
            drop(inbox / f"photo{n}.png", seed=n)
        drop(inbox / "tiny.png", size=(20, 20), seed=9)  # refused before paying
        receiver.wait_hits(2, timeout=30)  # the pause and the failure
        pauses_seen = sim.stats["http_401"]
        time.sleep(2)  # the daemon keeps running while paused: still one message
        assert sum("paused" in b["title"] for b in receiver.bodies) == 1
        assert sim.stats["http_401"] == pauses_seen  # paused: no more creates with a bad key
        key.write_text(GOOD + "\n")  # the daemon watches the key file while paused
        wait_for(lambda: len(files(tmp_path / "plain" / "done")) == 3, 60, "3 files done")
        receiver.wait_hits(3, timeout=30)
    finally:
        daemon.stop()
        sim.stop()
        receiver.close()
    titles = sorted(b["title"] for b in receiver.bodies)
    assert titles == [
        "watchd: 1 file failed",
        "watchd: creates paused (all folders)",
        "watchd: creates resumed (all folders)",
    ]
    failed = next(b for b in receiver.bodies if "failed" in b["title"])
    assert failed["message"].startswith("plain/tiny.png: image is 20×20 px")
    text = json.dumps(receiver.bodies) + daemon.log()
    for secret in (GOOD, BAD, TOKEN):
        assert secret not in text
    assert "HTTP 401" in json.dumps(receiver.bodies)
    assert yaml.safe_load(config.read_text())["notify"]  # the config really had the target


def test_a_wrong_key_read_by_a_reload_pauses_once_without_flapping(tmp_path: Path) -> None:
    """A reload that reads a new, wrong key is not also taken for a key-file change later:
    that lifted the 401 pause at the next check, and the next create paused it again
    (paused, resumed, paused: three messages for one mistake)."""
    receiver = Receiver()
    sim = Simulator(SimConfig(qps=20, processing_time=(0.1, 0.2), valid_keys={GOOD}, seed=4))
    sim.start()
    key = tmp_path / "api-key"
    key.write_text(GOOD + "\n")
    key.chmod(0o600)
    config = write_config(
        tmp_path,
        sim.base_url,
        [{"name": "plain"}],
        api={"key_file": str(key)},
        notify=[{"url": receiver.url, "on": ["paused", "resumed"]}],
    )
    daemon = DaemonProcess(config).start()
    try:
        daemon.wait_started()
        key.write_text(BAD + "\n")
        daemon.send(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in daemon.log(), 20, "the reload")
        for n in range(2):
            drop(tmp_path / "plain" / "inbox" / f"photo{n}.png", seed=n)
        receiver.wait_hits(1, timeout=30)
        time.sleep(12)  # past the watcher's checks, which look for a changed key file
    finally:
        daemon.stop()
        sim.stop()
        receiver.close()
    assert [b["title"] for b in receiver.bodies] == ["watchd: creates paused (all folders)"]
    assert sim.stats["http_401"] == 1
