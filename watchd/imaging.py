"""Pillow transforms around the API call: bytes in, bytes out.

Owns: `fit_for_upload` (EXIF orientation, downscale, re-encode and step down until the API's
limits are met, upscale tiny images; the mask follows), `scale_mask` (nearest-neighbour, so a
binary mask stays binary), `finish_result` (crop to the exact aspect, resize to the target
size, convert to the output format) and small size helpers.

Never does: file or network I/O, logging, ledger access. Callers read and write the bytes;
`watchd.preflight` has already refused anything that is not a complete JPEG/PNG.

Failures before paying are `PreflightError` (fit_impossible, mask_size, mask_bad, bad_format);
a result that cannot be decoded in `finish_result` is a `ValueError`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageOps

from watchd.geometry import finish_box
from watchd.preflight import (
    MAX_SIDE,
    MAX_UPLOAD_BYTES,
    MIN_SIDE,
    UPLOAD_FORMATS,
    PreflightError,
)

RESULT_FORMATS = ("JPEG", "PNG", "WEBP")
OUTPUT_FORMATS = ("keep", "jpeg", "png", "webp")
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}

# JPEG qualities tried, in order, before the dimensions are reduced.
JPEG_QUALITY_STEPS = (90, 85, 80, 75, 70)
# Each dimension step keeps at most 90 % of the side ("~10 % steps"); when far over the byte
# limit the step is estimated from the bytes per pixel so a noisy photo needs one or two
# encodes instead of a dozen.
_SHRINK_STEP = 0.9
_SHRINK_SAFETY = 0.95

# EXIF orientations that swap width and height when applied.
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


@dataclass(frozen=True)
class FitResult:
    """What to upload: the image (and mask) bytes and their size, and whether they changed."""

    data: bytes
    mask: bytes | None
    width: int
    height: int
    format: str  # "JPEG" | "PNG", the input's own format
    changed: bool


def fit_for_upload(
    data: bytes,
    mask: bytes | None = None,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_side: int = MAX_SIDE,
    min_side: int = MIN_SIDE,
) -> FitResult:
    """Bring a JPEG/PNG within the API's limits, changing it as little as possible.

    Applies the EXIF orientation; downscales (Lanczos, aspect kept) so each side is at most
    `max_side`; re-encodes in the same format, stepping JPEG quality down and then the
    dimensions until the file is at most `max_bytes`; upscales so each side is at least
    `min_side`. A mask is drawn over the image as displayed: it must have the displayed size
    (else `mask_size`), is not transposed, and follows every resize (nearest neighbour, PNG).
    With nothing to change the original bytes come back untouched (`changed=False`).
    Raises PreflightError("fit_impossible") where the limits cannot all be met.
    """
    with _decode(data, UPLOAD_FORMATS) as src:
        fmt = _upload_format(src)
        orientation = src.getexif().get(ExifTags.Base.Orientation, 1)
        turned = orientation in range(2, 9)
        img = ImageOps.exif_transpose(src) if turned else src
        size = img.size
        if mask is not None:
            mask_size = image_size(mask, code="mask_bad")
            if mask_size != size:
                raise PreflightError(
                    "mask_size",
                    f"mask is {mask_size[0]}×{mask_size[1]} px, image is "
                    f"{size[0]}×{size[1]} px as displayed",
                )
        target = _fit_dims(size, max_side=max_side, min_side=min_side)
        if not turned and target == size and len(data) <= max_bytes:
            return FitResult(data, mask, size[0], size[1], fmt, changed=False)
        out, final = _encode_within(img, target, fmt, max_bytes=max_bytes, min_side=min_side)
    fitted_mask = mask if mask is None or final == size else scale_mask(mask, final)
    return FitResult(out, fitted_mask, final[0], final[1], fmt, changed=True)


def scale_mask(mask: bytes, size: tuple[int, int]) -> bytes:
    """Resize a mask to `size` with nearest neighbour (no new grey levels appear); PNG out."""
    with _decode(mask, UPLOAD_FORMATS, code="mask_bad", what="mask") as img:
        # Nearest neighbour only copies existing pixels, so a binary mask stays binary.
        return _encode(img.resize(tuple(size), Image.Resampling.NEAREST), "PNG", icc=None)


def finish_result(
    data: bytes,
    *,
    aspect: tuple[int, int] | None,
    size: tuple[int, int] | None,
    output_format: str,
    quality: int,
) -> tuple[bytes, str]:
    """Shape and convert an API result; returns (bytes, extension with its dot).

    With `aspect`, crops evenly to exactly that aspect (`geometry.finish_box`); with `size`,
    resizes (Lanczos) to exactly that size, cropping to its aspect first when no `aspect` is
    given so nothing is stretched. `output_format` "keep" returns the bytes untouched when
    nothing was cropped or resized (else re-encodes in the result's own format); "jpeg"
    flattens alpha onto white; "png" and "webp" convert. `quality` applies to JPEG and WebP.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")
    if size is not None:
        if aspect is None:
            aspect = size
        elif size[0] * aspect[1] != size[1] * aspect[0]:
            raise ValueError(
                f"size {size[0]}×{size[1]} does not have aspect {aspect[0]}:{aspect[1]}"
            )
    try:
        img = Image.open(io.BytesIO(data), formats=RESULT_FORMATS)
        img.load()
    except Exception as exc:  # a result that does not decode cannot be finished
        raise ValueError(f"result is not a decodable JPEG, PNG or WebP image: {exc}") from exc
    with img:
        fmt = _upload_format(img)
        icc = img.info.get("icc_profile")
        shaped: Image.Image = img
        if aspect is not None:
            box = finish_box(img.width, img.height, aspect)
            if box != (0, 0, img.width, img.height):
                shaped = shaped.crop(box)
        if size is not None and shaped.size != tuple(size):
            shaped = _resizable(shaped).resize(tuple(size), Image.Resampling.LANCZOS)
        reshaped = shaped is not img

        if output_format == "keep":
            if not reshaped:
                return data, EXTENSIONS[fmt]
            target_fmt = fmt
        else:
            target_fmt = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[output_format]
        return _encode(shaped, target_fmt, icc=icc, quality=quality), EXTENSIONS[target_fmt]


def image_size(data: bytes, *, code: str = "bad_format") -> tuple[int, int]:
    """The stored (width, height) of a JPEG, PNG or WebP, from its header alone."""
    with _open(data, RESULT_FORMATS, code=code) as img:
        return img.size


def displayed_size(data: bytes) -> tuple[int, int]:
    """(width, height) as a viewer shows it: swapped when the EXIF orientation turns it."""
    with _open(data, RESULT_FORMATS) as img:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        width, height = img.size
        return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def _fit_dims(size: tuple[int, int], *, max_side: int, min_side: int) -> tuple[int, int]:
    """The size after the side limits: long side down to max_side, short side up to min_side."""
    width, height = size
    long_side, short_side = max(width, height), min(width, height)
    if long_side > max_side:
        scale = max_side / long_side
        long_side, short_side = max_side, max(1, round(short_side * scale))
    if short_side < min_side:
        grown = round(long_side * min_side / short_side)
        if grown > max_side:
            raise PreflightError(
                "fit_impossible",
                f"a {width}×{height} image cannot fit {min_side}..{max_side} px per side: "
                f"bringing the short side to {min_side} px makes the long side {grown} px",
            )
        long_side, short_side = grown, min_side
    return (long_side, short_side) if width >= height else (short_side, long_side)


def _encode_within(
    img: Image.Image, size: tuple[int, int], fmt: str, *, max_bytes: int, min_side: int
) -> tuple[bytes, tuple[int, int]]:
    """Encode `img` at `size`, then lower quality and dimensions until it is <= max_bytes."""
    icc = img.info.get("icc_profile")
    qualities = JPEG_QUALITY_STEPS if fmt == "JPEG" else (None,)

    def resized(to: tuple[int, int]) -> Image.Image:
        # Every attempt starts from the full-quality source, never from an earlier attempt.
        return img if to == img.size else _resizable(img).resize(to, Image.Resampling.LANCZOS)

    shaped = resized(size)
    for quality in qualities:
        out = _encode(shaped, fmt, icc=icc, quality=quality, optimize=True)
        if len(out) <= max_bytes:
            return out, size
    while True:
        step = min(_SHRINK_STEP, math.sqrt(max_bytes / len(out)) * _SHRINK_SAFETY)
        size = (max(1, round(size[0] * step)), max(1, round(size[1] * step)))
        if min(size) < min_side:
            raise PreflightError(
                "fit_impossible",
                f"cannot bring the image under {max_bytes:,} bytes without a side under "
                f"{min_side} px",
            )
        out = _encode(resized(size), fmt, icc=icc, quality=qualities[-1], optimize=True)
        if len(out) <= max_bytes:
            return out, size


def _encode(
    img: Image.Image,
    fmt: str,
    *,
    icc: bytes | None,
    quality: int | None = None,
    optimize: bool = False,
) -> bytes:
    """Save `img` as `fmt`, converting the mode where the format needs it; metadata other
    than the colour profile (EXIF with its GPS position, XMP) is not carried over."""
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if fmt == "JPEG":
        img = _flatten_on_white(img) if _has_alpha(img) else img
        if img.mode not in ("L", "RGB", "CMYK"):
            img = img.convert("RGB")
        options["quality"] = quality if quality is not None else 90
        options["optimize"] = optimize
    elif fmt == "PNG":
        if img.mode in ("CMYK", "PA"):  # modes Pillow cannot write as PNG
            img = img.convert("RGB" if img.mode == "CMYK" else "RGBA")
        options["optimize"] = optimize
    elif fmt == "WEBP":
        img = img.convert("RGBA" if _has_alpha(img) else "RGB")
        if quality is not None:
            options["quality"] = quality
    else:
        raise ValueError(f"cannot encode {fmt}")
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _resizable(img: Image.Image) -> Image.Image:
    """A mode Lanczos can resample without losing transparency or falling back to nearest."""
    if img.mode in ("P", "PA", "1") or "transparency" in img.info:
        return img.convert("RGBA" if _has_alpha(img) else ("L" if img.mode == "1" else "RGB"))
    return img


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _flatten_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def _upload_format(img: Image.Image) -> str:
    # A camera's multi-picture JPEG is reported as MPO; it is a plain JPEG file for the API.
    return "JPEG" if img.format == "MPO" else str(img.format)


def _open(
    data: bytes, formats: tuple[str, ...], *, code: str = "bad_format", what: str = "image"
) -> Image.Image:
    """Identify untrusted bytes (header only); any failure is a PreflightError `code`."""
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except Exception as exc:
        raise PreflightError(code, f"{what} is not a {'/'.join(formats)} image") from exc


def _decode(
    data: bytes, formats: tuple[str, ...], *, code: str | None = None, what: str = "image"
) -> Image.Image:
    """Open and fully decode; `code` (default bad_format / truncated) names any failure."""
    img = _open(data, formats, code=code or "bad_format", what=what)
    try:
        img.load()
    except Exception as exc:
        img.close()
        raise PreflightError(code or "truncated", f"{what} data is truncated or corrupt") from exc
    return img
