"""`watchd demo`: the whole pipeline offline, in one command, with no key and no network.

Starts the bundled API simulator on loopback, makes a throw-away workspace with three
folders (a four-side expand, a preset with an override, a square `target` saved as JPEG),
drops generated sample images (some before the daemon starts, some while it runs), runs the
real daemon loop until every image is done, and prints what went in and what came out.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from watchd.clock import SystemClock
from watchd.daemon import Daemon
from watchd.ledger import Ledger
from watchd.lifecycle import TERMINAL
from watchd.sim import SimConfig, Simulator

DEMO_TIMEOUT = 120.0

CONFIG = """\
# watchd demo config: made by `watchd demo`, pointing at the bundled simulator.
api:
  base_url: {base_url}
  qps: 4
  poll_interval: 0.5
state_dir: state
log: {{format: console, level: warning}}
http: {{listen: "127.0.0.1:{port}"}}
presets:
  banner:
    expand: {{top: 0.1, bottom: 0.1, left: 0.5, right: 0.5}}
    prompt: "clean studio background"
defaults:
  inbox: "{{name}}/inbox"
  outbox: "{{name}}/outbox"
  done: "{{name}}/done"
  failed: "{{name}}/failed"
  settle: 0.3
folders:
  - name: expand
    expand: {{top: 0.2, bottom: 0.2, left: 0.1, right: 0.1}}
  - name: banner
    preset: banner
    expand: {{top: 0.05}}
    prompt: "soft daylight studio"
  - name: square
    target: {{aspect: "1:1", margin: 0.05}}
    output_format: jpeg
"""

SAMPLES = [
    # (folder, file name, size, dropped while the daemon runs)
    ("expand", "mug.png", (640, 480), False),
    ("expand", "Lamp Shade.JPG", (480, 640), True),
    ("banner", "sneaker.jpg", (800, 500), False),
    ("banner", "bag.png", (600, 600), True),
    ("square", "chair.png", (300, 180), False),
    ("square", "vase.jpg", (150, 300), True),
]


def sample_image(size: tuple[int, int], label: str, fmt: str) -> bytes:
    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(h):  # a soft vertical gradient, so the expansion is visible
        shade = 90 + int(120 * y / h)
        draw.line([(0, y), (w, y)], fill=(shade, shade // 2 + 60, 200 - shade // 3))
    draw.ellipse([w * 0.25, h * 0.2, w * 0.75, h * 0.8], fill=(240, 200, 80), outline=(60, 40, 20))
    draw.text((10, 10), label, fill=(255, 255, 255))
    buf = BytesIO()
    img.save(buf, fmt, quality=90)
    return buf.getvalue()


def _drop(path: Path, size: tuple[int, int]) -> None:
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    tmp = path.with_name("." + path.name + ".part")
    tmp.write_bytes(sample_image(size, path.stem, fmt))
    os.replace(tmp, path)  # appear complete, as a careful copier does


def _free_port(preferred: int = 8750) -> int:
    """The dashboard's usual port if it is free, else one the kernel picks when it binds."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return 0
    return preferred


def run_demo(
    out: Console,
    err: Console,
    *,
    keep: bool = True,
    workdir: Path | None = None,
    serve: bool = False,
) -> int:
    workspace = Path(workdir or tempfile.mkdtemp(prefix="watchd-demo-")).absolute()
    workspace.mkdir(parents=True, exist_ok=True)
    sim = Simulator(SimConfig(qps=4, processing_time=(0.5, 1.5), offset_px=2, seed=7)).start()
    try:
        config_path = workspace / "watchd.yaml"
        config_path.write_text(CONFIG.format(base_url=sim.base_url, port=_free_port()))
        for folder, *_ in SAMPLES:
            (workspace / folder / "inbox").mkdir(parents=True, exist_ok=True)
        for folder, name, size, later in SAMPLES:
            if not later:
                _drop(workspace / folder / "inbox" / name, size)
        err.print(f"[bold]watchd demo[/]: simulator at {sim.base_url}, workspace {workspace}")
        err.print(
            "starting the daemon; 3 images wait in the inboxes, 3 more are dropped while it runs…"
        )

        def drop_later() -> None:
            time.sleep(1.0)
            for folder, name, size, later in SAMPLES:
                if later:
                    _drop(workspace / folder / "inbox" / name, size)

        threading.Thread(target=drop_later, daemon=True).start()
        clock = SystemClock()
        deadline = clock.mono() + DEMO_TIMEOUT
        said: set[str] = set()
        outcome: list[bool] = []

        def finished(ledger: Ledger) -> bool:
            dashboard = getattr(daemon, "dashboard", None)
            url = dashboard.url if dashboard is not None else None
            if url and "url" not in said:
                said.add("url")
                err.print(f"[bold]dashboard:[/] {url}")
            rows = list(ledger.db.query("select state from jobs"))
            complete = len(rows) >= len(SAMPLES) and all(r["state"] in TERMINAL for r in rows)
            if serve:  # until Ctrl-C: the results now, the dashboard on
                if complete and "done" not in said:
                    said.add("done")
                    outcome.append(_report(out, workspace, sim))
                    err.print(f"[bold]the dashboard stays up at {url}[/] (Ctrl-C ends the demo)")
                return False
            return complete or clock.mono() > deadline

        env = dict(os.environ, WATCHD_API_KEY="demo-key-not-secret")
        env.pop("NOTIFY_SOCKET", None)
        daemon = Daemon(config_path, env=env, until=finished)
        asyncio.run(daemon.run())
        ok = outcome[0] if outcome else _report(out, workspace, sim)
    finally:
        sim.stop()
        if not keep:
            shutil.rmtree(workspace, ignore_errors=True)
    if keep:
        out.print(f"look at the results: ls {workspace}/*/outbox {workspace}/*/done")
        out.print(f"ask the ledger:      watchd -c {workspace}/watchd.yaml status")
    return 0 if ok else 1


def _report(out: Console, workspace: Path, sim: Simulator) -> bool:
    ledger = Ledger.open(workspace / "state" / "watchd.db")
    table = Table(
        "folder", "input", "sent as (t, b, l, r)", "outbox", "state", title="watchd demo results"
    )
    ok = True
    import json

    for row in ledger.db.query("select * from jobs order by folder, id"):
        outputs = json.loads(row["outputs"] or "[]")
        params = json.loads(row["params"] or "{}")
        sent = " ".join(
            f"{params[k]:.2f}" for k in ("top", "bottom", "left", "right") if k in params
        )
        shown = []
        for o in outputs:
            with Image.open(o["path"]) as img:
                shown.append(f"{Path(o['path']).name} {img.width}×{img.height}")
        ok &= row["state"] == "done"
        table.add_row(
            row["folder"],
            f"{row['name']} {row['width']}×{row['height']}",
            sent,
            "\n".join(shown) or (row["error_reason"] or ""),
            row["state"],
        )
    ledger.close()
    out.print(table)
    stats = sim.stats
    out.print(
        f"simulator: {stats.get('creates', 0)} creates, {stats.get('queries', 0)} queries,"
        f" {stats.get('http_429', 0)} answered 429"
    )
    out.print(
        "every original is in its folder's done/, every result in its outbox/."
        if ok
        else "[red]some images did not finish[/]"
    )
    return ok
