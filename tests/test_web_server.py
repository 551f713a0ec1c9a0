"""`DashboardServer` on a real socket in the caller's loop: start, answer, stop; a port in use
is one clear error, and the daemon's helper leaves the daemon running without a dashboard."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from tests.web import close_world, make_world
from watchd import logs
from watchd.web.server import DashboardError, DashboardServer, start_dashboard


def test_it_serves_on_the_callers_loop_and_stops_cleanly(tmp_path: Path) -> None:
    w = make_world(tmp_path, listen="127.0.0.1:0")
    w.done_job("products", "mug.png")

    async def scenario() -> tuple[int, int, int, str]:
        server = DashboardServer(
            w.cfg,
            w.cfg.state_dir / "watchd.db",
            w.live,
            do_write=lambda fn: fn(w.ledger),
            clock=w.clock,
        )
        await server.start()
        assert server.url == f"http://127.0.0.1:{server.port}/"
        async with httpx.AsyncClient(base_url=server.url) as http:
            health = await http.get("/healthz")
            page = await http.get("/")
            metrics = await http.get("/metrics")
        await server.stop()
        with socket.socket() as probe:  # the port is free again
            probe.bind(("127.0.0.1", server.port))
        return health.status_code, page.status_code, metrics.status_code, page.text

    try:
        health, page, metrics, text = asyncio.run(scenario())
    finally:
        close_world(w)
    assert (health, page, metrics) == (200, 200, 200)
    assert 'data-folder="products"' in text
    assert w.live.stopping  # /healthz would now say so


def test_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        w = make_world(tmp_path, listen=f"127.0.0.1:{port}")

        async def scenario() -> str:
            with pytest.raises(DashboardError) as caught:
                await w.server.start()
            return str(caught.value)

        try:
            message = asyncio.run(scenario())
        finally:
            close_world(w)
    assert message.startswith(f"cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "another watchd" in message


def test_the_daemon_runs_on_without_a_dashboard_that_cannot_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        w = make_world(tmp_path, listen=f"127.0.0.1:{port}")
        with capture_logs() as seen:
            server = asyncio.run(
                start_dashboard(w.cfg, w.ledger, w.live, lambda fn: fn(w.ledger), logs.get_logger())
            )
        close_world(w)
    assert server is None
    assert seen[0]["log_level"] == "error" and "Address already in use" in seen[0]["error"]


def test_no_dashboard_when_listen_is_null(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    off = w.cfg.model_copy(update={"http": w.cfg.http.model_copy(update={"listen": None})})
    try:
        got = asyncio.run(
            start_dashboard(off, w.ledger, w.live, lambda fn: None, logs.get_logger())
        )
    finally:
        close_world(w)
    assert got is None
    with pytest.raises(ValueError, match="dashboard is off"):
        DashboardServer(off, tmp_path / "x.db", w.live, do_write=lambda fn: None)


def test_an_unreadable_token_file_is_a_dashboard_error(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 32)
    w = make_world(tmp_path, listen="0.0.0.0:0", token_file=str(token))
    token.unlink()  # gone between check and start
    try:
        with pytest.raises(DashboardError, match=r"token file .* does not exist"):
            DashboardServer(w.cfg, tmp_path / "x.db", w.live, do_write=lambda fn: None)
    finally:
        close_world(w)
