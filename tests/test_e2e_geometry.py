"""End to end for issue 7: shapes (`target`), sidecar masks, `mask_fit`, `fit`, output formats.

The real simulator over a socket (its results a few pixels off, as real models are) and the
real `watchd run` process; what was sent is read back from the simulator's upload records,
what was kept from the ledger file. Three daemon runs: shapes and formats, sidecar masks, fit.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e import (
    DaemonProcess,
    drop,
    files,
    run_cli,
    sha,
    wait_for,
    write_config,
)
from watchd.sim import SimConfig, Simulator, UploadRecord

pytestmark = pytest.mark.e2e

MARGIN = 0.05
EXPAND = {"top": 0.1, "bottom": 0.1, "left": 0.1, "right": 0.1}


@pytest.fixture
def sim():
    cfg = SimConfig(qps=20, processing_time=(0.1, 0.3), offset_px=3, seed=7)
    with Simulator(cfg).start() as s:
        yield s


# -- helpers ----------------------------------------------------------------------------


def mask_bytes(size: tuple[int, int], fmt: str = "PNG", box: float = 0.25) -> bytes:
    """A binary mask: white (to fill) in a centred box, black elsewhere."""
    w, h = size
    img = Image.new("L", size, 0)
    img.paste(255, (int(w * box), int(h * box), int(w * (1 - box)), int(h * (1 - box))))
    buf = BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def put(path: Path, data: bytes) -> bytes:
    """Write bytes the careful-copier way (hidden temp name, then rename in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def half_clear(size: tuple[int, int]) -> bytes:
    """An RGBA PNG whose left half is fully transparent (black underneath)."""
    img = Image.new("RGBA", size, (30, 90, 200, 255))
    img.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    buf = BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def opened(path: Path) -> tuple[str, tuple[int, int]]:
    with Image.open(path) as img:
        return str(img.format), img.size


def error_json(root: Path, folder: str, name: str) -> dict[str, Any]:
    return json.loads((root / folder / "failed" / f"{name}.error.json").read_text())


def accepted(sim: Simulator) -> dict[str, UploadRecord]:
    """Uploads the simulator took as tasks, by image hash."""
    return {u.image_sha256: u for u in sim.uploads if u.status == 200 and u.image_sha256}


def sides(up: UploadRecord) -> dict[str, float]:
    return {k: float(up.params[k]) for k in ("top", "bottom", "left", "right")}


def jobs_rows(root: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{root / 'state' / 'watchd.db'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("select * from jobs order by id")]
    finally:
        con.close()


def stop(daemon: DaemonProcess) -> None:
    code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.log()[-3000:]


# -- shapes, folder masks, output formats, `watchd check` -------------------------------


def test_target_shapes_folder_masks_and_output_formats(tmp_path: Path, sim: Simulator) -> None:
    root = tmp_path
    small_mask = root / "mask-100x75.png"
    small_mask.write_bytes(mask_bytes((100, 75)))
    cfg = write_config(
        root,
        sim.base_url,
        folders=[
            {"name": "square", "target": {"aspect": "1:1", "margin": MARGIN}},
            {"name": "bottom", "target": {"aspect": "1:1", "margin": MARGIN, "anchor": "bottom"}},
            {"name": "banner", "target": {"size": [512, 256]}, "output_format": "jpeg"},
            {
                "name": "webp",
                "expand": EXPAND,
                "output_format": "webp",
                "quality": 80,
                "output": "{stem}_x{ext}",
            },
            {"name": "pngout", "expand": EXPAND, "output_format": "png"},
            {"name": "scaled", "mask": str(small_mask), "mask_fit": "scale"},
            {"name": "exact", "mask": str(small_mask)},
            {"name": "strip81", "target": {"aspect": "8:1"}},
        ],
    )
    want_done = {
        ("square", "wide.png"): drop(root / "square/inbox/wide.png", (300, 180), seed=1),
        ("square", "tall.png"): drop(root / "square/inbox/tall.png", (150, 300), seed=2),
        ("square", "even.png"): drop(root / "square/inbox/even.png", (200, 200), seed=3),
        ("bottom", "low.png"): drop(root / "bottom/inbox/low.png", (300, 180), seed=4),
        ("banner", "ban.png"): drop(root / "banner/inbox/ban.png", (300, 200), seed=5),
        ("banner", "alpha.png"): put(root / "banner/inbox/alpha.png", half_clear((300, 200))),
        ("webp", "w.png"): drop(root / "webp/inbox/w.png", (200, 150), seed=6),
        ("pngout", "p.jpg"): drop(root / "pngout/inbox/p.jpg", (200, 150), seed=7),
        ("scaled", "m.png"): drop(root / "scaled/inbox/m.png", (200, 150), seed=8),
    }
    want_failed = {
        ("square", "strip.png"): drop(root / "square/inbox/strip.png", (1000, 90), seed=9),
        ("exact", "x.png"): drop(root / "exact/inbox/x.png", (200, 150), seed=10),
    }
    daemon = DaemonProcess(cfg).start()
    try:
        daemon.wait_started()
        wait_for(
            lambda: (
                all((root / f / "done" / n).exists() for f, n in want_done)
                and all((root / f / "failed" / f"{n}.error.json").exists() for f, n in want_failed)
            ),
            40,
            "every original in done/ or failed/",
        )
    finally:
        stop(daemon)

    ups = accepted(sim)
    assert len(ups) == len(want_done), sorted(u.params.get("top", "-") for u in ups.values())

    # 1:1 with margin 0.05: every result exactly square, about 330, 330 and 220 px a side.
    for name, side in (("wide.png", 330), ("tall.png", 330), ("even.png", 220)):
        fmt, (w, h) = opened(root / "square/outbox" / name)
        assert fmt == "PNG" and w == h, (name, fmt, w, h)
        assert abs(w - side) <= 3, (name, w)
    r = sides(ups[sha(want_done[("square", "wide.png")])])
    assert r["left"] == r["right"] == pytest.approx(MARGIN)
    assert r["top"] == pytest.approx(r["bottom"]) == pytest.approx(0.4167, abs=1e-3)
    r = sides(ups[sha(want_done[("square", "tall.png")])])
    assert r["top"] == r["bottom"] == pytest.approx(MARGIN)
    assert r["left"] == pytest.approx(r["right"]) == pytest.approx(0.6, abs=1e-3)
    assert set(sides(ups[sha(want_done[("square", "even.png")])]).values()) == {MARGIN}

    # The 1000×90 strip fails before any upload, its reason giving the ratio it would need
    # (top/bottom 0.05 + 1.1 * (1000/90 - 1) / 2 = 5.61 each).
    for (folder, name), data in want_failed.items():
        assert not any(u.image_sha256 == sha(data) for u in sim.uploads), (folder, name)
        assert files(root / folder / "inbox") == [], folder
    reason = error_json(root, "square", "strip.png")["reason"]
    assert "5.61" in reason and "top" in reason and "bottom" in reason, reason

    # anchor: bottom — the original stays against the bottom; the top gets the rest.
    r = sides(ups[sha(want_done[("bottom", "low.png")])])
    assert r["bottom"] == pytest.approx(MARGIN)
    assert r["top"] == pytest.approx(0.7833, abs=1e-3)
    assert r["left"] == r["right"] == pytest.approx(MARGIN)
    _, (w, h) = opened(root / "bottom/outbox/low.png")
    assert w == h and abs(w - 330) <= 3

    # size [512, 256] + jpeg: a 300×200 PNG comes out a 512×256 JPEG named .jpg.
    r = sides(ups[sha(want_done[("banner", "ban.png")])])
    assert r["left"] == pytest.approx(0.2333, abs=1e-3)
    assert r["right"] == pytest.approx(0.2333, abs=1e-3)
    assert r["top"] == r["bottom"] == pytest.approx(MARGIN)
    assert files(root / "banner/outbox") == ["alpha.jpg", "ban.jpg"]
    assert opened(root / "banner/outbox/ban.jpg") == ("JPEG", (512, 256))
    # jpeg flattens alpha onto white: the clear left half of the original comes out white.
    with Image.open(root / "banner/outbox/alpha.jpg") as img:
        assert img.size == (512, 256)
        assert min(img.convert("RGB").getpixel((170, 128))) >= 235, img.getpixel((170, 128))

    # output_format webp and png: converted and renamed.
    # ({ext} in the output template is the new extension.)
    assert files(root / "webp/outbox") == ["w_x.webp"]
    assert opened(root / "webp/outbox/w_x.webp")[0] == "WEBP"
    assert files(root / "pngout/outbox") == ["p.png"]
    assert opened(root / "pngout/outbox/p.png")[0] == "PNG"

    # mask_fit: scale — the 100×75 folder mask is sent resized to the 200×150 image (the
    # simulator refuses a mask of another size, so status 200 proves the size).
    up = ups[sha(want_done[("scaled", "m.png")])]
    assert up.mask_sha256 is not None
    assert up.mask_sha256 != sha(small_mask.read_bytes())
    assert (up.width, up.height) == (200, 150)
    assert "top" not in up.params
    assert files(root / "scaled/outbox") == ["m.png"]
    # Without mask_fit: scale the same mask fails the image before paying.
    reason = error_json(root, "exact", "x.png")["reason"]
    assert "100" in reason and "200" in reason, reason
    assert files(root / "exact/outbox") == []

    # `watchd check` says per folder what a 3000×2000 image would be sent as.
    check = run_cli("check", "-c", str(cfg))
    assert check.returncode == 0, check.stderr
    lines = {
        line.split(":", 1)[0].strip("# ").strip(): line.split(":", 1)[1]
        for line in check.stdout.split("would be sent as:", 1)[1].splitlines()
        if line.startswith("#   ")
    }
    assert set(lines) == {
        "square",
        "bottom",
        "banner",
        "webp",
        "pngout",
        "scaled",
        "exact",
        "strip81",
    }, check.stdout
    # 3000×2000 to 1:1: top/bottom 0.05 + 1.1 * 0.5 / 2 = 0.325; anchor bottom puts it all on top.
    assert "top 0.325" in lines["square"] and "bottom 0.325" in lines["square"], lines
    assert "top 0.600" in lines["bottom"] and "bottom 0.050" in lines["bottom"], lines
    assert "left 0.233" in lines["banner"] and "512×256" in lines["banner"], lines
    assert "jpeg" in lines["banner"] and "webp" in lines["webp"], lines
    assert "top 0.100" in lines["webp"], lines
    assert "mask" in lines["scaled"] and "mask" in lines["exact"], lines
    # 8:1 cannot be reached in one request: left/right would need 0.05 + 1.1 * (16/3 - 1) / 2.
    assert "not sent" in lines["strip81"] and "2.43" in lines["strip81"], lines


# -- sidecar masks -----------------------------------------------------------------------


def test_sidecar_masks(tmp_path: Path, sim: Simulator) -> None:
    root = tmp_path
    wait_s = 3.0
    cfg = write_config(
        root, sim.base_url, folders=[{"name": "side", "mask": "sidecar", "sidecar_wait": wait_s}]
    )
    inbox, done, failed = root / "side/inbox", root / "side/done", root / "side/failed"
    daemon = DaemonProcess(cfg).start()
    try:
        daemon.wait_started()
        # Two masks for one image: the image fails.
        put(inbox / "s2.mask.png", mask_bytes((200, 150)))
        put(inbox / "s2.mask.jpg", mask_bytes((200, 150), "JPEG", box=0.3))
        # A mask with no image: stays, and status lists it.
        lone = put(inbox / "lone.mask.png", mask_bytes((120, 90)))
        # The image first, its mask a second later: one request, with that mask.
        s1 = drop(inbox / "s1.png", (200, 150), seed=21)
        s2 = drop(inbox / "s2.png", (200, 150), seed=22)
        s3_at = time.monotonic()
        s3 = drop(inbox / "s3.png", (200, 150), seed=23)  # its mask never comes
        time.sleep(1.0)
        m1 = put(inbox / "s1.mask.png", mask_bytes((200, 150), box=0.2))

        # s3 is not failed before sidecar_wait (polled from 1 s on), and is failed soon after.
        wait_for(lambda: (failed / "s3.png.error.json").exists(), 20, "s3 failed")
        waited = time.monotonic() - s3_at
        assert wait_s <= waited < wait_s + 5, waited
        wait_for(lambda: (done / "s1.png").exists(), 20, "s1 done")
        wait_for(lambda: (failed / "s2.png.error.json").exists(), 10, "s2 failed")

        status = run_cli("status", "--json", "-c", str(cfg))
        assert status.returncode == 0, status.stderr
        # (s2's two masks stay in the inbox too, beside no image, until someone picks one.)
        assert "side/lone.mask.png" in json.loads(status.stdout)["lone_masks"]

        # The same image again with a new mask (mask first this time): a new job, sent again.
        m1b = put(inbox / "s1.mask.png", mask_bytes((200, 150), box=0.35))
        time.sleep(0.5)
        put(inbox / "s1.png", s1)
        wait_for(
            lambda: (
                len([u for u in sim.uploads if u.image_sha256 == sha(s1)]) == 2
                and len(files(root / "side/outbox")) == 2
                and not (inbox / "s1.png").exists()
            ),
            20,
            "s1 sent again with its new mask",
        )
        wait_for(lambda: len(files(done)) == 4, 10, "the second pair in done/")

        # The same image with the same mask once more: a duplicate, not paid for again.
        put(inbox / "s1.mask.png", m1b)
        put(inbox / "s1.png", s1)
        wait_for(lambda: not (inbox / "s1.png").exists(), 10, "the duplicate image to leave")
        time.sleep(0.5)  # give its mask the same chance
    finally:
        stop(daemon)

    s1_ups = [u for u in sim.uploads if u.image_sha256 == sha(s1)]
    assert [u.status for u in s1_ups] == [200, 200]
    assert [u.mask_sha256 for u in s1_ups] == [sha(m1), sha(m1b)]
    assert all("top" not in u.params for u in s1_ups)
    # A mask is never uploaded as an image; s2 and s3 never reach the API.
    masks = {sha(m1), sha(m1b), sha(lone)}
    assert not any(u.image_sha256 in masks for u in sim.uploads)
    assert not any(u.image_sha256 in (sha(s2), sha(s3)) for u in sim.uploads)
    # Both pairs end in done/ together; the results are in the outbox.
    assert {"s1.png", "s1.mask.png", "s1_2.png", "s1.mask_2.png"} <= set(files(done))
    assert "s1_3.png" in files(done)  # the duplicate image
    assert len(files(root / "side/outbox")) == 2
    # The job key includes the mask's hash: two jobs for one image.
    s1_jobs = [r for r in jobs_rows(root) if r["sha256"] == sha(s1)]
    assert len(s1_jobs) == 2 and {r["state"] for r in s1_jobs} == {"done"}
    assert {r["mask_sha256"] for r in s1_jobs} == {sha(m1), sha(m1b)}
    # Failures with their reasons.
    s3_reason = error_json(root, "side", "s3.png")["reason"]
    assert "mask" in s3_reason and f"{wait_s:g}" in s3_reason, s3_reason
    s2_reason = error_json(root, "side", "s2.png")["reason"]
    assert "s2.mask.png" in s2_reason and "s2.mask.jpg" in s2_reason, s2_reason
    # The lone mask is still in the inbox.
    assert "lone.mask.png" in files(inbox)
    # The duplicate pair leaves the inbox together: its mask is not left behind as a lone mask.
    assert "s1.mask.png" not in files(inbox), files(inbox)
    assert "s1.mask_3.png" in files(done), files(done)


# -- fit ---------------------------------------------------------------------------------


def big_jpeg(size: tuple[int, int], colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    img.paste(colour, (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    buf = BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def exif_turned_jpeg(size: tuple[int, int]) -> bytes:
    """A JPEG stored `size` with EXIF orientation 6 (shown turned 90° clockwise)."""
    img = Image.new("RGB", size, (10, 120, 200))
    img.paste((240, 200, 0), (0, 0, size[0] // 3, size[1]))
    exif = img.getexif()
    exif[0x0112] = 6
    buf = BytesIO()
    img.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def noise_png(size: tuple[int, int]) -> bytes:
    img = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    buf = BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_fit_brings_large_images_within_the_limits(tmp_path: Path, sim: Simulator) -> None:
    root = tmp_path
    cfg = write_config(
        root,
        sim.base_url,
        folders=[
            {"name": "fit", "fit": True, "expand": EXPAND},
            {"name": "fitmask", "fit": True, "mask": "sidecar"},
        ],
    )
    inbox = root / "fit/inbox"
    originals = {
        "huge.jpg": (put(inbox / "huge.jpg", big_jpeg((5000, 3000))), (5000, 3000)),
        "noise.png": (put(inbox / "noise.png", noise_png((3000, 2000))), (3000, 2000)),
    }
    assert len(originals["noise.png"][0]) > 17_000_000
    turned = put(inbox / "turned.jpg", exif_turned_jpeg((600, 400)))
    masked = put(root / "fitmask/inbox/big.jpg", big_jpeg((5000, 3000), (40, 200, 40)))
    big_mask = put(root / "fitmask/inbox/big.mask.png", mask_bytes((5000, 3000)))
    daemon = DaemonProcess(cfg).start()
    try:
        daemon.wait_started()
        wait_for(
            lambda: (
                all((root / "fit/done" / n).exists() for n in [*originals, "turned.jpg"])
                and (root / "fitmask/done/big.jpg").exists()
            ),
            40,
            "every original in done/",
        )
    finally:
        stop(daemon)

    assert files(root / "fit/failed") == [] and files(root / "fitmask/failed") == []
    uploads = [u for u in sim.uploads if u.status == 200]
    assert len(uploads) == 4, [(u.width, u.height, u.image_size, u.status) for u in sim.uploads]
    rows = {r["name"]: r for r in jobs_rows(root)}
    for name, (data, (w0, h0)) in originals.items():
        row = rows[name]
        up = next(u for u in uploads if u.image_sha256 == row["upload_sha256"])
        # Sent at its own aspect, within 4096 px a side and 5,000,000 bytes.
        assert up.width is not None and up.height is not None
        assert max(up.width, up.height) <= 4096 and min(up.width, up.height) >= 64
        assert up.image_size <= 5_000_000
        assert abs(up.width / up.height - w0 / h0) < 0.005, (name, up.width, up.height)
        assert up.image_format == ("JPEG" if name.endswith(".jpg") else "PNG")
        assert up.complete
        # The ledger keeps the uploaded bytes' facts beside the original's.
        assert (row["sha256"], row["size"], row["width"], row["height"]) == (
            sha(data),
            len(data),
            w0,
            h0,
        )
        assert (
            row["upload_sha256"],
            row["upload_size"],
            row["upload_width"],
            row["upload_height"],
        ) == (up.image_sha256, up.image_size, up.width, up.height)
        assert row["upload_sha256"] != row["sha256"]
        assert row["state"] == "done"
        # The original in done/ is byte for byte what was dropped.
        assert sha((root / "fit/done" / name).read_bytes()) == sha(data)
        # The result is in the outbox, expanded from the uploaded size.
        _, (w, h) = opened(root / "fit/outbox" / name)
        assert abs(w - round(up.width * 1.2)) <= 3 and abs(h - round(up.height * 1.2)) <= 3
    assert rows["huge.jpg"]["upload_width"] == 4096

    # The EXIF orientation is applied before upload: a 600×400 photo shown upright is sent
    # 400×600; the ledger keeps the stored size beside the sent one.
    row = rows["turned.jpg"]
    up = next(u for u in uploads if u.image_sha256 == row["upload_sha256"])
    assert (up.width, up.height) == (400, 600)
    assert (row["width"], row["height"], row["upload_width"], row["upload_height"]) == (
        600,
        400,
        400,
        600,
    )
    assert (root / "fit/done/turned.jpg").read_bytes() == turned

    # A sidecar mask follows the fitted image (the simulator refuses a mask of another size).
    row = rows["big.jpg"]
    up = next(u for u in uploads if u.image_sha256 == row["upload_sha256"])
    assert (up.width, up.height) == (4096, 2458)
    assert up.mask_sha256 is not None and up.mask_sha256 != sha(big_mask)
    assert row["mask_sha256"] == sha(big_mask)
    assert (root / "fitmask/done/big.jpg").read_bytes() == masked
    assert (root / "fitmask/done/big.mask.png").read_bytes() == big_mask
    assert files(root / "fitmask/inbox") == []
    assert files(root / "fitmask/outbox") == ["big.jpg"]
