"""The single-instance lock on a state directory: never two `watchd run` on one ledger.

Owns: `state_dir/watchd.lock`, an exclusive `flock(2)` on it for the daemon's lifetime, and the
question "is a daemon running on this state_dir, and which pid?" for the CLI.

Never: decides anything from the pid written in the file. The lock is the kernel's: it is held
by an open file description and released when the process dies, however it dies (SIGKILL,
OOM), so there is no stale pid file to clean up. The pid is written only so that the refusal
message can name the other process. The file is never deleted either: a process may still have
the old inode open, and deleting it would let two daemons lock two different files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

__all__ = ["LOCK_NAME", "AlreadyRunning", "StateLock"]

LOCK_NAME = "watchd.lock"

# `holder()` probes with a short shared lock, so a daemon starting at that very instant can
# find the file locked by a process that is not a daemon. When the file names no live process,
# acquire() tries again for a moment before refusing (a probe holds its lock for microseconds).
_RETRIES = 10
_RETRY_DELAY = 0.02


class AlreadyRunning(Exception):
    """Another process holds the state_dir lock: a second daemon must not start."""

    def __init__(self, state_dir: Path, holder_pid: int | None) -> None:
        self.state_dir = state_dir
        self.holder_pid = holder_pid
        who = f"pid {holder_pid}" if holder_pid is not None else "pid unknown"
        super().__init__(f"another watchd is running on {state_dir} ({who}); stop it first")


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0)
    except OSError:
        return None
    try:
        pid = int(text.strip() or b"x")
    except ValueError:
        return None
    return pid if pid > 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class StateLock:
    """Exclusive lock on `state_dir/watchd.lock`; usable as a context manager."""

    def __init__(self, state_dir: Path, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_NAME
        self._sleep = sleep
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> StateLock:
        """Take the lock or raise AlreadyRunning. Acquiring a lock already held is a no-op."""
        if self._fd is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC: a program the daemon might exec must not inherit (and so keep) the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            for attempt in range(_RETRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pid = _read_pid(fd)
                    if (pid is not None and _alive(pid)) or attempt == _RETRIES - 1:
                        raise AlreadyRunning(self.state_dir, pid) from None
                    self._sleep(_RETRY_DELAY)
            # Informational only (see the module docstring): written after locking, so the
            # pid of a running daemon is never overwritten by one that is refused.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays). Releasing a lock not held is a no-op."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Empty the file while still holding the lock so it never names a finished daemon.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    @staticmethod
    def holder(state_dir: Path, *, sleep: Callable[[float], None] = time.sleep) -> int | None:
        """The pid of the process holding the lock on `state_dir`, or None when no one holds
        it. Read-only: it never creates the file. An unreadable file raises OSError (the
        ledger beside it would not be readable either).

        A daemon writes its pid just after taking the lock; in that instant this waits a
        moment for the pid. A lock held with no live pid in the file after that (someone
        emptied it by hand) also gives None.
        """
        try:
            fd = os.open(Path(state_dir) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                # A shared lock is granted unless someone holds the exclusive one; release it
                # at once so a starting daemon is not kept waiting.
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                for _ in range(_RETRIES):
                    pid = _read_pid(fd)
                    # A dead pid is what a SIGKILLed daemon left, read before the new holder
                    # wrote its own.
                    if pid is not None and _alive(pid):
                        return pid
                    sleep(_RETRY_DELAY)
                return None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
