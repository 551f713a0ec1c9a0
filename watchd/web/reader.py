"""The dashboard's own read-only connection to the ledger, used from one worker thread.

SQLite opens it with `mode=ro` (and `query_only`), so no bug in a page can write the ledger;
WAL lets it read while the daemon writes. Every query runs in the one thread that owns the
connection (`await reader.run(fn, *args)` calls `fn(conn, *args)` there), so a slow page
never stalls the daemon's loop, and pages queue behind each other rather than fight over
the two CPUs the engine needs.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

T = TypeVar("T")
BUSY_TIMEOUT_MS = 2000


class LedgerUnavailable(Exception):
    """The ledger cannot be opened or read (missing, corrupt, locked for too long)."""


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection; any character in `path` is safe (the URI quotes it)."""
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=True)
        # A name that is not UTF-8 shows with a replacement character, not a failed page.
        conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only=1")
        conn.execute("select 1 from jobs limit 1").fetchall()
    except sqlite3.Error as exc:
        raise LedgerUnavailable(f"cannot read the ledger {path}: {exc}") from None
    return conn


class Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="watchd-web-db")
        self._conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args)` in the reader's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return fn(self.connection(), *args)
        except sqlite3.Error as exc:
            self._drop()  # a fresh connection next time (the file may have been replaced)
            raise LedgerUnavailable(f"cannot read the ledger {self.path}: {exc}") from None

    def connection(self) -> sqlite3.Connection:
        """The connection; only for code already running in the reader's thread."""
        if self._thread is not None and self._thread is not threading.current_thread():
            raise RuntimeError("the ledger reader's connection belongs to its own thread")
        if self._conn is None:
            self._conn = connect_read_only(self.path)
            self._thread = threading.current_thread()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._pool.submit(self._drop)
        self._pool.shutdown(wait=True)
