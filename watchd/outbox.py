"""Files out: results into the outbox, originals into done/ or failed/, error.json.

Owns atomic writes, moving originals, and the one rule under both: **nothing watchd writes or
moves ever replaces an existing file.** Every file reaches its final name through
`rename_noreplace`: `renameat2(RENAME_NOREPLACE)`, or where the filesystem refuses that flag
(NFS, some FUSE) a hard link then unlink, or where it has no hard links either, an
exclusive create of the name then a rename onto that placeholder. A name that turns out to be
taken is an error (`FileExistsError`), and the callers that may choose a name take the next
numbered one. The one exception is NAME.error.json, see `write_error_json`.

A write goes through a temporary file in the target folder (`naming.temp_name()`), fsynced
before it takes its name; the folder is fsynced after. A move across filesystems is a copy
made durable first; the source goes only after that. A crash can leave temporary files;
`sweep_temporaries` removes them, and only them, at start.

For crash-safe moves the engine records the destination first (`plan_destination`), then
calls `move_original_to`, which is idempotent: run again after a crash at any instant, it
finds its own work instead of moving a second time.

Never deletes an original, never touches the network. Name rules live in naming.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from watchd import naming
from watchd.naming import TEMPLATE_FIELDS, TemplateError, render_name

__all__ = [
    "TEMPLATE_FIELDS",
    "TemplateError",
    "ensure_written",
    "error_json_path",
    "fail_original",
    "fail_original_to",
    "free_name",
    "fsync_dir",
    "move_original",
    "move_original_to",
    "plan_destination",
    "rename_noreplace",
    "render_name",
    "sha256_file",
    "sweep_temporaries",
    "with_suffix_number",
    "write_error_json",
    "write_new",
]

MAX_NUMBER = 100_000  # numbered names tried before giving up: a folder that full is a problem

# errnos by which a filesystem refuses a rename flag (not the rename): try the next way.
_FLAG_REFUSED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})
# errnos by which a filesystem refuses hard links (vfat, some SMB and FUSE mounts).
_NO_LINKS = frozenset({errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK})


# -- the no-replace primitive ----------------------------------------------------------

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _load_renameat2() -> Callable[..., int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28, musl >= 1.2.4
    except (AttributeError, OSError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_LIBC_RENAMEAT2 = _load_renameat2()


def renameat2_noreplace(src: bytes, dest: bytes) -> None:
    """`renameat2(src, dest, RENAME_NOREPLACE)`; raises OSError (ENOSYS without it in libc)."""
    if _LIBC_RENAMEAT2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if _LIBC_RENAMEAT2(_AT_FDCWD, src, _AT_FDCWD, dest, _RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), os.fsdecode(src), None, os.fsdecode(dest))


def _link_nofollow(src: bytes, dest: bytes) -> None:
    os.link(src, dest, follow_symlinks=False)  # a symlink is linked as itself, never its target


def rename_noreplace(
    src: Path,
    dest: Path,
    *,
    renameat2: Callable[[bytes, bytes], None] = renameat2_noreplace,
    link: Callable[[bytes, bytes], None] = _link_nofollow,
) -> None:
    """Rename `src` to `dest` on one filesystem; `FileExistsError` if `dest` exists.

    Never replaces `dest`, whatever the filesystem supports: renameat2 with
    RENAME_NOREPLACE; if the filesystem refuses the flag, link + unlink; if it has no hard
    links either, an exclusive create of `dest` and a rename onto that placeholder (the name
    is ours from the create on). Raises OSError(EXDEV) across filesystems. `renameat2` and
    `link` are the syscalls, passed in so a test can play a filesystem that refuses them.
    """
    s, d = os.fsencode(src), os.fsencode(dest)
    try:
        renameat2(s, d)
        return
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "already exists", str(dest)) from None
        if exc.errno not in _FLAG_REFUSED:
            raise
    try:
        link(s, d)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "already exists", str(dest)) from None
        if exc.errno not in _NO_LINKS:
            raise
        fd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        try:
            os.rename(s, d)  # onto the placeholder created just above: nobody else's file
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(d)
            raise
        return
    os.unlink(s)


# -- names -----------------------------------------------------------------------------


def with_suffix_number(name: str, n: int, sep: str = "_") -> str:
    """'a/b.png', 2 -> 'a/b_2.png' (collisions); extra results use sep '-'. Always fits."""
    return naming.numbered(name, n, sep)


def _candidates(name: str) -> Iterator[str]:
    """`name` (made to fit), then `name_2`, `name_3`, ... up to MAX_NUMBER."""
    yield naming.fit_path(name)
    for n in range(2, MAX_NUMBER + 1):
        yield naming.fit_path(naming.numbered(name, n))


def free_name(folder: Path, name: str, *, report: bool = False) -> Path:
    """`folder/name`, or the first `name_N` that does not exist yet; every one fits in 255
    bytes. With `report`, a name whose NAME.error.json exists is taken too (failed/).

    Only a plan: the name may be taken before it is used, which is why every write and move
    below is no-replace.
    """
    for candidate in _candidates(name):
        path = folder / candidate
        if os.path.lexists(path):
            continue
        if report and os.path.lexists(error_json_path(path)):
            continue
        return path
    raise FileExistsError(errno.EEXIST, f"no free name like {name!r}", str(folder))


def plan_destination(dest_dir: Path, name: str, *, report: bool = False) -> Path:
    """Where an original called `name` should go in done/ or failed/ (with `report=True` for
    failed/, so no leftover NAME.error.json of another file is ever replaced). Record it in
    the ledger, then call `move_original_to` (or `fail_original_to`) with it."""
    return free_name(dest_dir, name, report=report)


def error_json_path(failed_original: Path) -> Path:
    """The report beside an original in failed/: `NAME.error.json`, shortened to fit."""
    return failed_original.with_name(naming.error_json_name(failed_original.name))


# -- durable writes --------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def _temp_path(folder: Path) -> Path:
    return folder / naming.temp_name()


def _write_temp(folder: Path, data: bytes) -> Path:
    tmp = _temp_path(folder)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o664)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def write_new(dest: Path, data: bytes) -> Path:
    """Write `data` durably at `dest`, or at the next free numbered name if `dest` exists.

    Temporary file in the same folder, fsync, then `rename_noreplace` to the final name
    (which fails instead of overwriting), then the folder is fsynced. Returns the path written.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(dest.parent, data)
    try:
        for candidate in _candidates(dest.name):
            target = dest.parent / candidate
            try:
                rename_noreplace(tmp, target)
            except FileExistsError:
                continue
            fsync_dir(dest.parent)
            return target
        raise FileExistsError(errno.EEXIST, "no free numbered name", str(dest))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def ensure_written(planned: Path, data: bytes, sha256: str) -> Path:
    """Idempotent replay: if `planned` already holds these bytes (a crash after the write),
    keep it; otherwise write anew (never over somebody else's file)."""
    if sha256_file(planned) == sha256:
        return planned
    return write_new(planned, data)


def sweep_temporaries(folder: Path, older_than_s: float, now: float) -> list[Path]:
    """Remove watchd's own temporary files (`naming.is_temp_name`) under `folder`, at any
    depth, last changed at least `older_than_s` seconds before `now` (wall-clock seconds,
    as file times are). Never follows a symlink to a folder, never touches any other name.
    Returns what was removed; a missing or unreadable folder removes nothing."""
    removed: list[Path] = []
    cutoff = now - older_than_s
    for top, dirs, files in os.walk(folder, followlinks=False):
        # A temporary copy of a symlink original that points to a folder is listed in `dirs`.
        names = files + [d for d in dirs if naming.is_temp_name(d)]
        for name in names:
            if not naming.is_temp_name(name):
                continue
            path = Path(top, name)
            try:
                st = os.lstat(path)
                if stat.S_ISDIR(st.st_mode) or st.st_mtime > cutoff:
                    continue
                os.unlink(path)
            except OSError:
                continue
            removed.append(path)
    return removed


# -- moving originals ------------------------------------------------------------------


def move_original(src: Path, dest_dir: Path, *, report: bool = False) -> Path:
    """Move an original into done/ or failed/ under a free name; never overwrites or deletes.

    A name taken between the check and the move is skipped for the next numbered one. A
    symlink is moved as a symlink (its target is never touched). Returns where it went.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    for candidate in _candidates(src.name):
        dest = dest_dir / candidate
        if os.path.lexists(dest) or (report and os.path.lexists(error_json_path(dest))):
            continue
        try:
            _move(src, dest)
        except FileExistsError:
            continue
        return dest
    raise FileExistsError(errno.EEXIST, "no free numbered name", str(dest_dir / src.name))


def move_original_to(src: Path, dest: Path, *, sha256: str | None = None) -> bool:
    """Move `src` to exactly `dest` (planned and recorded beforehand); never replaces.

    Idempotent, for the replay after a crash. Returns True if it moved `src` now, False if
    an earlier call already had: `src` is gone and `dest` exists (holding `sha256`, when
    given; without it, the recorded plan is trusted), or both exist as one file (a crash
    between link and unlink) or as the same bytes (a crash between a cross-filesystem copy
    and the unlink): then `src` is unlinked.

    Raises FileExistsError when `dest` is somebody else's (plan again), FileNotFoundError
    when `src` is gone and `dest` is not it, OSError for the rest (the caller retries).
    """
    if not os.path.lexists(src):
        if os.path.lexists(dest) and (sha256 is None or sha256_file(dest) == sha256):
            return False
        raise FileNotFoundError(errno.ENOENT, "the original is gone", str(src))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dest):
        if not _same_content(src, dest):
            raise FileExistsError(errno.EEXIST, "the planned destination is taken", str(dest))
        os.unlink(src)
        with contextlib.suppress(OSError):
            fsync_dir(src.parent)
        return False
    _move(src, dest)
    return True


def _same_content(a: Path, b: Path) -> bool:
    """One file under two names, or two files with the same bytes (or same link target)."""
    sa, sb = os.lstat(a), os.lstat(b)
    if os.path.samestat(sa, sb):
        return True
    if stat.S_ISLNK(sa.st_mode) and stat.S_ISLNK(sb.st_mode):
        return os.readlink(a) == os.readlink(b)
    if stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode) and sa.st_size == sb.st_size:
        return sha256_file(a) == sha256_file(b) is not None
    return False


def _move(src: Path, dest: Path) -> None:
    """`src` to `dest`, no-replace, made durable; a copy first across filesystems."""
    try:
        rename_noreplace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_then_unlink(src, dest)
    fsync_dir(dest.parent)
    with contextlib.suppress(OSError):
        fsync_dir(src.parent)


class Changed(Exception):
    """An original whose bytes are no longer the ones its job checked."""


def _copy_then_unlink(src: Path, dest: Path) -> None:
    """Across filesystems: a durable copy under a temporary name, no-replace to `dest`, and
    only then the source goes. Only regular files and symlinks can be copied: a FIFO or a
    device would block or never end, so it stays where it is (OSError EXDEV)."""
    tmp = _temp_path(dest.parent)
    try:
        st = os.lstat(src)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), tmp)
        elif stat.S_ISREG(st.st_mode):
            _copy_regular(src, tmp)
        else:
            raise OSError(
                errno.EXDEV, "not a regular file: cannot be copied to another filesystem", str(src)
            )
        rename_noreplace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(dest.parent)
    os.unlink(src)


def _copy_regular(src: Path, tmp: Path) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd_in = os.open(src, flags)
    try:
        st = os.fstat(fd_in)
        if not stat.S_ISREG(st.st_mode):  # swapped after the lstat
            raise OSError(errno.EXDEV, "not a regular file", str(src))
        fd_out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd_out, "wb") as out, os.fdopen(os.dup(fd_in), "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fchmod(out.fileno(), stat.S_IMODE(st.st_mode))
            os.utime(out.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
            os.fsync(out.fileno())
    finally:
        os.close(fd_in)


# -- failed/ and its reports -----------------------------------------------------------


def write_error_json(failed_dir: Path, original_name: str, info: Mapping[str, Any]) -> Path:
    """Write the report for the original now called `original_name` in `failed_dir`.

    The one write that may replace: NAME.error.json is the report of the file at NAME. It is
    written after the original reached NAME, which the no-replace move proves was free, and
    `plan_destination(..., report=True)` / `fail_original` pick only names whose report name
    was free too. So what it can replace is its own earlier report (a replay) or one left by
    a race with another writer of reports for NAME, never a stranger's file. Text that is
    not UTF-8 (a surrogate-escaped name in a reason) is written as `\\xNN`.
    """
    failed_dir.mkdir(parents=True, exist_ok=True)
    dest = failed_dir / naming.error_json_name(original_name)
    text = json.dumps(naming.displayable(dict(info)), indent=2, ensure_ascii=False) + "\n"
    tmp = _write_temp(failed_dir, text.encode("utf-8"))
    try:
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(failed_dir)
    return dest


def fail_original(src: Path, failed_dir: Path, info: Mapping[str, Any]) -> Path:
    """Move an original into failed/, then write its NAME.error.json beside it.

    The move comes first because it decides NAME (no-replace: it may end up numbered). A
    crash between the two leaves the original in failed/ without its report; the engine's
    replay (`fail_original_to` with the recorded destination) writes it.
    """
    moved = move_original(src, failed_dir, report=True)
    write_error_json(failed_dir, moved.name, info)
    return moved


def fail_original_to(
    src: Path, dest: Path, info: Mapping[str, Any], *, sha256: str | None = None
) -> bool:
    """`move_original_to` then the report beside `dest`; idempotent like it. True if the
    original moved now, False if it already had (the report is written either way)."""
    moved = move_original_to(src, dest, sha256=sha256)
    write_error_json(dest.parent, dest.name, info)
    return moved
