"""The PicWish API simulator: real sockets on 127.0.0.1, an httpx client, a fake clock where
time matters (expiry, QPS, sync waits) and real time only where the point is real time."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image

from watchd.sim import SimConfig, Simulator, UploadRecord
from watchd.sim.__main__ import main as sim_main
from watchd.sim.images import expanded_size, inspect_image, render_result
from watchd.sim.multipart import FormError, parse_form
from watchd.sim.tasks import RateWindow, TaskPlan, choose_final_state, phase_at

CREATE = "/api/tasks/visual/advanced-image-expand"
KEY = {"X-API-KEY": "test-key"}


# -- helpers ------------------------------------------------------------------------------


class FakeClock:
    """Monotonic time that only moves when told to (or when the simulator 'sleeps')."""

    def __init__(self) -> None:
        self._t = 1000.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds


def png(width: int = 100, height: int = 80, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def noisy_png(width: int = 120, height: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((width, height), 80).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int = 100, height: int = 80) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


def open_image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@dataclass
class Api:
    sim: Simulator
    http: httpx.Client
    clock: FakeClock | None

    def create(
        self,
        image: bytes | None = None,
        mask: bytes | None = None,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> httpx.Response:
        files: dict[str, tuple[str, bytes]] = {}
        if image is not None:
            files["image_file"] = ("in.img", image)
        if mask is not None:
            files["mask_file"] = ("mask.png", mask)
        data = {k: str(v) for k, v in fields.items()}
        # An empty files dict would make httpx send a urlencoded form instead.
        files = files or {"unused": ("", b"")}
        return self.http.post(CREATE, files=files, data=data, headers=headers)

    def query(self, task_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.get(f"{CREATE}/{task_id}", headers=headers)

    def task_id(self, image: bytes | None = None, **fields: Any) -> str:
        reply = self.create(png() if image is None else image, **fields)
        assert reply.status_code == 200, reply.text
        return str(reply.json()["data"]["task_id"])

    def finished(self, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Poll until state 1 or < 0 (advancing the fake clock if there is one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data: dict[str, Any] = self.query(task_id).json()["data"]
            if data["state"] == 1 or data["state"] < 0:
                return data
            if self.clock is not None:
                self.clock.advance(0.5)
            else:
                time.sleep(0.02)
        raise AssertionError(f"task {task_id} did not finish")


@pytest.fixture
def start() -> Iterator[Callable[..., Api]]:
    """start(**knobs) -> Api; `fake_clock=True` drives the simulator with a FakeClock."""
    opened: list[tuple[Simulator, httpx.Client]] = []

    def _start(fake_clock: bool = False, **knobs: Any) -> Api:
        clock = FakeClock() if fake_clock else None
        timing = {"clock": clock.now, "sleep": clock.sleep} if clock else {}
        config = SimConfig(**{"qps": 0, "processing_time": (0.05, 0.1), **knobs})
        sim = Simulator(config, host="127.0.0.1", port=0, **timing).start()
        # verify=False: plain http on loopback, and it skips loading CA certificates (~50 ms).
        http = httpx.Client(base_url=sim.base_url, headers=KEY, timeout=5, verify=False)
        opened.append((sim, http))
        return Api(sim, http, clock)

    yield _start
    for sim, http in opened:
        http.close()
        sim.stop()


# -- the happy paths ------------------------------------------------------------------------


def test_async_task_goes_queued_processing_done_and_result_is_expanded(start):
    api = start(processing_time=(0.25, 0.25))
    source = png(100, 80, (200, 30, 30))
    task_id = api.task_id(source, top=0.5, bottom=0.25, left=0.1, right=0.3)

    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        reply = api.query(task_id)
        assert reply.status_code == 200
        data = reply.json()["data"]
        seen.append((data["state"], data["progress"]))
        if data["state"] == 1:
            break
        time.sleep(0.01)

    states = [s for s, _ in seen]
    # The first poll is usually still queued (0); a loaded machine may first see 4.
    assert states[0] in (0, 4) and 4 in states and states[-1] == 1
    assert states == sorted(states, key=[0, 4, 1].index), "states only move forward"
    progress = [p for _, p in seen]
    assert progress == sorted(progress) and progress[-1] == 100
    for key in ("task_id", "created_at", "processed_at", "completed_at", "state_detail"):
        assert data[key] is not None
    assert data["return_type"] == 1

    result = api.http.get(data["image"])
    assert result.status_code == 200
    assert result.headers["content-type"] == "image/png"
    out = open_image(result.content)
    assert out.format == "PNG"
    assert out.size == (140, 140) == expanded_size(100, 80, 0.5, 0.25, 0.1, 0.3)
    # The original sits at (left*w, top*h) = (10, 40).
    assert out.getpixel((10 + 50, 40 + 40))[:3] == (200, 30, 30)
    assert out.getpixel((2, 2))[:3] != (200, 30, 30), "the new area is filled"
    assert api.sim.stats["downloads"] == 1


def test_default_ratios_are_a_tenth_on_each_side(start):
    api = start(fake_clock=True)
    data = api.finished(api.task_id(png(100, 200)))
    assert open_image(api.http.get(data["image"]).content).size == (120, 240)


def test_jpeg_in_gives_jpeg_out(start):
    api = start(fake_clock=True)
    data = api.finished(api.task_id(jpeg(100, 80)))
    result = api.http.get(data["image"])
    assert data["image"].endswith(".jpg")
    assert result.headers["content-type"] == "image/jpeg"
    assert open_image(result.content).format == "JPEG"


def test_canvas_mode_keeps_the_size(start):
    api = start(fake_clock=True)
    mask = Image.new("L", (100, 80), 0)
    mask.paste(255, (0, 0, 20, 80))
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    reply = api.create(png(100, 80), mask=buf.getvalue(), top=1)
    data = api.finished(reply.json()["data"]["task_id"])
    out = open_image(api.http.get(data["image"]).content)
    assert out.size == (100, 80)
    assert out.getpixel((50, 40)) == (200, 30, 30), "unmasked area keeps the image"
    assert out.getpixel((5, 40)) != (200, 30, 30), "the mask's white area is painted"
    assert api.sim.uploads[0].mask_sha256 is not None


def test_base64_return_type_carries_the_image_in_the_answer(start):
    api = start(fake_clock=True)
    data = api.finished(api.task_id(png(100, 80), return_type=2))
    assert data["return_type"] == 2
    assert open_image(base64.b64decode(data["image"])).size == (120, 96)
    assert api.sim.stats["downloads"] == 0


def test_sync_mode_holds_the_request_until_the_task_is_done(start):
    api = start(fake_clock=True, processing_time=(3.0, 3.0))
    assert api.clock is not None
    before = api.clock.now()
    reply = api.create(png(), sync=1)
    assert reply.status_code == 200
    data = reply.json()["data"]
    assert data["state"] == 1 and data["progress"] == 100
    assert api.clock.now() - before >= 3.0, "answered only after the processing time"
    assert open_image(api.http.get(data["image"]).content).size == (120, 96)
    assert api.sim.uploads[0].sync is True


def test_sync_mode_really_waits_in_real_time(start):
    api = start(processing_time=(0.2, 0.2))
    began = time.monotonic()
    reply = api.create(png(), sync=1, return_type=2)
    assert time.monotonic() - began >= 0.2
    assert reply.json()["data"]["state"] == 1


def test_sync_mode_answers_a_failed_task_with_its_state(start):
    api = start(fake_clock=True, fail_prompt={"FAILME": -10})
    reply = api.create(png(), sync=1, prompt="FAILME")
    assert reply.status_code == 200
    assert reply.json()["data"]["state"] == -10
    assert "image" not in reply.json()["data"]


# -- refusals -------------------------------------------------------------------------------


def test_image_over_5mb_is_413_and_recorded(start):
    api = start()
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * 5_000_000
    reply = api.create(big)
    assert reply.status_code == 413
    assert reply.json()["status"] == 413
    (record,) = api.sim.uploads
    assert record.status == 413 and record.image_size == len(big) and record.task_id is None
    assert api.sim.stats["tasks_created"] == 0


@pytest.mark.parametrize(
    "image, mask, fields",
    [
        (png(), None, {"top": 0}),
        (png(), None, {"left": 1.5}),
        (png(), None, {"right": "abc"}),
        (png(), None, {"bottom": "nan"}),
        (png(), None, {"return_type": 3}),
        (png(), None, {"sync": 2}),
        (png(), None, {"scale": 25}),
        (png(63, 100), None, {}),
        (png(100, 4097), None, {}),
        (png(100, 80), png(100, 81), {}),
        (b"GIF89a not a png", None, {}),
        (None, None, {}),
        (None, None, {"image_url": "http://example.com/a.png"}),
    ],
    ids=[
        "top-zero", "left-over-one", "right-text", "bottom-nan", "return-type", "sync",
        "scale", "too-narrow", "too-tall", "mask-size", "not-png-or-jpeg", "no-image",
        "image-url",
    ],
)  # fmt: skip
def test_invalid_create_is_400_and_creates_nothing(start, image, mask, fields):
    api = start()
    reply = api.create(image, mask=mask, **fields)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["status"] == 400 and body["message"]
    assert api.sim.stats["tasks_created"] == 0
    assert [r.status for r in api.sim.uploads] == [400]


def test_image_url_is_refused_by_name(start):
    reply = start().create(None, image_url="http://example.com/a.png")
    assert "image_url not supported" in reply.json()["message"]


def test_truncated_png_is_refused_and_recorded_incomplete(start):
    api = start()
    whole = noisy_png()
    reply = api.create(whole[: len(whole) // 2])
    assert reply.status_code == 400
    (record,) = api.sim.uploads
    assert record.complete is False
    assert (record.image_format, record.width, record.height) == ("PNG", 120, 90)


def test_upload_record_describes_what_was_sent(start):
    api = start()
    image = png(100, 80)
    task_id = api.task_id(image, top=0.2, prompt="a beach", seed=7)
    (record,) = api.sim.uploads
    assert isinstance(record, UploadRecord)
    assert record.task_id == task_id and record.status == 200
    assert record.image_size == len(image) and record.image_format == "PNG"
    assert (record.width, record.height, record.complete) == (100, 80, True)
    assert record.params == {"top": "0.2", "prompt": "a beach", "seed": "7"}
    assert record.sync is False and record.mask_sha256 is None
    assert abs(record.at - time.time()) < 60


def test_missing_or_empty_key_is_401_when_any_key_is_accepted(start):
    api = start()
    assert api.create(png(), headers={"X-API-KEY": ""}).status_code == 401
    api.http.headers.pop("X-API-KEY")
    reply = api.query("whatever")
    assert reply.status_code == 401 and reply.json()["status"] == 401
    assert api.sim.stats["http_401"] == 2 and api.sim.stats["requests"] == 2
    assert api.sim.stats["tasks_created"] == 0


def test_only_valid_keys_pass_when_they_are_set(start):
    api = start(valid_keys=frozenset({"good"}))
    assert api.create(png()).status_code == 401
    assert api.create(png(), headers={"X-API-KEY": "good"}).status_code == 200


def test_unknown_task_is_404(start):
    reply = start().query("no-such-task")
    assert reply.status_code == 404 and reply.json()["status"] == 404


# -- rate limit and expiry (fake clock) ------------------------------------------------------


def test_over_qps_is_429_with_retry_after_and_creates_nothing(start):
    api = start(fake_clock=True, qps=2)
    assert api.clock is not None
    assert api.query("a").status_code == 404
    assert api.query("b").status_code == 404
    limited = api.create(png())
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["status"] == 429
    assert api.sim.stats["tasks_created"] == 0
    assert [(r.status, r.task_id) for r in api.sim.uploads] == [(429, None)]
    api.clock.advance(1.0)
    assert api.create(png()).status_code == 200
    stats = api.sim.stats
    assert (stats["requests"], stats["http_429"], stats["tasks_created"]) == (4, 1, 1)


def test_result_url_expires_and_querying_again_gives_a_fresh_one(start):
    api = start(fake_clock=True, url_ttl=10, processing_time=(1, 1))
    assert api.clock is not None
    task_id = api.task_id()
    api.clock.advance(1)
    first = api.query(task_id).json()["data"]["image"]
    assert api.http.get(first).status_code == 200
    api.clock.advance(10)
    assert api.http.get(first).status_code == 404
    second = api.query(task_id).json()["data"]["image"]
    assert second != first
    assert api.http.get(second).status_code == 200
    assert api.http.get(first).status_code == 404, "an old URL stays expired"
    stats = api.sim.stats
    assert (stats["downloads"], stats["downloads_404"], stats["tasks_created"]) == (4, 2, 1)


def test_task_older_than_task_ttl_is_404(start):
    api = start(fake_clock=True, task_ttl=100)
    assert api.clock is not None
    task_id = api.task_id()
    api.clock.advance(99)
    assert api.query(task_id).status_code == 200
    api.clock.advance(2)
    assert api.query(task_id).status_code == 404


def test_slow_requests_are_delayed_by_slow_delay(start):
    api = start(fake_clock=True, slow=1.0, slow_delay=5.0)
    assert api.clock is not None
    before = api.clock.now()
    assert api.query("x").status_code == 404
    assert api.clock.now() - before == 5.0
    assert api.sim.stats["slowed"] == 1


# -- injected failures ----------------------------------------------------------------------


def test_fail_500_answers_500_until_turned_off_live(start):
    api = start(fail_500=1.0)
    reply = api.create(png())
    assert reply.status_code == 500 and reply.json()["status"] == 500
    assert api.query("x").status_code == 500
    assert api.sim.stats["tasks_created"] == 0
    api.sim.update(fail_500=0.0)
    assert api.sim.config.fail_500 == 0.0
    assert api.create(png()).status_code == 200
    stats = api.sim.stats
    assert (stats["requests"], stats["http_500"], stats["http_200"]) == (3, 2, 1)


def test_drop_closes_the_connection_before_doing_anything(start):
    api = start(drop=1.0)
    with pytest.raises(httpx.TransportError):
        api.create(png())
    with pytest.raises(httpx.TransportError):
        api.query("x")
    stats = api.sim.stats
    assert (stats["dropped"], stats["requests"], stats["tasks_created"]) == (2, 2, 0)
    assert api.sim.uploads == []


def test_lost_create_makes_the_task_but_closes_without_answering(start):
    api = start(fake_clock=True, lose_create=1.0)
    with pytest.raises(httpx.TransportError):
        api.create(png())
    stats = api.sim.stats
    assert (stats["tasks_created"], stats["lost_creates"]) == (1, 1)
    (record,) = api.sim.uploads
    assert record.task_id is not None and record.status == 0
    assert api.finished(record.task_id)["state"] == 1, "the task exists and is processed"


def test_task_fail_ends_tasks_in_the_given_state_with_http_200(start):
    api = start(fake_clock=True, task_fail={-15: 1.0})
    task_id = api.task_id()
    data = api.finished(task_id)
    reply = api.query(task_id)
    assert reply.status_code == 200 and reply.json()["status"] == 200
    assert data["state"] == -15 and "image" not in data
    assert "insufficient resources" in reply.json()["message"]


def test_fail_prompt_fails_only_tasks_whose_prompt_contains_it(start):
    api = start(fake_clock=True, fail_prompt={"FAILME": -10})
    assert api.finished(api.task_id(prompt="please FAILME now"))["state"] == -10
    assert api.finished(api.task_id(prompt="a calm sea"))["state"] == 1


def test_offset_px_makes_results_a_few_pixels_off(start):
    api = start(fake_clock=True, offset_px=3, seed=1)
    sizes = set()
    for _ in range(6):
        data = api.finished(api.task_id(png(100, 100), return_type=2))
        sizes.add(open_image(base64.b64decode(data["image"])).size)
    assert all(117 <= w <= 123 and 117 <= h <= 123 for w, h in sizes)
    assert sizes != {(120, 120)}


def test_same_seed_gives_the_same_task_ids(start):
    first = start(seed=42).task_id()
    second = start(seed=42).task_id()
    assert first == second


# -- introspection and lifecycle ------------------------------------------------------------


def test_sim_endpoints_show_stats_uploads_and_change_config(start):
    api = start()
    api.task_id()
    stats = api.http.get("/_sim/stats").json()
    assert stats["creates"] == 1 and stats["requests"] == 1
    uploads = api.http.get("/_sim/uploads").json()
    assert len(uploads) == 1 and uploads[0]["status"] == 200 and uploads[0]["width"] == 100

    changed = api.http.post("/_sim/config", json={"fail_500": 1.0, "task_fail": {"-15": 0.5}})
    assert changed.status_code == 200 and changed.json()["fail_500"] == 1.0
    assert api.sim.config.task_fail == {-15: 0.5}
    assert api.http.get("/_sim/config").json()["task_fail"] == {"-15": 0.5}
    assert api.http.post("/_sim/config", json={"nope": 1}).status_code == 400
    assert api.http.post("/_sim/config", json={"drop": 7}).status_code == 400
    assert api.sim.stats["requests"] == 1, "introspection is not counted as API requests"


def test_stop_cuts_pooled_connections(start):
    api = start()
    assert api.query("x").status_code == 404  # leaves a keep-alive connection in the pool
    api.sim.stop()
    with pytest.raises(httpx.TransportError):
        api.query("x")


def test_context_manager_starts_and_stops():
    with Simulator(SimConfig(qps=0)) as sim:
        url = sim.base_url
        assert httpx.get(f"{url}/_sim/stats", verify=False).status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/_sim/stats", timeout=1, verify=False)


def test_update_rejects_unknown_and_invalid_knobs():
    sim = Simulator(SimConfig())
    with pytest.raises(TypeError):
        sim.update(no_such_knob=1)
    with pytest.raises(ValueError):
        sim.update(fail_500=1.5)
    assert sim.config == SimConfig()


def test_command_line_serves_and_prints_its_url():
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchd.sim", "--port", "0", "--qps", "0",
         "--processing-time", "0.1,0.2", "--task-fail=-15:0.5", "--fail-prompt", "FAILME:-10"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()))
        reader.start()
        reader.join(timeout=10)
        assert lines and lines[0].startswith("watchd simulator listening on http://127.0.0.1:")
        url = lines[0].split(" on ", 1)[1].strip()
        config = httpx.get(f"{url}/_sim/config", verify=False).json()
        assert config["task_fail"] == {"-15": 0.5}
        assert config["fail_prompt"] == {"FAILME": -10}
        assert config["processing_time"] == [0.1, 0.2]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_command_line_rejects_an_invalid_knob(capsys):
    assert sim_main(["--fail-500", "2"]) == 2
    assert "fail_500" in capsys.readouterr().err


# -- the pure parts ------------------------------------------------------------------------


def test_task_timeline_is_queued_then_processing_then_final():
    plan = TaskPlan("t", created=0.0, duration=10.0, final_state=1, return_type=1)
    assert phase_at(plan, 0.0).state == 0 and phase_at(plan, 0.0).processed_at is None
    middle = phase_at(plan, 6.0)
    assert middle.state == 4 and 1 <= middle.progress <= 99 and middle.completed_at is None
    assert phase_at(plan, 3.0).progress < middle.progress
    end = phase_at(plan, 10.0)
    assert (end.state, end.progress, end.completed_at) == (1, 100, 10.0)
    failing = TaskPlan("t", created=0.0, duration=10.0, final_state=-7, return_type=1)
    assert phase_at(failing, 10.0).state == -7 and phase_at(failing, 9.0).state == 4


def test_prompt_failure_beats_the_dice_and_the_dice_follow_probabilities():
    assert choose_final_state("x FAILME", {"FAILME": -10}, {-15: 1.0}, 0.0) == -10
    assert choose_final_state("", {}, {-15: 0.2, -8: 0.3}, 0.1) == -15
    assert choose_final_state("", {}, {-15: 0.2, -8: 0.3}, 0.45) == -8
    assert choose_final_state("", {}, {-15: 0.2, -8: 0.3}, 0.5) == 1


def test_rate_window_allows_qps_per_sliding_second_and_forgets_refusals():
    window = RateWindow()
    assert [window.try_acquire(t, 2) for t in (0.0, 0.1, 0.2, 0.9)] == [True, True, False, False]
    assert window.try_acquire(1.0, 2) is True  # the request at 0.0 left the window
    slow = RateWindow()
    assert [slow.try_acquire(t, 0.5) for t in (0.0, 1.0, 2.0)] == [True, False, True]
    assert all(RateWindow().try_acquire(0.0, 0) for _ in range(3))


def test_config_normalises_inputs_and_rejects_nonsense():
    cfg = SimConfig(processing_time=[1, 2], valid_keys=["a"], task_fail={"-15": "0.5"})
    assert cfg.processing_time == (1.0, 2.0)
    assert cfg.valid_keys == frozenset({"a"})
    assert cfg.task_fail == {-15: 0.5}
    for bad in ({"drop": -0.1}, {"task_fail": {1: 0.5}}, {"task_fail": {-1: 0.7, -2: 0.7}},
                {"processing_time": (2, 1)}, {"fail_prompt": {"x": 1}}):  # fmt: skip
        with pytest.raises(ValueError):
            SimConfig(**bad)


def test_multipart_keeps_binary_files_byte_for_byte():
    payload = os.urandom(3000) + b"\r\n--\r\r\n\n\r"
    request = httpx.Request(
        "POST", "http://x/", data={"prompt": "héllo"}, files={"image_file": ("é.png", payload)}
    )
    form = parse_form(request.headers["content-type"], request.read())
    assert form.files["image_file"] == payload
    assert form.fields == {"prompt": "héllo"}


def test_multipart_named_file_fields_need_no_filename():
    body = (
        b'--B\r\nContent-Disposition: form-data; name="image_file"\r\n\r\n\x89PNG\r\n'
        b'--B\r\nContent-Disposition: form-data; name="top"\r\n\r\n0.2\r\n--B--\r\n'
    )
    form = parse_form("multipart/form-data; boundary=B", body, frozenset({"image_file"}))
    assert form.files == {"image_file": b"\x89PNG"} and form.fields == {"top": "0.2"}
    with pytest.raises(FormError):
        parse_form("application/json", b"{}")


def test_inspect_image_tells_truncated_from_complete():
    whole = noisy_png()
    assert inspect_image(whole).complete is True
    assert inspect_image(whole[:-2]).complete is False, "cut inside the IEND chunk"
    assert inspect_image(whole[: len(whole) // 2]).complete is False
    photo = jpeg()
    assert inspect_image(photo).complete is True
    assert inspect_image(photo[:-2]).complete is False
    assert inspect_image(b"plain text").format is None


def test_render_keeps_alpha_of_a_transparent_png():
    buf = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(buf, "PNG")
    out = open_image(render_result(buf.getvalue(), None, (0.5, 0.5, 0.5, 0.5)))
    assert out.mode == "RGBA" and out.size == (128, 128)
    assert out.getpixel((64, 64))[3] == 0, "the original's transparency survives"


def test_sim_json_is_plain_json():
    record = UploadRecord(0.0, None, None, 0, None, None, None, False, None, {}, False, 400)
    assert json.loads(json.dumps(record.to_json()))["status"] == 400
