"""Plan benchmark (issue 11 of the money work): `watchd plan` over a big inbox of photos.

Stages N unique photo-sized JPEGs (a few real encodes of noisy 1600×1200 pictures, each
copy made unique by bytes after its end marker, so every file hashes differently and every
file is fully checked) in one inbox, then runs the real command, `python -m watchd plan -c
CONFIG --json`, as a child process, with no daemon and no API. Timed from spawn to exit,
with the child's peak RSS; the output is parsed to confirm every file got a verdict.

Usage: python bench/plan.py [--files 10000] [--runs 1] [--quality 88] [--keep]
Must never: call any API or run inside the test suite.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Check, console, machine, summary_table, write_config
from PIL import Image, ImageFilter

GOAL_SECONDS = 30.0  # the "10,000 files planned in under 30 s"


def photo(seed: int, quality: int, size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A JPEG with a photo's entropy (noise, softened): about 0.8 MB at quality 88."""
    bands = [Image.effect_noise(size, 50 + seed + i) for i in range(3)]
    picture = Image.merge("RGB", bands).filter(ImageFilter.GaussianBlur(0.8))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality)
    return out.getvalue()


def stage(inbox: Path, count: int, quality: int) -> int:
    bases = [photo(i, quality) for i in range(6)]
    total = 0
    for i in range(count):
        data = bases[i % len(bases)] + i.to_bytes(8, "big")  # after EOI: ignored by decoders
        (inbox / f"photo{i:06d}.jpg").write_bytes(data)
        total += len(data)
    return total


def run_plan(config: Path) -> tuple[float, float, list[dict]]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "watchd", "plan", "-c", str(config), "--json"],
        capture_output=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"watchd plan failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return wall, peak_mb, [x for x in lines if "verdict" in x]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--quality", type=int, default=88, help="JPEG quality (88: 0.8 MB each)")
    p.add_argument("--keep", action="store_true", help="keep the workspace")
    args = p.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="watchd-bench-plan-"))
    try:
        config = write_config(root, "http://127.0.0.1:9", ["photos"])
        inbox = root / "photos" / "inbox"
        t = time.perf_counter()
        size = stage(inbox, args.files, args.quality)
        console.print(
            f"staged {args.files:,} JPEGs, {size / 1e6:,.0f} MB, in {time.perf_counter() - t:.0f} s"
            f"; {machine()}"
        )
        walls = []
        for run in range(args.runs):
            wall, peak_mb, out = run_plan(config)
            sends = sum(1 for f in out if f["verdict"] == "send")
            console.print(
                f"run {run + 1}: {wall:.1f} s, {args.files / wall:,.0f} files/s,"
                f" peak RSS {peak_mb:.0f} MB, {sends:,} of {len(out):,} to send"
            )
            if sends != args.files:
                sys.exit("not every file was judged sendable: the bench's images are wrong")
            walls.append(wall)
        scaled = max(walls) * 10_000 / args.files
        note = f"{min(walls):.1f}–{max(walls):.1f} s over {len(walls)} run(s)"
        if args.files != 10_000:
            note += f", {args.files:,} files scaled to 10,000"
        check = Check("plan, 10,000 photos (slowest run)", scaled, GOAL_SECONDS, True, " s", note)
        console.print(summary_table("watchd plan", [check]))
        return 0 if check.passed else 1
    finally:
        if args.keep:
            console.print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent.parent)
    raise SystemExit(main())
