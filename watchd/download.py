"""Guarded fetch of a task's result: a URL on a storage host, or base64 data.

Owns every check a result passes before watchd keeps it: http(s) only, no loopback,
private, link-local or otherwise non-public address at any hop (unless the API itself lives
on one: the simulator), at most `max_redirects` redirects, a size cap, a total time cap,
and bytes that decode as an image.

It never spends the request budget (storage hosts are not the API), never sends the API
key, and never puts a URL's query string (a signed token) in an error message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image

from watchd.errors import WatchdError, classify_http

__all__ = [
    "EXPIRED_STATUSES",
    "DownloadError",
    "DownloadPolicy",
    "Resolver",
    "address_refusal",
    "fetch_result",
    "policy_for",
]

# Statuses a storage host gives for a result whose URL has expired (signed URLs answer 403):
# the task is asked again for a fresh URL, nothing is paid again.
EXPIRED_STATUSES = frozenset({403, 404, 410})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DATA_PREFIX = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

Resolver = Callable[[str], list[str]]


class DownloadError(WatchdError):
    """A result could not be fetched; `expired`: query the task again for a fresh URL."""

    def __init__(
        self,
        message: str,
        *,
        expired: bool = False,
        transient: bool = False,
        url: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expired = expired
        self.transient = transient  # worth fetching again later (connection trouble, 5xx)
        self.url = _redact(url) if url else None
        self.http_status = http_status

    def __str__(self) -> str:
        details = [f"HTTP {self.http_status}"] if self.http_status is not None else []
        if self.url:
            details.append(self.url)
        return f"{self.message} ({'; '.join(details)})" if details else self.message

    def __repr__(self) -> str:
        return f"DownloadError({str(self)!r}, expired={self.expired}, transient={self.transient})"


@dataclass(frozen=True)
class DownloadPolicy:
    """Limits of one result fetch."""

    max_bytes: int = 100_000_000
    timeout: float = 60  # seconds for the whole fetch, redirects included
    max_redirects: int = 3
    allow_private: bool = False  # loopback, private and link-local hosts allowed


def policy_for(base_url: str, **kw: object) -> DownloadPolicy:
    """The policy for results of the API at `base_url`: private hosts only if it is one."""
    host = urlsplit(base_url).hostname or ""
    kw.setdefault("allow_private", _is_local_host(host))
    return DownloadPolicy(**kw)  # type: ignore[arg-type]


def _is_local_host(host: str) -> bool:
    """True for a loopback, private or link-local IP literal, or a localhost name."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = _ip(host)
    except ValueError:
        return False  # a DNS name: the simulator is addressed by IP or localhost
    return ip.is_loopback or ip.is_private or ip.is_link_local


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(text)
    # ::ffff:127.0.0.1 reaches 127.0.0.1: judge the address it maps to.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_refusal(address: str, *, allow_private: bool) -> str | None:
    """Why a connection to `address` is refused, or None if it is allowed."""
    ip = _ip(address.split("%", 1)[0])  # drop an IPv6 zone id
    if ip.is_unspecified or ip.is_multicast:
        return f"address {ip} is unspecified or multicast"
    local = f"address {ip} is loopback, private or link-local"
    if ip.is_loopback or ip.is_link_local:  # before is_reserved: ::1 lies in reserved ::/8
        return None if allow_private else local
    if ip.is_reserved:  # 240.0.0.0/4 counts as private too, yet no simulator lives there
        return f"address {ip} is reserved"
    if ip.is_private:
        return None if allow_private else local
    # Shared (CGNAT), documentation ranges and the like: nothing a storage host uses.
    if not ip.is_global:
        return f"address {ip} is not a public address"
    return None


def _redact(url: str) -> str:
    """The URL without query, fragment or credentials: signed URLs carry tokens."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if not parts.scheme or not parts.hostname:
        return url.split("?", 1)[0].split("#", 1)[0][:200]
    port = f":{parts.port}" if parts.port else ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _system_resolver(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def fetch_result(
    ref: str,
    policy: DownloadPolicy,
    *,
    client: httpx.AsyncClient,
    resolver: Resolver | None = None,
    offload: Callable[..., Awaitable[Any]] = asyncio.to_thread,
) -> bytes:
    """The image bytes of one result reference (a URL or base64 data), checked (the
    decode check runs through `offload`: a worker thread, or inline in a simulation)."""
    ref = ref.strip()
    if ref[:8].lower().startswith(("http://", "https://")):
        data = await _fetch_url(ref, policy, client=client, resolver=resolver or _system_resolver)
    elif _SCHEME.match(ref) and not _DATA_PREFIX.match(ref):
        # file:, ftp:, gopher:... base64 never contains a colon, so this is a URL.
        raise DownloadError("only http and https results are fetched", url=ref)
    else:
        data = _decode_base64(ref, policy.max_bytes)
    await offload(_check_image, data)
    return data


def _decode_base64(ref: str, max_bytes: int) -> bytes:
    text = _DATA_PREFIX.sub("", ref, count=1)
    text = "".join(text.split())  # line breaks are common in long base64
    # Every 4 characters make 3 bytes: refuse an oversized payload before decoding it.
    if len(text) // 4 * 3 > max_bytes + 3:
        raise DownloadError(f"base64 result exceeds {max_bytes} bytes")
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            data = base64.urlsafe_b64decode(text.encode("ascii"))
        except (binascii.Error, ValueError) as exc:
            raise DownloadError("result is neither a URL nor valid base64") from exc
    if len(data) > max_bytes:
        raise DownloadError(f"base64 result exceeds {max_bytes} bytes")
    return data


def _check_image(data: bytes) -> None:
    """Raise DownloadError unless the bytes decode completely as an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as exc:  # Pillow raises many types for bad data; all mean "not an image"
        raise DownloadError(f"result is not a decodable image: {type(exc).__name__}") from exc


async def _fetch_url(
    url: str, policy: DownloadPolicy, *, client: httpx.AsyncClient, resolver: Resolver
) -> bytes:
    try:
        async with asyncio.timeout(policy.timeout):
            return await _follow(url, policy, client=client, resolver=resolver)
    except TimeoutError as exc:
        raise DownloadError(
            f"result download took over {policy.timeout:g}s", transient=True, url=url
        ) from exc


async def _follow(
    url: str, policy: DownloadPolicy, *, client: httpx.AsyncClient, resolver: Resolver
) -> bytes:
    for hop in range(policy.max_redirects + 1):
        await _check_target(url, policy, resolver)
        try:
            # identity: the size cap then counts the bytes as they come, no decompression.
            request = client.build_request("GET", url, headers={"Accept-Encoding": "identity"})
        except httpx.InvalidURL as exc:
            raise DownloadError("result URL is invalid", url=url) from exc
        # The client may be shared: make sure no API key or credential rides along.
        for name in ("X-API-KEY", "Authorization", "Cookie"):
            request.headers.pop(name, None)
        try:
            response = await client.send(request, stream=True, follow_redirects=False, auth=None)
        except httpx.UnsupportedProtocol as exc:
            raise DownloadError("unsupported result URL", url=url) from exc
        except httpx.RequestError as exc:
            raise DownloadError(
                f"result download failed: {type(exc).__name__}", transient=True, url=url
            ) from exc
        try:
            status = response.status_code
            if status in _REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise DownloadError("redirect without a Location", url=url, http_status=status)
                if hop == policy.max_redirects:
                    raise DownloadError(
                        f"more than {policy.max_redirects} redirects", url=url, http_status=status
                    )
                try:
                    url = str(httpx.URL(url).join(location))
                except httpx.InvalidURL as exc:
                    raise DownloadError("redirect to an invalid URL", url=url) from exc
                continue
            if status in EXPIRED_STATUSES:
                raise DownloadError(
                    "result URL has expired", expired=True, url=url, http_status=status
                )
            if not 200 <= status < 300:
                rule = classify_http(status, op="download")
                raise DownloadError(
                    f"result download refused: {rule.meaning}",
                    transient=rule.retryable,
                    url=url,
                    http_status=status,
                )
            return await _read_capped(response, policy.max_bytes, url)
        finally:
            await response.aclose()
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


async def _check_target(url: str, policy: DownloadPolicy, resolver: Resolver) -> None:
    """Refuse a URL whose scheme or any resolved address is not allowed."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise DownloadError("result URL cannot be parsed", url=url) from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise DownloadError("only http and https results are fetched", url=url)
    if not host:
        raise DownloadError("result URL has no host", url=url)
    if parts.username or parts.password:
        raise DownloadError("result URL carries credentials", url=url)
    addresses = [host] if _is_ip_literal(host) else await _resolve(host, resolver, url)
    # Every address must pass: the connection may use any of them.
    for address in addresses:
        try:
            refusal = address_refusal(address, allow_private=policy.allow_private)
        except ValueError:
            refusal = f"resolver returned {address!r}, not an address"
        if refusal:
            raise DownloadError(f"result host refused: {refusal}", url=url)


def _is_ip_literal(host: str) -> bool:
    try:
        _ip(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


async def _resolve(host: str, resolver: Resolver, url: str) -> list[str]:
    try:
        addresses = await asyncio.to_thread(resolver, host)
    except OSError as exc:
        raise DownloadError(f"cannot resolve result host: {exc}", transient=True, url=url) from exc
    if not addresses:
        raise DownloadError("result host resolves to no address", transient=True, url=url)
    return list(addresses)


async def _read_capped(response: httpx.Response, max_bytes: int, url: str) -> bytes:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise DownloadError(f"result exceeds {max_bytes} bytes", url=url)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise DownloadError(f"result exceeds {max_bytes} bytes", url=url)
            chunks.append(chunk)
    except httpx.RequestError as exc:
        raise DownloadError(
            f"result download cut off: {type(exc).__name__}", transient=True, url=url
        ) from exc
    return b"".join(chunks)
