"""structlog set-up: logs go to stderr (stdout is for results), JSON lines unless a TTY.

Never log the API key: no module passes it to a logger, and `redact` below scrubs a known
secret from every event as a last line of defence.

Never fail on a name: a file name that is not UTF-8 reaches Python with surrogate escapes,
which no UTF-8 stream can write. `printable` renders every value (and paths, nested lists
and dicts, tracebacks) with `naming.display`, so `caf\\xe9.jpg` is logged, escaped, by both
the console and the JSON renderer, whatever the stream's error handler.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from watchd.naming import displayable

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    """`text` with every known secret replaced by ***: what logs and notifications send."""
    for secret in sorted(_secrets, key=len, reverse=True):  # a longer secret may hold another
        if secret in text:
            text = text.replace(secret, "***")
    return text


def secrets() -> frozenset[str]:
    """The secrets registered so far (the dashboard scrubs its answers of them too)."""
    return frozenset(_secrets)


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _secrets:
        return event
    for key, value in list(event.items()):
        if isinstance(value, str):
            event[key] = scrub(value)
    return event


def printable(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Every string in the event safe to encode as UTF-8 (names that are not UTF-8 escaped)."""
    return {key: displayable(value) for key, value in event.items()}


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog; safe to call again on reload (format and level change live)."""
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if console
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    # watchdog logs through the stdlib: its emitters complain at ERROR level when stopped
    # mid-read during our shutdown, which is expected and not the user's business. (The
    # inotify_c logger stays as it is: watch.py listens to it for queue overflows.)
    logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            printable,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger("watchd").bind(**bind)
