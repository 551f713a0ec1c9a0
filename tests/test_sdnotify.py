"""sd_notify against real AF_UNIX datagram sockets (a path one and an abstract one)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from watchd.sdnotify import Notifier


class Receiver:
    """The systemd side: a datagram socket that collects what the daemon sends."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value, **extra}

    def fields(self) -> list[str]:
        data = self.sock.recv(4096)  # timeout set below: a missing message fails, never hangs
        return data.decode().splitlines()

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(2)
        return False


@pytest.fixture
def path_receiver(tmp_path: Path) -> Iterator[Receiver]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        yield Receiver(sock, str(path))


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    name = f"watchd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        yield Receiver(sock, "@" + name)


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest) -> Receiver:
    return request.getfixturevalue(f"{request.param}_receiver")


def test_ready_reaches_systemd(receiver: Receiver) -> None:
    notifier = Notifier(env=receiver.env())
    assert notifier.enabled
    assert notifier.ready() is True
    assert receiver.fields() == ["READY=1"]


def test_ready_can_carry_a_status_line(receiver: Receiver) -> None:
    Notifier(env=receiver.env()).ready(status="watching 3 folders")
    assert receiver.fields() == ["READY=1", "STATUS=watching 3 folders"]


def test_status_line(receiver: Receiver) -> None:
    Notifier(env=receiver.env()).status("12 in flight, 340 done")
    assert receiver.fields() == ["STATUS=12 in flight, 340 done"]


def test_reloading_carries_the_monotonic_time_of_the_reload(receiver: Receiver) -> None:
    Notifier(env=receiver.env(), clock_monotonic_usec=lambda: 123_456_789).reloading()
    assert receiver.fields() == ["RELOADING=1", "MONOTONIC_USEC=123456789"]


def test_default_clock_is_clock_monotonic_in_microseconds(receiver: Receiver) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier(env=receiver.env()).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, monotonic = receiver.fields()
    assert reloading == "RELOADING=1"
    assert before <= int(monotonic.removeprefix("MONOTONIC_USEC=")) <= after


def test_stopping(receiver: Receiver) -> None:
    Notifier(env=receiver.env()).stopping()
    assert receiver.fields() == ["STOPPING=1"]


def test_watchdog_ping(receiver: Receiver) -> None:
    Notifier(env=receiver.env()).watchdog()
    assert receiver.fields() == ["WATCHDOG=1"]


def test_a_newline_in_a_value_cannot_inject_a_field(path_receiver: Receiver) -> None:
    """A STATUS built from a file name must not smuggle in READY=1."""
    Notifier(env=path_receiver.env()).status("photo\nREADY=1.jpg")
    assert path_receiver.fields() == ["STATUS=photo READY=1.jpg"]


def test_send_joins_arbitrary_fields_in_one_datagram(path_receiver: Receiver) -> None:
    assert Notifier(env=path_receiver.env()).send(STATUS="x", ERRNO=5) is True
    assert path_receiver.fields() == ["STATUS=x", "ERRNO=5"]
    assert path_receiver.nothing_pending()


def test_without_notify_socket_everything_is_a_silent_no_op(
    capsys: pytest.CaptureFixture[str],
) -> None:
    notifier = Notifier(env={"WATCHDOG_USEC": "2000000"})
    with capture_logs() as logs:
        results = [
            notifier.ready("x"),
            notifier.status("x"),
            notifier.reloading(),
            notifier.stopping(),
            notifier.watchdog(),
            notifier.send(READY=1),
        ]
    assert notifier.enabled is False
    assert notifier.watchdog_interval is None  # nobody to ping
    assert results == [False] * 6
    assert logs == []
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("value", ["", "relative/notify.sock", "vsock:2:1234"])
def test_unusable_notify_socket_values_disable_it(value: str) -> None:
    assert Notifier(env={"NOTIFY_SOCKET": value}).enabled is False


def test_a_vanished_socket_makes_send_return_false_not_raise(tmp_path: Path) -> None:
    notifier = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_reads_os_environ_by_default(path_receiver: Receiver, monkeypatch: pytest.MonkeyPatch):
    """The real environment is the default boundary (systemd sets it, not the caller)."""
    monkeypatch.setenv("NOTIFY_SOCKET", path_receiver.env_value)
    Notifier().stopping()
    assert path_receiver.fields() == ["STOPPING=1"]


def test_watchdog_interval_is_half_the_timeout(path_receiver: Receiver) -> None:
    notifier = Notifier(env=path_receiver.env(WATCHDOG_USEC="2000000"))
    assert notifier.watchdog_interval == 1.0


def test_watchdog_interval_honours_our_own_watchdog_pid(path_receiver: Receiver) -> None:
    env = path_receiver.env(WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid()))
    assert Notifier(env=env).watchdog_interval == 15.0


def test_watchdog_meant_for_another_pid_is_not_ours(path_receiver: Receiver) -> None:
    env = path_receiver.env(WATCHDOG_USEC="2000000", WATCHDOG_PID=str(os.getpid() + 1))
    assert Notifier(env=env).watchdog_interval is None


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "soon"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "me"},
    ],
)
def test_no_or_bad_watchdog_settings_mean_no_watchdog(
    path_receiver: Receiver, extra: dict[str, str]
) -> None:
    assert Notifier(env=path_receiver.env(**extra)).watchdog_interval is None
