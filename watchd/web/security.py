"""Who may use the dashboard, and which requests count: Host, token, CSRF, Origin.

- Host: a page on another site cannot reach a loopback dashboard by pointing its own DNS
  name at 127.0.0.1 (DNS rebinding), because the browser then sends that name as the Host.
  Only IP literals, `localhost` and `http.allowed_hosts` are answered.
- Token: with `http.token_file` set, every request but /healthz needs it, as a bearer
  token (Prometheus) or as the session cookie the login form sets. The cookie holds an HMAC
  of the token, not the token: it stays valid across restarts and dies with a new token.
- CSRF: every mutation is a POST carrying a token that only pages of this dashboard hold
  (an HMAC of a secret made at start and of the session); an Origin header, when sent,
  must be this host, and a browser's Sec-Fetch-Site must say same-origin.
Nothing here logs or echoes a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from watchd.web.config import HttpConfig, parse_listen

SESSION_COOKIE = "watchd_session"
FLASH_COOKIE = "watchd_flash"


def split_host(value: str) -> str | None:
    """The host part of a Host header ('a:1', '[::1]:8750', 'b'), lower case; None if bad."""
    value = value.strip().lower()
    if not value or len(value) > 300 or any(c in value for c in "/\\@ \t"):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not value[end + 1 :].startswith(":")):
            return None
        return value[1:end]
    host, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return host.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Guard:
    def __init__(self, http: HttpConfig, token: str | None, secret: bytes | None = None) -> None:
        self.token = token
        self.secret = secret or secrets.token_bytes(32)
        names = {"localhost", *http.allowed_hosts}
        if http.listen:
            host, _ = parse_listen(http.listen)
            if not _is_ip(host):
                names.add(host.lower())
        self.names = frozenset(names)

    # -- Host, Origin -------------------------------------------------------------------

    def host_allowed(self, header: str | None) -> bool:
        host = split_host(header or "")
        if host is None:
            return False
        return _is_ip(host) or host in self.names

    @staticmethod
    def same_origin(headers: Mapping[str, str]) -> bool:
        """False when the browser says the request comes from another site."""
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = headers.get("origin")
        if origin is None:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == (
            headers.get("host", "").lower()
        )

    # -- token --------------------------------------------------------------------------

    @property
    def needs_token(self) -> bool:
        return self.token is not None

    def session_value(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"watchd dashboard session", "sha256").hexdigest()

    def token_matches(self, offered: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            offered.strip().encode("utf-8", "surrogateescape"), self.token.encode()
        )

    def authorized(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        if self.token is None:
            return True
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and self.token_matches(auth[7:]):
            return True
        cookie = cookies.get(SESSION_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie, self.session_value())

    # -- CSRF, signed cookies -----------------------------------------------------------

    def csrf(self, session: str = "") -> str:
        """The token a page's forms carry: bound to the session cookie when there is one, so
        the token the public login page shows is worth nothing once logged in."""
        message = b"csrf:" + session.encode("utf-8", "surrogateescape")
        return hmac.new(self.secret, message, "sha256").hexdigest()

    def csrf_ok(self, offered: Any, session: str = "") -> bool:
        return isinstance(offered, str) and hmac.compare_digest(offered, self.csrf(session))

    def sign(self, data: Any) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
        mac = hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{body}.{mac}"

    def unsign(self, value: str) -> Any:
        body, _, mac = value.rpartition(".")
        good = hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()[:32]
        if not body or not hmac.compare_digest(mac, good):
            return None
        try:
            return json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError:
            return None
