"""structlog set-up: logs go to stderr (stdout is for results), JSON lines unless a TTY.

Never log the API key: no module passes it to a logger, and `redact` below scrubs a known
secret from every event as a last line of defence.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

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


def secrets() -> frozenset[str]:
    """The secrets registered so far (the dashboard scrubs its answers of them too)."""
    return frozenset(_secrets)


def redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    if not _secrets:
        return event
    for key, value in list(event.items()):
        if isinstance(value, str):
            for secret in _secrets:
                if secret in value:
                    value = value.replace(secret, "***")
            event[key] = value
    return event


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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger("watchd").bind(**bind)
