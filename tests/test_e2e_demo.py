"""`watchd demo` shows its dashboard: the address while it runs, and with --serve the page
stays up with the real before/after images until Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e import wait_for

pytestmark = pytest.mark.e2e


def test_demo_serve_keeps_the_dashboard_up_until_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watchd", "demo", "--serve", "--dir", str(tmp_path / "ws")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "120"},
        )
        try:
            line = wait_for(
                lambda: re.search(r"the dashboard stays up at (http://\S+)", log.read_text()),
                90,
                "the demo to finish its images",
            )
            url = line.group(1)
            assert f"dashboard: {url}" in log.read_text()  # said while it ran, too
            overview = httpx.get(url, timeout=10)
            job = httpx.get(url + "job/1", timeout=10)
            picture = httpx.get(url + "img/1/result1/m", timeout=10)
            assert proc.poll() is None  # still serving
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(30)
    assert overview.status_code == 200 and 'data-folder="expand"' in overview.text
    assert job.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert code == 0, log.read_text()[-2000:]
    assert "every original is in its folder's done/" in log.read_text()
