"""End to end: names a Linux filesystem accepts, and inbox entries that are no files to read.

The real simulator over a socket and the real `watchd run` process. Every name is either
processed or refused before paying with its reason, and every name watchd derives fits.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from tests.e2e import DaemonProcess, drop, image_bytes, sha, wait_for, write_config
from watchd.sim import SimConfig, Simulator

pytestmark = pytest.mark.e2e

NAME_MAX = 255


@pytest.fixture
def sim():
    with Simulator(SimConfig(qps=30, processing_time=(0.1, 0.2), seed=11)).start() as s:
        yield s


def drop_as(path: Path, data: bytes) -> bytes:
    """e2e.drop for a name too long for its `.NAME.tmp`: a short temporary name instead."""
    tmp = path.parent / ".dropping"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def names(folder: Path) -> list[bytes]:
    return sorted(os.listdir(os.fsencode(folder)))


def test_names_of_255_bytes_are_processed_and_their_derived_names_fit(
    tmp_path: Path, sim: Simulator
):
    """A result and an original whose names are taken get numbered names, a report gets
    NAME.error.json: each would be 257 or 266 bytes; each is cut to fit, extension kept."""
    cfg = write_config(tmp_path, sim.base_url, [{"name": "f", "output_format": "png"}])
    base = tmp_path / "f"
    long_good = "x" * 251 + ".png"
    long_small = "é" * 124 + "xyz.png"  # 248 + 7 = 255 bytes, and 40×40 px: refused
    assert len(os.fsencode(long_good)) == len(os.fsencode(long_small)) == NAME_MAX
    (base / "done" / long_good).write_bytes(b"an earlier original of that name")
    (base / "outbox" / long_good).write_bytes(b"an earlier result of that name")
    good = drop_as(base / "inbox" / long_good, image_bytes((200, 150), "PNG", seed=1))
    drop_as(base / "inbox" / long_small, image_bytes((40, 40), "PNG", seed=2))
    daemon = DaemonProcess(cfg).start()
    daemon.wait_started()
    wait_for(lambda: len(names(base / "done")) == 2, 30, "the long name done")
    wait_for(lambda: len(names(base / "failed")) == 2, 30, "the small one failed")
    assert daemon.stop() == 0
    for folder in ("done", "outbox", "failed"):
        for raw in names(base / folder):
            assert len(raw) <= NAME_MAX, (folder, raw)
            assert not raw.startswith(b".watchd-"), (folder, raw)  # no temporary file left
    done = [n.decode() for n in names(base / "done") if n != long_good.encode()]
    assert len(done) == 1 and done[0].endswith("_2.png")
    assert (base / "done" / done[0]).read_bytes() == good
    assert len(names(base / "outbox")) == 2
    report = next(n.decode() for n in names(base / "failed") if n.endswith(b".error.json"))
    assert report.endswith(".png.error.json") and report.startswith("é" * 100)
    assert "64..4096" in json.loads((base / "failed" / report).read_text())["reason"]
    assert len(sim.uploads) == 1 and sim.uploads[0].image_sha256 == sha(good)


def test_a_socket_fails_with_its_reason_and_an_unreadable_file_stays_with_one(
    tmp_path: Path, sim: Simulator
):
    """Run without root's right to read everything (a service user's view): the file
    nobody may read stays in the inbox, logged; the socket fails before paying."""
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root without setpriv(1) reads every file")
    wrap = (
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]
        if os.geteuid() == 0
        else []
    )
    cfg = write_config(tmp_path, sim.base_url, [{"name": "f"}])
    inbox = tmp_path / "f" / "inbox"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(inbox / "s.png"))
    secret = inbox / "secret.png"
    secret.write_bytes(image_bytes((100, 100), "PNG", seed=3))
    secret.chmod(0)
    fine = drop(inbox / "fine.png", (150, 120), seed=4)
    daemon = DaemonProcess(cfg, wrap=wrap).start()
    daemon.wait_started()
    failed = tmp_path / "f" / "failed"
    wait_for(lambda: (failed / "s.png.error.json").exists(), 30, "the socket failed")
    wait_for(lambda: (tmp_path / "f" / "done" / "fine.png").exists(), 30, "the good file done")
    wait_for(lambda: "watchd may not read it" in daemon.log(), 30, "the unreadable file logged")
    assert daemon.stop() == 0
    reason = json.loads((failed / "s.png.error.json").read_text())["reason"]
    assert reason == "s.png is not a regular file (a socket)"
    assert secret.exists()
    left = [e for e in daemon.events() if e.get("file") == "secret.png"]
    assert left and "permission denied" in left[0]["reason"]
    assert [u.image_sha256 for u in sim.uploads] == [sha(fine)]


def test_a_name_that_is_not_utf8_is_processed_and_the_files_beside_it_too(
    tmp_path: Path, sim: Simulator
):
    """A Latin-1 byte, as old SMB clients and Windows zip files write: the name is kept,
    byte for byte, through the outbox and done/; the log shows it escaped."""
    cfg = write_config(tmp_path, sim.base_url, [{"name": "f"}])
    base = tmp_path / "f"
    latin = image_bytes((200, 150), "JPEG", seed=5)
    with open(os.fsencode(base / "inbox") + b"/caf\xe9.jpg", "wb") as fh:
        fh.write(latin)
    good = drop(base / "inbox" / "good.jpg", seed=6)
    daemon = DaemonProcess(cfg).start()
    daemon.wait_started()
    wait_for(lambda: len(names(base / "done")) == 2 or daemon.proc.poll() is not None, 30)
    assert daemon.stop() == 0, daemon.log()[-3000:]
    assert names(base / "done") == [b"caf\xe9.jpg", b"good.jpg"]
    assert names(base / "outbox") == [b"caf\xe9.jpg", b"good.jpg"]
    assert sorted(u.image_sha256 for u in sim.uploads) == sorted([sha(latin), sha(good)])
    assert any(e.get("file") == "caf\\xe9.jpg" for e in daemon.events())
