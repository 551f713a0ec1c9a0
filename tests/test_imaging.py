"""Pillow transforms: fitting uploads to the API's limits, masks, and finishing results."""

from __future__ import annotations

import io
import os

import pytest
from PIL import ExifTags, Image, ImageCms

from watchd.imaging import (
    FitResult,
    displayed_size,
    finish_result,
    fit_for_upload,
    image_size,
    scale_mask,
)
from watchd.preflight import PreflightError, inspect_image


def save(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def gradient(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    return Image.linear_gradient("L").resize(size).convert(mode)


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    bands = len(mode)
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * bands))


def binary_mask(size: tuple[int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4))
    return mask


def opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def expect(code: str, call, *args, **kwargs) -> PreflightError:
    with pytest.raises(PreflightError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.reason
    return caught.value


# --- fit_for_upload ------------------------------------------------------------------------


def test_an_image_within_the_limits_comes_back_untouched():
    data = save(gradient((300, 200)), "PNG")
    mask = save(binary_mask((300, 200)), "PNG")
    fit = fit_for_upload(data, mask)
    assert fit == FitResult(data, mask, 300, 200, "PNG", changed=False)


def test_a_jpeg_over_4096_is_downscaled_keeping_its_aspect():
    data = save(gradient((5000, 3000)), "JPEG", quality=95)
    fit = fit_for_upload(data)
    assert fit.changed
    assert (fit.width, fit.height) == (4096, 2458)  # 3000 * 4096 / 5000 = 2457.6
    assert len(fit.data) <= 5_000_000
    info = inspect_image(fit.data)
    assert (info.format, info.width, info.height) == ("JPEG", 4096, 2458)


def test_a_heavy_jpeg_steps_quality_down_before_touching_its_size():
    data = save(noise((1000, 800)), "JPEG", quality=98)
    decoded = opened(data)
    at_90 = save(decoded, "JPEG", quality=90, optimize=True)
    at_85 = save(decoded, "JPEG", quality=85, optimize=True)
    limit = (len(at_90) + len(at_85)) // 2
    fit = fit_for_upload(data, max_bytes=limit)
    assert (fit.width, fit.height) == (1000, 800)
    assert len(fit.data) <= limit
    assert opened(fit.data).quantization == opened(at_85).quantization


def test_a_3000_by_2000_noise_jpeg_fits_under_5_mb():
    data = save(noise((3200, 2000)), "JPEG", quality=98)
    assert len(data) > 5_000_000
    fit = fit_for_upload(data)
    assert len(fit.data) <= 5_000_000
    assert inspect_image(fit.data).format == "JPEG"


def test_a_byte_limit_the_quality_steps_cannot_meet_shrinks_the_jpeg():
    data = save(noise((800, 600)), "JPEG", quality=90)
    fit = fit_for_upload(data, max_bytes=100_000)
    assert len(fit.data) <= 100_000
    assert fit.width < 800
    assert fit.width / fit.height == pytest.approx(800 / 600, abs=0.01)


def test_an_18_mb_noise_png_is_shrunk_under_5_mb():
    data = save(noise((3000, 2000)), "PNG", compress_level=0)
    assert len(data) > 18_000_000
    fit = fit_for_upload(data)
    assert len(fit.data) <= 5_000_000
    assert fit.format == "PNG"
    assert fit.width < 3000
    assert fit.width / fit.height == pytest.approx(1.5, abs=0.01)
    assert image_size(fit.data) == (fit.width, fit.height)


def test_a_png_keeps_its_alpha_when_fitted():
    img = gradient((5000, 100), "RGBA")
    alpha = Image.new("L", (5000, 100), 0)
    alpha.paste(255, (2500, 0, 5000, 100))
    img.putalpha(alpha)
    fit = fit_for_upload(save(img, "PNG"))
    out = opened(fit.data)
    assert (out.format, out.mode, out.size) == ("PNG", "RGBA", (4096, 82))
    assert out.getchannel("A").getpixel((10, 40)) == 0
    assert out.getchannel("A").getpixel((4085, 40)) == 255


def test_a_palette_png_with_transparency_keeps_it_when_resized():
    img = Image.new("P", (5000, 100), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (2500, 0, 5000, 100))
    fit = fit_for_upload(save(img, "PNG", transparency=0))
    out = opened(fit.data).convert("RGBA")
    assert out.getpixel((10, 50))[3] == 0  # was transparent
    assert out.getpixel((4000, 50)) == (0, 0, 255, 255)


def test_exif_orientation_is_applied_and_not_carried_over():
    # 100×60 stored, left half red and right half blue; orientation 6 = turn 90° clockwise.
    img = Image.new("RGB", (100, 60), (255, 0, 0))
    img.paste((0, 0, 255), (50, 0, 100, 60))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    data = save(img, "JPEG", exif=exif, quality=95)
    assert displayed_size(data) == (60, 100)
    assert image_size(data) == (100, 60)

    fit = fit_for_upload(data)
    assert fit.changed
    assert (fit.width, fit.height) == (64, 107)  # 60×100 as displayed, then up to 64 px
    out = opened(fit.data)
    assert out.size == (64, 107)
    red, _, blue = out.getpixel((32, 10))
    assert red > 200 and blue < 60  # the left edge is now the top
    red, _, blue = out.getpixel((32, 96))
    assert blue > 200 and red < 60
    assert out.getexif().get(ExifTags.Base.Orientation) is None


def test_a_mask_is_drawn_over_the_displayed_image_and_not_turned():
    img = gradient((200, 100))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 8
    data = save(img, "JPEG", exif=exif)
    mask = save(binary_mask((100, 200)), "PNG")
    fit = fit_for_upload(data, mask)
    assert (fit.width, fit.height) == (100, 200)
    assert fit.mask == mask  # same size as displayed: nothing to do

    err = expect("mask_size", fit_for_upload, data, save(binary_mask((200, 100)), "PNG"))
    assert "200×100" in err.reason
    assert "100×200" in err.reason


def test_the_mask_follows_the_downscale_and_stays_binary():
    data = save(gradient((5000, 3000)), "JPEG")
    mask = save(binary_mask((5000, 3000)), "PNG")
    fit = fit_for_upload(data, mask)
    assert fit.mask is not None
    out = opened(fit.mask)
    assert out.format == "PNG"
    assert out.size == (fit.width, fit.height) == (4096, 2458)
    assert {value for _, value in out.getcolors()} == {0, 255}


def test_a_tiny_image_is_upscaled_to_64_px():
    data = save(gradient((40, 300)), "PNG")
    mask = save(binary_mask((40, 300)), "PNG")
    fit = fit_for_upload(data, mask)
    assert (fit.width, fit.height) == (64, 480)
    assert image_size(fit.data) == (64, 480)
    assert image_size(fit.mask) == (64, 480)


@pytest.mark.parametrize(
    ("size", "numbers"),
    [((30, 3000), ["30×3000", "6400"]), ((8000, 100), ["8000×100", "64", "4096"])],
)
def test_an_image_too_thin_for_both_limits_cannot_be_fitted(size, numbers):
    err = expect("fit_impossible", fit_for_upload, save(gradient(size), "PNG"))
    for number in numbers:
        assert number in err.reason


def test_fit_keeps_the_colour_profile():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = save(gradient((5000, 200)), "JPEG", icc_profile=icc)
    assert opened(fit_for_upload(data).data).info.get("icc_profile") == icc


def test_fit_refuses_what_is_not_a_jpeg_or_png():
    expect("bad_format", fit_for_upload, b"plain text")
    expect("bad_format", fit_for_upload, save(gradient((100, 100)), "GIF"))


# --- scale_mask ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_scale_mask_resizes_with_nearest_neighbour_to_png(fmt):
    source = binary_mask((300, 200))
    scaled = opened(scale_mask(save(source, fmt), (451, 123)))
    assert scaled.format == "PNG"
    assert scaled.size == (451, 123)
    source_values = {value for _, value in opened(save(source, fmt)).getcolors()}
    assert {value for _, value in scaled.getcolors()} <= source_values


def test_scale_mask_refuses_a_bad_mask():
    expect("mask_bad", scale_mask, b"nope", (10, 10))


# --- finish_result -------------------------------------------------------------------------


def test_finish_crops_the_rounding_pixels_to_the_exact_aspect():
    data = save(gradient((331, 330)), "PNG")
    out, ext = finish_result(data, aspect=(1, 1), size=None, output_format="keep", quality=90)
    assert ext == ".png"
    assert opened(out).size == (330, 330)


def test_finish_crops_then_resizes_to_exactly_the_size():
    data = save(gradient((1322, 441)), "JPEG")
    out, ext = finish_result(
        data, aspect=(3, 1), size=(3000, 1000), output_format="keep", quality=90
    )
    img = opened(out)
    assert (img.format, img.size, ext) == ("JPEG", (3000, 1000), ".jpg")


def test_finish_size_alone_does_not_stretch():
    data = save(gradient((500, 300)), "PNG")
    out, _ = finish_result(data, aspect=None, size=(200, 200), output_format="keep", quality=90)
    assert opened(out).size == (200, 200)


def test_finish_refuses_a_size_that_disagrees_with_the_aspect():
    data = save(gradient((500, 300)), "PNG")
    with pytest.raises(ValueError, match="aspect"):
        finish_result(data, aspect=(1, 1), size=(300, 200), output_format="keep", quality=90)


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", ".png"), ("JPEG", ".jpg")])
def test_keep_returns_the_bytes_untouched_when_nothing_changes(fmt, ext):
    data = save(gradient((330, 330)), fmt)
    assert finish_result(data, aspect=(1, 1), size=None, output_format="keep", quality=50) == (
        data,
        ext,
    )
    assert finish_result(data, aspect=None, size=None, output_format="keep", quality=50) == (
        data,
        ext,
    )


def test_jpeg_output_flattens_alpha_onto_white():
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    img.paste((200, 0, 0, 255), (50, 0, 100, 100))
    out, ext = finish_result(
        save(img, "PNG"), aspect=None, size=None, output_format="jpeg", quality=95
    )
    result = opened(out)
    assert (ext, result.format, result.mode) == (".jpg", "JPEG", "RGB")
    assert all(channel > 245 for channel in result.getpixel((10, 50)))
    red, green, _ = result.getpixel((90, 50))
    assert red > 180 and green < 30


def test_webp_output_honours_quality():
    data = save(noise((300, 300)), "PNG")
    low, ext = finish_result(data, aspect=None, size=None, output_format="webp", quality=20)
    high, _ = finish_result(data, aspect=None, size=None, output_format="webp", quality=95)
    assert ext == ".webp"
    assert opened(low).format == "WEBP"
    assert len(low) < len(high)


def test_webp_output_keeps_alpha():
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    out, _ = finish_result(
        save(img, "PNG"), aspect=None, size=None, output_format="webp", quality=90
    )
    assert opened(out).mode == "RGBA"


def test_png_output_from_a_jpeg_result():
    out, ext = finish_result(
        save(gradient((200, 100)), "JPEG"), aspect=(2, 1), size=None, output_format="png", quality=1
    )
    assert ext == ".png"
    assert opened(out).format == "PNG"


def test_finish_refuses_an_undecodable_result():
    with pytest.raises(ValueError, match="decodable"):
        finish_result(b"<html>", aspect=None, size=None, output_format="keep", quality=90)
