"""Watching inboxes: mount detection (pure) and the Watcher against real inotify/polling.

The Watcher tests use real threads and a real filesystem, so they wait with `wait_for`
(polling, at most a few seconds) instead of sleeping a fixed time.
"""

import itertools
import logging
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from watchd.filters import InboxFilter
from watchd.watch import MountTable, Watcher, WatchSpec, fs_type_for, mount_for, wants_polling

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
40 27 0:45 / /mnt/nas rw,relatime shared:20 - nfs4 nas:/export rw,vers=4.2
41 27 0:46 / /mnt/nas2 rw,relatime shared:21 master:3 - cifs //srv/share rw
42 27 0:47 / /mnt/my\\040photos rw,relatime - fuse.sshfs me@host: rw
43 40 259:1 /srv/local /mnt/nas/local rw,relatime - ext4 /dev/nvme0n1p2 rw
44 27 0:48 / /media/usb rw,relatime - fuseblk /dev/sdb1 rw
45 27 0:49 / /mnt/stack rw,relatime - ext4 /dev/sdc1 rw
46 27 0:50 / /mnt/stack rw,relatime - nfs srv:/stack rw
"""

PROC_MOUNTS = """\
/dev/root / ext4 rw,relatime 0 0
srv:/x /srv/inbox nfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/home/me/inbox", "ext4"),
        ("/mnt/nas", "nfs4"),
        ("/mnt/nas/products/inbox", "nfs4"),
        ("/mnt/nas2/inbox", "cifs"),  # not nfs4: /mnt/nas is no path prefix of /mnt/nas2
        ("/mnt/nas/local/inbox", "ext4"),  # the longest mount point wins
        ("/mnt/my photos/inbox", "fuse.sshfs"),  # \040 in mountinfo is a space
        ("/media/usb/in", "fuseblk"),
        ("/mnt/stack/in", "nfs"),  # stacked on one point: the last mount is the visible one
    ],
)
def test_fs_type_for_reads_mountinfo(path, fstype):
    assert fs_type_for(path, MOUNTINFO) == fstype


def test_fs_type_for_reads_proc_mounts_and_unknown_is_empty():
    assert fs_type_for("/srv/inbox/a", PROC_MOUNTS) == "nfs"
    assert fs_type_for("/srv/other", PROC_MOUNTS) == "ext4"
    assert fs_type_for("/anything", "") == ""
    assert mount_for("/mnt/nas/products", MOUNTINFO) == ("/mnt/nas", "nfs4")


@pytest.mark.parametrize(
    "fstype",
    ["nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "fuse", "fuse.sshfs",
     "fuse.rclone", "virtiofs", "NFS4"],
)  # fmt: skip
def test_network_and_fuse_filesystems_are_polled(fstype):
    assert wants_polling(fstype)


@pytest.mark.parametrize(
    "fstype", ["ext4", "xfs", "btrfs", "zfs", "tmpfs", "overlay", "fuseblk", ""]
)
def test_local_filesystems_use_inotify(fstype):
    assert not wants_polling(fstype)


# ---- the Watcher against the real filesystem ------------------------------------------------


class Recorder:
    """Collects what the watcher reports, from any thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.hints: list[tuple[str, Path]] = []
        self.problems: list[tuple[str, str, str]] = []

    def on_hint(self, folder, path):
        with self.lock:
            self.hints.append((folder, path))

    def on_problem(self, folder, kind, message):
        with self.lock:
            self.problems.append((folder, kind, message))

    def hinted(self, path, folder="f"):
        with self.lock:
            return (folder, Path(path)) in self.hints

    def hint_count(self, path, folder="f"):
        with self.lock:
            return self.hints.count((folder, Path(path)))

    def kinds(self):
        with self.lock:
            return [kind for _, kind, _ in self.problems]


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self):
        return self.now


def wait_for(condition, watcher, timeout=5.0):
    """Tick the watcher until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watcher.tick()
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def settle_a_moment(watcher, seconds=0.4):
    """Let the watcher run (for asserting that something does NOT happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        watcher.tick()
        time.sleep(0.02)


def spec(inbox, *, folder="f", mode="auto", recursive=False, rescan=300.0, flt=None):
    return WatchSpec(
        folder=folder,
        inbox=Path(inbox),
        recursive=recursive,
        mode=mode,
        rescan_interval=rescan,
        filter=flt or InboxFilter(),
    )


def write(path, data=b"\xff\xd8 not really a jpeg"):
    path = Path(path)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


@pytest.fixture
def rec():
    return Recorder()


@pytest.fixture
def inbox(tmp_path):
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def make_watcher(rec):
    made = []

    def make(**kwargs):
        kwargs.setdefault("poll_interval", 0.1)
        kwargs.setdefault("check_interval", kwargs["poll_interval"])
        watcher = Watcher(rec.on_hint, rec.on_problem, **kwargs)
        made.append(watcher)
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


def start_ready(watcher, rec, inbox, **spec_kwargs):
    """Start watching with a sentinel file present; once it is hinted, the watch is live."""
    sentinel = write(inbox / "ready.jpg")
    watcher.set_specs([spec(inbox, **spec_kwargs)])
    wait_for(lambda: rec.hinted(sentinel), watcher)


def test_files_present_at_start_are_hinted_and_junk_is_not(make_watcher, rec, inbox):
    write(inbox / "a.jpg")
    write(inbox / "B.PNG")
    for junk in (".hidden.jpg", "x.tmp", "Thumbs.db", "doc.pdf"):
        write(inbox / junk)
    watcher = make_watcher()
    watcher.set_specs([spec(inbox)])
    wait_for(lambda: rec.hinted(inbox / "a.jpg") and rec.hinted(inbox / "B.PNG"), watcher)
    assert {p.name for _, p in rec.hints} == {"a.jpg", "B.PNG"}
    assert watcher.modes() == {"f": "inotify"}


def test_a_file_written_and_closed_is_hinted(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    path = write(inbox / "new.jpg")
    wait_for(lambda: rec.hinted(path), watcher)


def test_event_and_scan_hint_the_same_path(make_watcher, rec, inbox):
    """The caller keys files by path: a scan and an event must name a file identically."""
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    with open(inbox / "ready.jpg", "ab") as fh:
        fh.write(b"more")
    wait_for(lambda: rec.hint_count(inbox / "ready.jpg") >= 2, watcher)


def test_a_file_moved_in_is_hinted_at_its_destination(make_watcher, rec, inbox, tmp_path):
    outside = write(tmp_path / "staging.jpg")
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    os.rename(outside, inbox / "arrived.jpg")
    wait_for(lambda: rec.hinted(inbox / "arrived.jpg"), watcher)
    assert not rec.hinted(outside)


def test_a_rename_from_a_junk_name_is_hinted(make_watcher, rec, inbox):
    """Browsers write `x.jpg.crdownload`, then rename it: the rename is the news."""
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    part = write(inbox / "x.jpg.crdownload")
    os.rename(part, inbox / "x.jpg")
    wait_for(lambda: rec.hinted(inbox / "x.jpg"), watcher)
    assert not rec.hinted(part)


def test_junk_written_after_start_gives_no_hint(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    for junk in ("._a.jpg", "~$b.jpg", "c.jpg.part", "desktop.ini", "d.gif"):
        write(inbox / junk)
    last = write(inbox / "last.jpg")
    wait_for(lambda: rec.hinted(last), watcher)
    settle_a_moment(watcher, 0.2)
    assert {p.name for _, p in rec.hints} == {"ready.jpg", "last.jpg"}


def test_reading_or_deleting_a_file_gives_no_hint(make_watcher, rec, inbox):
    """The daemon's own reads must not re-hint a file, and deletions are never reported."""
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    (inbox / "ready.jpg").read_bytes()
    (inbox / "ready.jpg").unlink()
    last = write(inbox / "last.jpg")
    wait_for(lambda: rec.hinted(last), watcher)
    settle_a_moment(watcher, 0.2)
    assert rec.hint_count(inbox / "ready.jpg") == 1
    assert rec.problems == []


# watchdog warns about its own race between `mkdir -p` and its recursive watch setup.
@pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")
def test_recursive_folder_hints_files_in_new_subfolders_but_not_in_junk_dirs(
    make_watcher, rec, inbox
):
    (inbox / "old").mkdir()
    write(inbox / "old" / "o.jpg")
    (inbox / "@eaDir").mkdir()
    write(inbox / "@eaDir" / "thumb.jpg")
    watcher = make_watcher()
    start_ready(watcher, rec, inbox, recursive=True)
    wait_for(lambda: rec.hinted(inbox / "old" / "o.jpg"), watcher)
    (inbox / "new" / "deeper").mkdir(parents=True)
    write(inbox / "new" / "deeper" / "n.jpg")
    wait_for(lambda: rec.hinted(inbox / "new" / "deeper" / "n.jpg"), watcher)
    write(inbox / "@eaDir" / "thumb2.jpg")
    settle_a_moment(watcher, 0.2)
    assert not any("@eaDir" in str(p) for _, p in rec.hints)


def test_non_recursive_folder_ignores_subfolders(make_watcher, rec, inbox):
    (inbox / "sub").mkdir()
    write(inbox / "sub" / "s.jpg")
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    write(inbox / "sub" / "t.jpg")
    last = write(inbox / "last.jpg")
    wait_for(lambda: rec.hinted(last), watcher)
    assert not any(p.parent.name == "sub" for _, p in rec.hints)


def test_sidecar_folders_hint_masks_too(make_watcher, rec, inbox):
    write(inbox / "s1.jpg")
    write(inbox / "s1.MASK.png")
    watcher = make_watcher()
    watcher.set_specs([spec(inbox, flt=InboxFilter(sidecar=True))])
    wait_for(lambda: rec.hinted(inbox / "s1.jpg") and rec.hinted(inbox / "s1.MASK.png"), watcher)


def test_poll_mode_hints_new_files(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox, mode="poll")
    assert watcher.modes() == {"f": "poll"}
    path = write(inbox / "polled.jpg")
    wait_for(lambda: rec.hinted(path), watcher)


def test_removing_a_spec_stops_its_hints(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    watcher.set_specs([])
    assert watcher.modes() == {}
    write(inbox / "after.jpg")
    settle_a_moment(watcher)
    assert not rec.hinted(inbox / "after.jpg")


def test_a_changed_spec_restarts_with_a_full_scan(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    watcher.set_specs([spec(inbox, flt=InboxFilter(ignore=("*-draft.*",)))])
    wait_for(lambda: rec.hint_count(inbox / "ready.jpg") == 2, watcher)
    write(inbox / "x-draft.jpg")
    path = write(inbox / "y.jpg")
    wait_for(lambda: rec.hinted(path), watcher)
    assert not rec.hinted(inbox / "x-draft.jpg")


def test_an_unchanged_spec_is_left_alone(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    watcher.set_specs([spec(inbox)])
    settle_a_moment(watcher, 0.3)
    assert rec.hint_count(inbox / "ready.jpg") == 1


@pytest.mark.parametrize("mode", ["auto", "poll"])
def test_a_deleted_inbox_is_missing_not_empty_and_comes_back(make_watcher, rec, inbox, mode):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox, mode=mode)
    shutil.rmtree(inbox)
    wait_for(lambda: "inbox_missing" in rec.kinds(), watcher)
    settle_a_moment(watcher, 0.3)
    assert rec.kinds().count("inbox_missing") == 1  # once per outage, not once per check
    inbox.mkdir()
    write(inbox / "again.jpg")
    wait_for(lambda: rec.hinted(inbox / "again.jpg"), watcher)
    assert "inbox_back" in rec.kinds()
    assert "watcher_restarted" not in rec.kinds()
    # And it is watched again, not only scanned.
    path = write(inbox / "later.jpg")
    wait_for(lambda: rec.hinted(path), watcher)


def test_an_inbox_missing_at_start_is_reported_then_taken_when_it_appears(
    make_watcher, rec, tmp_path
):
    inbox = tmp_path / "not-yet"
    watcher = make_watcher()
    watcher.set_specs([spec(inbox)])
    wait_for(lambda: rec.kinds() == ["inbox_missing"], watcher)
    inbox.mkdir()
    write(inbox / "first.jpg")
    wait_for(lambda: rec.hinted(inbox / "first.jpg"), watcher)
    assert rec.kinds() == ["inbox_missing", "inbox_back"]


def _mount_tmpfs(path):
    cmd = ["mount", "-t", "tmpfs", "watchd-test", str(path)]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def _umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def test_an_unmounted_inbox_is_missing_even_though_its_mount_point_remains(
    make_watcher, rec, inbox
):
    """After `umount`, the empty mount point must not pass for an inbox with no files."""
    if os.geteuid() != 0 or not _mount_tmpfs(inbox):
        pytest.skip("needs root and mount(8)")
    try:
        watcher = make_watcher()
        start_ready(watcher, rec, inbox)
        _umount(inbox)
        wait_for(lambda: "inbox_missing" in rec.kinds(), watcher)
        assert "no longer mounted" in rec.problems[-1][2]
        assert _mount_tmpfs(inbox)
        path = write(inbox / "remounted.jpg")
        wait_for(lambda: rec.hinted(path), watcher)
        assert rec.kinds() == ["inbox_missing", "inbox_back"]
    finally:
        _umount(inbox)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_an_unreadable_inbox_is_missing(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    inbox.chmod(0)
    try:
        wait_for(lambda: "inbox_missing" in rec.kinds(), watcher)
    finally:
        inbox.chmod(0o755)
    wait_for(lambda: "inbox_back" in rec.kinds(), watcher)


def test_a_dead_observer_is_restarted_by_tick(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    observer = watcher._inotify
    observer.stop()
    observer.join(5)
    watcher.tick()
    assert ("f", "watcher_restarted") in [(f, k) for f, k, _ in rec.problems]
    path = write(inbox / "after-restart.jpg")
    wait_for(lambda: rec.hinted(path), watcher)
    assert watcher._inotify is not observer
    assert rec.kinds().count("watcher_restarted") == 1


def test_a_dead_polling_observer_is_restarted_by_tick(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox, mode="poll")
    observer = next(t for t in threading.enumerate() if type(t).__name__ == "PollingObserver")
    observer.stop()
    observer.join(5)
    path = write(inbox / "after-restart.jpg")
    wait_for(lambda: rec.hinted(path), watcher)
    assert rec.kinds() == ["watcher_restarted"]


def test_the_periodic_rescan_hints_files_again(make_watcher, rec, inbox):
    clock = FakeClock()
    watcher = make_watcher(clock=clock)
    start_ready(watcher, rec, inbox, rescan=300.0)
    settle_a_moment(watcher, 0.2)
    assert rec.hint_count(inbox / "ready.jpg") == 1
    clock.now += 301
    wait_for(lambda: rec.hint_count(inbox / "ready.jpg") == 2, watcher)


def test_tick_says_when_it_is_next_needed(make_watcher, rec, inbox):
    watcher = make_watcher(poll_interval=0.5)
    assert watcher.tick() == 0.5  # nothing watched: the health-check period
    start_ready(watcher, rec, inbox)
    assert 0.0 <= watcher.tick() <= 0.5


def test_scan_forces_a_rescan(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    watcher.scan("f")
    wait_for(lambda: rec.hint_count(inbox / "ready.jpg") == 2, watcher)
    with pytest.raises(KeyError):
        watcher.scan("nope")


@dataclass(frozen=True)
class ExplodingFilter(InboxFilter):
    """A filter that fails on one name, standing in for any bug met during a scan."""

    def hints(self, rel_path):
        if rel_path == "boom.jpg":
            raise RuntimeError("boom")
        return super().hints(rel_path)


def test_a_failing_scan_is_reported_and_the_next_rescan_still_runs(make_watcher, rec, inbox):
    write(inbox / "boom.jpg")
    clock = FakeClock()
    watcher = make_watcher(clock=clock)
    watcher.set_specs([spec(inbox, flt=ExplodingFilter())])
    wait_for(lambda: rec.kinds().count("scan_failed") == 1, watcher)
    clock.now += 301
    wait_for(lambda: rec.kinds().count("scan_failed") == 2, watcher)


def test_a_failing_event_does_not_kill_the_observer(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox, flt=ExplodingFilter())
    write(inbox / "boom.jpg")
    wait_for(lambda: "hint_failed" in rec.kinds(), watcher)
    path = write(inbox / "fine.jpg")
    wait_for(lambda: rec.hinted(path), watcher)


def test_a_failing_hint_callback_does_not_kill_the_observer(make_watcher, rec, inbox):
    calls = []

    def flaky_hint(folder, path):
        calls.append(path)
        if path.name == "bad.jpg":
            raise RuntimeError("loop closed")
        rec.on_hint(folder, path)

    watcher = Watcher(flaky_hint, rec.on_problem, poll_interval=0.1, check_interval=0.1)
    try:
        start_ready(watcher, rec, inbox)
        write(inbox / "bad.jpg")
        wait_for(lambda: "hint_failed" in rec.kinds(), watcher)
        path = write(inbox / "good.jpg")
        wait_for(lambda: rec.hinted(path), watcher)
    finally:
        watcher.stop()


def test_an_inotify_queue_overflow_starts_a_rescan(make_watcher, rec, inbox):
    watcher = make_watcher()
    start_ready(watcher, rec, inbox)
    # What watchdog logs when the kernel drops events (watchdog.observers.inotify_c).
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    wait_for(lambda: rec.hint_count(inbox / "ready.jpg") == 2, watcher)
    assert "queue_overflow" in rec.kinds()


def test_two_folders_are_watched_side_by_side(make_watcher, rec, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    watcher = make_watcher()
    watcher.set_specs([spec(a, folder="fa"), spec(b, folder="fb", mode="poll")])
    write(a / "x.jpg")
    write(b / "y.jpg")
    wait_for(lambda: rec.hinted(a / "x.jpg", "fa") and rec.hinted(b / "y.jpg", "fb"), watcher)
    assert watcher.modes() == {"fa": "inotify", "fb": "poll"}


def test_stop_ends_every_thread_it_started(rec, inbox):
    before = set(threading.enumerate())
    watcher = Watcher(rec.on_hint, rec.on_problem, poll_interval=0.1, check_interval=0.1)
    start_ready(watcher, rec, inbox)
    watcher.set_specs([spec(inbox), spec(inbox.parent, folder="g", mode="poll")])
    watcher.stop()
    wait_for(lambda: set(threading.enumerate()) <= before, watcher, timeout=3)
    with pytest.raises(RuntimeError):
        watcher.set_specs([])


# ---- an inbox configured through a symlink --------------------------------------------------


@pytest.fixture
def linked(tmp_path):
    """(configured path, real folder): the inbox is configured as a symlink to the folder."""
    real = tmp_path / "real-inbox"
    real.mkdir()
    link = tmp_path / "inbox-link"
    os.symlink(real, link)
    return link, real


@pytest.mark.parametrize("mode", ["auto", "poll"])
def test_a_symlinked_inbox_is_watched_at_its_target(make_watcher, rec, linked, mode):
    """Hints name files under the configured inbox, whichever path the file was made by."""
    link, real = linked
    watcher = make_watcher(check_interval=30.0)  # no health check comes to the rescue
    start_ready(watcher, rec, link, mode=mode)
    write(real / "made-at-target.jpg")
    write(link / "made-through-link.jpg")
    wait_for(
        lambda: (
            rec.hinted(link / "made-at-target.jpg") and rec.hinted(link / "made-through-link.jpg")
        ),
        watcher,
    )
    assert all(path.parent == link for _, path in rec.hints)


def test_a_symlinked_recursive_inbox_hints_new_subfolders_under_the_link(make_watcher, rec, linked):
    link, real = linked
    watcher = make_watcher(check_interval=30.0)
    start_ready(watcher, rec, link, recursive=True)
    (real / "2024").mkdir()
    write(real / "2024" / "a.jpg")
    wait_for(lambda: rec.hinted(link / "2024" / "a.jpg"), watcher)


def test_a_retargeted_inbox_symlink_is_followed(make_watcher, rec, linked, tmp_path):
    link, _ = linked
    other = tmp_path / "other-inbox"
    other.mkdir()
    watcher = make_watcher()
    start_ready(watcher, rec, link)
    tmp_link = tmp_path / "new-link"
    os.symlink(other, tmp_link)
    os.replace(tmp_link, link)
    write(other / "x.jpg")
    wait_for(lambda: rec.hinted(link / "x.jpg"), watcher)
    write(other / "later.jpg")  # watched there, not only found by a scan
    wait_for(lambda: rec.hinted(link / "later.jpg"), watcher)


# ---- idle: nothing periodic costs more than a stat ------------------------------------------


def test_the_mount_table_says_changed_only_after_a_mount_or_unmount(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root and mount(8)")
    point = tmp_path / "point"
    point.mkdir()
    table = MountTable()
    try:
        before = table.generation
        assert table.refresh() is False
        assert table.refresh() is False
        if not _mount_tmpfs(point):
            pytest.skip("mount(8) refused")
        try:
            assert table.refresh() is True
            assert table.lookup(str(point / "inbox")) == (str(point), "tmpfs")
            assert table.refresh() is False
        finally:
            _umount(point)
        assert table.refresh() is True
        assert table.lookup(str(point / "inbox"))[1] != "tmpfs"
        assert table.generation == before + 2
    finally:
        table.close()


class CountingMounts(MountTable):
    """The real mount table, counting how often watchd looks a path up in it."""

    def __init__(self):
        super().__init__()
        self.lookups = 0
        self.changed = False

    def refresh(self):
        if self.changed:  # as if the kernel had said so
            self.changed = False
            self.generation += 1
            return True
        return super().refresh()

    def lookup(self, path):
        self.lookups += 1
        return super().lookup(path)


def test_health_checks_look_the_inbox_up_again_only_after_a_mount_change(rec, inbox):
    clock = FakeClock()
    mounts = CountingMounts()
    watcher = Watcher(rec.on_hint, rec.on_problem, clock=clock, check_interval=10, mounts=mounts)
    try:
        start_ready(watcher, rec, inbox)
        first = mounts.lookups
        for _ in range(30):  # five simulated minutes of health checks
            clock.now += 10
            settle_a_moment(watcher, 0.05)
        assert mounts.lookups == first
        mounts.changed = True
        settle_a_moment(watcher, 0.3)
        assert mounts.lookups == first + 1
    finally:
        watcher.stop()


def test_health_checks_space_out_while_nothing_changes_and_not_after_a_problem(
    rec, inbox, tmp_path
):
    """Each quiet check doubles the wait up to six periods; a problem brings it back."""
    clock = FakeClock()
    checks = []

    class Mounts(MountTable):
        """Each health check that finds the inbox asks which mount table it is looking at."""

        @property
        def generation(self):
            checks.append(clock.now)
            return 1

        @generation.setter
        def generation(self, value):
            pass

    watcher = Watcher(rec.on_hint, rec.on_problem, clock=clock, check_interval=10, mounts=Mounts())
    try:
        start_ready(watcher, rec, inbox)
        checks.clear()
        for _ in range(60):  # ten simulated minutes
            clock.now += 10
            settle_a_moment(watcher, 0.03)
        gaps = [b - a for a, b in itertools.pairwise(sorted(set(checks)))]  # + rescans
        assert gaps == sorted(gaps) and gaps[-5:] == [60] * 5  # was a check every 10 s
        assert len(set(checks)) <= 12
        shutil.rmtree(inbox)
        wait_for(lambda: "inbox_missing" in rec.kinds(), watcher)
        inbox.mkdir()
        checks.clear()
        for _ in range(3):
            clock.now += 10
            settle_a_moment(watcher, 0.05)
        assert len(checks) >= 2  # back at the short period
    finally:
        watcher.stop()
