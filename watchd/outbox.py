"""Files out: results into the outbox, originals into done/ or failed/, error.json.

Owns atomic writes (temporary file in the target folder, fsync, hard link to the final name
so an existing file is never overwritten, fsync of the folder), numbered names, the output
name template, and moving originals. Never deletes an original: a move across filesystems is
a copy made durable first, and the source goes only after that. Never touches the network.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import string
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

TEMPLATE_FIELDS = ("stem", "ext", "name", "folder", "job", "dir")


class TemplateError(ValueError):
    """An output template that is malformed or would leave the outbox."""


def render_name(template: str, **fields: Any) -> str:
    """The relative outbox path for one result; refuses anything that escapes the outbox."""
    try:
        # Plain field names only: `{stem.x}` or `{stem[a]}` would otherwise reach attribute
        # and index lookups and fail with AttributeError or TypeError, not a TemplateError.
        for _, field, _, _ in string.Formatter().parse(template):
            if field is not None and field not in TEMPLATE_FIELDS:
                known = ", ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS)
                raise TemplateError(
                    f"bad output template {template!r}: unknown field {{{field}}} (use {known})"
                )
        values = {k: fields.get(k, "") for k in TEMPLATE_FIELDS}
        rendered = template.format(**values)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        if isinstance(exc, TemplateError):
            raise
        raise TemplateError(f"bad output template {template!r}: {exc}") from None
    parts = [p for p in rendered.replace("\\", "/").split("/") if p not in ("", ".")]
    # Absolute only by the template's own text or by a field that is itself absolute: the "/"
    # an empty `{dir}` leaves in front ("{dir}/{stem}{ext}" for a file at the top of the
    # inbox) is no escape, and a rendered name is always joined under the outbox.
    absolute = template.startswith(("/", "\\", "~")) or any(
        str(v).startswith(("/", "\\")) for v in values.values()
    )
    if not parts or absolute or ".." in parts:
        raise TemplateError(f"output template {template!r} gives {rendered!r}, outside the outbox")
    if any("\0" in p for p in parts):
        raise TemplateError("output name contains a NUL byte")
    return "/".join(parts)


def with_suffix_number(name: str, n: int, sep: str = "_") -> str:
    """'a/b.png', 2 -> 'a/b_2.png' (collisions); extra results use sep '-'."""
    path = PurePosixPath(name)
    return str(path.with_name(f"{path.stem}{sep}{n}{path.suffix}"))


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


def free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or the first `name_N` that does not exist yet."""
    candidate, n = folder / name, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = folder / with_suffix_number(name, n)
    return candidate


def write_new(dest: Path, data: bytes) -> Path:
    """Write `data` durably at `dest`, or at the next free numbered name if `dest` exists.

    Temporary file in the same folder, fsync, then a hard link to the final name (which
    fails instead of overwriting), then the folder is fsynced. Returns the path written.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(dest)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o664)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        target, name, n = dest, dest.name, 1
        while True:
            try:
                os.link(tmp, target)
                break
            except FileExistsError:
                n += 1
                target = dest.parent / with_suffix_number(name, n)
        fsync_dir(dest.parent)
        return target
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _temp_name(dest: Path) -> Path:
    """A hidden `.NAME.RANDOM.part` beside `dest`, NAME cut short: a final name close to the
    255-byte limit must not fail only because its temporary name is longer (32 characters are
    at most 128 bytes of UTF-8)."""
    return dest.parent / f".{dest.name[:32]}.{secrets.token_hex(4)}.part"


def ensure_written(planned: Path, data: bytes, sha256: str) -> Path:
    """Idempotent replay: if `planned` already holds these bytes (a crash after the write),
    keep it; otherwise write anew (never over somebody else's file)."""
    if sha256_file(planned) == sha256:
        return planned
    return write_new(planned, data)


def move_original(src: Path, dest_dir: Path) -> Path:
    """Move an original into done/ or failed/ under a free name; never overwrites or deletes.

    A symlink is moved as a symlink (its target is never touched).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = free_name(dest_dir, src.name)
    try:
        os.rename(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_then_unlink(src, dest)
    fsync_dir(dest_dir)
    with contextlib.suppress(OSError):
        fsync_dir(src.parent)
    return dest


class Changed(Exception):
    """An original whose bytes are no longer the ones its job checked."""


def plan_destination(dest_dir: Path, name: str) -> Path:
    """A free name in `dest_dir` for an original, to record before moving it there."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    return free_name(dest_dir, name)


def move_original_to(src: Path, dest: Path) -> Path:
    """Move `src` to exactly `dest`, never replacing a file there (FileExistsError).

    A hard link then an unlink: the link fails if `dest` exists, and a crash between the two
    leaves both names on one inode, which the replay recognises. Across filesystems, a
    durable copy first and the source after.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest, follow_symlinks=False)
    except FileExistsError:
        if _same_inode(src, dest):
            os.unlink(src)  # a crash between link and unlink
            fsync_dir(dest.parent)
            return dest
        raise
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "destination exists", str(dest)) from None
        _copy_then_unlink(src, dest)
        return dest
    fsync_dir(dest.parent)
    os.unlink(src)
    with contextlib.suppress(OSError):
        fsync_dir(src.parent)
    return dest


def _same_inode(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _copy_then_unlink(src: Path, dest: Path) -> None:
    tmp = _temp_name(dest)
    if src.is_symlink():
        os.symlink(os.readlink(src), tmp)
    else:
        shutil.copy2(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    os.rename(tmp, dest)
    fsync_dir(dest.parent)
    os.unlink(src)


def error_json_path(failed_original: Path) -> Path:
    return failed_original.with_name(failed_original.name + ".error.json")


def write_error_json(failed_dir: Path, original_name: str, info: Mapping[str, Any]) -> Path:
    """Write NAME.error.json for the name the original will have in failed/."""
    failed_dir.mkdir(parents=True, exist_ok=True)
    dest = failed_dir / (original_name + ".error.json")
    data = (json.dumps(dict(info), indent=2, ensure_ascii=False) + "\n").encode()
    tmp = _temp_name(dest)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, dest)  # error.json is ours: replacing an older one of the same job is right
    fsync_dir(failed_dir)
    return dest


def fail_original(src: Path, failed_dir: Path, info: Mapping[str, Any]) -> Path:
    """Move an original into failed/ with its NAME.error.json beside it.

    error.json is written first, for the name the original is about to take: a crash between
    the two leaves the reason in place and the original still in the inbox for the replay.
    """
    dest = free_name(failed_dir, src.name)
    write_error_json(failed_dir, dest.name, info)
    moved = move_original(src, failed_dir)
    if moved != dest:  # the name was taken in between: keep the reason beside the original
        os.replace(error_json_path(dest), error_json_path(moved))
    return moved
