"""What a folder would send for an example image: `watchd check` shows it before paying."""

from __future__ import annotations

from watchd.config import FolderConfig
from watchd.geometry import TargetUnreachable, expanded_size, target_ratios


def preview(folder: FolderConfig, width: int, height: int) -> str:
    if folder.mask == "sidecar":
        return "canvas mode with each image's sidecar mask (output keeps the image size)"
    if folder.mask is not None:
        return f"canvas mode with mask {folder.mask} (output keeps the image size)"
    if folder.target is not None:
        t = folder.target
        try:
            r = target_ratios(width, height, t.ratio, t.margin, t.anchor)
        except TargetUnreachable as exc:
            return f"not sent: {exc.reason}"
    else:
        assert folder.expand is not None
        r = folder.expand  # type: ignore[assignment]
    w, h = expanded_size(width, height, r)
    text = (
        f"top {r.top:.3f}, bottom {r.bottom:.3f}, left {r.left:.3f}, right {r.right:.3f} → {w}×{h}"
    )
    if folder.target is not None:
        aw, ah = folder.target.ratio
        text += f", cropped to {aw}:{ah}"
        if folder.target.size:
            text += f", resized to {folder.target.size[0]}×{folder.target.size[1]}"
    if folder.output_format != "keep":
        text += f", saved as {folder.output_format}"
    return text
