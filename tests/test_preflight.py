"""Checks before paying: safe reads, decoding by content, and the API's limits."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from watchd.preflight import (
    MAX_UPLOAD_BYTES,
    ImageInfo,
    PreflightError,
    check_mask,
    check_upload_limits,
    inspect_image,
    inspect_mask,
    read_regular_file,
)


def encode(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    img = Image.linear_gradient("L").resize(size).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims `width`×`height` pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def expect(code: str, call, *args, **kwargs) -> PreflightError:
    with pytest.raises(PreflightError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.reason
    return caught.value


# --- read_regular_file ---------------------------------------------------------------------


def test_bytes_are_hashed_exactly_as_read(tmp_path: Path):
    data = encode((100, 80), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    st = path.stat()
    got = read_regular_file(path)
    assert got.data == data
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.size == len(data)
    assert (got.dev, got.ino, got.mtime_ns) == (st.st_dev, st.st_ino, st.st_mtime_ns)


def test_symlink_is_refused_even_to_a_good_image(tmp_path: Path):
    target = tmp_path / "real.png"
    target.write_bytes(encode((100, 80), "PNG"))
    link = tmp_path / "link.png"
    link.symlink_to(target)
    err = expect("symlink", read_regular_file, link)
    assert "link.png" in err.reason


def test_dangling_symlink_is_refused_not_missing(tmp_path: Path):
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "nowhere.png")
    expect("symlink", read_regular_file, link)


def test_fifo_is_refused_without_blocking(tmp_path: Path):
    """No writer ever opens this FIFO: a blocking open or read would hang the test."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    err = expect("not_regular", read_regular_file, fifo)
    assert "FIFO" in err.reason


def test_socket_is_refused(tmp_path: Path):
    path = tmp_path / "s.png"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        err = expect("not_regular", read_regular_file, path)
    assert "socket" in err.reason


def test_directory_is_refused(tmp_path: Path):
    folder = tmp_path / "dir.png"
    folder.mkdir()
    expect("not_regular", read_regular_file, folder)


def test_device_is_refused():
    err = expect("not_regular", read_regular_file, Path("/dev/zero"))
    assert "character device" in err.reason


# Root reads any file whatever its mode: without the two capabilities that allow that, it
# meets permissions like anyone (setpriv drops them from the bounding set for one child).
WITHOUT_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]


def _as_a_plain_user(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0:
        prefix: list[str] = []
    elif shutil.which("setpriv"):
        prefix = [*WITHOUT_DAC, "--"]
    else:
        pytest.skip("root without setpriv(1) reads every file")
    return subprocess.run(
        [*prefix, sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )


def test_unreadable_file_is_refused(tmp_path: Path):
    path = tmp_path / "secret.png"
    path.write_bytes(encode((100, 80), "PNG"))
    path.chmod(0)
    code = (
        "import sys; from pathlib import Path; from watchd.preflight import *\n"
        "try: read_regular_file(Path(sys.argv[1]))\n"
        "except PreflightError as e: print(e.code, e.reason)"
    )
    out = _as_a_plain_user(code, str(path)).stdout
    assert out == "unreadable secret.png cannot be read: permission denied\n"


def test_a_name_that_is_not_utf8_is_named_escaped_in_the_reason(tmp_path: Path):
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.png"))
    os.mkfifo(path)
    err = expect("not_regular", read_regular_file, path)
    assert err.reason == "caf\\xe9.png is not a regular file (a FIFO)"
    err.reason.encode("utf-8")  # storable, loggable, writable as JSON


def test_missing_file_propagates_file_not_found(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "gone.png")


def test_file_over_the_read_cap_is_refused_before_reading(tmp_path: Path):
    path = tmp_path / "big.png"
    path.write_bytes(b"x" * 1001)
    err = expect("too_large", read_regular_file, path, max_bytes=1000)
    assert "1,001" in err.reason
    assert read_regular_file(path, max_bytes=1001).size == 1001


# --- inspect_image -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_complete_images_are_identified_by_content(fmt):
    info = inspect_image(encode((300, 200), fmt))
    assert info == ImageInfo(format=fmt, width=300, height=200, mode="RGB")


def test_a_jpeg_named_png_is_a_jpeg(tmp_path: Path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode((120, 90), "JPEG"))
    assert inspect_image(read_regular_file(path).data).format == "JPEG"


def test_text_named_png_is_bad_format(tmp_path: Path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    expect("bad_format", inspect_image, read_regular_file(path).data)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP"])
def test_other_image_formats_are_bad_format(fmt):
    expect("bad_format", inspect_image, encode((100, 100), fmt))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_fails_the_full_decode(fmt):
    data = encode((300, 200), fmt)
    err = expect("truncated", inspect_image, data[: len(data) * 2 // 3])
    assert "truncated" in err.reason


def _noisy_jpeg(mode: str, progressive: bool) -> bytes:
    """A small JPEG with a photo's entropy, so damage lands in real entropy-coded data."""
    img = Image.merge("RGB", [Image.effect_noise((160, 120), 40 + i) for i in range(3)])
    buf = io.BytesIO()
    img.convert(mode).save(buf, "JPEG", quality=85, progressive=progressive)
    return buf.getvalue()


_JPEGS = {
    (mode, progressive): _noisy_jpeg(mode, progressive)
    for mode in ("RGB", "L", "CMYK")
    for progressive in (False, True)
}


def _full_decode_ok(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as img:
            img.load()
    except Exception:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(sorted(_JPEGS)),
    cut=st.floats(0.05, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 0.9999), st.integers(0, 255)), max_size=4),
)
def test_a_jpeg_is_judged_as_a_full_decode_would_judge_it(kind, cut, flips):
    """inspect_image decodes JPEGs at 1/8 scale (the cost of `watchd plan` and intake). That
    shortcut must never change a verdict: truncated or corrupted anywhere, a JPEG passes
    exactly when a full-size decode of it succeeds."""
    data = bytearray(_JPEGS[kind][: max(2, int(len(_JPEGS[kind]) * cut))])
    for where, value in flips:
        data[int(where * len(data))] = value
    try:
        inspect_image(bytes(data))
        shortcut_ok = True
    except PreflightError:
        shortcut_ok = False
    assert shortcut_ok == _full_decode_ok(bytes(data))


def test_png_claiming_a_huge_size_is_a_bomb():
    """20000×20000 is over twice Pillow's limit: Pillow itself refuses it."""
    expect("bomb", inspect_image, png_claiming(20_000, 20_000))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_png_in_pillows_warning_band_is_a_bomb_too():
    """10000×10000 only makes Pillow warn; it must still be refused, never decoded."""
    err = expect("bomb", inspect_image, png_claiming(10_000, 10_000))
    assert "10000×10000" in err.reason


def test_pixel_limit_can_be_lowered_per_call():
    data = encode((300, 200), "PNG")
    expect("bomb", inspect_image, data, max_pixels=300 * 200 - 1)
    assert inspect_image(data, max_pixels=300 * 200).width == 300


def test_a_bad_mask_is_mask_bad():
    err = expect("mask_bad", inspect_mask, b"GIF89a not really")
    assert err.reason.startswith("mask: ")


# --- limits --------------------------------------------------------------------------------


def info(width: int, height: int) -> ImageInfo:
    return ImageInfo(format="PNG", width=width, height=height, mode="RGB")


def test_limits_accept_the_edges():
    check_upload_limits(info(64, 4096), MAX_UPLOAD_BYTES)
    check_upload_limits(info(4096, 64), 5_000_000)


def test_a_side_over_4096_fails_with_the_numbers():
    err = expect("too_big_dims", check_upload_limits, info(5000, 70), 1000)
    assert err.reason == "image is 5000×70 px; each side must be 64..4096 px"


def test_a_side_under_64_is_too_small():
    err = expect("too_small", check_upload_limits, info(40, 300), 1000)
    assert "40×300" in err.reason


def test_over_5_000_000_bytes_is_too_large():
    err = expect("too_large", check_upload_limits, info(300, 200), 5_000_001)
    assert "5,000,001" in err.reason
    assert "5,000,000" in err.reason


def test_every_broken_limit_is_named():
    err = expect("too_small", check_upload_limits, info(30, 30), 6_000_000)
    assert "30×30" in err.reason
    assert "6,000,000" in err.reason


def test_mask_must_match_the_image_size():
    err = expect("mask_size", check_mask, info(100, 100), info(300, 200))
    assert err.reason == "mask is 100×100 px, image is 300×200 px"
    check_mask(info(300, 200), info(300, 200))


def test_error_carries_code_and_reason():
    err = PreflightError("too_small", "image is 10×10 px")
    assert (err.code, err.reason, str(err)) == ("too_small", "image is 10×10 px", err.reason)
