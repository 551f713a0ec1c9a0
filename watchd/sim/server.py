"""The simulated PicWish advanced-image-expand API: a real HTTP server on loopback.

Owns: the HTTP routes (create, query, result downloads, `/_sim/*` introspection), the live
task table, the injected failures (429, 401, 500, dropped and lost connections, slow
answers, failed tasks) and the counters tests read. Follows /work/shared/picwish-expand-api.md.
Must never: import the rest of watchd (it stands alone: stdlib and Pillow only), bind to a
non-loopback address unless told to, or read the wall clock for anything but timestamps
(time flows from the injected `clock`).

Order of checks on a create or query, so a test knows what a knob costs:
    count it -> `drop` (close, nothing read) -> QPS window (429, nothing created)
    -> `slow` delay -> X-API-KEY (401) -> `fail_500` -> validate (400/413) or look up (404)
    -> create the task -> `lose_create` (close after creating) -> answer (sync: after waiting)
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import math
import random
import re
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from watchd.sim.config import SimConfig, UploadRecord, config_to_json
from watchd.sim.images import ImageInfo, inspect_image, render_result
from watchd.sim.multipart import FormError, parse_form
from watchd.sim.tasks import (
    DONE,
    STATE_MESSAGES,
    RateWindow,
    TaskPlan,
    choose_final_state,
    timeline_fields,
)

__all__ = ["CREATE_PATH", "Simulator"]

CREATE_PATH = "/api/tasks/visual/advanced-image-expand"
_QUERY_RE = re.compile(re.escape(CREATE_PATH) + r"/([^/]+)")
_RESULT_RE = re.compile(r"/_results/([A-Za-z0-9]+)\.(png|jpg)")

MAX_IMAGE_BYTES = 5_000_000  # the doc's 5MB
MIN_SIDE, MAX_SIDE = 64, 4096
# Bodies past this are refused unread; below it even an oversized image gets a clean 413.
MAX_BODY_BYTES = 64 * 1024 * 1024
_FILE_FIELDS = frozenset({"image_file", "mask_file"})
_SYNC_TICK = 0.05  # how often a held sync request looks up from waiting (stop, clock)
_PRUNE_EVERY = 64  # creates between sweeps of expired tasks and URLs

_STAT_KEYS = (
    "requests", "creates", "queries", "tasks_created", "dropped", "lost_creates", "slowed",
    "downloads", "downloads_404", "http_200", "http_400", "http_401", "http_404",
    "http_413", "http_429", "http_500",
)  # fmt: skip


class _Close(Exception):
    """Close the connection without answering (a simulated network failure)."""


@dataclass(frozen=True)
class _Reply:
    status: int
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


class _Task:
    """A created task: its plan (immutable) plus its lazily drawn result and current URL."""

    def __init__(
        self,
        plan: TaskPlan,
        image: bytes,
        mask: bytes | None,
        sides: tuple[float, float, float, float],
        jitter: tuple[int, int],
        ext: str,
    ) -> None:
        self.plan = plan
        self.ext = ext
        self.lock = threading.Lock()  # one drawing of the result per task
        self._source: tuple[bytes, bytes | None] | None = (image, mask)
        self._sides = sides
        self._jitter = jitter
        self._result: bytes | None = None
        self.token: str | None = None
        self.token_expires = 0.0

    def result(self) -> bytes:
        with self.lock:
            if self._result is None:
                assert self._source is not None
                image, mask = self._source
                self._result = render_result(image, mask, self._sides, self._jitter)
                self._source = None  # the upload is no longer needed; free it
            return self._result


class Simulator:
    """The simulated API, served from a background thread.

    `clock` (monotonic seconds) drives every timeline: processing, QPS window, URL and task
    expiry; `sleep` is used for sync waits and `slow` delays. Pass a fake pair to test
    expiry without waiting.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._config = config if config is not None else SimConfig()
        self._host = host
        self._port = port
        self._clock = clock
        self._sleep = sleep
        self._log = log
        self._lock = threading.Lock()  # guards everything below
        self._rng = random.Random(self._config.seed)
        self._window = RateWindow()
        self._tasks: dict[str, _Task] = {}
        self._tokens: dict[str, _Task] = {}
        self._uploads: list[UploadRecord] = []
        self._stats: Counter[str] = Counter(dict.fromkeys(_STAT_KEYS, 0))
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # Epoch timestamps follow the injected clock, so a fake clock moves them too.
        self._epoch_offset = time.time() - clock()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # how quickly stop() is noticed
            name=f"watchd-sim:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections (a stopped API answers nothing)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- public view -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def config(self) -> SimConfig:
        return self._config

    def update(self, **knobs: Any) -> SimConfig:
        """Change config fields live, e.g. `sim.update(fail_500=0.0)`; returns the new config."""
        with self._lock:
            new = dataclasses.replace(self._config, **knobs)
            if "seed" in knobs:
                self._rng.seed(new.seed)
            self._config = new
            return new

    @property
    def uploads(self) -> list[UploadRecord]:
        with self._lock:
            return list(self._uploads)

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    # -- helpers shared by the routes ----------------------------------------------------

    def _now(self) -> float:
        return self._clock()

    def _epoch(self, t: float) -> float:
        return t + self._epoch_offset

    def _roll(self, probability: float) -> bool:
        if probability <= 0:
            return False  # draws nothing, so a seeded run is the same with the knob off
        with self._lock:
            return self._rng.random() < probability

    def _count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._stats[key] += 1

    def _record(self, record: UploadRecord) -> None:
        with self._lock:
            self._uploads.append(record)

    # -- the API ---------------------------------------------------------------------

    def _api(self, handler: _Handler, task_id: str | None) -> None:
        """One create (task_id None) or query request, from arrival to answer."""
        arrived = self._now()
        cfg = self._config
        self._count("requests", "creates" if task_id is None else "queries")
        if self._roll(cfg.drop):
            self._count("dropped")
            raise _Close
        with self._lock:
            allowed = self._window.try_acquire(arrived, cfg.qps)
        if task_id is None:
            body = handler.read_body()  # before any answer, so the client sees the answer
            reply = self._create(handler, cfg, allowed, body, arrived)
        else:
            reply = self._gate(handler, cfg, allowed) or self._query(task_id)
        self._count(f"http_{reply.status}")
        handler.send_api(reply)

    def _gate(self, handler: _Handler, cfg: SimConfig, allowed: bool) -> _Reply | None:
        """The answers every create and query may get before its own work starts."""
        if not allowed:
            return _Reply(429, "Too many requests: QPS limit exceeded", {}, (("Retry-After", "1"),))
        if self._roll(cfg.slow):
            self._count("slowed")
            self._sleep(cfg.slow_delay)
        key = handler.headers.get("X-API-KEY", "")
        if not key or (cfg.valid_keys is not None and key not in cfg.valid_keys):
            return _Reply(401, "Unauthorized: missing or invalid X-API-KEY")
        if self._roll(cfg.fail_500):
            return _Reply(500, "Internal server error (simulated)")
        return None

    def _create(
        self, handler: _Handler, cfg: SimConfig, allowed: bool, body: bytes, arrived: float
    ) -> _Reply:
        try:
            form = parse_form(handler.headers.get("Content-Type", ""), body, _FILE_FIELDS)
            fields, files, form_error = form.fields, form.files, None
        except FormError as exc:
            fields, files, form_error = {}, {}, str(exc)
        image = files.get("image_file")
        mask = files.get("mask_file")
        info = inspect_image(image) if image is not None else ImageInfo(None, None, None, False)
        mask_info = inspect_image(mask) if mask is not None else None

        def record(status: int, task_id: str | None = None) -> None:
            self._record(
                UploadRecord(
                    at=self._epoch(arrived),
                    task_id=task_id,
                    image_sha256=hashlib.sha256(image).hexdigest() if image is not None else None,
                    image_size=len(image) if image is not None else 0,
                    image_format=info.format,
                    width=info.width,
                    height=info.height,
                    complete=info.complete,
                    mask_sha256=hashlib.sha256(mask).hexdigest() if mask is not None else None,
                    params=dict(fields),
                    sync=fields.get("sync", "").strip() == "1",
                    status=status,
                )
            )

        reply = self._gate(handler, cfg, allowed)
        if reply is None and form_error is not None:
            reply = _Reply(400, form_error)
        if reply is None:
            reply = _check_upload(fields, image, info, mask, mask_info)
        if reply is not None:
            record(reply.status)
            return reply

        assert image is not None and info.format is not None
        options = _options(fields)
        task = self._new_task(cfg, arrived, image, mask, options, info.format)
        if self._roll(cfg.lose_create):
            self._count("lost_creates")
            record(0, task.plan.task_id)
            raise _Close
        if not options.sync:
            record(200, task.plan.task_id)
            return _Reply(200, "success", {"task_id": task.plan.task_id})
        while (remaining := task.plan.finished - self._now()) > 0:
            if self._stopping.is_set():
                record(0, task.plan.task_id)
                raise _Close
            self._sleep(min(remaining, _SYNC_TICK))
        reply = self._task_reply(task, self._now())
        record(reply.status, task.plan.task_id)
        return reply

    def _new_task(
        self,
        cfg: SimConfig,
        now: float,
        image: bytes,
        mask: bytes | None,
        options: _Options,
        fmt: str,
    ) -> _Task:
        with self._lock:
            rng = self._rng
            task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            low, high = cfg.processing_time
            duration = rng.uniform(low, high)
            final = choose_final_state(options.prompt, cfg.fail_prompt, cfg.task_fail, rng.random())
            off = cfg.offset_px
            jitter = (rng.randint(-off, off), rng.randint(-off, off)) if off else (0, 0)
            plan = TaskPlan(task_id, now, duration, final, options.return_type)
            task = _Task(
                plan, image, mask, options.sides, jitter, "jpg" if fmt == "JPEG" else "png"
            )
            self._tasks[task_id] = task
            self._stats["tasks_created"] += 1
            if self._stats["tasks_created"] % _PRUNE_EVERY == 0:
                self._prune(now, cfg)
        return task

    def _prune(self, now: float, cfg: SimConfig) -> None:
        """Forget tasks past task_ttl and URLs past their expiry (caller holds the lock)."""
        for task_id in [
            t for t, task in self._tasks.items() if now - task.plan.created > cfg.task_ttl
        ]:
            del self._tasks[task_id]
        for token in [k for k, task in self._tokens.items() if now >= _token_expiry(task, k)]:
            del self._tokens[token]

    def _query(self, task_id: str) -> _Reply:
        now = self._now()
        cfg = self._config
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None or now - task.plan.created > cfg.task_ttl:
            return _Reply(404, "Task not found")
        return self._task_reply(task, now)

    def _task_reply(self, task: _Task, now: float) -> _Reply:
        """What a query at `now` answers for `task` (also the answer of a sync create)."""
        plan = task.plan
        data: dict[str, Any] = timeline_fields(plan, now, self._epoch_offset)
        state = data["state"]
        data["state_detail"] = STATE_MESSAGES.get(state, "Processing failed.")
        data["return_type"] = plan.return_type
        if state < 0:
            return _Reply(200, STATE_MESSAGES.get(state, "Processing failed."), data)
        if state == DONE:
            result = task.result()
            data["download_time"] = 0
            if plan.return_type == 2:
                data["image"] = base64.b64encode(result).decode("ascii")
            else:
                data["image"] = f"{self.base_url}/_results/{self._url_token(task, now)}.{task.ext}"
        return _Reply(200, "success", data)

    def _url_token(self, task: _Task, now: float) -> str:
        """The task's current result URL token; a fresh one once the last has expired, so
        querying again recovers an expired URL (watchd relies on that rather than paying
        for a new task)."""
        with self._lock:
            if task.token is None or now >= task.token_expires:
                task.token = f"{self._rng.getrandbits(128):032x}"
                task.token_expires = now + self._config.url_ttl
                self._tokens[task.token] = task
            return task.token

    # -- result downloads and introspection (not API requests) --------------------------

    def _download(self, handler: _Handler, token: str, ext: str) -> None:
        now = self._now()
        with self._lock:
            self._stats["downloads"] += 1
            task = self._tokens.get(token)
        if task is None or task.ext != ext or now >= _token_expiry(task, token):
            self._count("downloads_404")
            handler.send_bytes(404, b"result URL not found or expired\n", "text/plain")
            return
        mime = "image/jpeg" if ext == "jpg" else "image/png"
        handler.send_bytes(200, task.result(), mime)

    def _admin(self, handler: _Handler, method: str, path: str) -> bool:
        """Serve `/_sim/*`; False when `path` is not one of them."""
        if method == "GET" and path == "/_sim/uploads":
            handler.send_json(200, [r.to_json() for r in self.uploads])
        elif method == "GET" and path == "/_sim/stats":
            handler.send_json(200, self.stats)
        elif method == "GET" and path == "/_sim/config":
            handler.send_json(200, config_to_json(self._config))
        elif method == "POST" and path == "/_sim/config":
            try:
                knobs = json.loads(handler.read_body() or b"{}")
                if not isinstance(knobs, dict):
                    raise ValueError("body must be a JSON object of knobs")
                new = self.update(**knobs)
            except (TypeError, ValueError) as exc:  # unknown knob, wrong type, out of range
                handler.send_json(400, {"error": str(exc)})
            else:
                handler.send_json(200, config_to_json(new))
        else:
            return False
        return True

    # -- routing -------------------------------------------------------------------------

    def _route(self, handler: _Handler, method: str) -> None:
        path = urlsplit(handler.path).path
        try:
            if method == "POST" and path == CREATE_PATH:
                self._api(handler, None)
            elif method == "GET" and (m := _QUERY_RE.fullmatch(path)):
                self._api(handler, m.group(1))
            elif method == "GET" and (m := _RESULT_RE.fullmatch(path)):
                self._download(handler, m.group(1), m.group(2))
            elif not self._admin(handler, method, path):
                handler.send_json(404, {"status": 404, "message": "Not found", "data": {}})
        except _Close:
            handler.close_connection = True
        except _BodyError as exc:
            self._count(f"http_{exc.status}")
            handler.send_api(_Reply(exc.status, str(exc), close=True))
        except (ConnectionError, TimeoutError):
            handler.close_connection = True  # the client went away; nothing to answer
        except Exception:
            # A simulator bug must be loud in test output, and the client still gets an
            # answer rather than a hang.
            traceback.print_exc(file=sys.stderr)
            handler.send_api(_Reply(500, "simulator error", close=True))

    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


def _token_expiry(task: _Task, token: str) -> float:
    # Only the task's current token can still be valid: older ones expired before it was minted.
    return task.token_expires if token == task.token else -math.inf


# -- request validation (pure) --------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    sides: tuple[float, float, float, float]  # top, bottom, left, right
    return_type: int
    sync: bool
    prompt: str


def _check_upload(
    fields: dict[str, str],
    image: bytes | None,
    info: ImageInfo,
    mask: bytes | None,
    mask_info: ImageInfo | None,
) -> _Reply | None:
    """The 400/413 answer a create deserves, or None when it may become a task."""
    if image is None:
        if fields.get("image_url"):
            return _Reply(400, "image_url not supported by the simulator; send image_file")
        return _Reply(400, "image_file or image_url is required")
    if len(image) > MAX_IMAGE_BYTES:
        return _Reply(413, "image_file exceeds the 5MB limit")
    if info.format is None:
        return _Reply(400, "image_file must be a JPG or PNG image")
    if info.width is None or info.height is None:
        return _Reply(400, "image_file is not a readable image")
    if not all(MIN_SIDE <= side <= MAX_SIDE for side in (info.width, info.height)):
        return _Reply(400, "image_file must be between 64x64 and 4096x4096")
    if not info.complete:
        return _Reply(400, "image_file is corrupted or truncated")
    if mask is None and fields.get("mask_url"):
        return _Reply(400, "mask_url not supported by the simulator; send mask_file")
    if mask is not None:
        assert mask_info is not None
        if mask_info.format is None or not mask_info.complete:
            return _Reply(400, "mask_file must be a complete JPG or PNG image")
        if (mask_info.width, mask_info.height) != (info.width, info.height):
            return _Reply(400, "mask_file must have the same dimensions as the image")
    return _check_params(fields)


def _check_params(fields: dict[str, str]) -> _Reply | None:
    for side in ("top", "bottom", "left", "right"):
        if side in fields and not _in_range(fields[side], 0, 1, low_open=True):
            return _Reply(400, f"{side} must be a number in (0, 1]")
    choices = {"return_type": ("1", "2"), "sync": ("0", "1")}
    for name, allowed in choices.items():
        if name in fields and fields[name].strip() not in allowed:
            return _Reply(400, f"{name} must be one of {', '.join(allowed)}")
    if "scale" in fields and not _in_range(fields["scale"], 1, 20):
        return _Reply(400, "scale must be a number in [1, 20]")
    if "strength" in fields and not _in_range(fields["strength"], 0, math.inf):
        return _Reply(400, "strength must be a number >= 0")
    if "steps" in fields and not _is_int(fields["steps"], low=1):
        return _Reply(400, "steps must be a positive integer")
    if "seed" in fields and not _is_int(fields["seed"], low=-1):
        return _Reply(400, "seed must be an integer >= -1")
    return None


def _options(fields: dict[str, str]) -> _Options:
    """The validated fields as values (call only after `_check_params` passed)."""
    sides = tuple(float(fields.get(s, "0.1")) for s in ("top", "bottom", "left", "right"))
    return _Options(
        sides=(sides[0], sides[1], sides[2], sides[3]),
        return_type=int(fields.get("return_type", "1").strip() or "1"),
        sync=fields.get("sync", "0").strip() == "1",
        prompt=fields.get("prompt", ""),
    )


def _in_range(text: str, low: float, high: float, *, low_open: bool = False) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    if not math.isfinite(value):
        return False
    return (low < value if low_open else low <= value) and value <= high


def _is_int(text: str, *, low: int) -> bool:
    try:
        return int(text.strip()) >= low
    except ValueError:
        return False


# -- HTTP plumbing ----------------------------------------------------------------------


class _BodyError(Exception):
    """The request body cannot be read (too big, bad framing); answered, then closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a held sync request must not keep the process alive
    allow_reuse_address = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], handler: type[_Handler], sim: Simulator) -> None:
        self.sim = sim
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # clients hanging up (often on purpose, in tests) is not an error
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients pool connections
    timeout = 120  # an idle keep-alive connection is closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus the client's
        # delayed ACK adds ~40 ms to every answer on a keep-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.sim._track(self.connection, True)

    def finish(self) -> None:
        self.server.sim._track(self.connection, False)
        with contextlib.suppress(OSError):  # the peer is gone
            super().finish()

    def do_GET(self) -> None:
        self.server.sim._route(self, "GET")

    def do_POST(self) -> None:
        self.server.sim._route(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:
        log = self.server.sim._log
        if log is not None:
            log(f"{self.address_string()} {format % args}")

    # -- reading ---------------------------------------------------------------------

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise _BodyError(400, "invalid Content-Length") from None
        if length < 0:
            raise _BodyError(400, "invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise _BodyError(413, "request body too large")
        return self._read_exact(length)

    def _read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) < n:
            raise ConnectionError("client closed the connection mid-body")
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "bad chunked encoding") from None
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyError(413, "request body too large")
            chunks.append(self._read_exact(size))
            self.rfile.readline(8)  # the CRLF after each chunk

    # -- writing ---------------------------------------------------------------------

    def send_api(self, reply: _Reply) -> None:
        payload = {"status": reply.status, "message": reply.message, "data": reply.data}
        self.send_json(reply.status, payload, reply.headers, close=reply.close)

    def send_json(
        self,
        status: int,
        payload: Any,
        headers: Iterable[tuple[str, str]] = (),
        *,
        close: bool = False,
    ) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_bytes(status, body, "application/json", headers, close=close)

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        close: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
