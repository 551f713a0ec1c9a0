"""The state_dir lock, with a real second process holding it."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchd.lock import LOCK_NAME, AlreadyRunning, StateLock

HOLDER = """
import sys
from pathlib import Path
from watchd.lock import StateLock
lock = StateLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
sys.stdin.read()  # hold until the test closes stdin or kills us
"""


def no_sleep(seconds: float) -> None:
    raise AssertionError("a live holder must be refused at once, without waiting")


@pytest.fixture
def other_daemon(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock on tmp_path, until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"
    yield proc
    proc.kill()
    proc.wait()


def test_second_daemon_on_the_same_state_dir_is_refused_naming_the_first(
    tmp_path: Path, other_daemon: subprocess.Popen[str]
) -> None:
    with pytest.raises(AlreadyRunning) as caught:
        StateLock(tmp_path, sleep=no_sleep).acquire()
    assert caught.value.holder_pid == other_daemon.pid
    assert str(caught.value) == (
        f"another watchd is running on {tmp_path} (pid {other_daemon.pid}); stop it first"
    )


def test_refusal_leaves_the_running_daemons_pid_in_the_file(
    tmp_path: Path, other_daemon: subprocess.Popen[str]
) -> None:
    with pytest.raises(AlreadyRunning):
        StateLock(tmp_path, sleep=no_sleep).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == f"{other_daemon.pid}\n"


def test_lock_is_free_once_the_holder_is_killed(
    tmp_path: Path, other_daemon: subprocess.Popen[str]
) -> None:
    """SIGKILL leaves its pid in the file; the kernel's lock is gone all the same."""
    other_daemon.send_signal(signal.SIGKILL)
    other_daemon.wait()
    assert (tmp_path / LOCK_NAME).read_text() == f"{other_daemon.pid}\n"  # stale content
    assert StateLock.holder(tmp_path) is None
    with StateLock(tmp_path) as lock:
        assert lock.held
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_holder_names_the_running_daemon(
    tmp_path: Path, other_daemon: subprocess.Popen[str]
) -> None:
    assert StateLock.holder(tmp_path) == other_daemon.pid


def test_holder_probe_of_a_free_lock_leaves_it_free(tmp_path: Path) -> None:
    StateLock(tmp_path).acquire().release()
    assert StateLock.holder(tmp_path) is None
    with StateLock(tmp_path, sleep=no_sleep) as lock:
        assert lock.held


def test_holder_is_none_without_a_lock_file_and_does_not_create_one(tmp_path: Path) -> None:
    assert StateLock.holder(tmp_path) is None
    assert not (tmp_path / LOCK_NAME).exists()


def test_holder_sees_a_lock_held_in_this_process(tmp_path: Path) -> None:
    with StateLock(tmp_path):
        assert StateLock.holder(tmp_path) == os.getpid()
    assert StateLock.holder(tmp_path) is None


def test_release_frees_the_lock_and_empties_the_pid(tmp_path: Path) -> None:
    lock = StateLock(tmp_path).acquire()
    lock.release()
    assert not lock.held
    assert (tmp_path / LOCK_NAME).read_text() == ""
    StateLock(tmp_path).acquire().release()
    lock.release()  # releasing twice is harmless


def test_acquire_twice_on_one_object_is_a_no_op(tmp_path: Path) -> None:
    lock = StateLock(tmp_path)
    assert lock.acquire() is lock.acquire()
    with pytest.raises(AlreadyRunning) as caught:
        StateLock(tmp_path, sleep=no_sleep).acquire()
    assert caught.value.holder_pid == os.getpid()
    lock.release()


def test_missing_state_dir_is_created(tmp_path: Path) -> None:
    state_dir = tmp_path / "a" / "b"
    with StateLock(state_dir):
        assert (state_dir / LOCK_NAME).is_file()


def test_a_status_probe_at_start_up_does_not_make_the_daemon_refuse(tmp_path: Path) -> None:
    """`watchd status` holds a shared lock for an instant; a daemon starting then retries."""
    (tmp_path / LOCK_NAME).write_text("")
    probe = os.open(tmp_path / LOCK_NAME, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    waits: list[float] = []

    def probe_ends(seconds: float) -> None:
        waits.append(seconds)
        os.close(probe)  # the probe's shared lock goes with its descriptor

    with StateLock(tmp_path, sleep=probe_ends) as lock:
        assert lock.held
    assert len(waits) == 1


def test_a_lock_held_by_no_known_process_is_refused_after_retrying(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("")
    blocker = os.open(tmp_path / LOCK_NAME, os.O_RDONLY)
    try:
        fcntl.flock(blocker, fcntl.LOCK_SH | fcntl.LOCK_NB)
        waits: list[float] = []
        with pytest.raises(AlreadyRunning) as caught:
            StateLock(tmp_path, sleep=waits.append).acquire()
        assert caught.value.holder_pid is None
        assert "(pid unknown)" in str(caught.value)
        assert len(waits) > 0 and sum(waits) < 1
    finally:
        os.close(blocker)
