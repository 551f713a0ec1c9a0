"""sd_notify: tell systemd how the daemon is doing (READY, STATUS, RELOADING, STOPPING, WATCHDOG).

Owns: the datagram protocol of `sd_notify(3)` over `$NOTIFY_SOCKET` (a filesystem path, or an
abstract socket written with a leading '@'), and reading `$WATCHDOG_USEC` / `$WATCHDOG_PID`.

Never: does anything at all when `$NOTIFY_SOCKET` is unset (running in a terminal, in tests);
raises, logs or blocks for long (the daemon must not die or stall because systemd is busy);
runs a timer of its own. The daemon's main loop calls `watchdog()` from its own progress, so
that a stuck loop stops the pings and systemd restarts it.

No libsystemd binding is needed: the protocol is "KEY=value" lines in one datagram.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["Notifier"]

# A datagram send blocks only while systemd's receive queue is full; waiting longer than this
# would stall the event loop, and a lost WATCHDOG ping is repaid by the next one.
SEND_TIMEOUT = 1.0


def _monotonic_usec() -> int:
    # The same clock systemd uses for MONOTONIC_USEC (CLOCK_MONOTONIC, in microseconds).
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _socket_address(value: str | None) -> str | None:
    """The address to send to, or None when there is no (usable) notification socket."""
    if not value:
        return None
    if value.startswith("@"):
        # Abstract namespace: '@' stands for the leading NUL byte.
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # Other forms (e.g. "vsock:" for VMs) are not used by a system service: stay silent.
    return None


def _watchdog_interval(env: Mapping[str, str], enabled: bool) -> float | None:
    """Half the watchdog timeout (the ping period sd_watchdog_enabled(3) recommends)."""
    if not enabled:
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        # The variables may have been inherited from a parent that is the one being watched.
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1_000_000 / 2


class Notifier:
    """sd_notify messages to systemd; every method is a silent no-op (returning False) when
    the daemon does not run under systemd's notification protocol."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        clock_monotonic_usec: Callable[[], int] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self._address = _socket_address(env.get("NOTIFY_SOCKET"))
        self._clock = clock_monotonic_usec or _monotonic_usec
        self.enabled: bool = self._address is not None
        self.watchdog_interval: float | None = _watchdog_interval(env, self.enabled)

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete."""
        if status is None:
            return self.send(READY=1)
        return self.send(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """One line shown by `systemctl status`."""
        return self.send(STATUS=text)

    def reloading(self) -> bool:
        """A reload begins; `ready()` ends it. MONOTONIC_USEC lets systemd tell this reload
        from an earlier one (required by Type=notify-reload, harmless for Type=notify)."""
        return self.send(RELOADING=1, MONOTONIC_USEC=self._clock())

    def stopping(self) -> bool:
        """Shutdown begins."""
        return self.send(STOPPING=1)

    def watchdog(self) -> bool:
        """The main loop made progress: reset systemd's watchdog timer."""
        return self.send(WATCHDOG=1)

    def send(self, **fields: object) -> bool:
        """Send `KEY=value` lines in one datagram. True when sent; False when disabled or the
        send failed (never raises: a notification is never worth crashing the daemon)."""
        if self._address is None or not fields:
            return False
        # A newline in a value would start a new field (e.g. a STATUS built from a file name
        # injecting READY=1), so values are kept on one line.
        payload = "".join(
            f"{key}={str(value).replace(chr(10), ' ').replace(chr(13), ' ')}\n"
            for key, value in fields.items()
        )
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto(payload.encode("utf-8", "replace"), self._address)
        except OSError:
            return False
        return True
