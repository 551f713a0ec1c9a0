"""Async client for the PicWish "advanced image expand" API: one create, one query.

Owns the wire format (multipart create, JSON answers, Retry-After) and turns every answer
into a `TaskResult` or a typed `ApiError` classified by `watchd.errors`. All network I/O
goes through one httpx transport, passed in for tests.

It never retries, sleeps or logs (the scheduler decides what happens next), and the API
key never leaves the X-API-KEY header: not in an error, a repr or a message.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import httpx

from watchd.clock import SYSTEM
from watchd.errors import (
    ApiError,
    Classification,
    ConnectionLost,
    Op,
    RequestInfo,
    TransientApiError,
    classify_http,
    classify_state,
)
from watchd.naming import display
from watchd.params import API_PARAMS

__all__ = [
    "IMAGE_FIELDS",
    "PARAM_NAMES",
    "CreateRequest",
    "PicWishClient",
    "TaskResult",
    "parse_retry_after",
    "sniff_image_type",
]

# Optional API parameters a job may set (the doc's body parameters besides files and flags).
PARAM_NAMES = frozenset(API_PARAMS)
# Where a result may be, in the order they are read.
IMAGE_FIELDS = ("image", "image1", "image_1", "image_2", "image_3", "image_4")
_RETURN_TYPES = {"url": 1, "base64": 2}

# Errors raised before the request could reach the server: nothing was sent.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)


@dataclass(frozen=True)
class CreateRequest:
    """One create call: the image (and optional mask) bytes and the API parameters."""

    image: bytes
    image_name: str
    mask: bytes | None = None
    mask_name: str = "mask.png"
    params: Mapping[str, str | int | float] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    def __repr__(self) -> str:
        # Image bytes would flood any log line that prints a request.
        mask = f", mask={len(self.mask)} bytes" if self.mask is not None else ""
        return (
            f"CreateRequest(image_name={self.image_name!r}, image={len(self.image)} bytes"
            f"{mask}, params={dict(self.params)!r})"
        )


@dataclass(frozen=True)
class TaskResult:
    """A task as the API reported it."""

    task_id: str | None
    state: int
    progress: int | None
    images: tuple[str, ...]  # URLs or base64 data, from IMAGE_FIELDS in order, no duplicates
    return_type: int | None
    # The answer's data without the image payloads (base64 results are megabytes).
    raw: dict[str, Any] = field(hash=False)

    @property
    def done(self) -> bool:
        return self.state == 1

    @property
    def pending(self) -> bool:
        return self.state == 0 or self.state > 1

    def __repr__(self) -> str:
        # Base64 results are megabytes; show how many there are, not what they hold.
        return (
            f"TaskResult(task_id={self.task_id!r}, state={self.state}, "
            f"progress={self.progress}, images={len(self.images)}, "
            f"return_type={self.return_type})"
        )


def sniff_image_type(data: bytes) -> str:
    """Content type of image bytes by their magic numbers (the API takes PNG and JPEG)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "application/octet-stream"


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT; a naive one is read as such
            return None
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


class _Secret:
    """A string that never shows itself in a repr (debuggers, `vars()`, tracebacks)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


class PicWishClient:
    """Create and query image-expand tasks; every failure is a typed `ApiError`."""

    PATH = "/api/tasks/visual/advanced-image-expand"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        request_timeout: float = 30,
        sync_timeout: float = 180,
        return_type: str = "url",
        clock: Callable[[], float] = SYSTEM.wall,
    ) -> None:
        key = api_key.strip()
        # Refuse a key httpx could not send, without ever echoing it.
        if not key or not key.isascii() or not key.isprintable():
            raise ValueError("API key is empty or contains characters a header cannot carry")
        if return_type not in _RETURN_TYPES:
            raise ValueError(f"return_type must be 'url' or 'base64', got {return_type!r}")
        self._key = _Secret(key)  # kept only to scrub it from server messages
        self._base_url = base_url
        self._return_type = _RETURN_TYPES[return_type]
        self._request_timeout = httpx.Timeout(request_timeout)
        # Sync mode: the server holds the answer until the task is done.
        self._sync_timeout = httpx.Timeout(request_timeout, read=sync_timeout)
        self._clock = clock  # wall clock, for Retry-After dates
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            headers={"X-API-KEY": key},
            timeout=self._request_timeout,
            # A redirect would carry the key to wherever it points.
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"PicWishClient(base_url={self._base_url!r})"

    def set_key(self, api_key: str) -> None:
        """Use a new key from now on (the key file changed, or a reload)."""
        key = api_key.strip()
        if not key or not key.isascii() or not key.isprintable():
            raise ValueError("API key is empty or contains characters a header cannot carry")
        self._key = _Secret(key)
        self._http.headers["X-API-KEY"] = key

    async def __aenter__(self) -> PicWishClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(self, req: CreateRequest, *, sync: bool = False) -> TaskResult:
        """Create a task. Async mode: the new task (state 0); sync mode: the finished task."""
        unknown = set(req.params) - PARAM_NAMES
        if unknown:
            raise ValueError(f"unknown API parameters: {sorted(unknown)}")
        data = {"sync": "1" if sync else "0", "return_type": str(self._return_type)}
        data.update({k: str(v) for k, v in req.params.items() if v is not None})
        # The multipart header is text: a name that is not UTF-8 goes escaped (it is only a
        # label there; the bytes sent are the image).
        files = {"image_file": (display(req.image_name), req.image, sniff_image_type(req.image))}
        if req.mask is not None:
            files["mask_file"] = (req.mask_name, req.mask, sniff_image_type(req.mask))
        request = self._http.build_request(
            "POST",
            self.PATH,
            data=data,
            files=files,
            timeout=self._sync_timeout if sync else self._request_timeout,
        )
        body = await self._send(request, op="create")
        info = self._info(request)
        payload = body.get("data")
        if not isinstance(payload, dict):
            # A 200 whose body we cannot read: the task may well exist.
            raise ConnectionLost(
                "create answer carries no data", sent=True, request=info, http_status=200
            )
        task_id = payload.get("task_id")
        if not sync:
            if not isinstance(task_id, str | int) or isinstance(task_id, bool) or task_id == "":
                raise ConnectionLost(
                    "create answer carries no task_id", sent=True, request=info, http_status=200
                )
            if _as_int(payload.get("state")) is None:  # the async answer has only the ID
                payload = {**payload, "state": 0}
        elif _as_int(payload.get("state")) is None:
            raise ConnectionLost(
                "sync create answer carries no state", sent=True, request=info, http_status=200
            )
        return self._result(payload, info)

    async def query(self, task_id: str) -> TaskResult:
        """The task's current state, and its result images once done."""
        if not task_id:
            raise ValueError("task_id is empty")
        request = self._http.build_request("GET", f"{self.PATH}/{quote(task_id, safe='')}")
        body = await self._send(request, op="query")
        info = self._info(request)
        payload = body.get("data")
        if not isinstance(payload, dict) or _as_int(payload.get("state")) is None:
            raise TransientApiError(
                "query answer carries no task state", request=info, http_status=200, task_id=task_id
            )
        if not payload.get("task_id"):
            payload = {**payload, "task_id": task_id}
        return self._result(payload, info)

    @staticmethod
    def _info(request: httpx.Request) -> RequestInfo:
        return RequestInfo(request.method, str(request.url))

    async def _send(self, request: httpx.Request, *, op: Op) -> dict[str, Any]:
        """Send one request; a dict body for a success, else a typed ApiError."""
        info = self._info(request)
        try:
            response = await self._http.send(request)
        except _NOT_SENT as exc:
            raise ConnectionLost(
                f"no connection: {type(exc).__name__}", sent=False, request=info
            ) from exc
        except httpx.TransportError as exc:
            # Read timeouts, resets, a closed connection: the server may have the request.
            raise ConnectionLost(
                f"answer lost: {type(exc).__name__}", sent=True, request=info
            ) from exc
        http_status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = None
        server_message = None
        if body is not None and body.get("message") is not None:
            # A server that echoes the key it refused must not put it in our errors.
            server_message = str(body.get("message"))[:500].replace(self._key.value, "***")

        if not 200 <= http_status < 300:
            raise self._error(
                classify_http(http_status, op=op),
                info,
                http_status=http_status,
                status=_as_int(body.get("status")) if body else None,
                retry_after=retry_after,
                server_message=server_message,
            )
        if body is None:
            if op == "create":
                raise ConnectionLost(
                    "create answer is not JSON", sent=True, request=info, http_status=http_status
                )
            raise TransientApiError("answer is not JSON", request=info, http_status=http_status)
        status = _as_int(body.get("status"))
        if status is not None and status != 200:
            # HTTP said yes, the body says no: the body is the API's own verdict.
            classification = classify_http(status, op=op)
            if classification.kind != "ok":
                raise self._error(
                    classification,
                    info,
                    http_status=http_status,
                    status=status,
                    retry_after=retry_after,
                    server_message=server_message,
                )
        return body

    @staticmethod
    def _error(classification: Classification, info: RequestInfo, **fields: Any) -> ApiError:
        cls = classification.error_class or TransientApiError
        return cls(classification.meaning, request=info, **fields)

    def _result(self, payload: dict[str, Any], info: RequestInfo) -> TaskResult:
        state = _as_int(payload.get("state"))
        assert state is not None  # checked by the callers
        task_id = payload.get("task_id")
        task_id = str(task_id) if task_id not in (None, "") else None
        images: list[str] = []
        for name in IMAGE_FIELDS:
            value = payload.get(name)
            if isinstance(value, str) and value.strip() and value not in images:
                images.append(value)
        raw = {k: v for k, v in payload.items() if k not in IMAGE_FIELDS}
        if state < 0:
            classification = classify_state(state)
            raise self._error(
                classification,
                info,
                http_status=200,
                status=200,
                state=state,
                task_id=task_id,
                server_message=_str_or_none(payload.get("state_detail")),
            )
        if state == 1 and not images:
            # Done yet nothing to fetch: asking again may show the result.
            raise TransientApiError(
                "task completed but the answer carries no result image",
                request=info,
                http_status=200,
                state=state,
                task_id=task_id,
            )
        return TaskResult(
            task_id=task_id,
            state=state,
            progress=_as_int(payload.get("progress")),
            images=tuple(images),
            return_type=_as_int(payload.get("return_type")),
            raw=raw,
        )


def _str_or_none(value: object) -> str | None:
    return str(value)[:500] if value not in (None, "") else None
