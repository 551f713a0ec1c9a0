"""The engine on a fake clock against the in-memory API (no sockets, no sleeping): each
test sets up one precise situation, including the defects the outside review reproduced."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e import image_bytes
from tests.simworld import World, fast_root, sha_file
from watchd.engine import DIRECT, Engine
from watchd.lifecycle import ACTIVE, WORK, State, Work
from watchd.policy import RESULT_LIFE


@pytest.fixture
def root():
    path = fast_root()
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def play(world: World, scenario: Callable[[World], Awaitable[None]]) -> World:
    asyncio.run(scenario(world))
    return world


def events(world: World, job_id: int | None = None) -> list[str]:
    sql = "select event from events" + (" where job_id = ?" if job_id else "") + " order by id"
    return [r["event"] for r in world.ledger.db.query(sql, [job_id] if job_id else [])]


def names(world: World, where: str) -> list[str]:
    return sorted(world.files(where))


# -- the shape: nothing can be stranded --------------------------------------------------


def test_the_runtime_has_work_for_every_active_state() -> None:
    """Each active state's work is carried out by something: creates and queries by the
    scheduler, the rest by the runtime's own table (so a state cannot go unhandled)."""
    assert set(DIRECT) | {State.WAITING, State.PROCESSING} == set(ACTIVE)
    assert {WORK[s] for s in DIRECT} == set(DIRECT.values())
    assert {Work.CREATE, Work.QUERY} == {WORK[State.WAITING], WORK[State.PROCESSING]}


@pytest.mark.parametrize("state", sorted(ACTIVE))
def test_a_job_left_in_any_active_state_is_finished_after_a_restart(root, state) -> None:
    """Put a job into each active state, kill the process there, start a new one: it ends,
    and no content is created more than once plus the one ambiguous resubmit."""
    world = World(root, seed=1)
    world.api.faults.task_permanent = 1.0 if state == State.FAILING else 0.0

    def die_there(t) -> None:  # type: ignore[no-untyped-def]
        if t.dst == state:
            world.crash()  # the worst instant: right after the commit, before acting on it

    world.ledger.observers.add(die_there)

    async def scenario(w: World) -> None:
        w.drop("a.png")
        await w.scan()
        for _ in range(400):
            if w.crashed:
                break
            await w.run(1)
        assert w.jobs()[0]["state"] == state, f"never stopped in {state}"
        await w.restart()
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == ("failed" if state == State.FAILING else "done"), events(world)
    assert sum(world.api.creates.values()) == 1
    assert world.files("done" if state != State.FAILING else "failed")


def test_an_unexpected_error_after_the_create_commit_is_ambiguous_not_stranded(root) -> None:
    """A create answer that breaks the client in an unexpected way (here the transport
    raises a plain RuntimeError after the task was created) leaves no job in `submitting`:
    it is a lost answer, bounded like any other."""
    world = World(root, seed=2)
    handle = world.api.handle
    broken = {"left": 1}

    async def flaky(request: httpx.Request) -> httpx.Response:
        response = await handle(request)
        if request.method == "POST" and broken["left"]:
            broken["left"] -= 1
            raise RuntimeError("an answer nobody expected")
        return response

    world.api.handle = flaky  # type: ignore[method-assign]
    world.boot()

    async def scenario(w: World) -> None:
        w.drop("a.png")
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "done" and job["ambiguous"] == 1
    assert "create_lost" in events(world)
    assert sum(world.api.creates.values()) == 2  # the lost one, and the one that counted


# -- one clock ---------------------------------------------------------------------------


@pytest.mark.parametrize("step", [3600.0, -3600.0, 86400.0])
def test_a_wall_clock_step_changes_no_jobs_fate(root, step) -> None:
    world = World(root, seed=3)
    world.api.processing = (20.0, 20.0)

    async def scenario(w: World) -> None:
        w.drop("a.png")
        await w.scan()
        await w.run(3)
        assert w.jobs()[0]["state"] == "processing"
        w.clock.step_wall(step)  # NTP, a VM resume, an operator's date -s
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "done" and job["attempts"] == 1
    assert sum(world.api.creates.values()) == 1
    assert "retry" not in events(world)


# -- bounded, never paying twice for a result ---------------------------------------------


def test_a_storage_host_answering_503_for_a_while_costs_no_new_create(root) -> None:
    world = World(root, seed=4)
    world.api.faults.download_503 = 1.0

    async def scenario(w: World) -> None:
        w.drop("a.png")
        await w.scan()
        for _ in range(200):
            await w.run(1)
            if w.api.stats["download_503"] >= 8:
                break
        w.api.faults.download_503 = 0.0
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "done" and job["attempts"] == 1
    assert world.api.stats["download_503"] >= 8
    assert sum(world.api.creates.values()) == 1


def test_a_result_url_that_404s_forever_fails_after_its_life_with_bounded_queries(root) -> None:
    world = World(root, seed=5)
    world.api.faults.download_404 = 1.0

    async def scenario(w: World) -> None:
        w.drop("a.png")
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "failed"
    assert "one-hour life" in job["error_reason"] and job["error_code"] == "result_lost"
    assert sum(world.api.creates.values()) == 1  # never created again for a download
    assert world.api.stats["queries"] <= 40  # backoff, not 353 queries in 20 s
    assert world.clock.mono() - 1000 >= RESULT_LIFE - 200
    info = json.loads((world.root / "f/failed/a.png.error.json").read_text())
    assert "one-hour life" in info["reason"]


def test_watchd_retry_asks_a_finished_task_again_first(root) -> None:
    """The job failed while its finished task's result was still valid (a full outbox
    disk, say, past the tries): `retry` queries the task; no new create is paid."""
    world = World(root, seed=7)

    async def scenario(w: World) -> None:
        w.drop("a.png")
        await w.scan()
        for _ in range(200):
            await w.run(1)
            if w.jobs()[0]["state"] == "downloading":
                break
        job = w.jobs()[0]
        from watchd.lifecycle import Event

        w.ledger.commit(job["id"], Event.FAIL, error_reason="outbox unwritable")
        await w.run(5)
        assert w.jobs()[0]["state"] == "failed"
        from watchd.requeue import requeue

        requeue(w.cfg, w.ledger, job["id"])
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "done"
    assert "requery" in events(world)
    assert sum(world.api.creates.values()) == 1


def test_a_failing_move_is_retried_with_backoff_then_given_up_with_the_reason(root) -> None:
    world = World(root, seed=8)
    done_dir = world.root / "f/done"

    async def scenario(w: World) -> None:
        done_dir.rmdir()
        done_dir.write_text("a file where done/ should be")
        w.drop("m.png")
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "done"  # its result is in the outbox: that is what was paid for
    assert names(world, "outbox") == ["m.png"]
    assert (world.root / "f/inbox/m.png").exists()  # the original stays where it was
    assert events(world).count("step_failed") >= 5
    assert "gave up moving the original" in job["error_reason"]


def test_a_failed_original_that_could_not_be_moved_is_not_paid_for_again(root) -> None:
    """failed/ unusable: the job gives up with the original left in the inbox. A rescan
    must not take it for a new drop (it did: a create every 300 s, without end)."""
    world = World(root, seed=22)
    world.api.faults.task_permanent = 1.0
    failed_dir = world.root / "f/failed"

    async def scenario(w: World) -> None:
        failed_dir.rmdir()
        failed_dir.write_text("a file where failed/ should be")
        w.drop("x.png")
        await w.settle()
        for _ in range(5):  # five more rescans, far apart
            w.clock.advance(300)
            await w.scan()
            await w.run(3)

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "failed" and "gave up moving the original" in job["error_reason"]
    assert (world.root / "f/inbox/x.png").exists()
    assert sum(world.api.creates.values()) == 1


# -- overwrites are new versions ----------------------------------------------------------


def test_a_file_overwritten_while_its_job_is_in_flight_becomes_its_own_job(root) -> None:
    world = World(root, seed=9)
    world.api.processing = (10.0, 10.0)
    first, second = image_bytes((96, 64), "PNG", 1), image_bytes((96, 64), "PNG", 2)

    async def scenario(w: World) -> None:
        path = w.place(w.inbox() / "edit.png", first)
        await w.scan()
        await w.run(3)
        assert w.jobs()[0]["state"] == "processing"
        path.write_bytes(second)  # re-exported in place by a photo editor
        await w.settle()

    play(world, scenario)
    import hashlib

    done = world.files("done")
    jobs = world.jobs()
    assert len(jobs) == 2 and all(j["state"] == "done" for j in jobs)
    expanded = {j["sha256"] for j in jobs}
    assert set(done.values()) <= expanded  # done/ holds only bytes that were expanded
    assert hashlib.sha256(second).hexdigest() in done.values()
    assert sum(world.api.creates.values()) == 2


def test_a_duplicate_dropped_while_its_job_works_follows_its_fate(root) -> None:
    world = World(root, seed=10)
    world.api.faults.task_permanent = 1.0
    data = image_bytes((96, 64), "PNG", 3)

    async def scenario(w: World) -> None:
        w.place(w.inbox() / "one.png", data)
        await w.scan()
        await w.run(2)
        w.place(w.inbox() / "copy of one.png", data)
        await w.settle()

    play(world, scenario)
    assert names(world, "done") == []  # nothing in done/ that was not expanded
    failed = names(world, "failed")
    assert "copy of one.png" in failed and "copy of one.png.error.json" in failed
    assert sum(world.api.creates.values()) == 1


def test_the_same_bytes_twice_make_one_job_and_one_create(root) -> None:
    world = World(root, seed=11)
    data = image_bytes((96, 64), "PNG", 6)

    async def scenario(w: World) -> None:
        w.place(w.inbox() / "one.png", data)
        await w.settle()
        w.place(w.inbox() / "copy of one.png", data)
        await w.settle()

    play(world, scenario)
    assert len(world.jobs()) == 1
    assert sum(world.api.creates.values()) == 1
    assert names(world, "done") == ["copy of one.png", "one.png"]
    assert "duplicate" in events(world)


# -- the rest of the engine's promises ----------------------------------------------------


def test_a_401_pauses_submissions_keeps_files_and_resumes_with_a_new_key(root) -> None:
    world = World(root, seed=12)
    world.api.key = "the-right-key"

    async def scenario(w: World) -> None:
        w.drop("a.png")
        await w.scan()
        await w.run(20)
        engine = w.engine
        assert engine is not None and engine.paused and "401" in engine.paused
        assert w.ledger.get_meta("paused") == engine.paused
        job = w.jobs()[0]
        assert job["state"] == "waiting" and job["attempts"] == 0  # not failed, not charged
        engine.client.set_key("the-right-key")
        engine.resume("the API key file changed")
        await w.settle()

    play(world, scenario)
    assert world.jobs()[0]["state"] == "done"
    assert world.ledger.get_meta("paused") is None
    assert names(world, "done") == ["a.png"]


def test_a_paused_folder_sends_nothing_and_resumes(root) -> None:
    world = World(root, seed=13)

    async def scenario(w: World) -> None:
        w.ledger.pause_folder("f", "checking the mask")
        w.drop("a.png")
        await w.scan()
        await w.run(30)
        assert w.jobs()[0]["state"] == "waiting"
        assert sum(w.api.creates.values()) == 0
        w.ledger.resume_folder("f")
        await w.settle()

    play(world, scenario)
    assert world.jobs()[0]["state"] == "done"


def test_a_task_that_stays_processing_past_task_timeout_fails_as_a_timeout(root) -> None:
    world = World(root, seed=14, api={"task_timeout": 30})
    world.api.processing = (300.0, 300.0)

    async def scenario(w: World) -> None:
        w.drop("c.png")
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "failed"
    assert "timeout" in job["error_reason"] and "gave up after 5 attempts" in job["error_reason"]
    info = json.loads((world.root / "f/failed/c.png.error.json").read_text())
    assert info["attempts"] == 5 and info["code"] == "state -8"


def test_two_inputs_whose_outputs_share_a_name_both_survive(root) -> None:
    world = World(root, seed=15, folders=[{"name": "f", "output_format": "jpeg"}])

    async def scenario(w: World) -> None:
        w.drop("same.png")
        w.place(w.inbox() / "same.jpg", image_bytes((96, 64), "JPEG", 5))
        await w.settle()

    play(world, scenario)
    assert names(world, "outbox") == ["same.jpg", "same_2.jpg"]


def test_a_429_slows_the_whole_budget_and_costs_no_attempt(root) -> None:
    world = World(root, seed=16)
    world.api.faults.create_429 = 0.5

    async def scenario(w: World) -> None:
        for i in range(6):
            w.drop(f"q{i}.png")
        await w.settle()

    play(world, scenario)
    engine = world.engine
    assert engine is not None
    assert engine.budget.rate_limited >= 1
    assert all(r["state"] == "done" and r["attempts"] == 1 for r in world.jobs())


def test_a_file_renamed_while_waiting_keeps_its_job_and_a_vanished_one_costs_nothing(
    root,
) -> None:
    world = World(root, seed=17)

    async def scenario(w: World) -> None:
        w.ledger.pause_folder("f", "held for the test")
        a, b = w.drop("a.png"), w.drop("b.png")
        await w.scan()
        renamed = a.with_name("a renamed.png")
        a.rename(renamed)
        b.unlink()
        await w.scan()
        w.ledger.resume_folder("f")
        await w.settle()

    play(world, scenario)
    jobs = {r["name"]: r for r in world.jobs()}
    assert set(jobs) == {"a renamed.png", "b.png"}
    assert jobs["a renamed.png"]["state"] == "done" and jobs["b.png"]["state"] == "gone"
    assert names(world, "outbox") == ["a renamed.png"]
    assert sum(world.api.creates.values()) == 1


def test_a_name_that_is_not_utf8_is_processed_end_to_end(root) -> None:
    world = World(root, seed=18)
    name = os.fsdecode(b"caf\xe9 \xff.png")

    async def scenario(w: World) -> None:
        w.drop(name)
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "done" and job["name"] == name
    assert os.fsencode(name) in {os.fsencode(n) for n in names(world, "done")}
    outputs = json.loads(job["outputs"])
    assert Path(outputs[0]["path"]).exists()
    assert sha_file(Path(outputs[0]["path"])) == outputs[0]["sha256"]


def test_sync_mode_returns_the_result_with_one_request(root) -> None:
    world = World(root, seed=19, api={"mode": "sync"})

    async def scenario(w: World) -> None:
        w.drop("s.png")
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "done" and job["requests"] == 1
    assert "sync_done" in events(world)


def test_an_image_waiting_for_its_sidecar_mask_fails_after_the_wait_even_across_a_restart(
    root,
) -> None:
    world = World(root, seed=20, folders=[{"name": "f", "mask": "sidecar", "sidecar_wait": 60}])

    async def scenario(w: World) -> None:
        w.drop("lonely.png")
        await w.scan()
        assert w.ledger.mask_waits()
        await w.restart()  # the wait and its deadline are in the ledger
        assert w.ledger.mask_waits()
        await w.settle()

    play(world, scenario)
    job = world.jobs()[0]
    assert job["state"] == "failed" and job["error_code"] == "sidecar_missing"
    assert world.ledger.mask_waits() == []
    assert sum(world.api.creates.values()) == 0


def test_what_was_learned_about_processing_times_survives_a_restart(root) -> None:
    world = World(root, seed=21)

    async def scenario(w: World) -> None:
        w.drop("t.png")
        await w.settle()
        await w.restart()

    play(world, scenario)
    learned = world.jobs()[0]["task_seconds"]
    engine = world.engine
    assert isinstance(engine, Engine) and learned is not None
    assert engine.model.quantile("f", 0.95) == learned
