"""A whole watchd in one process, on a fake clock, against the in-memory API (fakeapi.py).

The engine under test never knows it is simulated: the world passes in its clock, its
HTTP transports and how file work runs (inline, so every interleaving follows from the seed).
A crash is a flag: from the instant it is raised, no further side effect happens (no ledger
commit, no file operation, no request), exactly as if the process had been killed; then the
world rebuilds everything from the ledger's committed state and the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
from sqlite_utils import Database

from tests.e2e import image_bytes, write_config
from tests.fakeapi import BASE_URL, KEY, FakeApi, SimCrash
from watchd.api import PicWishClient
from watchd.clock import FakeClock
from watchd.config import Config, load_config
from watchd.engine import Engine
from watchd.ledger import Ledger
from watchd.lifecycle import TERMINAL, State


class SimLedger(Ledger):
    """A ledger that refuses every write once the world has crashed."""

    world: World

    @contextmanager
    def atomic(self) -> Iterator[None]:
        if self.world.crashed:
            raise SimCrash("no commit after the crash")
        with super().atomic():
            yield
        if self.world.crashed:  # the crash came inside the block: it never committed
            raise SimCrash("crashed inside a transaction")


def fast_root() -> Path:
    """tmpfs where there is one: fsync is free there, and the simulation fsyncs a lot."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="watchd-sim-", dir=base))


class World:
    def __init__(
        self,
        root: Path,
        seed: int,
        *,
        folders: list[dict[str, Any]] | None = None,
        api: dict[str, Any] | None = None,
        crash_rate: float = 0.0,
    ) -> None:
        self.root = root
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = FakeClock()
        self.api = FakeApi(self.clock, random.Random(seed * 7 + 1))
        self.db = Database(memory=True)  # committed state survives a crash; nothing else does
        settings = {"qps": 5, "poll_interval": 1.0, "max_in_flight": 4, **(api or {})}
        self.config_path = write_config(root, BASE_URL, folders or [{"name": "f"}], api=settings)
        self.cfg: Config = load_config(self.config_path)
        self.crash_rate = crash_rate
        self.crashed = False
        self.crashes = 0
        self.window_crashes: Counter[str] = Counter()  # per content: crashes while submitting
        self.changed: list[tuple[str, Path]] = []
        self.engine: Engine | None = None
        self.boot()

    # -- the process --------------------------------------------------------------------

    def boot(self) -> Engine:
        SimLedger.world = self
        ledger = SimLedger(self.db, self.clock)
        client = PicWishClient(
            BASE_URL, KEY, transport=self.api.api_transport(), clock=self.clock.wall
        )
        download = httpx.AsyncClient(transport=self.api.storage_transport())
        self.engine = Engine(
            self.cfg,
            ledger,
            client,
            download_client=download,
            rng=random.Random(self.seed * 7 + 2),
            offload=self.offload,
            on_changed=lambda folder, path: self.changed.append((folder, path)),
        )
        return self.engine

    async def offload(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """File work, inline; a crash may come right before or right after it."""
        self._maybe_crash()
        result = fn(*args, **kwargs)
        self._maybe_crash()
        return result

    def _maybe_crash(self) -> None:
        if self.crashed:
            raise SimCrash("after the crash")
        if self.crash_rate and self.rng.random() < self.crash_rate:
            self.crash()
            raise SimCrash("crash around file work")

    def crash(self) -> None:
        """The process dies now: nothing after this instant reaches the disk or the API."""
        self.crashed = self.api.crashed = True

    async def restart(self) -> Engine:
        """Kill the process (if it is not dead yet) and start a new one on the same disk."""
        self.crashed = self.api.crashed = True
        engine = self.engine
        assert engine is not None
        for row in self.db.query("select sha256 from jobs where state = 'submitting'"):
            self.window_crashes[row["sha256"]] += 1  # the crash came inside a create window
        for task in list(engine.running):
            task.cancel()
        if engine.running:
            await asyncio.wait(set(engine.running), timeout=1)
        if engine.intake._flusher is not None:
            engine.intake._flusher.cancel()
        if self.db.conn.in_transaction:
            self.db.conn.rollback()
        self.crashes += 1
        self.crashed = self.api.crashed = False
        return self.boot()

    # -- users --------------------------------------------------------------------------

    def inbox(self, folder: str = "f") -> Path:
        return Path(self.cfg.folders[0].inbox if folder == "f" else
                    {f.name: f.inbox for f in self.cfg.folders}[folder])  # fmt: skip

    def drop(self, name: str, *, seed: int | None = None, size: tuple[int, int] = (96, 64),
             folder: str = "f") -> Path:  # fmt: skip
        """A user drops an image (written aside, then renamed in, as copiers do)."""
        data = image_bytes(size, "PNG", self.rng.randrange(10**6) if seed is None else seed)
        return self.place(self.inbox(folder) / name, data)

    def place(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / ".incoming.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    # -- running ------------------------------------------------------------------------

    async def scan(self, folder: str = "f") -> None:
        """What the daemon's watcher and rescans do: hand every inbox file to intake."""
        engine = self.engine
        assert engine is not None
        inbox = self.inbox(folder)
        items = [
            (folder, inbox / name)
            for name in sorted(os.listdir(inbox))
            if not name.startswith(".")
            and not engine.is_known(folder, inbox / name)
        ]
        items += [(f, Path(p)) for f, p in self.changed]
        self.changed.clear()
        if items:
            with _dies_on_crash():
                await engine.take_many(items)
                engine.flush()

    async def run(self, turns: int = 1) -> None:
        """Let the engine work: each turn starts what is due, lets it run, and moves the
        clock on to when something is next due."""
        engine = self.engine
        assert engine is not None
        for _ in range(turns):
            if self.crashed:
                return
            sleep = 0.0
            with _dies_on_crash():
                sleep = await engine.pump() - self.clock.mono()
            engine.wake.clear()
            await self.clock.wait(engine.wake, max(0.0, min(sleep, 30.0)))

    async def settle(self, *, limit: float = 6 * 3600.0, folder: str = "f") -> None:
        """Run until every job has ended and the inbox holds nothing new (or the time
        limit passes), rescanning now and then as the daemon does."""
        start = self.clock.mono()
        while self.clock.mono() - start < limit:
            if self.crashed:
                await self.restart()
            await self.scan(folder)
            await self.run(5)
            if self.all_done() and not self.engine.running:  # type: ignore[union-attr]
                await self.scan(folder)
                if self.all_done():
                    return

    # -- looking ------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        assert self.engine is not None
        return self.engine.ledger

    def jobs(self) -> list[dict[str, Any]]:
        return self.ledger.jobs()

    def all_done(self) -> bool:
        return all(j["state"] in TERMINAL for j in self.jobs())

    def files(self, where: str, folder: str = "f") -> dict[str, str]:
        """name -> sha256 of the regular files in a folder's inbox, outbox, done or failed."""
        cfg = {f.name: f for f in self.cfg.folders}[folder]
        top = Path(getattr(cfg, where))
        out = {}
        for dirpath, _, names in os.walk(top):
            for name in names:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    out[str(path.relative_to(top))] = sha_file(path)
        return out

    def states(self) -> Counter[str]:
        return Counter(j["state"] for j in self.jobs())

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def _dies_on_crash() -> Iterator[None]:
    """A crash ends what the process was doing; the world restarts it."""
    with suppress(SimCrash):
        yield


def sha_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def in_state(world: World, state: State) -> list[dict[str, Any]]:
    return [j for j in world.jobs() if j["state"] == state]
