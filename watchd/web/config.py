"""The `http:` section of the config: where the dashboard listens and who may use it.

Owns the section's model and its checks, reported like every other config problem (a
`ConfigIssue` with the key path, via config.py): a listen address that does not parse, a
non-loopback address without `token_file`, a token file that cannot be read or is too
short. Never keeps the token in the model (only its path; `read_token` reads it when the
server starts) and never shows it.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from watchd.keys import read_secret_file
from watchd.params import Settings

DEFAULT_LISTEN = "127.0.0.1:8750"
MIN_TOKEN = 16  # characters: a token anyone could guess protects nothing
_TOKEN_FILE_LIMIT = 4096
_LISTEN = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\s\[\]]+)):(?P<port>\d{1,5})")
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def _fail(message: str) -> None:
    raise PydanticCustomError("watchd", "{detail}", {"detail": message})


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:8750', '[::1]:8750', 'localhost:8750', '0.0.0.0:80' → (host, port)."""
    match = _LISTEN.fullmatch(text.strip())
    if not match:
        raise ValueError(
            f'must be "HOST:PORT", like "127.0.0.1:8750" or "[::1]:8750" (got {text!r})'
        )
    host = match.group("v6") or match.group("host")
    port = int(match.group("port"))
    if port > 65535:
        raise ValueError(f"port must be 0..65535 (got {port})")
    if match.group("v6"):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif not _is_ip(host) and not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is neither an IP address nor a host name")
    return host, port


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def read_token(path: Path) -> str:
    """The token in `path`, stripped; ValueError with the reason (never the content)."""
    token = read_secret_file(path, "token", _TOKEN_FILE_LIMIT)
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise ValueError(
            f"token file {path} must hold one token of at least {MIN_TOKEN} characters and no"
            " spaces (e.g. the output of `openssl rand -hex 24`)"
        )
    return token


class HttpConfig(Settings):
    """The dashboard, `/metrics` and `/healthz`, served by `watchd run` itself."""

    # Not strict like the other sections: its own validators read and explain each value.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    listen: str | None = Field(
        DEFAULT_LISTEN,
        description="HOST:PORT the dashboard listens on (`[::1]:8750` for IPv6); null turns"
        " the dashboard, /metrics and /healthz off. Any address other than loopback needs"
        " token_file.",
    )
    token_file: Path | None = Field(
        None,
        description="A file holding the access token (one line, at least 16 characters):"
        " browsers log in with it, Prometheus sends it as a bearer token. Required when"
        " listen is not a loopback address. Relative paths are from the config file's folder.",
    )
    allowed_hosts: tuple[str, ...] = Field(
        (),
        description="Host names the dashboard answers to besides localhost and IP addresses,"
        " e.g. [watchd.lan]: any other Host header is refused (against DNS rebinding).",
    )
    thumbnail_cache_mb: int = Field(
        64,
        description="Cap of the thumbnail cache under state_dir/thumbnails, in MB; the oldest"
        " thumbnails are deleted beyond it.",
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            _fail(f'must be "HOST:PORT" like "{DEFAULT_LISTEN}", or null (got {value!r})')
        try:
            parse_listen(value)
        except ValueError as exc:
            _fail(str(exc))
        return value.strip()

    @field_validator("token_file", mode="before")
    @classmethod
    def _token_file(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if not isinstance(value, str | Path) or not str(value).strip():
            _fail(f"must be the path of a file (got {value!r})")
        path = Path(str(value)).expanduser()
        base = (info.context or {}).get("base")
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        try:
            read_token(path)
        except ValueError as exc:
            _fail(str(exc))
        return path

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            _fail(f"must be a list of host names, like [watchd.lan] (got {value!r})")
        for name in value:
            if not _HOSTNAME.fullmatch(name) or _is_ip(name):
                _fail(f"{name!r} is not a host name (IP addresses are always allowed)")
        return tuple(v.lower() for v in value)

    @field_validator("thumbnail_cache_mb", mode="before")
    @classmethod
    def _cache(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
            _fail(f"must be a whole number of MB from 1 to 100000 (got {value!r})")
        return value

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> HttpConfig:
        if self.listen is not None and self.token_file is None:
            host, _ = parse_listen(self.listen)
            if not is_loopback(host):
                _fail(
                    f"listen {self.listen} is reachable from other machines: set"
                    " http.token_file (a file holding an access token) or listen on"
                    f" {DEFAULT_LISTEN}"
                )
        return self

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen else None

    def url(self, port: int | None = None) -> str | None:
        """The dashboard's URL as an operator types it (0.0.0.0 shown as this host's loopback)."""
        if self.listen is None:
            return None
        host, configured = parse_listen(self.listen)
        if port is None and configured == 0:
            return None  # chosen when the server starts
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port if port is not None else configured}/"
