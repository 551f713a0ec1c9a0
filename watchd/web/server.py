"""`DashboardServer`: the dashboard served by uvicorn on the daemon's own asyncio loop.

The daemon owns it: `await server.start()` binds the socket (a port in use is a
`DashboardError` with one clear line, never uvicorn's `sys.exit`), `await server.stop()`
closes it. uvicorn's `Server` runs as a task of the loop, with its signal handling turned
off (the daemon's handlers stay in charge) and without touching logging. The server owns
its read-only ledger connection, a worker thread for it and one for images: nothing it does
blocks the loop for longer than rendering a page.

Wiring (the daemon): `server = await start_dashboard(cfg, ledger, live, do_write, log,
clock)` (None when off; `live` holds that clock's `mono()` times); on each loop turn
`live.beat(clock.mono())` and the budget fields; on reload `server.apply_config(cfg)`; at
the end `await server.stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from watchd.clock import Clock, SystemClock
from watchd.config import Config
from watchd.ledger import Ledger
from watchd.web.app import Site, Writer, build_app
from watchd.web.config import read_token
from watchd.web.live import LiveState
from watchd.web.metrics import LedgerGauges, Metrics
from watchd.web.reader import LedgerUnavailable, Reader
from watchd.web.security import Guard
from watchd.web.thumbs import Thumbnails

SHUTDOWN_GRACE = 2  # seconds open connections get when the daemon stops


class DashboardError(Exception):
    """The dashboard cannot start (the port is taken, the token file is unreadable)."""


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self.exit = asyncio.Event()

    async def main_loop(self) -> None:
        """Wait to be told to stop. uvicorn's own loop wakes ten times a second to look at
        `should_exit` and refresh a Date header: an idle daemon must cost nothing, so the
        headers are set once (no Date header) and `stop()` sets an event."""
        await self.on_tick(0)
        await self.exit.wait()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon's own SIGTERM/SIGHUP handlers stay in charge

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class DashboardServer:
    def __init__(
        self,
        cfg: Config,
        ledger_path: Path,
        state: LiveState,
        *,
        do_write: Writer,
        clock: Clock | None = None,
    ) -> None:
        if cfg.http.listen is None:
            raise ValueError("http.listen is null: the dashboard is off")
        self.cfg = cfg
        self.live = state
        self.clock = clock or SystemClock()
        self.metrics = Metrics(self.clock)
        self.reader = Reader(ledger_path)
        try:
            token = read_token(cfg.http.token_file) if cfg.http.token_file else None
        except ValueError as exc:
            raise DashboardError(str(exc)) from None
        self.site = Site(
            cfg=cfg,
            reader=self.reader,
            live=state,
            metrics=self.metrics,
            guard=Guard(cfg.http, token),
            thumbs=Thumbnails(
                cfg.state_dir / "thumbnails", cfg.http.thumbnail_cache_mb * 1024 * 1024
            ),
            do_write=do_write,
            clock=self.clock,
        )
        gauges = LedgerGauges(
            self.reader.connection, state, self.metrics, lambda: self.site.folder_names
        )
        self.metrics.registry.register(gauges)
        self.app = build_app(self.site)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None
        self._stopped = False

    @property
    def url(self) -> str | None:
        return self.cfg.http.url(self.port) if self._task is not None else None

    async def start(self) -> None:
        address = self.cfg.http.address
        assert address is not None
        sock = _bind(*address)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            http="h11",
            ws="none",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            h11_max_incomplete_event_size=16 * 1024,
            limit_concurrency=64,
        )
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(
            self._serve(self._server, sock), name="watchd-dashboard"
        )
        with contextlib.suppress(LedgerUnavailable):  # the pages will say so, if it lasts
            await self.reader.run(self.metrics.seed_last_success)
        ready = asyncio.ensure_future(self._server.ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task.done():
            self._task.result()  # raises what stopped it
            raise DashboardError("the dashboard stopped as it started")

    @staticmethod
    async def _serve(server: _Server, sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn's answer to a failed start: not the daemon's end
            raise DashboardError(f"the dashboard could not start (exit {exc.code})") from None
        finally:
            sock.close()

    def apply_config(self, cfg: Config) -> None:
        """A reload: folders and the rest apply at once; `http.listen`, `token_file` and
        `allowed_hosts` are read at start only (a restart applies them)."""
        self.cfg = cfg
        self.site.cfg = cfg

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.live.stopping = True
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.exit.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=SHUTDOWN_GRACE + 3)
        self._task = None
        await asyncio.get_running_loop().run_in_executor(None, self._close_threads)

    def _close_threads(self) -> None:
        self.reader.close()
        self.site.images.shutdown(wait=True)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a DashboardError saying why not in one line."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise DashboardError(f"cannot listen on {where}: {exc.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        taken = exc.errno == errno.EADDRINUSE
        hint = " (another program, or another watchd, uses it)" if taken else ""
        raise DashboardError(f"cannot listen on {where}: {exc.strerror}{hint}") from None
    return sock


async def start_dashboard(
    cfg: Config,
    ledger: Ledger,
    live: LiveState,
    do_write: Writer,
    log: Any,
    clock: Clock | None = None,
) -> DashboardServer | None:
    """The daemon's one call: the running dashboard, or None when `http.listen` is null or
    it cannot start (said in the log; the daemon runs on without it, as it would without
    a browser open)."""
    if cfg.http.listen is None:
        return None
    try:
        server = DashboardServer(
            cfg, cfg.state_dir / "watchd.db", live, do_write=do_write, clock=clock
        )
        await server.start()
    except DashboardError as exc:
        log.error("dashboard off: it could not start; the daemon runs on", error=str(exc))
        return None
    ledger.observers.add(server.metrics.observe)
    log.info("dashboard listening", url=server.url)
    return server
