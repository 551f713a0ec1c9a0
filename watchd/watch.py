"""Watching inboxes: watchdog observers, safety rescans, and keeping both alive.

This module owns the observers (one inotify observer shared by local inboxes, one polling
observer per polled inbox), the rescans that catch what events missed, and the health checks
that notice a dead observer or a missing inbox. Its only output is *hints*: "look at this
path" (`on_hint(folder, path)`) and "something is wrong" (`on_problem(folder, kind, message)`).

It must never read file contents, never decide that a file is complete (settle.py and the
daemon do, after a stat), and never report a file as gone: it emits no deletion hints at all,
and an inbox that vanishes, is unmounted or becomes unreadable is an `inbox_missing` problem,
retried, never "all files gone". As watchdog's own tests say, event order is not guaranteed and
extra events are normal, so hints are unordered and repeated; the caller stats and decides.

Paths: every hint is a path under the inbox *as configured* (`spec.inbox`), which is how the
daemon and the ledger name files. An inbox configured through a symlink is watched at its
target (inotify does not follow a symlink it is given), and the events, which name paths under
the target, are mapped back under the configured path; scans walk the configured path. When
the symlink is pointed elsewhere, the health check sees another directory and watches anew.

Idle cost: nothing periodic reads more than a stat. The mount table is parsed only after the
kernel says it changed (`MountTable`: poll() on /proc/self/mountinfo); each inbox's mount
point and filesystem type are kept until then, or until its (st_dev, st_ino) changes. A health
check is a stat and an access() (opening the inbox would wake the watch); after each check
that finds nothing new the next one waits twice as long, up to `max_check_interval`. inotify
watches ask only for the events used here, so watchd's own reads of files wake nothing.

Threads: watchdog's threads and this module's worker threads (one at a time per folder: health
check, (re)watch, scans) call the two callbacks; the daemon wraps them with
`loop.call_soon_threadsafe`. `set_specs`, `tick`, `scan` and `stop` are called from the
daemon's loop thread: they do no inbox I/O themselves (stat, walk and polling snapshots happen
in worker threads, so a hung NFS mount stalls only that folder's worker); at most they wait for
another folder's inotify watch to be added or removed.

Problem kinds: inbox_missing, inbox_back, watcher_restarted, inotify_limit, queue_overflow,
watch_failed, scan_failed, scan_incomplete, hint_failed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import select
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver
from watchdog.utils import UnsupportedLibcError

from watchd.clock import SYSTEM
from watchd.filters import InboxFilter

try:
    from watchdog.observers.inotify import InotifyObserver
except (ImportError, UnsupportedLibcError):  # not Linux: every inbox is polled
    InotifyObserver = None  # type: ignore[assignment,misc]

__all__ = [
    "MountTable",
    "WatchSpec",
    "Watcher",
    "fs_type_for",
    "mount_for",
    "wants_polling",
]

# Filesystems whose changes can happen on another machine, where inotify sees nothing.
# `fuseblk` (ntfs-3g, exfat on a local disk) is local; every other FUSE type is polled.
_REMOTE_FS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "smb", "9p", "sshfs", "ceph", "glusterfs",
        "lustre", "gpfs", "afs", "ncpfs", "coda", "davfs", "orangefs", "beegfs", "ocfs2", "gfs2",
        "virtiofs", "vboxsf", "prl_fs", "vmhgfs",
    }
)  # fmt: skip

# errnos of inotify_add_watch / inotify_init meaning "out of inotify resources", not "bad inbox".
_INOTIFY_LIMIT_ERRNOS = frozenset({errno.ENOSPC, errno.EMFILE, errno.ENOMEM})

# watchdog reports a kernel queue overflow only as a log line (it resyncs its own recursive
# watches but cannot know what files it missed); listening for it starts a rescan at once
# instead of waiting for the periodic one. If the message ever changes, rescans still cover it.
_OVERFLOW_LOGGER = "watchdog.observers.inotify_c"

# Events that may mean "new or changed bytes". Opened/closed-without-write events are left out
# on purpose: the daemon's own reads of a file would otherwise hint it again, forever.
_FILE_EVENTS = (FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileAttribEvent)
# What the observers are asked for: `_route`'s events and no others. watchdog turns this into
# the inotify mask, so opens and reads (IN_OPEN, IN_CLOSE_NOWRITE) of files in an inbox, by
# intake or anyone, never wake a watchdog thread.
_EVENT_FILTER = [*_FILE_EVENTS, FileMovedEvent, DirCreatedEvent, DirMovedEvent, DirDeletedEvent]

_STOP_JOIN_TIMEOUT = 2.0
_INOTIFY_TIMEOUT = 2.0  # emitter wake-ups when idle (watchdog default 1 s); also its stop latency


def mount_for(path: str, mounts_text: str) -> tuple[str, str]:
    """(mount point, filesystem type) of the longest mount containing `path`, or ("", "").

    `mounts_text` is the text of /proc/self/mountinfo (or /proc/mounts). Among mounts stacked
    on the same point, the last listed is the visible one.
    """
    return _longest_mount(path, _parse_mounts(mounts_text))


def _parse_mounts(mounts_text: str) -> list[tuple[str, str]]:
    """[(mount point, filesystem type)] in the order listed."""
    mounts = []
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 10 and fields[0].isdigit() and "-" in fields[6:]:
            point, fstype = fields[4], fields[fields.index("-", 6) + 1]  # mountinfo
        elif len(fields) >= 3:
            point, fstype = fields[1], fields[2]  # /proc/mounts
        else:
            continue
        mounts.append((_unescape_mount(point), fstype))
    return mounts


def _longest_mount(path: str, mounts: list[tuple[str, str]]) -> tuple[str, str]:
    best_point, best_type = "", ""
    for point, fstype in mounts:
        if _is_within(path, point) and len(point) >= len(best_point):
            best_point, best_type = point, fstype
    return best_point, best_type


class MountTable:
    """The mount table, read and parsed again only after the kernel says it changed.

    /proc/self/mountinfo can be polled: after a mount or unmount in this mount namespace,
    poll() on an open descriptor of it reports POLLPRI|POLLERR, once. So `refresh()` is one
    poll() syscall while nothing changes. Where the file cannot be opened or polled (not
    Linux), every refresh reads it again and compares. Thread-safe.
    """

    def __init__(self, source: str = "/proc/self/mountinfo") -> None:
        self._lock = threading.Lock()
        self._mounts: list[tuple[str, str]] = []
        self._text: str | None = None
        self.generation = 0  # counts the changes seen; a cache keyed by it knows when to drop
        self._fd: int | None = None
        self._poller: select.poll | None = None
        try:
            self._fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            poller = select.poll()
            poller.register(self._fd, select.POLLPRI | select.POLLERR)
            self._poller = poller
        except (OSError, AttributeError):
            self._poller = None
        self._load()

    def refresh(self) -> bool:
        """Read the table again if it changed since the last refresh; True if it did."""
        with self._lock:
            if self._poller is not None:
                if not self._poller.poll(0):
                    return False
                return self._load()
            return self._load()

    def lookup(self, path: str) -> tuple[str, str]:
        """(mount point, filesystem type) of the longest mount containing `path`."""
        with self._lock:
            return _longest_mount(path, self._mounts)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd, self._poller = None, None

    def _load(self) -> bool:
        text = self._read()
        if text == self._text:
            return False
        self._text, self._mounts = text, _parse_mounts(text)
        self.generation += 1
        return True

    def _read(self) -> str:
        if self._fd is not None:
            try:
                os.lseek(self._fd, 0, os.SEEK_SET)
                chunks = []
                while chunk := os.read(self._fd, 1 << 16):
                    chunks.append(chunk)
                return b"".join(chunks).decode("utf-8", "surrogateescape")
            except OSError:
                pass
        return _read_mounts()


def fs_type_for(path: str, mounts_text: str) -> str:
    """Filesystem type of the longest mount point containing `path` ("" if unknown)."""
    return mount_for(path, mounts_text)[1]


def wants_polling(fstype: str) -> bool:
    """True for network and FUSE filesystems, where changes made elsewhere raise no inotify."""
    fstype = fstype.lower()
    return fstype in _REMOTE_FS or (fstype.startswith("fuse") and fstype != "fuseblk")


def _unescape_mount(field_text: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount points as \040 \011 \012 \134.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field_text = field_text.replace(code, char)
    return field_text


def _is_within(path: str, point: str) -> bool:
    if point == "/":
        return path.startswith("/")
    return path == point or path.startswith(point.rstrip("/") + "/")


def _read_mounts() -> str:
    for source in ("/proc/self/mountinfo", "/proc/mounts"):
        try:
            with open(source, encoding="utf-8", errors="surrogateescape") as fh:
                return fh.read()
        except OSError:
            continue
    return ""


@dataclass(frozen=True)
class WatchSpec:
    """One inbox to watch. Equal specs are left alone by `set_specs`; a changed one restarts."""

    folder: str
    inbox: Path
    recursive: bool
    mode: str  # "auto" | "poll"
    rescan_interval: float
    filter: InboxFilter


@dataclass(eq=False)
class _Folder:
    spec: WatchSpec
    root: str  # absolute, normalised inbox path: every hinted path is built from it
    mode: str  # "inotify" | "poll", as planned, then as actually used
    stopped: threading.Event = field(default_factory=threading.Event)
    # Requests and scheduling, guarded by Watcher._req.
    worker: threading.Thread | None = None
    full_scan: bool = True
    scan_dirs: set[str] = field(default_factory=set)
    recheck: bool = True
    next_check: float = 0.0
    next_rescan: float = math.inf
    # The watch, changed by the folder's worker under Watcher._watch_lock (teardown too).
    observer: BaseObserver | None = None
    watch: ObservedWatch | None = None
    identity: tuple[int, int] | None = None
    mount: str | None = None
    target: str | None = None  # the resolved inbox the observer watches; events name paths here
    # Worker-only: where the inbox resolves and what it is mounted on, for this identity of it
    # and this generation of the mount table (recomputed only when either changes).
    place_key: tuple[tuple[int, int], int] | None = None
    place: tuple[str, str, str] = ("", "", "")  # (target, mount point, filesystem type)
    check_every: float = 0.0  # the health check's current period (grows while all is well)
    # Worker-only state: what has been reported, so each outage is reported once.
    missing: bool = False
    announced: bool = False  # a watcher_restarted was already said for the current outage
    inotify_failed: bool = False
    watch_failed: bool = False


class _Handler(FileSystemEventHandler):
    """Routes one folder's watchdog events to the watcher (runs in watchdog's thread)."""

    def __init__(self, watcher: Watcher, folder: _Folder) -> None:
        self._watcher = watcher
        self._folder = folder

    def dispatch(self, event: FileSystemEvent) -> None:
        self._watcher._on_event(self._folder, event)


class _OverflowListener(logging.Handler):
    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._on_overflow()


class Watcher:
    """Watches inboxes and posts hints; see the module docstring for the threading contract."""

    def __init__(
        self,
        on_hint: Callable[[str, Path], None],
        on_problem: Callable[[str, str, str], None],
        *,
        clock: Callable[[], float] = SYSTEM.mono,
        poll_interval: float = 2.0,
        check_interval: float = 10.0,
        max_check_interval: float | None = None,
        mounts: MountTable | None = None,
    ) -> None:
        self._on_hint = on_hint
        self._on_problem = on_problem
        self._clock = clock
        # Both the polling observers' interval and the period of inbox health checks.
        self._poll_interval = poll_interval
        # How often each inbox's health (present, readable, still mounted) is checked by a
        # worker thread. inotify already reports a deleted inbox at once and the mount table
        # says when anything is mounted or unmounted (both looked at on every tick); this
        # catches a share that went away or a permission change. Each check that finds
        # nothing new doubles the period, up to max_check_interval (6 × by default).
        self._check_interval = check_interval
        self._max_check_interval = max(
            check_interval, 6 * check_interval if max_check_interval is None else max_check_interval
        )
        self._mounts = mounts or MountTable()
        self._req = threading.Lock()  # folder requests/flags; never held while calling out
        self._watch_lock = threading.Lock()  # schedule/unschedule; never taken by event handlers
        self._folders: dict[str, _Folder] = {}
        self._inotify: BaseObserver | None = None
        self._stopping = False
        self._overflow_listener = _OverflowListener(self._on_overflow)
        logging.getLogger(_OVERFLOW_LOGGER).addHandler(self._overflow_listener)

    # ---- public API (daemon loop thread) -------------------------------------------------

    def set_specs(self, specs: Sequence[WatchSpec]) -> None:
        """Watch exactly these folders: start new ones, stop removed ones, restart changed ones.

        Each new or restarted folder is watched and then fully scanned in its worker thread,
        so files already present are hinted too.
        """
        if self._stopping:
            raise RuntimeError("Watcher is stopped")
        wanted = {spec.folder: spec for spec in specs}
        if len(wanted) != len(specs):
            raise ValueError("two watch specs for one folder")
        with self._req:
            current = dict(self._folders)
        for name, folder in current.items():
            if wanted.get(name) != folder.spec:
                self._teardown(folder)
                with self._req:
                    del self._folders[name]
        for name, spec in wanted.items():
            if name in current and current[name].spec == spec:
                continue
            root = os.path.normpath(os.path.abspath(spec.inbox))
            folder = _Folder(
                spec=spec,
                root=root,
                mode=self._planned_mode(spec, root),
                check_every=self._check_interval,
            )
            with self._req:
                self._folders[name] = folder
            self._request(folder, full=True)

    def tick(self, now: float | None = None) -> float:
        """Restart dead observers, start due health checks and rescans.

        Returns the seconds until the next call is useful.
        """
        now = self._clock() if now is None else now
        self._restart_dead_observers()
        mounts_changed = self._mounts.refresh()  # one poll() while nothing is (un)mounted
        with self._req:
            folders = list(self._folders.values())
        wait = self._check_interval
        for folder in folders:
            dead_watch = folder.watch is not None and not self._watch_alive(folder)
            with self._req:
                if dead_watch or mounts_changed:
                    folder.recheck = True  # its worker finds out why and says so
                if folder.worker is not None and folder.worker.is_alive():
                    continue
                folder.worker = None
                work = folder.full_scan or bool(folder.scan_dirs) or now >= folder.next_rescan
                if folder.recheck or now >= folder.next_check or (work and not folder.missing):
                    self._start_worker(folder)
                    continue
                wait = min(wait, folder.next_check - now)
                if not folder.missing:
                    wait = min(wait, folder.next_rescan - now)
        return max(0.0, wait)

    def scan(self, folder: str) -> None:
        """Rescan this folder now (in its worker thread). KeyError for an unknown folder."""
        with self._req:
            target = self._folders[folder]
        self._request(target, full=True)

    def modes(self) -> dict[str, str]:
        """folder -> "inotify" | "poll": what each folder uses (or will use, until watched)."""
        with self._req:
            return {name: folder.mode for name, folder in self._folders.items()}

    def stop(self) -> None:
        """Stop every observer and worker. Waits a bounded time; threads are daemons anyway."""
        self._stopping = True
        logging.getLogger(_OVERFLOW_LOGGER).removeHandler(self._overflow_listener)
        with self._req:
            folders = list(self._folders.values())
            self._folders.clear()
        for folder in folders:
            self._teardown(folder)
        with self._watch_lock:
            observer, self._inotify = self._inotify, None
        if observer is not None:
            observer.stop()
            observer.join(_STOP_JOIN_TIMEOUT)
        deadline = self._clock() + _STOP_JOIN_TIMEOUT
        for folder in folders:
            worker = folder.worker
            if worker is not None and worker is not threading.current_thread():
                worker.join(max(0.0, deadline - self._clock()))
        self._mounts.close()

    # ---- requests and workers ------------------------------------------------------------

    def _planned_mode(self, spec: WatchSpec, path: str) -> str:
        if spec.mode == "poll" or InotifyObserver is None:
            return "poll"
        return "poll" if wants_polling(self._mounts.lookup(path)[1]) else "inotify"

    def _request(
        self,
        folder: _Folder,
        *,
        full: bool = False,
        scan_dir: str | None = None,
        recheck: bool = False,
    ) -> None:
        with self._req:
            folder.recheck = folder.recheck or recheck
            if full:
                folder.full_scan = True
                folder.scan_dirs.clear()
            elif scan_dir is not None and not folder.full_scan:
                folder.scan_dirs.add(scan_dir)
                if len(folder.scan_dirs) > 1000:  # a storm of new folders: one walk is cheaper
                    folder.full_scan = True
                    folder.scan_dirs.clear()
            if folder.worker is None or not folder.worker.is_alive():
                self._start_worker(folder)

    def _start_worker(self, folder: _Folder) -> None:
        # Caller holds self._req.
        if folder.stopped.is_set() or self._stopping:
            return
        worker = threading.Thread(
            target=self._work,
            args=(folder,),
            name=f"watchd-watch-{folder.spec.folder}",
            daemon=True,
        )
        folder.worker = worker
        worker.start()

    def _work(self, folder: _Folder) -> None:
        """One folder's worker: health check, (re)watch, then scans until nothing is asked."""
        try:
            while not folder.stopped.is_set():
                with self._req:
                    folder.recheck = False
                if not self._check(folder):
                    return
                with self._req:
                    now = self._clock()
                    if folder.full_scan or now >= folder.next_rescan:
                        folder.full_scan = False
                        folder.scan_dirs.clear()
                        top = folder.root
                    elif folder.scan_dirs:
                        top = folder.scan_dirs.pop()
                    elif folder.recheck:
                        continue
                    else:
                        # Decided under the lock: a request made after this starts a new worker.
                        folder.worker = None
                        folder.next_check = now + folder.check_every
                        return
                self._scan_safely(folder, top)
        except Exception as exc:  # a bug here must not silence the folder: say so, retry later
            self._problem(folder, "watch_failed", f"watcher worker failed: {exc!r}")
        finally:
            with self._req:
                if folder.worker is threading.current_thread():
                    folder.worker = None
                folder.next_check = self._clock() + folder.check_every

    # ---- health and (re)watching (worker thread) -----------------------------------------

    def _check(self, folder: _Folder) -> bool:
        """Is the inbox usable? Report outages once, rewatch when needed. False = not usable."""
        problem, st = _inbox_problem(folder.root)
        target, mount, fstype = ("", "", "")
        if st is not None:
            target, mount, fstype = self._place(folder, (st.st_dev, st.st_ino))
            if folder.mount and len(mount) < len(folder.mount):
                problem = f"{folder.mount} is no longer mounted"
        if problem is not None:
            folder.check_every = self._check_interval
            if not folder.missing:
                folder.missing = True
                self._problem(folder, "inbox_missing", f"inbox {folder.root} {problem}; retrying")
            self._unwatch(folder)
            return False
        assert st is not None
        quiet = True
        if folder.missing:
            quiet = folder.missing = False
            self._problem(folder, "inbox_back", f"inbox {folder.root} is back; rescanning")
            self._request(folder, full=True)
        identity = (st.st_dev, st.st_ino)
        if (
            folder.watch is None
            or identity != folder.identity
            or mount != folder.mount
            or target != folder.target
            or not self._watch_alive(folder)
        ):
            quiet = False
            had_watch = folder.watch is not None
            folder.mount = mount
            self._rewatch(folder, identity, target, fstype, had_watch=had_watch)
        folder.check_every = (
            min(folder.check_every * 2, self._max_check_interval) if quiet else self._check_interval
        )
        return True

    def _place(self, folder: _Folder, identity: tuple[int, int]) -> tuple[str, str, str]:
        """(resolved inbox, its mount point, filesystem type), worked out again only when the
        inbox is another directory or the mount table changed."""
        key = (identity, self._mounts.generation)
        if folder.place_key != key:
            target = os.path.realpath(folder.root)
            folder.place = (target, *self._mounts.lookup(target))
            folder.place_key = key
        return folder.place

    def _watch_alive(self, folder: _Folder) -> bool:
        observer, watch = folder.observer, folder.watch
        if observer is None or watch is None:
            return False
        if not observer.is_alive():
            return False
        for _ in range(3):
            try:
                emitters = list(observer.emitters)
            except RuntimeError:  # the set changed while copied (another folder's schedule)
                continue
            return any(e.watch == watch and e.is_alive() for e in emitters)
        return True

    def _rewatch(
        self,
        folder: _Folder,
        identity: tuple[int, int],
        target: str,
        fstype: str,
        *,
        had_watch: bool,
    ) -> None:
        self._unwatch(folder)
        folder.target = target  # before any event of the new watch can arrive
        spec = folder.spec
        use_poll = (
            spec.mode == "poll"
            or InotifyObserver is None
            or folder.inotify_failed
            or wants_polling(fstype)
        )
        try:
            if not use_poll:
                try:
                    with self._watch_lock:
                        if folder.stopped.is_set():
                            return
                        observer = self._inotify_observer()
                        folder.watch = observer.schedule(
                            _Handler(self, folder),
                            target,
                            recursive=spec.recursive,
                            event_filter=_EVENT_FILTER,
                        )
                        folder.observer = observer
                except OSError as exc:
                    if exc.errno not in _INOTIFY_LIMIT_ERRNOS:
                        raise
                    folder.inotify_failed = True
                    use_poll = True
                    self._problem(
                        folder, "inotify_limit", f"{exc.strerror or exc}: polling {folder.root}"
                    )
            if use_poll:
                observer = PollingObserver(timeout=self._poll_interval)
                watch = observer.schedule(
                    _Handler(self, folder),
                    target,
                    recursive=spec.recursive,
                    event_filter=_EVENT_FILTER,
                )
                observer.start()  # takes the first snapshot: outside any lock, it may be slow
                with self._watch_lock:
                    if folder.stopped.is_set():
                        _stop_in_background(observer)
                        return
                    folder.observer, folder.watch = observer, watch
        except OSError as exc:
            # The inbox changed under us (gone, unreadable) or the watch is refused: rescans
            # still run; the next health check says what happened or tries again.
            if _inbox_problem(folder.root)[0] is None and not folder.watch_failed:
                folder.watch_failed = True
                self._problem(folder, "watch_failed", f"cannot watch {folder.root}: {exc}")
            with self._req:
                folder.recheck = True
            return
        folder.watch_failed = False
        folder.identity = identity
        with self._req:
            folder.mode = "poll" if use_poll else "inotify"
        if had_watch and not folder.announced:
            self._problem(folder, "watcher_restarted", f"watch on {folder.root} stopped; restarted")
        folder.announced = False
        # Whatever arrived while unwatched is only found by walking the inbox.
        self._request(folder, full=True)

    def _inotify_observer(self) -> BaseObserver:
        # Caller holds self._watch_lock.
        if self._inotify is None or not self._inotify.is_alive():
            if self._inotify is not None:
                _stop_in_background(self._inotify)
            assert InotifyObserver is not None
            observer = InotifyObserver(timeout=_INOTIFY_TIMEOUT)
            observer.start()
            self._inotify = observer
        return self._inotify

    def _unwatch(self, folder: _Folder) -> None:
        with self._watch_lock:
            observer, watch = folder.observer, folder.watch
            folder.observer = folder.watch = None
            if observer is None or watch is None:
                return
            if observer is not self._inotify:
                _stop_in_background(observer)  # a private polling observer (or a dead one)
                return
            if observer.is_alive():
                with contextlib.suppress(KeyError):
                    observer.unschedule(watch)

    def _teardown(self, folder: _Folder) -> None:
        folder.stopped.set()
        self._unwatch(folder)

    def _restart_dead_observers(self) -> None:
        """Notice observer threads that died; their folders' workers rewatch them."""
        with self._watch_lock:
            dead = self._inotify
            if dead is None or dead.is_alive() or self._stopping:
                dead = None
            else:
                self._inotify = None
                _stop_in_background(dead)  # its emitters may still hold inotify watches
        with self._req:
            folders = list(self._folders.values())
        for folder in folders:
            observer = folder.observer
            if observer is None or observer.is_alive() or folder.stopped.is_set():
                continue
            if folder.announced:
                continue  # said once; its worker has not rewatched it yet
            folder.announced = True
            self._problem(
                folder, "watcher_restarted", f"observer for {folder.root} died; restarting"
            )
            with self._req:
                folder.recheck = True

    # ---- events and scans ----------------------------------------------------------------

    def _on_event(self, folder: _Folder, event: FileSystemEvent) -> None:
        # Runs in watchdog's dispatch thread: an exception here would kill the observer.
        try:
            self._route(folder, event)
        except Exception as exc:
            self._problem(folder, "hint_failed", f"event {event!r} not handled: {exc!r}")

    def _route(self, folder: _Folder, event: FileSystemEvent) -> None:
        if folder.stopped.is_set():
            return
        if event.is_directory:
            if isinstance(event, DirDeletedEvent):
                if os.path.normpath(os.fsdecode(event.src_path)) == folder.target:
                    self._request(folder, recheck=True)  # the inbox itself: check it now
            elif folder.spec.recursive and isinstance(event, DirCreatedEvent | DirMovedEvent):
                path = event.dest_path if isinstance(event, DirMovedEvent) else event.src_path
                rel = self._event_rel(folder, path)
                if rel is not None and folder.spec.filter.enters(rel):
                    self._request(folder, scan_dir=os.path.join(folder.root, rel))
            return
        if isinstance(event, FileMovedEvent):
            raw = event.dest_path  # a move within or into the inbox; a move out has no news
        elif isinstance(event, _FILE_EVENTS):
            raw = event.src_path
        else:
            return
        if not raw:
            return
        rel = self._event_rel(folder, raw)
        if rel is not None and folder.spec.filter.hints(rel):
            self._hint(folder, rel)

    def _event_rel(self, folder: _Folder, raw: bytes | str) -> str | None:
        """An event's path relative to the inbox (events name paths under the target)."""
        return self._rel(folder, os.path.normpath(os.fsdecode(raw)), folder.target or folder.root)

    def _rel(self, folder: _Folder, path: str, base: str | None = None) -> str | None:
        prefix = (base or folder.root).rstrip("/") + "/"
        if not path.startswith(prefix):
            return None
        rel = path[len(prefix) :]
        if not rel or (not folder.spec.recursive and "/" in rel):
            return None
        return rel

    def _scan_safely(self, folder: _Folder, top: str) -> None:
        try:
            self._scan(folder, top)
        except OSError as exc:
            if top == folder.root:
                # Perhaps the inbox went away mid-walk: the health check reports that, not us.
                problem, _ = _inbox_problem(folder.root)
                if problem is None:
                    self._problem(folder, "scan_failed", f"rescan of {top} failed: {exc}")
                with self._req:
                    folder.recheck = True
            # A new subfolder that vanished again before its walk is no news.
        except Exception as exc:
            self._problem(folder, "scan_failed", f"rescan of {top} failed: {exc!r}")
        finally:
            if top == folder.root:
                with self._req:
                    folder.next_rescan = self._clock() + folder.spec.rescan_interval

    def _scan(self, folder: _Folder, top: str) -> None:
        """Walk from `top`, hinting each wanted file as it is read (no list is built)."""
        spec = folder.spec
        top_rel = "" if top == folder.root else self._rel(folder, top)
        if top_rel is None:
            return
        stack = [(top, top_rel)]  # directories still to walk, never files
        skipped: list[str] = []
        while stack:
            directory, rel_dir = stack.pop()
            try:
                entries = os.scandir(directory)
            except FileNotFoundError:
                if directory == top:
                    raise
                continue  # removed while we walked
            except OSError as exc:
                if directory == top:
                    raise
                skipped.append(f"{directory}: {exc.strerror or exc}")
                continue
            with entries:
                for entry in entries:
                    if folder.stopped.is_set():
                        return
                    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if is_dir:
                        if spec.recursive and spec.filter.enters(rel):
                            stack.append((entry.path, rel))
                    elif spec.filter.hints(rel):
                        self._hint(folder, rel)
        if skipped:
            more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
            self._problem(folder, "scan_incomplete", f"could not read {skipped[0]}{more}")

    def _on_overflow(self) -> None:
        # Runs in watchdog's inotify thread: only flags and a worker start.
        with self._req:
            folders = [f for f in self._folders.values() if f.observer is self._inotify]
        for folder in folders:
            if folder.observer is None or folder.full_scan:
                continue  # a full scan is already on its way
            self._problem(folder, "queue_overflow", "inotify queue overflowed; rescanning")
            self._request(folder, full=True)

    # ---- callbacks -----------------------------------------------------------------------

    def _hint(self, folder: _Folder, rel: str) -> None:
        if folder.stopped.is_set():
            return
        try:
            self._on_hint(folder.spec.folder, Path(folder.root, rel))
        except Exception as exc:
            # Most likely the daemon's loop is closing. A lost hint is found by the next scan;
            # a lost watchdog thread would not be.
            self._problem(folder, "hint_failed", f"hint for {rel} not delivered: {exc!r}")

    def _problem(self, folder: _Folder, kind: str, message: str) -> None:
        if folder.stopped.is_set():
            return
        # Same reasoning as _hint: a failing callback must not kill a watcher thread.
        with contextlib.suppress(Exception):
            self._on_problem(folder.spec.folder, kind, message)


def _inbox_problem(path: str) -> tuple[str | None, os.stat_result | None]:
    """(None, stat) if the inbox is a readable directory, else (what is wrong, None)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist", None
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or exc})", None
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory", None
    # access(), not opening: an open of a watched inbox would wake its watch at every check.
    # (A share gone stale fails the stat above with ESTALE or EIO.)
    if not os.access(path, os.R_OK | os.X_OK):
        return "is not readable (permission denied)", None
    return None, st


def _stop_in_background(observer: BaseObserver) -> None:
    # stop() joins emitter threads; a polling emitter stuck on a hung mount would block the
    # caller forever, so it happens in a throw-away daemon thread.
    threading.Thread(target=observer.stop, name="watchd-observer-stop", daemon=True).start()
