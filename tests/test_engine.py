"""The engine in-process against the real simulator over a socket: API faults that need a
precise set-up (401 pause, expired result URLs, task timeouts, 429s, name collisions)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlite_utils import Database

from tests.e2e import KEY, drop, files, write_config
from watchd.config import load_config
from watchd.daemon import make_client
from watchd.engine import Engine
from watchd.ledger import Ledger
from watchd.lifecycle import TERMINAL
from watchd.sim import SimConfig, Simulator


@pytest.fixture
def sim():
    with Simulator(SimConfig(qps=50, processing_time=(0.05, 0.1), seed=9)).start() as s:
        yield s


def make_engine(
    tmp_path: Path,
    sim: Simulator,
    *,
    key: str = KEY,
    download_transport: httpx.AsyncBaseTransport | None = None,
    folders: list[dict] | None = None,
    **api,
) -> Engine:
    cfg = load_config(write_config(tmp_path, sim.base_url, folders or [{"name": "f"}], api=api))
    ledger = Ledger(Database(memory=True))
    download = httpx.AsyncClient(transport=download_transport) if download_transport else None
    return Engine(cfg, ledger, make_client(cfg, key), download_client=download)


async def run_until(engine: Engine, done: Callable[[], bool], timeout: float = 15) -> None:
    async def loop() -> None:
        while not done():
            sleep = await engine.pump()
            engine.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(engine.wake.wait(), timeout=max(0.01, min(sleep, 0.2)))

    try:
        await asyncio.wait_for(loop(), timeout)
    finally:
        await engine.drain(grace=1)
        await engine.aclose()


def all_terminal(engine: Engine) -> bool:
    rows = engine.ledger.jobs()
    return bool(rows) and all(r["state"] in TERMINAL for r in rows)


def events(engine: Engine) -> list[str]:
    return [r["event"] for r in engine.ledger.db.query("select event from events order by id")]


def test_a_401_pauses_submissions_keeps_files_and_resumes_with_a_new_key(tmp_path, sim) -> None:
    sim.update(valid_keys=frozenset({"the-right-key"}))
    engine = make_engine(tmp_path, sim, key="a-wrong-key")
    src = tmp_path / "f/inbox/a.png"
    drop(src, seed=1)

    async def scenario() -> None:
        await engine.take("f", src)
        for _ in range(50):  # a few pumps: the create is refused, then nothing more is sent
            await engine.pump()
            await asyncio.sleep(0.02)
        assert engine.paused and "401" in engine.paused
        assert engine.ledger.get_meta("paused") == engine.paused
        job = engine.ledger.jobs()[0]
        assert job["state"] == "waiting" and job["attempts"] == 0  # not failed, not charged
        assert src.exists()
        assert sim.stats["http_401"] == 1  # paused: no hammering with a bad key
        engine.client.set_key("the-right-key")
        engine.resume("the API key file changed")
        await run_until(engine, lambda: all_terminal(engine))

    asyncio.run(scenario())
    assert engine.ledger.jobs()[0]["state"] == "done"
    assert engine.ledger.get_meta("paused") is None
    assert files(tmp_path / "f/done") == ["a.png"]


class ExpireFirstDownload(httpx.AsyncBaseTransport):
    """The storage host answers 404 to the first result download (an expired URL)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(str(request.url))
        if len(self.seen) == 1:
            return httpx.Response(404, request=request)
        return await self.inner.handle_async_request(request)


def test_an_expired_result_url_is_recovered_by_polling_again_not_by_paying_again(
    tmp_path, sim
) -> None:
    transport = ExpireFirstDownload()
    engine = make_engine(tmp_path, sim, download_transport=transport)
    src = tmp_path / "f/inbox/b.png"
    drop(src, seed=2)

    async def scenario() -> None:
        await engine.take("f", src)
        await run_until(engine, lambda: all_terminal(engine))

    asyncio.run(scenario())
    job = engine.ledger.jobs()[0]
    assert job["state"] == "done" and job["attempts"] == 1
    assert "url_expired" in events(engine)
    assert sim.stats["tasks_created"] == 1
    assert len(transport.seen) == 2


def test_a_task_that_stays_processing_past_task_timeout_fails_as_a_timeout(tmp_path, sim) -> None:
    sim.update(processing_time=(30.0, 30.0))
    engine = make_engine(tmp_path, sim, task_timeout=0.3)
    src = tmp_path / "f/inbox/c.png"
    drop(src, seed=3)

    async def scenario() -> None:
        await engine.take("f", src)
        await run_until(engine, lambda: all_terminal(engine), timeout=30)

    asyncio.run(scenario())
    job = engine.ledger.jobs()[0]
    assert job["state"] == "failed"
    assert "timeout" in job["error_reason"] and "gave up after 5 attempts" in job["error_reason"]
    info = json.loads((tmp_path / "f/failed/c.png.error.json").read_text())
    assert info["attempts"] == 5 and info["code"] == "state -8"


def test_two_inputs_whose_outputs_share_a_name_both_survive(tmp_path, sim) -> None:
    engine = make_engine(tmp_path, sim, folders=[{"name": "f", "output_format": "jpeg"}])
    a, b = tmp_path / "f/inbox/same.png", tmp_path / "f/inbox/same.jpg"
    drop(a, seed=4)
    drop(b, seed=5)

    async def scenario() -> None:
        await engine.take("f", a)
        await engine.take("f", b)
        await run_until(engine, lambda: all_terminal(engine))

    asyncio.run(scenario())
    assert sorted(files(tmp_path / "f/outbox")) == ["same.jpg", "same_2.jpg"]


def test_a_429_slows_the_whole_budget(tmp_path, sim) -> None:
    sim.update(qps=2)
    engine = make_engine(tmp_path, sim, qps=50)  # we claim 50 QPS, the account allows 2
    for i in range(6):
        drop(tmp_path / f"f/inbox/q{i}.png", seed=10 + i)

    async def scenario() -> None:
        for i in range(6):
            await engine.take("f", tmp_path / f"f/inbox/q{i}.png")
        await run_until(engine, lambda: all_terminal(engine), timeout=30)

    start_rate = engine.budget.rate
    asyncio.run(scenario())
    assert engine.budget.rate_limited >= 1
    assert engine.budget.rate < start_rate
    assert all(r["state"] == "done" for r in engine.ledger.jobs())
    assert all(r["attempts"] == 1 for r in engine.ledger.jobs())  # a 429 costs no attempt


def test_the_same_bytes_twice_make_one_job_and_one_api_call(tmp_path, sim) -> None:
    engine = make_engine(tmp_path, sim)
    first, second = tmp_path / "f/inbox/one.png", tmp_path / "f/inbox/copy of one.png"
    data = drop(first, seed=6)
    second.write_bytes(data)

    async def scenario() -> None:
        await engine.take("f", first)
        await run_until(engine, lambda: all_terminal(engine))

    asyncio.run(scenario())
    engine2 = make_engine(tmp_path, sim)
    engine2.ledger = engine.ledger

    async def again() -> None:
        await engine2.take("f", second)
        engine2.flush()
        await engine2.aclose()

    asyncio.run(again())
    assert len(engine.ledger.jobs()) == 1
    assert sim.stats["tasks_created"] == 1
    assert sorted(files(tmp_path / "f/done")) == ["copy of one.png", "one.png"]
    assert "duplicate" in events(engine)


def test_a_file_renamed_while_waiting_keeps_its_job_and_a_vanished_one_costs_nothing(
    tmp_path, sim
) -> None:
    engine = make_engine(tmp_path, sim)
    engine.paused = "held for the test"  # nothing is submitted while we move files around
    a, b = tmp_path / "f/inbox/a.png", tmp_path / "f/inbox/b.png"
    drop(a, seed=20)
    drop(b, seed=21)

    async def scenario() -> None:
        await engine.take("f", a)
        await engine.take("f", b)
        engine.flush()
        renamed = tmp_path / "f/inbox/a renamed.png"
        a.rename(renamed)
        b.unlink()
        await engine.take("f", renamed)  # the watcher's hint for the new name
        engine.flush()
        engine.resume("test")
        await run_until(engine, lambda: all_terminal(engine))

    asyncio.run(scenario())
    jobs = {r["name"]: r for r in engine.ledger.jobs()}
    assert set(jobs) == {"a renamed.png", "b.png"}
    assert jobs["a renamed.png"]["state"] == "done" and jobs["b.png"]["state"] == "gone"
    assert files(tmp_path / "f/outbox") == ["a renamed.png"]
    assert sim.stats["tasks_created"] == 1


def test_the_processing_time_is_learned_from_the_api_not_from_a_late_first_poll() -> None:
    from watchd.engine import _processing_time

    # The API's own time_elapsed (seconds, or milliseconds when over 1000) comes first.
    assert _processing_time({"time_elapsed": "9.512", "created_at": "100"}, 0, None, 1) == 9.512
    assert _processing_time({"time_elapsed": 9512}, 0, None, 1) == 9.512
    # Else its timestamps, as epoch seconds (strings), milliseconds or ISO dates.
    assert _processing_time({"created_at": "100.0", "completed_at": "109.5"}, 0, None, 500) == 9.5
    ms = {"created_at": 1_795_000_000_000, "completed_at": 1_795_000_009_500}
    assert _processing_time(ms, 0, None, 1) == 9.5
    iso = {"created_at": "2026-11-26T10:00:00Z", "completed_at": "2026-11-26T10:00:12Z"}
    assert _processing_time(iso, 0, None, 1) == 12
    # Without them: the middle between the last pending poll and the poll that found it done.
    assert _processing_time({}, 100.0, 108.0, 110.0) == 9.0
    # A first poll that found it done says only "at most": nothing is learned.
    assert _processing_time({}, 100.0, None, 121.0) is None


def test_an_original_that_cannot_be_moved_waits_and_is_moved_later(tmp_path, sim) -> None:
    """done/ is unusable (here: a file stands where the folder should be): the job stays
    finishing with the reason noted, retried after a backoff, not on every loop turn."""
    engine = make_engine(tmp_path, sim)
    src = tmp_path / "f/inbox/m.png"
    drop(src, seed=30)
    done_dir = tmp_path / "f/done"
    done_dir.rmdir()
    done_dir.write_text("not a folder")

    async def scenario() -> None:
        await engine.take("f", src)
        await run_until(engine, lambda: "move_retry" in events(engine), timeout=15)

    asyncio.run(scenario())
    job = engine.ledger.jobs()[0]
    assert job["state"] == "finishing" and job["not_before"] > engine.clock()
    assert events(engine).count("move_retry") == 1
    assert src.exists() and files(tmp_path / "f/outbox") == ["m.png"]

    done_dir.unlink()
    engine2 = make_engine(tmp_path, sim)
    engine2.ledger = engine.ledger
    engine2.ledger.update(job["id"], not_before=0)

    async def later() -> None:
        await run_until(engine2, lambda: all_terminal(engine2))

    asyncio.run(later())
    assert engine2.ledger.jobs()[0]["state"] == "done"
    assert files(tmp_path / "f/done") == ["m.png"]


def test_what_was_learned_about_processing_times_survives_a_restart(tmp_path, sim) -> None:
    engine = make_engine(tmp_path, sim)
    src = tmp_path / "f/inbox/t.png"
    drop(src, seed=40)

    async def scenario() -> None:
        await engine.take("f", src)
        await run_until(engine, lambda: all_terminal(engine))

    asyncio.run(scenario())
    learned = engine.ledger.jobs()[0]["task_seconds"]
    assert learned is not None and 0 < learned < 1  # the simulator's 0.05–0.1 s, not a guess
    restarted = make_engine(tmp_path, sim)
    restarted.ledger = engine.ledger
    restarted.model = type(engine.model)()
    for folder, seconds in engine.ledger.durations():
        restarted.model.observe(folder, seconds)
    assert restarted.model.quantile("f", 0.95) == learned
