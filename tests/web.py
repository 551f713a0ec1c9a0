"""Helpers for the dashboard's tests: a config, a ledger with jobs made through the real
transitions, and the app behind httpx (no socket), all on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e import drop, folder_paths
from watchd.clock import FakeClock
from watchd.config import Config, load_config
from watchd.ledger import Ledger
from watchd.lifecycle import Event
from watchd.web.live import LiveState
from watchd.web.server import DashboardServer

BASE = "http://127.0.0.1:8750"


def write_cfg(root: Path, folders: tuple[str, ...] = ("products", "banners"), **http: Any) -> Path:
    cfg = {
        "state_dir": str(root / "state"),
        "http": http or {"listen": "127.0.0.1:8750"},
        "folders": [
            {"name": name, **folder_paths(root, name), "expand": {"top": 0.2, "bottom": 0.2}}
            for name in folders
        ],
    }
    path = root / "watchd.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@dataclass
class World:
    root: Path
    cfg: Config
    ledger: Ledger
    clock: FakeClock
    live: LiveState
    server: DashboardServer
    writes: list[str]

    def done_job(
        self,
        folder: str,
        name: str,
        size: tuple[int, int] = (300, 200),
        result: tuple[int, int] = (390, 280),
        seed: int = 1,
    ) -> int:
        """A job taken through every step to done/, with its original and result on disk."""
        original = self.root / folder / "done" / name
        drop(original, size, seed=seed)
        output = self.root / folder / "outbox" / name
        drop(output, result, seed=seed + 1000)
        job = self.ledger.add_job(
            {
                "folder": folder,
                "key": f"{folder}:{name}:{seed}",
                "path": str(original),
                "name": name,
                "size": original.stat().st_size,
                "width": size[0],
                "height": size[1],
                "upload_width": size[0],
                "upload_height": size[1],
                "params": {
                    "top": 0.2,
                    "bottom": 0.2,
                    "left": 0.1,
                    "right": 0.1,
                    "prompt": "studio",
                },
            }
        )
        t = self.ledger
        t.commit(
            job, Event.SUBMIT, {"attempt": 1, "cause": None}, submitted_at=self.clock.wall()
        )
        t.commit(
            job,
            Event.CREATED,
            {"task_id": f"task-{job}", "bytes_up": 1000},
            task_id=f"task-{job}",
        )
        t.commit(
            job,
            Event.POLL_DONE,
            {"task_id": f"task-{job}", "seconds": 4.5},
            task_seconds=4.5,
        )
        outputs = [{"path": str(output), "sha256": "x"}]
        t.commit(job, Event.WRITTEN, {"outputs": outputs, "bytes_down": 2000}, outputs=outputs)
        t.commit(job, Event.MOVED, {"to": str(original)})
        return job

    def failed_job(
        self,
        folder: str,
        name: str,
        reason: str = "Processing failed because the prompt is invalid.",
        code: str = "state -17",
        seed: int = 7,
    ) -> int:
        """A job failed by the API, its original in failed/."""
        original = self.root / folder / "failed" / name
        drop(original, (200, 150), seed=seed)
        job = self.ledger.add_job(
            {
                "folder": folder,
                "key": f"{folder}:{name}:{seed}",
                "path": str(original),
                "name": name,
                "width": 200,
                "height": 150,
            }
        )
        t = self.ledger
        t.commit(job, Event.SUBMIT, {"attempt": 1}, submitted_at=self.clock.wall())
        t.commit(job, Event.CREATED, {"task_id": f"task-{job}"}, task_id=f"task-{job}")
        t.commit(
            job, Event.FAIL, {"reason": reason, "code": code}, error_reason=reason, error_code=code
        )
        t.commit(job, Event.MOVED, {"to": str(original)})
        return job

    def waiting_job(self, folder: str, name: str, seed: int = 20) -> int:
        path = self.root / folder / "inbox" / name
        drop(path, (200, 150), seed=seed)
        return self.ledger.add_job(
            {"folder": folder, "key": f"{folder}:{name}:{seed}", "path": str(path), "name": name}
        )

    @contextmanager
    def client(self, **kwargs: Any) -> Iterator[SyncClient]:
        client = SyncClient(self.server.app, **kwargs)
        try:
            yield client
        finally:
            client.close()


class SyncClient:
    """httpx over the ASGI app, no socket; each request runs on a private event loop (the
    app's reader thread hands its results back to that loop)."""

    def __init__(
        self, app: Any, headers: dict[str, str] | None = None, base_url: str = BASE
    ) -> None:
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
        self.http = httpx.AsyncClient(transport=transport, base_url=base_url, headers=headers)

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.request(method, url, **kw))

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


def make_world(root: Path, *, writer: Callable[..., Any] | None = None, **http: Any) -> World:
    cfg = load_config(write_cfg(root, **http))
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    clock = FakeClock(wall=1_750_000_000.0)
    ledger = Ledger.open(cfg.state_dir / "watchd.db", clock=clock)
    live = LiveState(started=clock.mono(), qps=2.0, budget_rate=1.94)
    live.beat(clock.mono())
    writes: list[str] = []

    def do_write(fn: Callable[[Ledger], Any]) -> Any:
        writes.append(getattr(fn, "__name__", "fn"))
        return fn(ledger)

    server = DashboardServer(
        cfg, cfg.state_dir / "watchd.db", live, do_write=writer or do_write, clock=clock
    )
    ledger.observers.add(server.metrics.observe)
    return World(root, cfg, ledger, clock, live, server, writes)


def close_world(world: World) -> None:
    world.server._close_threads()
    world.ledger.close()


def csrf_of(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]
