"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the real
`watchd run` and the simulator over sockets.

It checks what an operator would: the overview shows the folders; a job page's two images
load; retry on a failed job puts it back to waiting, seen live without a reload; pausing a
folder stops its creates (and resuming starts them again). It saves screenshots of the
overview and of a job page: into docs/ with

    WATCHD_SCREENSHOTS=docs python -m pytest tests/test_e2e_browser.py

and into the test's temporary folder otherwise. Skipped, saying why, only where no browser
can be had (`apt-get install -y chromium`, `pip install playwright`; never
`playwright install`: it downloads a browser build of its own).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import DaemonProcess, wait_for, write_config
from watchd.demo import sample_image
from watchd.sim import SimConfig, Simulator

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("WATCHD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALL_LOADED = """(selector) => {
  const images = [...document.querySelectorAll(selector)];
  return images.length > 0 && images.every((i) => i.complete && i.naturalWidth > 0);
}"""
BAD_PROMPT = "FAILME"  # the simulator fails tasks with this prompt: "the prompt is invalid"


@pytest.fixture
def playwright() -> Any:
    """Playwright's sync API with Debian's Chromium, or a skip that says what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no browser: the playwright package is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no browser: {CHROMIUM} not found (as root: apt-get install -y chromium)")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _drop(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(sample_image(size, path.stem, "JPEG"))
    os.replace(tmp, path)


class Ledger:
    """The daemon's ledger, read as the dashboard reads it (read-only)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def state(self, job_id: int) -> str | None:
        found = self.rows("select state from jobs where id = ?", job_id)
        return found[0][0] if found else None

    def ids(self, folder: str, state: str) -> list[int]:
        return [
            r[0] for r in self.rows("select id from jobs where folder=? and state=?", folder, state)
        ]


@pytest.fixture
def site(playwright: Any, tmp_path: Path):
    sim = Simulator(
        SimConfig(
            qps=20, processing_time=(0.3, 0.8), seed=5, offset_px=2, fail_prompt={BAD_PROMPT: -17}
        )
    ).start()
    port = _free_port()
    cfg = write_config(
        tmp_path,
        sim.base_url,
        [
            {
                "name": "products",
                "expand": {"top": 0.2, "bottom": 0.2, "left": 0.15, "right": 0.15},
                "prompt": "clean studio background",
            },
            {"name": "banners", "expand": {"top": 0.05, "bottom": 0.05, "left": 0.6, "right": 0.6}},
            {"name": "rejects", "prompt": BAD_PROMPT},
        ],
        http={"listen": f"127.0.0.1:{port}"},
    )
    for name, size in (
        ("mug.jpg", (640, 480)),
        ("lamp.jpg", (480, 640)),
        ("chair.jpg", (600, 600)),
    ):
        _drop(tmp_path / "products" / "inbox" / name, size)
    _drop(tmp_path / "banners" / "inbox" / "sneaker.jpg", (800, 500))
    _drop(tmp_path / "rejects" / "inbox" / "odd.jpg", (500, 400))
    daemon = DaemonProcess(cfg).start()
    try:
        daemon.wait_started()
        ledger = Ledger(tmp_path / "state" / "watchd.db")
        wait_for(lambda: len(ledger.ids("products", "done")) == 3, 60, "products done")
        wait_for(lambda: ledger.ids("rejects", "failed"), 60, "the rejected job failed")
        wait_for(lambda: ledger.ids("banners", "done"), 60, "banners done")
        yield {
            "url": f"http://127.0.0.1:{port}",
            "root": tmp_path,
            "ledger": ledger,
            "sim": sim,
            "daemon": daemon,
        }
    finally:
        code = daemon.stop()
        sim.stop()
        assert code == 0, daemon.log()[-3000:]


def test_the_dashboard_in_a_real_browser(playwright: Any, site, tmp_path: Path) -> None:
    shots = Path(os.environ.get("WATCHD_SCREENSHOTS") or tmp_path)
    url, ledger, sim = site["url"], site["ledger"], site["sim"]
    done = max(ledger.ids("products", "done"))
    failed = ledger.ids("rejects", "failed")[0]
    with playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a new, empty profile
            executable_path=CHROMIUM,
            args=FLAGS,
            viewport={"width": 1360, "height": 900},
        )
        page = context.new_page()
        try:
            # The overview shows the folders.
            page.goto(url + "/")
            for folder in ("products", "banners", "rejects"):
                assert (
                    page.locator(f'article[data-folder="{folder}"] h2')
                    .inner_text()
                    .startswith(folder)
                )
            page.wait_for_function(ALL_LOADED, arg=".last img")
            page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)

            # A job page's two images have loaded.
            page.goto(f"{url}/job/{done}")
            page.wait_for_function(ALL_LOADED, arg=".pair img")
            widths = page.eval_on_selector_all(".pair img", "els => els.map(e => e.naturalWidth)")
            assert len(widths) == 2 and all(w > 0 for w in widths)
            for src in page.eval_on_selector_all(".pair img", "els => els.map(e => e.src)"):
                answer = page.request.get(src)
                assert answer.status == 200 and answer.headers["content-type"] == "image/jpeg"
            page.screenshot(path=str(shots / "dashboard-job.png"), full_page=True)

            # Pausing a folder from the overview (no reload: the banner appears live).
            page.goto(url + "/")
            page.evaluate("window.__same_page = true")
            card = page.locator('article[data-folder="rejects"]')
            card.locator('input[name="reason"]').fill("checking the prompt")
            card.get_by_role("button", name="Pause").click()
            page.get_by_text("Folder rejects is paused").wait_for(timeout=15_000)
            assert page.evaluate("window.__same_page") is True
            assert "rejects" in {
                r[0][len("pause:") :]
                for r in ledger.rows("select key from meta where key like 'pause:%'")
            }

            # Retry a failed job: back to waiting, seen live without a reload (and it stays
            # waiting, because its folder is paused).
            creates = sim.stats["creates"]
            page.goto(f"{url}/job/{failed}")
            assert page.locator("#job-state").inner_text() == "failed"
            page.evaluate("window.__same_page = true")
            page.get_by_role("button", name="Retry").click()
            page.locator("#flash .ok").wait_for(timeout=10_000)
            page.wait_for_function(
                "() => document.querySelector('#job-state').innerText.trim() === 'waiting'",
                timeout=30_000,
            )
            assert page.evaluate("window.__same_page") is True

            # Pausing stops its creates: a new file waits too, and nothing is sent.
            _drop(site["root"] / "rejects" / "inbox" / "late.jpg", (300, 300))
            wait_for(lambda: len(ledger.ids("rejects", "waiting")) == 2, 30, "both waiting")
            time.sleep(3)  # e2e: give the daemon time to (wrongly) send them
            assert sim.stats["creates"] == creates
            assert len(ledger.ids("rejects", "waiting")) == 2

            # Resuming (the banner's button) sends them.
            page.locator("#banners").get_by_role("button", name="Resume").click()
            wait_for(lambda: sim.stats["creates"] >= creates + 2, 30, "creates after resume")
            page.locator("#banners").get_by_text("Folder rejects is paused").wait_for(
                state="detached", timeout=15_000
            )
        finally:
            context.close()
