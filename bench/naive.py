"""The baseline of bench/throughput.py: a client that follows the API doc literally.

For each image: create the task (sync=0), then query it once every second until it is done
(the doc: "We recommend polling async results once every second"), then download the result.
It keeps its own QPS limit (evenly spaced sends, first come first served) so the simulator's
429s do not penalise it; a 429 it still gets is counted and the request is sent again after
Retry-After. Downloads are not API requests and are not paced.

Owns: that client and its result. Must never: talk to anything but the simulator on
127.0.0.1, or be smarter than the doc (no adaptive polling: that is what watchd adds).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

CREATE_PATH = "/api/tasks/visual/advanced-image-expand"
POLL_EVERY = 1.0
SEND_MARGIN = 0.01  # seconds added to 1/QPS so send jitter does not cross a 1 s window


@dataclass(frozen=True)
class NaiveResult:
    tasks: int  # finished with a result
    failed: int
    wall: float  # first create sent .. last result downloaded
    first_done: float  # seconds from start
    http_429: int  # as seen by the client


class Pacer:
    """Sends at most `qps` per second, evenly spaced, in the order callers asked."""

    def __init__(self, qps: float) -> None:
        self.interval = 1.0 / qps + SEND_MARGIN
        self.next_at = 0.0

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = max(now, self.next_at)  # reserved synchronously: FIFO without a lock
        self.next_at = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


async def run_naive(
    base_url: str, images: list[bytes], *, qps: float, concurrency: int, key: str
) -> NaiveResult:
    """Process every image with at most `concurrency` tasks in flight."""
    pacer = Pacer(qps)
    slots = asyncio.Semaphore(concurrency)
    headers = {"X-API-KEY": key}
    done_at: list[float] = []
    failed = 0
    n429 = 0
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:

        async def api(method: str, url: str, **kw: object) -> dict[str, object]:
            nonlocal n429
            while True:
                await pacer.take()
                r = await client.request(method, url, headers=headers, **kw)  # type: ignore[arg-type]
                if r.status_code == 429:
                    n429 += 1
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                r.raise_for_status()
                return r.json()["data"]  # type: ignore[no-any-return]

        async def one(index: int, image: bytes) -> None:
            nonlocal failed
            async with slots:
                data = await api(
                    "POST",
                    CREATE_PATH,
                    files={"image_file": (f"naive{index}.png", image, "image/png")},
                    data={"sync": "0"},
                )
                task_id = data["task_id"]
                while True:
                    await asyncio.sleep(POLL_EVERY)
                    data = await api("GET", f"{CREATE_PATH}/{task_id}")
                    state = int(data["state"])  # type: ignore[call-overload]
                    if state == 1:
                        break
                    if state < 0:
                        failed += 1
                        return
                result = await client.get(str(data["image"]))
                result.raise_for_status()
                done_at.append(time.monotonic())

        start = time.monotonic()
        await asyncio.gather(*(one(i, img) for i, img in enumerate(images)))
    end = max(done_at, default=time.monotonic())
    return NaiveResult(
        tasks=len(done_at),
        failed=failed,
        wall=end - start,
        first_done=min(done_at, default=end) - start,
        http_429=n429,
    )
