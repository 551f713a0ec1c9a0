"""Per-image geometry: a folder's `target` shape turned into the API's four expansion ratios,
and the crop that trims the result to the exact aspect afterwards.

Owns: `target_ratios` (shape -> ratios, or `TargetUnreachable` before anything is paid for),
`expanded_size` (the size the API returns for given ratios) and `finish_box` (the crop box).

Never does: I/O, Pillow, logging. Pure integer/float arithmetic, so every rule here is
property-tested over thousands of sizes in milliseconds.

Ratios are fractions of the *original's* sides, exactly as the API reads them: a 300 px wide
image with left=0.1 and right=0.2 comes back 300 * (1 + 0.1 + 0.2) = 390 px wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ANCHORS = ("center", "top", "bottom", "left", "right")

# The API's accepted range for one ratio is (0, 1].
MAX_RATIO = 1.0

# Float noise on a ratio that is mathematically exactly 1.0 must not make it unreachable.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Ratios:
    """The four expansion ratios of one API request, fractions of the original's sides."""

    top: float
    bottom: float
    left: float
    right: float


class TargetUnreachable(ValueError):
    """One request cannot bring this image to the aspect: some side would need a ratio > 1."""

    def __init__(self, needed: Ratios, reason: str) -> None:
        super().__init__(reason)
        self.needed = needed
        self.reason = reason


def target_ratios(
    width: int,
    height: int,
    aspect: tuple[int, int],
    margin: float = 0.05,
    anchor: str = "center",
) -> Ratios:
    """The ratios that expand a `width`×`height` image to `aspect` with at least `margin` per side.

    Every side gets `margin`; the dimension that falls short of the aspect gets the rest, split
    evenly, or all of it on the side away from `anchor` (the side the original stays against).
    An anchor on the other axis changes nothing. Raises `TargetUnreachable` when a side would
    need more than 1.0, and `ValueError` for nonsense input.
    """
    aw, ah = _check_aspect(aspect)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}×{height}")
    if not 0 < margin <= MAX_RATIO:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {', '.join(ANCHORS)}, got {anchor!r}")

    top = bottom = left = right = float(margin)
    # With the margin on all four sides both dimensions grow by the same factor (1 + 2m), so
    # which one falls short is decided by the original alone; integers compare exactly.
    if width * ah < height * aw:
        # Too narrow: the expanded width must reach height' * aw / ah.
        rest = (1 + 2 * margin) * (height * aw / (width * ah) - 1)
        left, right = _share(
            margin, rest, before_anchor="left", after_anchor="right", anchor=anchor
        )
    elif width * ah > height * aw:
        # Too wide: the expanded height must reach width' * ah / aw.
        rest = (1 + 2 * margin) * (width * ah / (height * aw) - 1)
        top, bottom = _share(
            margin, rest, before_anchor="top", after_anchor="bottom", anchor=anchor
        )

    needed = Ratios(top=top, bottom=bottom, left=left, right=right)
    over = {side: value for side, value in _sides(needed) if value > MAX_RATIO + _EPSILON}
    if over:
        raise TargetUnreachable(needed, _unreachable_reason(width, height, aspect, margin, over))
    # Clamp the float noise of an exact 1.0 back into the API's range.
    return Ratios(*(min(value, MAX_RATIO) for _, value in _sides(needed)))


def expanded_size(width: int, height: int, r: Ratios) -> tuple[int, int]:
    """The size of the API's result for these ratios: each dimension rounded to whole pixels."""
    return round(width * (1 + r.left + r.right)), round(height * (1 + r.top + r.bottom))


def finish_box(result_w: int, result_h: int, aspect: tuple[int, int]) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) crop box that trims a result evenly to `aspect`.

    The box is the largest one of exactly that aspect, centred. For an aspect whose reduced
    terms are large (1200:628 reduces to 300:157) an exact box could cut far more than the few
    pixels of rounding; then the nearest whole-pixel box is used instead, and a following
    resize to the target `size` absorbs the sub-pixel difference.
    """
    aw, ah = _check_aspect(aspect)
    if result_w <= 0 or result_h <= 0:
        raise ValueError(f"result size must be positive, got {result_w}×{result_h}")
    g = math.gcd(aw, ah)
    a, b = aw // g, ah // g

    # Nearest box: keep the dimension that is already short, round the other one.
    if result_w * b >= result_h * a:
        near_w, near_h = max(1, round(result_h * a / b)), result_h
    else:
        near_w, near_h = result_w, max(1, round(result_w * b / a))

    k = min(result_w // a, result_h // b)
    exact_w, exact_h = k * a, k * b
    if k >= 1 and near_w - exact_w <= _slack(near_w) and near_h - exact_h <= _slack(near_h):
        box_w, box_h = exact_w, exact_h
    else:
        box_w, box_h = near_w, near_h

    left = (result_w - box_w) // 2
    top = (result_h - box_h) // 2
    return left, top, left + box_w, top + box_h


def _slack(side: int) -> int:
    """How many pixels beyond the nearest box an exact-aspect crop may take: a few, or 2 %."""
    return max(4, side // 50)


def _share(
    margin: float, rest: float, *, before_anchor: str, after_anchor: str, anchor: str
) -> tuple[float, float]:
    """Split `rest` between the two sides of one axis (before, after) on top of the margin."""
    if anchor == before_anchor:
        return margin, margin + rest
    if anchor == after_anchor:
        return margin + rest, margin
    return margin + rest / 2, margin + rest / 2


def _sides(r: Ratios) -> list[tuple[str, float]]:
    return [("top", r.top), ("bottom", r.bottom), ("left", r.left), ("right", r.right)]


def _unreachable_reason(
    width: int, height: int, aspect: tuple[int, int], margin: float, over: dict[str, float]
) -> str:
    aw, ah = aspect
    if len(over) == 2 and len(set(over.values())) == 1:
        first, second = over
        what = f"{first}/{second} {next(iter(over.values())):.2f} each"
    else:
        what = " and ".join(f"{side} {value:.2f}" for side, value in over.items())
    return (
        f"a {width}×{height} image needs {what} to reach {aw}:{ah} with margin {margin:g}; "
        f"the API allows at most 1.0 per side"
    )


def _check_aspect(aspect: tuple[int, int]) -> tuple[int, int]:
    aw, ah = aspect
    if not (isinstance(aw, int) and isinstance(ah, int)) or aw <= 0 or ah <= 0:
        raise ValueError(f"aspect must be two positive integers, got {aspect!r}")
    return aw, ah
