"""Looking at uploaded images and drawing the simulated "expanded" result.

Owns: format sniffing by content, the completeness check of an upload, the expanded size,
and the result picture (original pasted on a larger gradient canvas, or the canvas-mode
mask filled). Must never: do network I/O, read clocks, or pick random numbers (the jitter
comes in as an argument).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

__all__ = ["ImageInfo", "expanded_size", "inspect_image", "render_result", "sniff_format"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"  # the IEND chunk type and its fixed CRC
# Bigger pictures are not decoded just to say whether they are complete (they are rejected
# for their size anyway, and decoding them could take gigabytes).
_MAX_DECODE_PIXELS = 50_000_000


@dataclass(frozen=True)
class ImageInfo:
    """What the simulator could tell about an uploaded file."""

    format: str | None  # "PNG", "JPEG", or None when neither by content
    width: int | None
    height: int | None
    complete: bool  # decoded to the end without error


def sniff_format(data: bytes) -> str | None:
    """ "PNG" or "JPEG" by magic bytes, else None (names and Content-Type are not trusted)."""
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    return None


def inspect_image(data: bytes) -> ImageInfo:
    """Format, size and completeness of `data`; never raises."""
    fmt = sniff_format(data)
    if fmt is None:
        return ImageInfo(None, None, None, False)
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            width, height = im.size
    except Exception:  # any decoder error means "not an image we can use"
        return ImageInfo(fmt, None, None, False)
    if width * height > _MAX_DECODE_PIXELS:
        return ImageInfo(fmt, width, height, False)
    return ImageInfo(fmt, width, height, _decodes_fully(data, fmt))


def _decodes_fully(data: bytes, fmt: str) -> bool:
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            im.load()
        if fmt == "PNG":
            # load() forgives a PNG cut after its pixel data; verify() and IEND do not.
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                im.verify()
            return _PNG_IEND in data[-64:]
    except Exception:  # truncated or corrupt: the only question asked here is "complete?"
        return False
    return True


def expanded_size(
    width: int, height: int, top: float, bottom: float, left: float, right: float
) -> tuple[int, int]:
    """The four-side mode result size before jitter."""
    return round(width * (1 + left + right)), round(height * (1 + top + bottom))


def render_result(
    image: bytes,
    mask: bytes | None,
    sides: tuple[float, float, float, float],
    jitter: tuple[int, int] = (0, 0),
) -> bytes:
    """The result file, in the input's format.

    Four-side mode (`mask` None): the original pasted at (left*w, top*h) on a canvas grown
    by `sides` = (top, bottom, left, right), the new area a gradient of the image's mean
    colour. Canvas mode: same size, the mask's white area painted over. Then the size is
    nudged by `jitter` pixels, as real models are a few pixels off.
    """
    fmt = sniff_format(image) or "PNG"
    with Image.open(io.BytesIO(image), formats=[fmt]) as opened:
        keeps_alpha = fmt == "PNG" and ("A" in opened.getbands() or "transparency" in opened.info)
        src = opened.convert("RGBA" if keeps_alpha else "RGB")
    mode = src.mode
    width, height = src.size
    if mask is not None:
        with Image.open(io.BytesIO(mask)) as opened_mask:
            area = opened_mask.convert("L").point(lambda v: 255 if v >= 128 else 0)
        out = Image.composite(_backdrop(src, src.size), src, area)
    else:
        top, bottom, left, right = sides
        out = _backdrop(src, expanded_size(width, height, top, bottom, left, right))
        out.paste(src, (round(left * width), round(top * height)))
    dx, dy = jitter
    if dx or dy:
        out = out.resize((max(1, out.width + dx), max(1, out.height + dy)))
    buf = io.BytesIO()
    if fmt == "JPEG":
        out.convert("RGB").save(buf, "JPEG", quality=90)
    else:
        # Speed over size: results are thrown away after the test or demo.
        out.convert(mode).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _backdrop(src: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A top-to-bottom gradient from the image's mean colour to a lighter tint of it."""
    mean = src.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(mean, tuple)
    dark = tuple(mean[:3]) + ((255,) if src.mode == "RGBA" else ())
    light = tuple((c + 255) // 2 for c in mean[:3]) + ((255,) if src.mode == "RGBA" else ())
    shade = Image.linear_gradient("L").resize(size)
    return Image.composite(Image.new(src.mode, size, light), Image.new(src.mode, size, dark), shade)
