"""`watchd.intake`: from a real file on disk to a job's fields, and back to the bytes to send.

In process, no daemon: real files in tmp_path, the clock passed in as `now`.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from watchd.config import Expand, FolderConfig, Target
from watchd.intake import (
    ChangedOnDisk,
    NeedsMask,
    Prepared,
    Rejected,
    prepare,
    settings_of,
    upload_payload,
)

NOW = 1_000_000.0


def png(size: tuple[int, int], seed: int = 0, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    img = Image.new(mode, size, (seed * 40 % 256, 90, 160) if mode == "RGB" else 0)
    if mode == "L":
        img.paste(255, (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    else:
        img.putpixel((seed % size[0], 0), (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def write(path: Path, data: bytes, age: float = 10.0) -> Path:
    """A file last changed `age` seconds before NOW."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (NOW - age, NOW - age))
    return path


def folder(tmp_path: Path, **kw: Any) -> FolderConfig:
    return FolderConfig(
        name="f", inbox=tmp_path / "inbox", outbox=tmp_path / "outbox", settle=1.0, **kw
    )


def prepared(outcome: object) -> dict[str, Any]:
    assert isinstance(outcome, Prepared), outcome
    return outcome.fields


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


# -- target --------------------------------------------------------------------------------


def test_square_target_sends_the_short_dimension_the_rest_evenly(tmp_path: Path) -> None:
    f = folder(tmp_path, target=Target(aspect=(1, 1), margin=0.05))
    fields = prepared(prepare(f, write(tmp_path / "inbox/a.png", png((300, 180))), now=NOW))
    p = fields["params"]
    assert p["left"] == p["right"] == 0.05
    assert p["top"] == p["bottom"] == pytest.approx(0.416667, abs=1e-6)
    assert fields["post"]["aspect"] == [1, 1] and fields["post"]["size"] is None


def test_anchor_bottom_puts_all_the_rest_on_top(tmp_path: Path) -> None:
    f = folder(tmp_path, target=Target(aspect=(1, 1), anchor="bottom"))
    p = prepared(prepare(f, write(tmp_path / "inbox/a.png", png((300, 180))), now=NOW))["params"]
    assert p["bottom"] == 0.05 and p["top"] == pytest.approx(0.783333, abs=1e-6)


def test_target_size_is_kept_for_the_finishing_resize(tmp_path: Path) -> None:
    f = folder(tmp_path, target=Target(size=(512, 256)), output_format="jpeg")
    fields = prepared(prepare(f, write(tmp_path / "inbox/b.png", png((300, 200))), now=NOW))
    assert fields["params"]["left"] == pytest.approx(0.233333, abs=1e-6)
    assert fields["params"]["top"] == 0.05
    assert fields["post"]["size"] == [512, 256] and fields["post"]["aspect"] == [2, 1]
    assert fields["post"]["output_format"] == "jpeg"


def test_unreachable_target_is_rejected_with_the_ratio_it_would_need(tmp_path: Path) -> None:
    f = folder(tmp_path, target=Target(aspect=(1, 1)))
    data = png((1000, 90))
    out = prepare(f, write(tmp_path / "inbox/strip.png", data), now=NOW)
    assert isinstance(out, Rejected)
    assert out.code == "target_unreachable"
    assert "5.61" in out.reason
    assert out.sha256 == sha(data)


# -- folder masks and mask_fit ----------------------------------------------------------------


def test_folder_mask_of_another_size_fails_without_mask_fit_scale(tmp_path: Path) -> None:
    mask = write(tmp_path / "mask.png", png((100, 75), mode="L"))
    f = folder(tmp_path, mask=mask)
    out = prepare(f, write(tmp_path / "inbox/x.png", png((200, 150))), now=NOW)
    assert isinstance(out, Rejected) and out.code == "mask_size"
    assert "100×75" in out.reason and "200×150" in out.reason


def test_mask_fit_scale_sends_a_binary_mask_of_the_images_size(tmp_path: Path) -> None:
    mask_data = png((100, 75), mode="L")
    mask = write(tmp_path / "mask.png", mask_data)
    f = folder(tmp_path, mask=mask, mask_fit="scale")
    fields = prepared(prepare(f, write(tmp_path / "inbox/x.png", png((200, 150))), now=NOW))
    assert "top" not in fields["params"]
    assert fields["mask_sha256"] == sha(mask_data)  # the key names the mask as configured
    payload = upload_payload(fields, fields["post"])
    assert payload.mask is not None and size_of(payload.mask) == (200, 150)
    with Image.open(io.BytesIO(payload.mask)) as m:
        levels = m.convert("L").histogram()
    assert [v for v, n in enumerate(levels) if n] == [0, 255]


# -- sidecar masks ------------------------------------------------------------------------


def test_sidecar_image_without_its_mask_waits(tmp_path: Path) -> None:
    f = folder(tmp_path, mask="sidecar")
    path = write(tmp_path / "inbox/s1.png", png((200, 150)))
    assert prepare(f, path, now=NOW) == NeedsMask(path)


def test_sidecar_mask_still_being_written_makes_the_image_wait(tmp_path: Path) -> None:
    f = folder(tmp_path, mask="sidecar")
    path = write(tmp_path / "inbox/s1.png", png((200, 150)))
    write(tmp_path / "inbox/s1.mask.png", png((200, 150), mode="L"), age=0.2)
    assert prepare(f, path, now=NOW) == NeedsMask(path)


def test_sidecar_mask_in_any_letter_case_is_sent_with_its_image(tmp_path: Path) -> None:
    f = folder(tmp_path, mask="sidecar")
    mask_data = png((200, 150), mode="L")
    path = write(tmp_path / "inbox/S1.JPG", png((200, 150), fmt="JPEG"))
    mask = write(tmp_path / "inbox/S1.MASK.PNG", mask_data)
    fields = prepared(prepare(f, path, now=NOW))
    assert fields["mask_path"] == str(mask) and fields["mask_sha256"] == sha(mask_data)
    assert fields["post"]["sidecar"] is True
    assert upload_payload(fields, fields["post"]).mask == mask_data


def test_two_sidecar_masks_fail_the_image_naming_both(tmp_path: Path) -> None:
    f = folder(tmp_path, mask="sidecar")
    path = write(tmp_path / "inbox/s2.png", png((200, 150)))
    write(tmp_path / "inbox/s2.mask.png", png((200, 150), mode="L"))
    write(tmp_path / "inbox/s2.mask.jpg", png((200, 150), mode="L", fmt="JPEG"))
    out = prepare(f, path, now=NOW)
    assert isinstance(out, Rejected) and out.code == "mask_ambiguous"
    assert "s2.mask.png" in out.reason and "s2.mask.jpg" in out.reason


def test_same_image_with_a_new_sidecar_mask_has_a_new_key(tmp_path: Path) -> None:
    f = folder(tmp_path, mask="sidecar")
    path = write(tmp_path / "inbox/s1.png", png((200, 150)))
    mask = tmp_path / "inbox/s1.mask.png"
    write(mask, png((200, 150), mode="L"))
    first = prepared(prepare(f, path, now=NOW))
    other = Image.new("L", (200, 150), 255)
    buf = io.BytesIO()
    other.save(buf, "PNG")
    write(mask, buf.getvalue())
    second = prepared(prepare(f, path, now=NOW))
    assert first["sha256"] == second["sha256"]
    assert first["key"] != second["key"]


def test_sidecar_mask_of_another_size_fails_unless_scaled(tmp_path: Path) -> None:
    path = write(tmp_path / "inbox/s1.png", png((200, 150)))
    write(tmp_path / "inbox/s1.mask.png", png((100, 75), mode="L"))
    out = prepare(folder(tmp_path, mask="sidecar"), path, now=NOW)
    assert isinstance(out, Rejected) and out.code == "mask_size"
    assert out.mask_path == tmp_path / "inbox/s1.mask.png"  # so it goes to failed/ too
    fields = prepared(prepare(folder(tmp_path, mask="sidecar", mask_fit="scale"), path, now=NOW))
    mask = upload_payload(fields, fields["post"]).mask
    assert mask is not None and size_of(mask) == (200, 150)


# -- fit --------------------------------------------------------------------------------------


def test_fit_records_the_uploaded_bytes_beside_the_original(tmp_path: Path) -> None:
    f = folder(tmp_path, fit=True, expand=Expand())
    data = png((5000, 300))
    fields = prepared(prepare(f, write(tmp_path / "inbox/wide.png", data), now=NOW))
    assert (fields["sha256"], fields["size"]) == (sha(data), len(data))
    assert (fields["width"], fields["height"]) == (5000, 300)
    assert (fields["upload_width"], fields["upload_height"]) == (4096, 246)
    payload = upload_payload(fields, fields["post"])
    # The bytes sent at create time are the bytes checked and recorded at intake.
    assert sha(payload.image) == fields["upload_sha256"] != fields["sha256"]
    assert len(payload.image) == fields["upload_size"]
    assert size_of(payload.image) == (4096, 246)


def test_fit_applies_the_exif_orientation_and_the_mask_follows(tmp_path: Path) -> None:
    img = Image.new("RGB", (600, 400), (10, 120, 200))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: shown 400×600
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    path = write(tmp_path / "inbox/turned.jpg", buf.getvalue())
    write(tmp_path / "inbox/turned.mask.png", png((400, 600), mode="L"))
    f = folder(tmp_path, fit=True, mask="sidecar")
    fields = prepared(prepare(f, path, now=NOW))
    assert (fields["width"], fields["height"]) == (600, 400)  # as stored
    assert (fields["upload_width"], fields["upload_height"]) == (400, 600)  # as displayed
    payload = upload_payload(fields, fields["post"])
    assert size_of(payload.image) == (400, 600)
    assert payload.mask is not None and size_of(payload.mask) == (400, 600)


def test_without_fit_an_oversized_image_is_rejected_before_paying(tmp_path: Path) -> None:
    out = prepare(folder(tmp_path), write(tmp_path / "inbox/w.png", png((5000, 300))), now=NOW)
    assert isinstance(out, Rejected) and out.code == "too_big_dims"


# -- upload_payload guards ------------------------------------------------------------------


def test_upload_payload_refuses_an_original_changed_since_intake(tmp_path: Path) -> None:
    f = folder(tmp_path)
    path = write(tmp_path / "inbox/a.png", png((200, 150), seed=1))
    fields = prepared(prepare(f, path, now=NOW))
    path.write_bytes(png((200, 150), seed=2))
    with pytest.raises(ChangedOnDisk):
        upload_payload(fields, settings_of(f))


def test_upload_payload_refuses_a_sidecar_mask_changed_since_intake(tmp_path: Path) -> None:
    f = folder(tmp_path, mask="sidecar")
    path = write(tmp_path / "inbox/s1.png", png((200, 150)))
    mask = write(tmp_path / "inbox/s1.mask.png", png((200, 150), mode="L"))
    fields = prepared(prepare(f, path, now=NOW))
    Image.new("L", (200, 150), 255).save(mask)
    with pytest.raises(ChangedOnDisk):
        upload_payload(fields, fields["post"])


def test_upload_payload_of_a_vanished_original_raises_file_not_found(tmp_path: Path) -> None:
    f = folder(tmp_path)
    path = write(tmp_path / "inbox/a.png", png((200, 150)))
    fields = prepared(prepare(f, path, now=NOW))
    path.unlink()
    with pytest.raises(FileNotFoundError):
        upload_payload(fields, settings_of(f))
