"""Deterministic simulation: the whole engine on a fake clock, driven by a seeded schedule.

In the manner of FoundationDB's and TigerBeetle's simulators: each seed makes a schedule of
drops (hostile names, duplicates, overwrites, deletes, renames), API faults (429, 500,
refused and lost connections, answers that are not JSON, transient and permanent task
failures, result URLs that 404 or 503 or serve garbage), crashes right before or after any
request or file operation, and wall-clock steps. After the schedule the world heals, the
clock runs on, and the promises are checked:

- every input's bytes are in done/, in failed/ with a reason, or still in the inbox;
- every original in done/ was expanded: its result is in the outbox;
- creates per content <= 1 + crashes inside a create window + answers the API lost +
  transient task failures it injected + requeues;
- no job is left outside a terminal state;
- the API key is in no file and no log line.

Replay one seed: WATCHD_SIM_SEED=123 python -m pytest tests/test_simulation.py
A long soak:     WATCHD_SIM_SEEDS=20000 python -m pytest tests/test_simulation.py -q -x
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.fakeapi import KEY
from tests.simworld import World, fast_root, sha_file
from watchd.lifecycle import TERMINAL

SEEDS = int(os.environ.get("WATCHD_SIM_SEEDS", "500"))
ONE = os.environ.get("WATCHD_SIM_SEED")
STEPS = 30

# Names a Linux filesystem accepts and people (and old SMB clients) produce.
NAMES = [
    "photo.png",
    "Lamp FINAL (2).PNG",
    "ünïcödé €.png",
    os.fsdecode(b"caf\xe9 latin1.png"),  # not UTF-8: surrogate escapes in Python
    "line\nbreak.png",
    "x" * 120 + ".png",
    "日本語の写真.png",
    "-dash.png",
    "a'quote\".png",
]


def _seeds() -> list[int]:
    return [int(ONE)] if ONE else list(range(SEEDS))


@pytest.mark.parametrize("seed", _seeds(), ids=lambda s: f"seed{s}")
def test_simulation(seed: int) -> None:
    root = fast_root()
    try:
        with capture_logs() as logs:
            world = asyncio.run(_scenario(root, seed))
        _check(world, logs, seed)
    finally:
        root_exists = root.exists()
        if root_exists:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


async def _scenario(root: Path, seed: int) -> World:
    import random

    plan = random.Random(seed)
    mode = "sync" if plan.random() < 0.2 else "async"
    world = World(
        root,
        seed,
        api={"mode": mode, "task_timeout": 120, "on_ambiguous": "resubmit"},
        crash_rate=plan.choice([0.0, 0.01, 0.03]),
    )
    world.live: Counter[str] = Counter()  # type: ignore[attr-defined]
    inbox = world.inbox()
    for _ in range(STEPS):
        if world.crashed:
            await world.restart()
        roll = plan.random()
        present = sorted(p for p in inbox.iterdir() if not p.name.startswith("."))
        if roll < 0.25:
            name = plan.choice(NAMES)
            stem, dot, ext = name.rpartition(".")
            name = f"{stem}-{plan.randrange(1000)}{dot}{ext}"
            _user_put(world, inbox / name, seed=plan.randrange(10**6))
        elif roll < 0.32 and present:  # the same bytes again, under another name
            src = plan.choice(present)
            if src.exists():
                _user_put(world, inbox / f"copy-{plan.randrange(1000)}.png", data=src.read_bytes())
        elif roll < 0.38 and present:  # re-exported in place by a photo editor
            _user_put(world, plan.choice(present), seed=plan.randrange(10**6), in_place=True)
        elif roll < 0.42 and present:  # deleted by the user
            _user_remove(world, plan.choice(present))
        elif roll < 0.46 and present:  # renamed while it waits
            src = plan.choice(present)
            data = src.read_bytes()
            dest = inbox / f"renamed-{plan.randrange(1000)}.png"
            if not dest.exists():
                os.rename(src, dest)
                world.live[_sha(data)] += 0
        elif roll < 0.58:
            _set_faults(world, plan)
        elif roll < 0.62:
            world.clock.step_wall(plan.choice([-3600.0, 3600.0, -60.0, 86400.0]))
        elif roll < 0.75:
            await world.scan()
        else:
            await world.run(plan.randrange(1, 8))
    # Heal, then let time run on until everything has ended.
    world.api.faults.heal()
    world.crash_rate = 0.0
    await world.settle()
    return world


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _user_put(
    world: World, path: Path, *, seed: int = 0, data: bytes | None = None, in_place: bool = False
) -> None:
    from tests.e2e import image_bytes

    if path.exists():
        world.live[_sha(path.read_bytes())] -= 1  # the old bytes are the user's loss
    data = data if data is not None else image_bytes((96, 64), "PNG", seed)
    if in_place:
        path.write_bytes(data)  # written over, as an editor's "save" does
    else:
        world.place(path, data)
    world.live[_sha(data)] += 1


def _user_remove(world: World, path: Path) -> None:
    if path.exists():
        world.live[_sha(path.read_bytes())] -= 1
        path.unlink()


def _set_faults(world: World, plan) -> None:  # type: ignore[no-untyped-def]
    f = world.api.faults
    level = plan.choice([0.0, 0.05, 0.2, 0.5])
    for name in (
        "create_429",
        "create_500",
        "create_refused",
        "create_lost",
        "create_garbage",
        "query_429",
        "query_500",
        "query_lost",
        "query_garbage",
        "task_transient",
        "task_permanent",
        "download_404",
        "download_503",
        "download_garbage",
    ):
        setattr(f, name, level * plan.random())
    f.crash = world.crash_rate


def _check(world: World, logs: list[dict], seed: int) -> None:
    replay = f"replay: WATCHD_SIM_SEED={seed} python -m pytest tests/test_simulation.py"
    jobs = world.jobs()
    stuck = [(j["id"], j["name"], j["state"]) for j in jobs if j["state"] not in TERMINAL]
    assert not stuck, f"jobs left unfinished: {stuck}\n{replay}"

    inbox, done, failed = world.files("inbox"), world.files("done"), world.files("failed")
    everywhere = set(inbox.values()) | set(done.values()) | set(failed.values())
    live = {sha for sha, n in world.live.items() if n > 0}  # type: ignore[attr-defined]
    lost = live - everywhere
    assert not lost, f"inputs lost: {sorted(lost)}\n{replay}"

    by_sha: dict[str, list[dict]] = {}
    for job in jobs:
        by_sha.setdefault(job["sha256"], []).append(job)
    for name, sha in done.items():
        ok = [j for j in by_sha.get(sha, []) if j["state"] == "done"]
        assert ok, f"done/{name} holds bytes no finished job expanded\n{replay}"
        for job in ok:
            for out in _outputs(job):
                path = Path(out["path"])
                assert path.exists(), f"done/{name}: its result {path} is missing\n{replay}"
                assert sha_file(path) == out["sha256"], f"{path} is not the result\n{replay}"
    for name in failed:
        if name.endswith(".error.json"):
            continue
        assert f"{name}.error.json" in failed, f"failed/{name} has no reason\n{replay}"

    requeues = Counter(
        row["sha256"]
        for row in world.ledger.db.query(
            "select j.sha256 from events e join jobs j on j.id = e.job_id"
            " where e.event in ('requeue', 'requery')"
        )
    )
    for sha, creates in world.api.creates.items():
        allowed = 1 + world.window_crashes[sha] + world.api.unavoidable[sha] + requeues[sha]
        assert creates <= allowed, (
            f"content {sha[:12]} created {creates} times, at most {allowed} allowed\n{replay}"
        )

    secret = KEY.encode()
    for dirpath, _, names in os.walk(world.root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                assert secret not in path.read_bytes(), f"the key is in {path}\n{replay}"
    for entry in logs:
        assert KEY not in repr(entry), f"the key is in a log line\n{replay}"
    assert not [e for e in logs if e.get("log_level") == "critical"], replay


def _outputs(job: dict) -> list[dict]:
    import json

    return json.loads(job["outputs"]) if job["outputs"] else []


def test_a_seed_replays_exactly() -> None:
    """The same seed, the same world: every event in the same order."""
    histories = []
    for _ in range(2):
        root = fast_root()
        try:
            with capture_logs():
                world = asyncio.run(_scenario(root, 4242))
            rows = world.ledger.db.query("select job_id, event, from_state, to_state from events")
            histories.append([tuple(r.values()) for r in rows])
        finally:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    assert histories[0] == histories[1]
    assert len(histories[0]) > 10

