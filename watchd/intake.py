"""From a settled file to the fields of a job, and from a job back to the bytes to upload.

`prepare()` runs in a worker thread: it reads the file once (safely), hashes it, checks it
before paying, finds its sidecar mask, applies `fit`, computes the per-image ratios of a
`target`, and captures the folder settings the job will need later (so a reload changes new
jobs only). `upload_payload()` re-reads the original at create time and proves by hash that
the bytes sent are the bytes that were checked. No ledger, no network, no logging here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchd.config import FolderConfig
from watchd.filters import find_sidecar_masks
from watchd.geometry import TargetUnreachable, target_ratios
from watchd.imaging import displayed_size, fit_for_upload, image_size, scale_mask
from watchd.ledger import job_key
from watchd.params import ImageParams
from watchd.preflight import (
    FileBytes,
    PreflightError,
    check_mask,
    check_upload_limits,
    inspect_image,
    inspect_mask,
    read_regular_file,
)

# The generation settings a job copies from its folder, beside the four ratios.
API_FIELDS = tuple(ImageParams.model_fields)


@dataclass(frozen=True)
class Prepared:
    """A file that passed every check: the job's ledger fields."""

    fields: dict[str, Any]

    @property
    def key(self) -> str:
        return self.fields["key"]


@dataclass(frozen=True)
class Rejected:
    """A file that fails before paying; it goes to failed/ with this reason."""

    code: str
    reason: str
    path: Path
    sha256: str | None = None
    size: int | None = None
    mask_path: Path | None = None


@dataclass(frozen=True)
class NeedsMask:
    """A sidecar-folder image whose mask has not come (or not settled) yet."""

    path: Path


@dataclass(frozen=True)
class StillWriting:
    """Cut short and modified moments ago: most likely a copy still in progress (a slow
    share can pause longer than `settle`). Settle it again instead of failing it."""

    path: Path


@dataclass(frozen=True)
class Unreadable:
    """A file watchd may not read: it stays where it is (logged)."""

    path: Path
    reason: str


Outcome = Prepared | Rejected | NeedsMask | StillWriting | Unreadable

FIT_MAX_PIXELS = 170_000_000  # with fit: true (Pillow refuses outright above ~179 M)
RECENT_WRITE = 10.0  # seconds: a truncated file younger than this may still be arriving


@dataclass(frozen=True)
class Payload:
    """Exactly the bytes to send: the checked original (or its `fit`) and the mask."""

    image: bytes
    mask: bytes | None


def settings_of(folder: FolderConfig) -> dict[str, Any]:
    """What a job needs from its folder after it was made (JSON-able)."""
    target = folder.target
    return {
        "outbox": str(folder.outbox),
        "done": str(folder.done),
        "failed": str(folder.failed),
        "output": folder.output,
        "output_format": folder.output_format,
        "quality": folder.quality,
        "fit": folder.fit,
        "mask_fit": folder.mask_fit,
        "sidecar": folder.mask == "sidecar",
        "aspect": list(target.ratio) if target else None,
        "size": list(target.size) if target and target.size else None,
    }


def prepare(folder: FolderConfig, path: Path, *, now: float) -> Outcome:
    """Check one settled file (`now`: wall-clock time, to tell a file still being written
    by its recent mtime)."""
    try:
        original = read_regular_file(path)
    except PreflightError as exc:
        if exc.code == "unreadable":
            return Unreadable(path, exc.reason)
        return Rejected(exc.code, exc.reason, path)
    mask_path: Path | None = None
    mask_bytes: FileBytes | None = None
    try:
        if folder.mask == "sidecar":
            masks = find_sidecar_masks(path.name, os.listdir(path.parent))
            if len(masks) > 1:
                raise PreflightError(
                    "mask_ambiguous", f"two masks for one image: {', '.join(sorted(masks))}"
                )
            if not masks:
                return NeedsMask(path)
            mask_path = path.parent / masks[0]
            mask_bytes = read_regular_file(mask_path)
            if now - mask_bytes.mtime_ns / 1e9 < folder.settle:
                return NeedsMask(path)  # the mask is still being written
        elif folder.mask is not None:
            mask_path = Path(folder.mask)
            mask_bytes = read_regular_file(mask_path)
        fields = _check_and_describe(folder, path, original, mask_path, mask_bytes)
    except PreflightError as exc:
        if exc.code == "truncated" and now - original.mtime_ns / 1e9 < RECENT_WRITE:
            return StillWriting(path)
        return Rejected(exc.code, exc.reason, path, original.sha256, original.size, mask_path)
    return Prepared(fields)


def _check_and_describe(
    folder: FolderConfig,
    path: Path,
    original: FileBytes,
    mask_path: Path | None,
    mask_file: FileBytes | None,
) -> dict[str, Any]:
    # fit: true is for camera files; 100-megapixel sensors exist. Allow them (Pillow's own
    # hard limit is twice its default) while still refusing decompression bombs.
    info = inspect_image(original.data, max_pixels=FIT_MAX_PIXELS if folder.fit else None)
    settings = settings_of(folder)
    upload, mask = _upload_bytes(original.data, mask_file.data if mask_file else None, settings)
    upload_info = info if upload == original.data else inspect_image(upload)
    check_upload_limits(upload_info, len(upload))
    if mask is not None:
        check_mask(inspect_mask(mask), upload_info)
    params: dict[str, Any] = {}
    if mask is None:
        if folder.target is not None:
            t = folder.target
            try:
                r = target_ratios(
                    upload_info.width, upload_info.height, t.ratio, t.margin, t.anchor
                )
            except TargetUnreachable as exc:
                raise PreflightError("target_unreachable", exc.reason) from None
            params.update(top=r.top, bottom=r.bottom, left=r.left, right=r.right)
        else:
            e = folder.expand
            assert e is not None  # config guarantees expand or target or mask
            params.update(top=e.top, bottom=e.bottom, left=e.left, right=e.right)
        params = {k: round(v, 6) for k, v in params.items()}
    for name in API_FIELDS:
        value = getattr(folder, name)
        if value is not None:
            params[name] = value
    upload_sha = original.sha256 if upload == original.data else hashlib.sha256(upload).hexdigest()
    return {
        "folder": folder.name,
        "key": job_key(folder.name, original.sha256, mask_file.sha256 if mask_file else None),
        "path": str(path),
        "name": path.name,
        "rel": os.path.relpath(path, folder.inbox),
        "size": original.size,
        "sha256": original.sha256,
        "mask_path": str(mask_path) if mask_path else None,
        "mask_sha256": mask_file.sha256 if mask_file else None,
        "width": info.width,
        "height": info.height,
        "upload_sha256": upload_sha,
        "upload_size": len(upload),
        "upload_width": upload_info.width,
        "upload_height": upload_info.height,
        "params": params,
        "post": settings,
    }


def _upload_bytes(
    image: bytes, mask: bytes | None, settings: dict[str, Any]
) -> tuple[bytes, bytes | None]:
    """The bytes to send: the original, or its `fit` transform; the mask scaled if asked.

    Deterministic, so that create time can redo it from the same original bytes.
    """
    if mask is not None and settings.get("mask_fit") == "scale":
        # `fit` takes a mask as drawn over the image as displayed (EXIF orientation applied).
        size = displayed_size(image) if settings.get("fit") else image_size(image)
        if image_size(mask, code="mask_bad") != size:
            mask = scale_mask(mask, size)
    if settings.get("fit"):
        fitted = fit_for_upload(image, mask)
        image, mask = fitted.data, fitted.mask
    return image, mask


class ChangedOnDisk(Exception):
    """The original (or its mask) is not the content that was checked: make a new job."""


def upload_payload(job: dict[str, Any], settings: dict[str, Any]) -> Payload:
    """Read the original once more and return exactly the bytes that were checked.

    Raises FileNotFoundError if it vanished, ChangedOnDisk if its hash differs.
    """
    original = read_regular_file(Path(job["path"]))
    if original.sha256 != job["sha256"]:
        raise ChangedOnDisk(job["path"])
    mask: bytes | None = None
    if job.get("mask_path"):
        mask_file = read_regular_file(Path(job["mask_path"]))
        if mask_file.sha256 != job["mask_sha256"]:
            raise ChangedOnDisk(job["mask_path"])
        mask = mask_file.data
    image, mask = _upload_bytes(original.data, mask, settings)
    return Payload(image, mask)
