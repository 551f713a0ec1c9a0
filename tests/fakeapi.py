"""An in-memory PicWish API for `httpx.MockTransport`, on a fake clock, with faults.

It follows the API doc the way the simulator does (multipart creates, task states over
time, result URLs that expire after an hour, the doc's failure codes), but runs inside the
test's event loop: no socket, no thread, no real time. So the engine can be driven
deterministically from a seed (tests/test_simulation.py) and unit tests never sleep.

It also keeps the books the simulation's invariants need: creates per content, and the
creates that the world made unavoidable (answers lost on the wire, transient task failures,
crashes inside a create).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from watchd.clock import FakeClock
from watchd.sim.multipart import parse_form

BASE_URL = "http://127.0.0.1:9"
KEY = "sim-key-QWERTY-0123456789"
CREATE_PATH = "/api/tasks/visual/advanced-image-expand"
RESULT_LIFE = 3600.0
_QUERY = re.compile(re.escape(CREATE_PATH) + r"/([^/]+)$")
_RESULT = re.compile(r"^/_results/([0-9a-f]+)\.png$")


class SimCrash(Exception):
    """The process dies here: nothing after this point happens (test_simulation.py)."""


@dataclass
class Task:
    id: str
    content: str  # sha256 of the uploaded image
    size: tuple[int, int]  # the expanded size
    created: float  # fake monotonic time
    seconds: float
    final: int  # 1, or a failure state
    expired: bool = False  # its result URLs answer 404 (forced)


@dataclass
class Faults:
    """Per-request probabilities; `heal()` sets them all to 0."""

    create_429: float = 0.0
    create_500: float = 0.0
    create_refused: float = 0.0  # connection refused: never sent
    create_lost: float = 0.0  # the task is created, the answer is lost
    create_garbage: float = 0.0  # the task is created, the answer is not JSON
    query_429: float = 0.0
    query_500: float = 0.0
    query_lost: float = 0.0
    query_garbage: float = 0.0
    task_transient: float = 0.0  # the task fails with -15 (a new task is needed)
    task_permanent: float = 0.0  # the task fails with -7
    download_404: float = 0.0
    download_503: float = 0.0
    download_garbage: float = 0.0
    crash: float = 0.0  # a crash right before or right after a request is handled

    def heal(self) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, 0.0)


@dataclass
class FakeApi:
    clock: FakeClock
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    faults: Faults = field(default_factory=Faults)
    processing: tuple[float, float] = (2.0, 6.0)
    key: str = KEY
    tasks: dict[str, Task] = field(default_factory=dict)
    creates: Counter[str] = field(default_factory=Counter)  # per content sha256
    unavoidable: Counter[str] = field(default_factory=Counter)  # extra creates the world caused
    stats: Counter[str] = field(default_factory=Counter)
    params: list[dict[str, str]] = field(default_factory=list)  # form fields of each create
    crashed: bool = False
    _serial: int = 0

    # -- the transports -----------------------------------------------------------------

    def api_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def storage_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.crashed:
            raise SimCrash("after the crash")
        self._maybe_crash("before")
        path = request.url.path
        if request.method == "POST" and path == CREATE_PATH:
            response = self._create(request)
        elif request.method == "GET" and (m := _QUERY.match(path)):
            response = self._query(request, m.group(1))
        elif request.method == "GET" and (m := _RESULT.match(path)):
            response = self._result(m.group(1))
        else:
            response = httpx.Response(404, json={"status": 404, "message": "no such route"})
        return response

    def _maybe_crash(self, when: str) -> None:
        if self.faults.crash and self.rng.random() < self.faults.crash:
            self.crashed = True
            self.stats[f"crash_{when}"] += 1
            raise SimCrash(f"crash {when} a request")

    def _roll(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p

    # -- create -------------------------------------------------------------------------

    def _create(self, request: httpx.Request) -> httpx.Response:
        f = self.faults
        if request.headers.get("X-API-KEY") != self.key:
            return httpx.Response(401, json={"status": 401, "message": "unauthorized"})
        if self._roll(f.create_refused):
            self.stats["create_refused"] += 1
            raise httpx.ConnectError("refused", request=request)
        if self._roll(f.create_429):
            self.stats["http_429"] += 1
            return httpx.Response(429, json={"status": 429, "message": "too many"})
        if self._roll(f.create_500):
            self.stats["http_500"] += 1
            return httpx.Response(500, json={"status": 500, "message": "boom"})
        form = parse_form(
            request.headers["content-type"], request.read(), frozenset({"image_file"})
        )
        image = form.files["image_file"]
        content = hashlib.sha256(image).hexdigest()
        with Image.open(io.BytesIO(image)) as img:
            w, h = img.size
        fields = dict(form.fields)
        self.params.append(fields)

        def scale(side: str) -> float:
            return float(fields.get(side, 0.1))

        size = (
            max(64, round(w * (1 + scale("left") + scale("right")))),
            max(64, round(h * (1 + scale("top") + scale("bottom")))),
        )
        if "mask_file" in form.files:
            size = (w, h)
        self._serial += 1
        final = 1
        if self._roll(f.task_transient):
            final = -15
            self.unavoidable[content] += 1
        elif self._roll(f.task_permanent):
            final = -7
        task = Task(
            id=f"{self._serial:08x}",
            content=content,
            size=size,
            created=self.clock.mono(),
            seconds=self.rng.uniform(*self.processing),
            final=final,
        )
        self.tasks[task.id] = task
        self.creates[content] += 1
        self.stats["tasks_created"] += 1
        sync = fields.get("sync") == "1"
        if self.faults.crash and self.rng.random() < self.faults.crash:
            self.unavoidable[content] += 1  # the crash took the answer: ambiguous
            self._maybe_crash_now("after create")
        if self._roll(f.create_lost):
            self.unavoidable[content] += 1
            self.stats["create_lost"] += 1
            raise httpx.ReadError("connection reset", request=request)
        if self._roll(f.create_garbage):
            self.unavoidable[content] += 1
            self.stats["create_garbage"] += 1
            return httpx.Response(200, content=b"\x00<html>oops")
        if sync:
            task.seconds = 0.0
            return httpx.Response(200, json=self._answer(task))
        return httpx.Response(200, json={"status": 200, "data": {"task_id": task.id}})

    def _maybe_crash_now(self, when: str) -> None:
        self.crashed = True
        self.stats[f"crash_{when}"] += 1
        raise SimCrash(f"crash {when}")

    # -- query --------------------------------------------------------------------------

    def _query(self, request: httpx.Request, task_id: str) -> httpx.Response:
        f = self.faults
        if request.headers.get("X-API-KEY") != self.key:
            return httpx.Response(401, json={"status": 401, "message": "unauthorized"})
        if self._roll(f.query_429):
            self.stats["http_429"] += 1
            return httpx.Response(429, json={"status": 429, "message": "too many"})
        if self._roll(f.query_500):
            return httpx.Response(500, json={"status": 500, "message": "boom"})
        if self._roll(f.query_lost):
            raise httpx.ReadError("connection reset", request=request)
        if self._roll(f.query_garbage):
            return httpx.Response(200, content=b"not json {")
        self.stats["queries"] += 1
        task = self.tasks.get(task_id)
        if task is None:
            return httpx.Response(404, json={"status": 404, "message": "no such task"})
        return httpx.Response(200, json=self._answer(task))

    def _answer(self, task: Task) -> dict[str, Any]:
        age = self.clock.mono() - task.created
        if age < task.seconds:
            progress = int(100 * age / task.seconds)
            return {"status": 200, "data": {"task_id": task.id, "state": 4, "progress": progress}}
        data: dict[str, Any] = {
            "task_id": task.id,
            "state": task.final,
            "progress": 100,
            "time_elapsed": f"{task.seconds:.3f}",
        }
        if task.final == 1:
            data["image"] = f"{BASE_URL}/_results/{task.id}.png"
        return {"status": 200, "data": data}

    # -- results ------------------------------------------------------------------------

    def _result(self, task_id: str) -> httpx.Response:
        f = self.faults
        task = self.tasks.get(task_id)
        if task is None or task.final != 1:
            return httpx.Response(404)
        age = self.clock.mono() - task.created - task.seconds
        if task.expired or age > RESULT_LIFE or self._roll(f.download_404):
            self.stats["download_404"] += 1
            return httpx.Response(404)
        if self._roll(f.download_503):
            self.stats["download_503"] += 1
            return httpx.Response(503)
        if self._roll(f.download_garbage):
            return httpx.Response(
                200, content=b"\x89PNG garbage", headers={"content-type": "image/png"}
            )
        self.stats["downloads"] += 1
        return httpx.Response(
            200, content=_png(task.size), headers={"content-type": "image/png"}
        )

    def summary(self) -> str:
        return json.dumps({"creates": sum(self.creates.values()), **self.stats})


_PNG_CACHE: dict[tuple[int, int], bytes] = {}


def _png(size: tuple[int, int]) -> bytes:
    if size not in _PNG_CACHE:
        buf = io.BytesIO()
        Image.new("RGB", size, (90, 140, 200)).save(buf, "PNG")
        _PNG_CACHE[size] = buf.getvalue()
    return _PNG_CACHE[size]
