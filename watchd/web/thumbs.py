"""Images for the pages: thumbnails and full files of paths the ledger holds, nothing else.

A request names a job and a role (the original, its mask, result N), never a path: the path
comes from the job's row, and is served only if, once opened, it is a regular file inside one
of the configured folders' inbox, outbox, done or failed trees (checked on the open file
descriptor, so a symlink swapped in after the check does not lead out). Thumbnails are made
lazily with Pillow in sizes from a fixed list, cached under `state_dir/thumbnails` by the
file's identity (path, size, mtime) and kept under a byte cap by deleting the least recently
used. Never writes outside that cache, never decodes more pixels than Pillow's bomb limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

SIZES = {"s": 160, "m": 480, "l": 1200}  # longest side, pixels
MAX_FILE = 128 * 1024 * 1024  # never serve or decode a file larger than this
MAX_DECODE = 40_000_000  # pixels decoded for a thumbnail (JPEG decodes at a fraction first)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class NotServed(Exception):
    """The file cannot be shown; `str()` says why in words fit for the page."""


@dataclass(frozen=True)
class Picture:
    data: bytes
    media_type: str


def allowed_roots(folders: Iterable[object]) -> list[str]:
    """The resolved inbox, outbox, done and failed trees of the configured folders."""
    roots = []
    for folder in folders:
        for attr in ("inbox", "outbox", "done", "failed"):
            value = getattr(folder, attr, None)
            if value:
                roots.append(os.path.realpath(value))
    return roots


def _inside(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def open_served(path: str, roots: list[str]) -> tuple[int, os.stat_result]:
    """An fd of `path` if it is a regular file inside `roots`; the caller closes it."""
    if not path or "\0" in path:
        raise NotServed("no file recorded")
    try:
        fd = os.open(os.path.realpath(path), _READ_FLAGS)
    except FileNotFoundError:
        raise NotServed("the file is no longer there") from None
    except OSError as exc:
        raise NotServed(f"the file cannot be read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        where = os.readlink(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else path
        if not _inside(os.path.realpath(where), roots):
            raise NotServed("the file is outside the configured folders")
        if not stat.S_ISREG(st.st_mode):
            raise NotServed("not a regular file")
        if st.st_size > MAX_FILE:
            raise NotServed("the file is too large to show")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_file(path: str, roots: list[str]) -> Picture:
    """The whole file, with a media type from its content (never from its name)."""
    fd, _ = open_served(path, roots)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_FILE + 1)
    kind = _media_type(data)
    if kind is None:
        raise NotServed("not an image")
    return Picture(data, kind)


def _media_type(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class Thumbnails:
    """Lazily made thumbnails in `cache_dir`, at most `cap_bytes` of them."""

    def __init__(self, cache_dir: Path, cap_bytes: int) -> None:
        self.dir = cache_dir
        self.cap = cap_bytes
        self._lock = threading.Lock()
        self._size: int | None = None  # bytes in the cache, counted on first use

    def get(self, path: str, size: str, roots: list[str]) -> Picture:
        """A JPEG (or PNG with transparency) of `path` no larger than SIZES[size]."""
        box = SIZES[size]
        fd, st = open_served(path, roots)
        with os.fdopen(fd, "rb") as fh:
            key = hashlib.sha256(
                f"{os.path.realpath(path)}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}"
                f"\0{st.st_mtime_ns}\0{box}".encode("utf-8", "surrogateescape")
            ).hexdigest()
            for ext, kind in ((".jpg", "image/jpeg"), (".png", "image/png")):
                cached = self.dir / key[:2] / (key + ext)
                with contextlib.suppress(OSError):
                    data = cached.read_bytes()
                    os.utime(cached)  # recently used: evicted last
                    return Picture(data, kind)
            data, kind = _thumbnail(fh, box)
        self._store(key, data, ".png" if kind == "image/png" else ".jpg")
        return Picture(data, kind)

    def _store(self, key: str, data: bytes, ext: str) -> None:
        target = self.dir / key[:2] / (key + ext)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{key}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError:
            return  # a cache that cannot be written only costs time
        with self._lock:
            if self._size is None:
                self._size = sum(size for _, size, _ in self._entries())
            else:
                self._size += len(data)
            if self._size > self.cap:
                self._evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        found = []
        for sub in self.dir.glob("??"):
            for entry in sub.iterdir():
                with contextlib.suppress(OSError):
                    st = entry.stat()
                    found.append((st.st_mtime, st.st_size, entry))
        return found

    def _evict(self) -> None:
        """Delete the least recently used until the cache is at 80% of its cap."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for _, size, entry in entries:
            if total <= self.cap * 0.8:
                break
            with contextlib.suppress(OSError):
                entry.unlink()
                total -= size
        self._size = total


def _thumbnail(fh: io.BufferedReader, box: int) -> tuple[bytes, str]:
    try:
        with Image.open(fh) as img:
            img.draft("RGB", (box * 2, box * 2))  # JPEG: decode at a fraction of the size
            if img.width * img.height > MAX_DECODE:  # a 100-MP PNG would cost 300 MB here
                raise NotServed(f"too large to preview ({img.width}×{img.height})")
            small = ImageOps.exif_transpose(img)
            small.thumbnail((box, box), Image.Resampling.LANCZOS)
            alpha = small.mode in ("RGBA", "LA", "PA") or "transparency" in small.info
            out = io.BytesIO()
            if alpha:
                small.convert("RGBA").save(out, "PNG", optimize=True)
                return out.getvalue(), "image/png"
            small.convert("RGB").save(out, "JPEG", quality=82, optimize=True)
            return out.getvalue(), "image/jpeg"
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise NotServed(f"not an image Pillow can read ({type(exc).__name__})") from None
