"""The PicWish client over httpx.MockTransport: what it sends, what it makes of answers."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from watchd.api import CreateRequest, PicWishClient, TaskResult, parse_retry_after, sniff_image_type
from watchd.errors import (
    TASK_STATE,
    ApiError,
    AuthError,
    ConnectionLost,
    PermanentApiError,
    RateLimited,
    TaskGone,
    TransientApiError,
    classify_state,
)

KEY = "sk-Very-Secret-Key-4711"
BASE = "https://api.test"
PATH = PicWishClient.PATH
JPEG = b"\xff\xd8\xff\xe0" + b"jpeg body" * 10
PNG = b"\x89PNG\r\n\x1a\n" + b"png body" * 10
NOW = 1_700_000_000.0

Handler = Callable[[httpx.Request], httpx.Response]


def run(handler: Handler, call: Callable[[PicWishClient], Awaitable[Any]], **kw: Any) -> Any:
    """Run one client call against a mock transport, in a fresh event loop."""

    async def main() -> Any:
        async with PicWishClient(
            BASE, KEY, transport=httpx.MockTransport(handler), clock=lambda: NOW, **kw
        ) as client:
            return await call(client)

    return asyncio.run(main())


def assert_keyless(obj: object) -> None:
    """Neither str() nor repr() of obj, its attributes or its causes shows the key."""
    seen = obj
    while seen is not None:
        for text in (str(seen), repr(seen), repr(getattr(seen, "__dict__", ""))):
            assert KEY not in text
        seen = getattr(seen, "__cause__", None)


def fails(
    cls: type[Exception], handler: Handler, call: Callable[[PicWishClient], Awaitable[Any]]
) -> Any:
    """The error raised by the call: of type cls, and never showing the key."""
    with pytest.raises(cls) as info:
        run(handler, call)
    assert_keyless(info.value)
    return info.value


def create(req: CreateRequest | None = None, **kw: Any):
    return lambda c: c.create(req or CreateRequest(JPEG, "photo.jpg"), **kw)


def query(task_id: str = "t1"):
    return lambda c: c.query(task_id)


def answer(data: Any = None, status: int = 200, **extra: Any) -> Handler:
    body = {"status": status, "message": "ok", **extra}
    if data is not None:
        body["data"] = data
    return lambda request: httpx.Response(200, json=body)


def form(request: httpx.Request) -> tuple[dict[str, str], dict[str, tuple[str, str, bytes]]]:
    """The multipart fields and files of a request."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    msg = email.message_from_bytes(head + request.content, policy=email.policy.HTTP)
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, str, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if part.get_filename():
            files[name] = (part.get_filename(), part.get_content_type(), payload)
        else:
            fields[name] = payload.decode()
    return fields, files


class Recorder:
    """A transport handler that keeps the requests and answers with a fixed response."""

    def __init__(self, response: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self.response = response

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response(request)


# --- create -------------------------------------------------------------------------------


def test_create_sends_the_image_the_params_and_the_key_in_async_mode() -> None:
    rec = Recorder(answer({"task_id": "t1"}))
    req = CreateRequest(JPEG, "photo.jpg", params={"top": 0.2, "prompt": "sea", "seed": 7})
    result = run(rec, create(req))

    (request,) = rec.requests
    assert (request.method, request.url.path) == ("POST", PATH)
    assert request.headers["X-API-KEY"] == KEY
    fields, files = form(request)
    assert fields == {"sync": "0", "return_type": "1", "top": "0.2", "prompt": "sea", "seed": "7"}
    assert files == {"image_file": ("photo.jpg", "image/jpeg", JPEG)}
    assert result == TaskResult("t1", 0, None, (), None, {"task_id": "t1", "state": 0})
    assert result.pending and not result.done


def test_create_sends_the_mask_as_mask_file_typed_by_content() -> None:
    rec = Recorder(answer({"task_id": "t1"}))
    run(rec, create(CreateRequest(PNG, "a.jpg", mask=PNG, mask_name="a.mask.png")))
    _, files = form(rec.requests[0])
    # The image is typed by its bytes, not by its misleading name.
    assert files["image_file"] == ("a.jpg", "image/png", PNG)
    assert files["mask_file"] == ("a.mask.png", "image/png", PNG)


def test_base64_return_type_asks_for_2() -> None:
    rec = Recorder(answer({"task_id": "t1"}))
    run(rec, create(), return_type="base64")
    assert form(rec.requests[0])[0]["return_type"] == "2"


def test_sync_create_returns_the_finished_task_and_waits_longer() -> None:
    rec = Recorder(answer({"task_id": "t9", "state": 1, "image": "https://cdn.test/r.jpg"}))
    result = run(rec, create(sync=True), request_timeout=30, sync_timeout=180)
    assert form(rec.requests[0])[0]["sync"] == "1"
    assert rec.requests[0].extensions["timeout"]["read"] == 180
    assert result.done and result.images == ("https://cdn.test/r.jpg",)


def test_async_create_uses_the_request_timeout() -> None:
    rec = Recorder(answer({"task_id": "t1"}))
    run(rec, create(), request_timeout=30, sync_timeout=180)
    assert rec.requests[0].extensions["timeout"]["read"] == 30


def test_sync_create_of_a_failed_task_raises_with_state_and_task() -> None:
    err = fails(PermanentApiError, answer({"task_id": "t9", "state": -7}), create(sync=True))
    assert (err.state, err.task_id, err.message) == (-7, "t9", TASK_STATE[-7].meaning)


def test_create_refuses_parameters_the_api_does_not_have() -> None:
    with pytest.raises(ValueError, match="sync"):
        run(answer({"task_id": "t1"}), create(CreateRequest(JPEG, "a.jpg", params={"sync": 1})))


@pytest.mark.parametrize(
    "handler",
    [
        answer({"no_task_id": True}),
        answer(None),
        lambda r: httpx.Response(200, text="<html>gateway</html>"),
        lambda r: httpx.Response(200, json=["not", "an", "object"]),
    ],
    ids=["no-task-id", "no-data", "html", "json-list"],
)
def test_a_garbled_200_to_a_create_is_ambiguous(handler: Handler) -> None:
    """The server took the request and may have made the task: it may not be sent again."""
    err = fails(ConnectionLost, handler, create())
    assert err.sent is True


def test_a_numeric_task_id_is_taken_as_text() -> None:
    assert run(answer({"task_id": 42}), create()).task_id == "42"


def test_sync_create_without_a_state_is_ambiguous() -> None:
    assert fails(ConnectionLost, answer({"task_id": "t1"}), create(sync=True)).sent


# --- query --------------------------------------------------------------------------------


def test_query_asks_for_the_task_with_the_key() -> None:
    rec = Recorder(answer({"task_id": "t1", "state": 4, "progress": 40}))
    result = run(rec, query("t1"))
    (request,) = rec.requests
    assert (request.method, request.url.path) == ("GET", f"{PATH}/t1")
    assert request.headers["X-API-KEY"] == KEY
    assert (result.state, result.progress, result.pending, result.done) == (4, 40, True, False)


def test_query_escapes_the_task_id_into_one_path_segment() -> None:
    rec = Recorder(answer({"task_id": "a/b?c", "state": 0}))
    run(rec, query("a/b?c"))
    assert rec.requests[0].url.raw_path.decode() == f"{PATH}/a%2Fb%3Fc"


@pytest.mark.parametrize("state", [0, 2, 3, 4, 5, 6, 9])
def test_query_of_a_running_task_is_pending(state: int) -> None:
    result = run(answer({"task_id": "t1", "state": state}), query())
    assert result.pending and not result.done and result.images == ()


@pytest.mark.parametrize("field", ["image", "image1", "image_1", "image_2", "image_3", "image_4"])
def test_a_result_in_any_image_field_is_found(field: str) -> None:
    data = {"task_id": "t1", "state": 1, field: "https://cdn.test/r.png", "return_type": 1}
    result = run(answer(data), query())
    assert result.done and result.images == ("https://cdn.test/r.png",)
    assert result.return_type == 1


def test_results_keep_field_order_skip_empties_and_duplicates() -> None:
    data = {
        "task_id": "t1",
        "state": 1,
        "image_4": "u4",
        "image_1": "u1",
        "image": "u1",
        "image1": "",
        "image_2": None,
        "image_3": "u3",
    }
    assert run(answer(data), query()).images == ("u1", "u3", "u4")


def test_a_base64_result_is_kept_out_of_raw() -> None:
    payload = "iVBORw0KGgo" * 1000
    data = {"task_id": "t1", "state": 1, "image": payload, "return_type": 2, "progress": 100}
    result = run(answer(data), query())
    assert result.images == (payload,) and result.return_type == 2
    assert result.raw == {"task_id": "t1", "state": 1, "return_type": 2, "progress": 100}
    assert payload not in repr(result)


@pytest.mark.parametrize("state", sorted(s for s in TASK_STATE if s < 0))
def test_a_failed_task_raises_its_states_class_and_meaning(state: int) -> None:
    c = classify_state(state)
    err = fails(c.error_class, answer({"task_id": "t1", "state": state}), query())
    assert type(err) is c.error_class
    assert (err.state, err.task_id, err.message, err.code) == (state, "t1", c.meaning, state)


def test_a_done_task_without_a_result_is_asked_again() -> None:
    err = fails(TransientApiError, answer({"task_id": "t1", "state": 1}), query())
    assert err.task_id == "t1"


@pytest.mark.parametrize(
    "handler",
    [
        lambda r: httpx.Response(200, text="not json"),
        answer(None),
        answer({"task_id": "t1"}),
        answer({"task_id": "t1", "state": "soon"}),
    ],
    ids=["not-json", "no-data", "no-state", "bad-state"],
)
def test_a_garbled_query_answer_is_transient(handler: Handler) -> None:
    fails(TransientApiError, handler, query())


def test_the_query_fills_in_a_missing_task_id() -> None:
    assert run(answer({"state": 0}), query("t5")).task_id == "t5"


# --- HTTP statuses and body statuses ------------------------------------------------------


@pytest.mark.parametrize(
    ("http_status", "call", "cls"),
    [
        (400, create(), PermanentApiError),
        (400, query(), PermanentApiError),
        (401, create(), AuthError),
        (401, query(), AuthError),
        (404, create(), PermanentApiError),
        (404, query(), TaskGone),
        (413, create(), PermanentApiError),
        (429, create(), RateLimited),
        (429, query(), RateLimited),
        (500, create(), TransientApiError),
        (500, query(), TransientApiError),
        (503, query(), TransientApiError),
        (418, query(), PermanentApiError),
    ],
)
def test_http_errors_raise_their_class(http_status: int, call: Any, cls: type) -> None:
    body = {"status": http_status, "message": "nope"}
    err = fails(cls, lambda r: httpx.Response(http_status, json=body), call)
    assert type(err) is cls
    assert (err.http_status, err.server_message) == (http_status, "nope")
    assert err.method in ("GET", "POST") and err.url.startswith(BASE)


def test_an_http_error_with_a_non_json_body_keeps_its_class() -> None:
    fails(TransientApiError, lambda r: httpx.Response(502, text="Bad Gateway"), query())


def test_429_carries_retry_after_in_seconds() -> None:
    handler = lambda r: httpx.Response(429, headers={"Retry-After": "7"})  # noqa: E731
    assert fails(RateLimited, handler, query()).retry_after == 7


def test_retry_after_as_an_http_date_counts_from_the_injected_clock() -> None:
    date = "Tue, 14 Nov 2023 22:13:40 GMT"  # NOW + 20 s
    handler = lambda r: httpx.Response(503, headers={"Retry-After": date})  # noqa: E731
    assert fails(TransientApiError, handler, query()).retry_after == pytest.approx(20)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-1", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("Tue, 14 Nov 2023 22:12:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("body_status", "call", "cls"),
    [
        (401, query(), AuthError),
        (429, create(), RateLimited),
        (404, query(), TaskGone),
        (400, create(), PermanentApiError),
        (500, query(), TransientApiError),
    ],
)
def test_a_body_status_overrules_http_200(body_status: int, call: Any, cls: type) -> None:
    handler = answer({"task_id": "t1", "state": 1, "image": "u"}, status=body_status)
    err = fails(cls, handler, call)
    assert (err.http_status, err.status, err.code) == (200, body_status, body_status)


def test_a_body_without_status_is_read_by_its_data() -> None:
    handler = lambda r: httpx.Response(200, json={"data": {"task_id": "t1"}})  # noqa: E731
    assert run(handler, create()).task_id == "t1"


# --- connections --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "sent"),
    [
        (httpx.ConnectError, False),
        (httpx.ConnectTimeout, False),
        (httpx.PoolTimeout, False),
        (httpx.ReadTimeout, True),
        (httpx.WriteTimeout, True),
        (httpx.ReadError, True),
        (httpx.WriteError, True),
        (httpx.RemoteProtocolError, True),
    ],
)
@pytest.mark.parametrize("call", [create(), query()], ids=["create", "query"])
def test_connection_errors_say_whether_the_request_may_have_arrived(
    exc: type[httpx.TransportError], sent: bool, call: Any
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)

    err = fails(ConnectionLost, handler, call)
    assert err.sent is sent
    assert isinstance(err.__cause__, exc)


# --- the key ------------------------------------------------------------------------------


def test_a_server_echoing_the_key_does_not_put_it_in_the_error() -> None:
    body = {"status": 401, "message": f"key {KEY} is not valid"}
    err = fails(AuthError, lambda r: httpx.Response(401, json=body), query())
    assert err.server_message == "key *** is not valid"


def test_the_client_repr_does_not_show_the_key() -> None:
    client = PicWishClient(BASE, KEY, transport=httpx.MockTransport(answer({})))
    assert_keyless(client)
    asyncio.run(client.aclose())


@pytest.mark.parametrize("bad", ["", "   ", "key\nX-Evil: 1", "ключ"])
def test_an_unusable_key_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        PicWishClient(BASE, bad)
    assert bad.strip() == "" or bad not in str(info.value)


def test_create_request_repr_does_not_dump_image_bytes() -> None:
    text = repr(CreateRequest(JPEG, "a.jpg", mask=PNG))
    assert "jpeg body" not in text and "png body" not in text and "a.jpg" in text


@pytest.mark.parametrize(
    ("data", "ctype"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (b"GIF89a", "application/octet-stream")],
)
def test_sniff_image_type_reads_magic_bytes(data: bytes, ctype: str) -> None:
    assert sniff_image_type(data) == ctype


def test_every_api_error_is_an_api_error() -> None:
    for cls in (PermanentApiError, AuthError, TaskGone, RateLimited, ConnectionLost):
        assert issubclass(cls, ApiError)
