"""Checks before paying: read a dropped file once, safely, and refuse what the API would refuse.

Owns: `read_regular_file` (one read from one descriptor that is proven to be a regular file,
hashed as read, so the bytes checked, hashed and uploaded are the same bytes),
`inspect_image` / `inspect_mask` (format by content, a decode of every coded byte, bombs),
`check_upload_limits` and `check_mask` (the API's documented limits), and `PreflightError`,
whose `code` and `reason` go into the ledger and NAME.error.json.

Never does: network, logging, writing or moving files, following symlinks, opening anything
that is not a regular file in a way that could block (FIFOs, sockets, devices). A reason names
the file with `naming.display`: one that is not UTF-8 reads `caf\\xe9.jpg`, so every reason can
be stored, logged and written as UTF-8.

Error codes (`PreflightError.code`):
    symlink, not_regular, unreadable, too_large      reading the file
    bad_format, truncated, bomb                      decoding the image
    too_small, too_big_dims                          the API's 64..4096 px per side
    mask_size, mask_bad                              the canvas-mode mask
    target_unreachable, fit_impossible               raised by callers of geometry / imaging
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from watchd.naming import display

MAX_UPLOAD_BYTES = 5_000_000  # the API says "5MB"; the decimal reading is the safe side
MIN_SIDE = 64
MAX_SIDE = 4096

# The only decoders Pillow may try on an untrusted file: what the API accepts.
UPLOAD_FORMATS = ("JPEG", "PNG")

_READ_CHUNK = 1 << 20


class PreflightError(Exception):
    """A reason to fail a file before paying for it: a machine `code` and a human `reason`."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"PreflightError({self.code!r}, {self.reason!r})"


@dataclass(frozen=True)
class FileBytes:
    """The whole content of a regular file, read once, with the identity it had when read."""

    data: bytes
    sha256: str
    size: int
    mtime_ns: int
    dev: int
    ino: int


@dataclass(frozen=True)
class ImageInfo:
    """What a complete decode found: the real format (by content) and the pixel size."""

    format: str  # "JPEG" | "PNG"
    width: int
    height: int
    mode: str


def read_regular_file(path: Path, max_bytes: int = 64_000_000) -> FileBytes:
    """Read `path` whole, once, refusing symlinks and anything that is not a regular file.

    Raises PreflightError (symlink, not_regular, unreadable, too_large); FileNotFoundError
    propagates so the caller can tell "gone" from "bad".
    """
    # lstat first so a device, FIFO or socket is refused without ever being opened (opening
    # some devices has side effects); the fstat below closes the race with a swapped path.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        _refuse_non_regular(path, os.lstat(path))
        fd = os.open(path, flags)
    except (FileNotFoundError, PreflightError):
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink swapped in after the lstat
            raise PreflightError("symlink", f"{display(path.name)} is a symbolic link") from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PreflightError(
                "unreadable", f"{display(path.name)} cannot be read: permission denied"
            ) from exc
        if exc.errno == errno.ENXIO:  # a socket swapped in after the lstat
            raise PreflightError(
                "not_regular", f"{display(path.name)} is not a regular file"
            ) from exc
        raise
    try:
        st = os.fstat(fd)
        _refuse_non_regular(path, st)
        if st.st_size > max_bytes:
            raise PreflightError("too_large", _too_large_reason(path, st.st_size, max_bytes))
        data = _read_capped(fd, path, max_bytes)
    finally:
        os.close(fd)
    return FileBytes(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        mtime_ns=st.st_mtime_ns,
        dev=st.st_dev,
        ino=st.st_ino,
    )


def inspect_image(data: bytes, *, max_pixels: int | None = None) -> ImageInfo:
    """Identify `data` by content and decode it completely (every coded byte is read).

    Raises PreflightError: bad_format (not JPEG/PNG, whatever the file is called), truncated
    (the decode stopped short or the data is corrupt), bomb (more pixels than `max_pixels`,
    default Pillow's `Image.MAX_IMAGE_PIXELS`, checked before any pixel is decoded).
    """
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        img = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
    except Image.DecompressionBombError as exc:
        raise PreflightError(
            "bomb", f"image claims too many pixels to decode safely: {exc}"
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # any failure to identify untrusted bytes means "not an image"
        raise PreflightError("bad_format", "not a JPEG or PNG image (checked by content)") from exc
    with img:
        width, height = img.size
        # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that. Turning the warning into
        # an error needs warnings.catch_warnings, which swaps process-wide state and is not
        # thread-safe (decodes run in worker threads), so the same limit is checked here.
        if limit is not None and width * height > limit:
            raise PreflightError(
                "bomb",
                f"image claims {width}×{height} px ({width * height:,} pixels), over the "
                f"{limit:,} pixels that are safe to decode",
            )
        if img.format in ("JPEG", "MPO"):
            # Decode at 1/8 scale: libjpeg still reads every entropy-coded byte, so a
            # truncated or corrupt file fails exactly as a full decode would (a property
            # test holds the two to the same verdicts), at 65-75% of the cost.
            img.draft(None, (1, 1))
        try:
            img.load()
        except Image.DecompressionBombError as exc:
            raise PreflightError("bomb", f"image is too large to decode safely: {exc}") from exc
        except MemoryError:
            raise
        except Exception as exc:  # whatever a decoder throws on bad bytes, it cannot be uploaded
            raise PreflightError("truncated", f"image data is truncated or corrupt: {exc}") from exc
        # A camera's multi-picture JPEG is reported as MPO; it is a plain JPEG file for the API.
        fmt = "JPEG" if img.format == "MPO" else str(img.format)
        return ImageInfo(format=fmt, width=width, height=height, mode=img.mode)


def inspect_mask(data: bytes, *, max_pixels: int | None = None) -> ImageInfo:
    """`inspect_image` for a mask: any failure becomes `mask_bad`, its reason prefixed."""
    try:
        return inspect_image(data, max_pixels=max_pixels)
    except PreflightError as exc:
        raise PreflightError("mask_bad", f"mask: {exc.reason}") from exc


def check_upload_limits(info: ImageInfo, size: int) -> None:
    """Refuse what the API refuses: over 5,000,000 bytes, or a side outside 64..4096 px.

    Every problem is named in the reason; the code is the first one's.
    """
    problems: list[tuple[str, str]] = []
    dims = f"image is {info.width}×{info.height} px; each side must be {MIN_SIDE}..{MAX_SIDE} px"
    if max(info.width, info.height) > MAX_SIDE:
        problems.append(("too_big_dims", dims))
    elif min(info.width, info.height) < MIN_SIDE:
        problems.append(("too_small", dims))
    if size > MAX_UPLOAD_BYTES:
        problems.append(
            ("too_large", f"file is {size:,} bytes; the API accepts at most {MAX_UPLOAD_BYTES:,}")
        )
    if problems:
        raise PreflightError(problems[0][0], "; ".join(reason for _, reason in problems))


def check_mask(mask: ImageInfo, image: ImageInfo) -> None:
    """Canvas mode needs the mask exactly the image's size."""
    if (mask.width, mask.height) != (image.width, image.height):
        raise PreflightError(
            "mask_size",
            f"mask is {mask.width}×{mask.height} px, image is {image.width}×{image.height} px",
        )


def _refuse_non_regular(path: Path, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise PreflightError("symlink", f"{display(path.name)} is a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise PreflightError(
            "not_regular", f"{display(path.name)} is not a regular file ({_kind(st)})"
        )


def _kind(st: os.stat_result) -> str:
    mode = st.st_mode
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "an unknown file type"


def _read_capped(fd: int, path: Path, max_bytes: int) -> bytes:
    """Read to EOF, but never more than `max_bytes`: the file may still be growing."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise PreflightError("too_large", _too_large_reason(path, total, max_bytes, grew=True))


def _too_large_reason(path: Path, size: int, max_bytes: int, *, grew: bool = False) -> str:
    prefix = "grew past" if grew else f"is {size:,} bytes, over"
    return f"{display(path.name)} {prefix} the {max_bytes:,}-byte read limit"
