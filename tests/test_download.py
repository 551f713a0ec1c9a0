"""Guarded result fetches: schemes, addresses, redirects, size and time caps, image checks."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from watchd.download import DownloadError, DownloadPolicy, fetch_result, policy_for
from watchd.errors import WatchdError

PUBLIC = "93.184.216.34"
SIGNATURE = "Signature=TOKEN-do-not-log"


def png(size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


PNG = png()

DNS = {
    "cdn.test": [PUBLIC],
    "cdn2.test": ["2606:4700::1111"],
    "inside.test": ["10.0.0.5"],
    "mixed.test": [PUBLIC, "127.0.0.1"],
}


def resolver(host: str) -> list[str]:
    if host not in DNS:
        raise OSError(f"no such host {host}")
    return DNS[host]


class Server:
    """A mock storage host: routes by URL, records every request."""

    def __init__(self, routes: dict[str, Callable[[httpx.Request], httpx.Response]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url.copy_with(query=None))
        return self.routes.get(url, lambda r: httpx.Response(404))(request)


def ok(body: bytes = PNG) -> Callable[[httpx.Request], httpx.Response]:
    return lambda r: httpx.Response(200, content=body)


def moved(location: str, status: int = 302) -> Callable[[httpx.Request], httpx.Response]:
    return lambda r: httpx.Response(status, headers={"Location": location})


def fetch(ref: str, server: Any = None, policy: DownloadPolicy | None = None, **kw: Any) -> bytes:
    async def main() -> bytes:
        transport = httpx.MockTransport(server or Server({}))
        # A client that (wrongly) carries the API key: fetch_result must strip it.
        headers = {"X-API-KEY": "sk-secret", "Authorization": "Bearer sk-secret"}
        async with httpx.AsyncClient(transport=transport, headers=headers) as client:
            return await fetch_result(
                ref, policy or DownloadPolicy(), client=client, resolver=resolver, **kw
            )

    return asyncio.run(main())


def refused(ref: str, server: Any = None, policy: DownloadPolicy | None = None) -> DownloadError:
    with pytest.raises(DownloadError) as info:
        fetch(ref, server, policy)
    assert "TOKEN" not in str(info.value) and "TOKEN" not in repr(info.value)
    return info.value


# --- plain fetches ------------------------------------------------------------------------


def test_a_public_url_is_fetched_without_the_api_key() -> None:
    server = Server({"https://cdn.test/r.png": ok()})
    assert fetch(f"https://cdn.test/r.png?{SIGNATURE}", server) == PNG
    (request,) = server.requests
    assert "x-api-key" not in request.headers and "authorization" not in request.headers
    assert request.headers["accept-encoding"] == "identity"
    assert request.url.query.decode() == SIGNATURE  # the signed URL is used as given


def test_an_ipv6_public_host_is_fetched() -> None:
    assert fetch("https://cdn2.test/r.png", Server({"https://cdn2.test/r.png": ok()})) == PNG


# --- schemes and addresses ----------------------------------------------------------------


@pytest.mark.parametrize(
    "ref", ["file:///etc/passwd", "ftp://cdn.test/r.png", "gopher://cdn.test/", "FILE:/x"]
)
def test_only_http_and_https_are_fetched(ref: str) -> None:
    server = Server({})
    err = refused(ref, server)
    assert not err.expired and not err.transient
    assert server.requests == []


PRIVATE_URLS = [
    "http://127.0.0.1/r.png",
    "http://10.1.2.3/r.png",
    "http://192.168.0.9/r.png",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/r.png",
    "http://[fe80::1]/r.png",
    "http://[::ffff:127.0.0.1]/r.png",
    "http://inside.test/r.png",
    "http://localhost.test.invalid/r.png",
]


@pytest.mark.parametrize("url", PRIVATE_URLS[:-1])
def test_private_addresses_are_refused_by_default(url: str) -> None:
    server = Server({url: ok()})
    err = refused(url, server)
    assert not err.expired and not err.transient
    assert server.requests == []


@pytest.mark.parametrize("url", PRIVATE_URLS[:-1])
def test_private_addresses_are_allowed_for_a_local_api(url: str) -> None:
    server = Server({url: ok()})
    assert fetch(url, server, DownloadPolicy(allow_private=True)) == PNG


@pytest.mark.parametrize(
    "url",
    [
        "http://0.0.0.0/r",
        "http://[::]/r",
        "http://224.0.0.1/r",
        "http://240.0.0.1/r",
        "http://100.64.0.1/r",
    ],
)
def test_unspecified_multicast_and_reserved_addresses_are_always_refused(url: str) -> None:
    server = Server({url: ok()})
    refused(url, server, DownloadPolicy(allow_private=True))
    assert server.requests == []


def test_a_host_with_any_private_address_is_refused() -> None:
    refused("https://mixed.test/r.png", Server({"https://mixed.test/r.png": ok()}))


def test_an_unresolvable_host_is_a_transient_failure() -> None:
    assert refused("https://nowhere.test/r.png").transient


def test_credentials_in_a_result_url_are_refused() -> None:
    refused("https://user:pw@cdn.test/r.png", Server({"https://cdn.test/r.png": ok()}))


@pytest.mark.parametrize(
    ("base_url", "allowed"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://192.168.1.20", True),
        ("http://169.254.3.4", True),
        ("https://techhk.aoscdn.com", False),
        ("https://93.184.216.34", False),
    ],
)
def test_private_results_are_allowed_only_for_a_local_api(base_url: str, allowed: bool) -> None:
    assert policy_for(base_url).allow_private is allowed


def test_policy_for_passes_other_limits_through() -> None:
    policy = policy_for("https://techhk.aoscdn.com", max_bytes=10, max_redirects=1)
    assert policy == DownloadPolicy(max_bytes=10, max_redirects=1, allow_private=False)


# --- redirects ----------------------------------------------------------------------------


def test_redirects_are_followed_and_each_hop_checked() -> None:
    server = Server(
        {
            "https://cdn.test/a": moved("/b"),
            "https://cdn.test/b": moved("https://cdn2.test/c", 301),
            "https://cdn2.test/c": ok(),
        }
    )
    assert fetch("https://cdn.test/a", server) == PNG
    assert [str(r.url) for r in server.requests] == [
        "https://cdn.test/a",
        "https://cdn.test/b",
        "https://cdn2.test/c",
    ]
    assert all("x-api-key" not in r.headers for r in server.requests)


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1/r.png", "http://169.254.169.254/", "http://inside.test/x"]
)
def test_a_redirect_to_a_private_address_is_refused(target: str) -> None:
    server = Server({"https://cdn.test/a": moved(target), target: ok()})
    refused("https://cdn.test/a", server)
    assert [str(r.url) for r in server.requests] == ["https://cdn.test/a"]


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://cdn.test/r.png"])
def test_a_redirect_to_another_scheme_is_refused(target: str) -> None:
    server = Server({"https://cdn.test/a": moved(target), target: ok()})
    refused("https://cdn.test/a", server)
    assert len(server.requests) == 1


def chain(n: int) -> Server:
    routes = {f"https://cdn.test/{i}": moved(f"/{i + 1}") for i in range(n)}
    routes[f"https://cdn.test/{n}"] = ok()
    return Server(routes)


def test_redirects_up_to_the_limit_are_followed() -> None:
    assert fetch("https://cdn.test/0", chain(3), DownloadPolicy(max_redirects=3)) == PNG


def test_one_redirect_past_the_limit_is_refused() -> None:
    server = chain(4)
    err = refused("https://cdn.test/0", server, DownloadPolicy(max_redirects=3))
    assert "redirects" in err.message and len(server.requests) == 4


def test_a_redirect_without_location_is_refused() -> None:
    refused("https://cdn.test/a", Server({"https://cdn.test/a": lambda r: httpx.Response(302)}))


# --- statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 404, 410])
def test_an_expired_url_says_so(status: int) -> None:
    server = Server({"https://cdn.test/r": lambda r: httpx.Response(status)})
    err = refused(f"https://cdn.test/r?{SIGNATURE}", server)
    assert err.expired and err.http_status == status


@pytest.mark.parametrize(
    ("status", "transient"), [(500, True), (503, True), (429, True), (400, False), (401, False)]
)
def test_other_statuses_are_transient_or_not(status: int, transient: bool) -> None:
    server = Server({"https://cdn.test/r": lambda r: httpx.Response(status)})
    err = refused("https://cdn.test/r", server)
    assert (err.expired, err.transient) == (False, transient)


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError])
def test_connection_errors_are_transient(exc: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)

    err = refused("https://cdn.test/r", handler)
    assert err.transient and not err.expired


def test_a_download_that_never_ends_hits_the_time_cap() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    err = refused("https://cdn.test/r", hang, DownloadPolicy(timeout=0))
    assert err.transient


# --- size and content ---------------------------------------------------------------------


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    server = Server({"https://cdn.test/r": ok(PNG)})
    refused("https://cdn.test/r", server, DownloadPolicy(max_bytes=len(PNG) - 1))


def test_a_streamed_body_over_the_cap_is_cut_off() -> None:
    pulled: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(100):
            pulled.append(i)
            yield b"x" * 1000

    server = Server({"https://cdn.test/r": lambda r: httpx.Response(200, content=body())})
    err = refused("https://cdn.test/r", server, DownloadPolicy(max_bytes=5000))
    assert "5000" in err.message and len(pulled) < 10


def test_a_body_exactly_at_the_cap_is_accepted() -> None:
    server = Server({"https://cdn.test/r": ok(PNG)})
    assert fetch("https://cdn.test/r", server, DownloadPolicy(max_bytes=len(PNG))) == PNG


@pytest.mark.parametrize("body", [b"<html>Access denied</html>", PNG[: len(PNG) // 2], b""])
def test_a_body_that_is_not_a_whole_image_is_refused(body: bytes) -> None:
    err = refused("https://cdn.test/r", Server({"https://cdn.test/r": ok(body)}))
    assert not err.expired and not err.transient


# --- base64 -------------------------------------------------------------------------------


def test_base64_results_are_decoded() -> None:
    assert fetch(base64.b64encode(PNG).decode()) == PNG


def test_base64_with_a_data_prefix_and_line_breaks_is_decoded() -> None:
    text = base64.encodebytes(PNG).decode()  # wrapped at 76 columns
    assert fetch("data:image/png;base64," + text) == PNG


def test_base64_without_padding_is_decoded() -> None:
    assert fetch(base64.b64encode(PNG).decode().rstrip("=")) == PNG


def test_base64_over_the_cap_is_refused() -> None:
    err = refused(base64.b64encode(PNG).decode(), policy=DownloadPolicy(max_bytes=len(PNG) - 1))
    assert not err.expired and "exceeds" in err.message


def test_base64_far_over_the_cap_is_refused_before_decoding() -> None:
    # Not valid base64 at all: only a size check before decoding can refuse it this way.
    err = refused("!" * 10_000, policy=DownloadPolicy(max_bytes=100))
    assert "exceeds" in err.message


@pytest.mark.parametrize("ref", ["not base64 !!!", base64.b64encode(b"plain text").decode()])
def test_base64_that_is_not_an_image_is_refused(ref: str) -> None:
    refused(ref)


def test_download_errors_are_watchd_errors() -> None:
    assert issubclass(DownloadError, WatchdError)
