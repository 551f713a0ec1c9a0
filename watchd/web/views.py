"""What the pages show, made from ledger rows: plain functions, no I/O, no clock.

Formatting (ages, sizes, times), the error code in the API doc's words, what a job sent, the
tasks-per-minute chart's geometry and the event timeline. The templates only lay these out.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from watchd.errors import HTTP_STATUS, TASK_STATE

RATIO_KEYS = ("top", "bottom", "left", "right")
_CODE = re.compile(r"^\s*(state|http)\s*(-?\d+)\s*$", re.IGNORECASE)


def ago(seconds: float | None) -> str:
    """'12 s', '5 min', '3 h', '2 d' (an age or a duration)."""
    if seconds is None:
        return "–"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def clock_time(ts: float | None) -> str:
    """Local date and time of an epoch timestamp, to the second."""
    if ts is None:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def iso_utc(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def size(n: int | None) -> str:
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def decode_json(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def error_meaning(code: str | None, http_status: int | None) -> str | None:
    """The API doc's own words for a failure's code ('state -7', 'http 413', a status)."""
    match = _CODE.match(code or "")
    if match:
        number = int(match.group(2))
        table = TASK_STATE if match.group(1).lower() == "state" else HTTP_STATUS
        rule = table.get(number)
        if rule is not None:
            return rule.meaning
    if http_status is not None and http_status in HTTP_STATUS and http_status != 200:
        return HTTP_STATUS[http_status].meaning
    return None


@dataclass(frozen=True)
class Sent:
    """What a job's create carried."""

    ratios: dict[str, float] | None  # top, bottom, left, right
    params: list[tuple[str, Any]]  # every other API field, as sent
    mask: str | None
    fit: str | None  # "6000×4000 → 4096×2731" when the upload was downscaled


def what_was_sent(job: Mapping[str, Any]) -> Sent:
    params = decode_json(job.get("params")) or {}
    if not isinstance(params, dict):
        params = {}
    ratios = {k: params[k] for k in RATIO_KEYS if k in params} or None
    rest = [(k, v) for k, v in sorted(params.items()) if k not in RATIO_KEYS]
    fit = None
    w, h = job.get("width"), job.get("height")
    uw, uh = job.get("upload_width"), job.get("upload_height")
    if w and h and uw and uh and (uw, uh) != (w, h):
        fit = f"{w}×{h} → {uw}×{uh}"
        if job.get("size") and job.get("upload_size"):
            fit += f" ({size(job['size'])} → {size(job['upload_size'])})"
    return Sent(ratios=ratios, params=rest, mask=job.get("mask_path"), fit=fit)


@dataclass(frozen=True)
class Canvas:
    """The expanded canvas with the original inside it, scaled into a box (for an SVG)."""

    width: float
    height: float
    x: float  # the original's place in the canvas
    y: float
    w: float
    h: float


def canvas(
    ratios: Mapping[str, float] | None, width: int | None, height: int | None, box: float = 220
) -> Canvas | None:
    if not ratios or not width or not height:
        return None
    try:
        t, b, l_, r = (float(ratios.get(k, 0) or 0) for k in RATIO_KEYS)
    except (TypeError, ValueError):
        return None
    cw, ch = width * (1 + l_ + r), height * (1 + t + b)
    scale = box / max(cw, ch)
    return Canvas(
        width=round(cw * scale, 1),
        height=round(ch * scale, 1),
        x=round(width * l_ * scale, 1),
        y=round(height * t * scale, 1),
        w=round(width * scale, 1),
        h=round(height * scale, 1),
    )


def outputs_of(job: Mapping[str, Any]) -> list[str]:
    """The outbox paths of a job's results (planned or written)."""
    outputs = decode_json(job.get("outputs")) or []
    paths = []
    for item in outputs if isinstance(outputs, list) else []:
        path = item.get("path") if isinstance(item, dict) else item
        if isinstance(path, str):
            paths.append(path)
    return paths


@dataclass(frozen=True)
class Bar:
    x: float
    done_y: float
    done_h: float
    failed_y: float
    failed_h: float
    label: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    bar_width: float
    width: int
    height: int
    peak: int
    total_done: int
    total_failed: int


def chart(per_minute: Sequence[tuple[int, int]], width: int = 1200, height: int = 90) -> Chart:
    """Stacked bars (done below, failed above), one per minute, scaled to the busiest."""
    peak = max([d + f for d, f in per_minute] + [1])
    step = width / max(len(per_minute), 1)
    bars = []
    for i, (done, failed) in enumerate(per_minute):
        dh = height * done / peak
        fh = height * failed / peak
        minutes_ago = len(per_minute) - i
        bars.append(
            Bar(
                x=round(i * step + 0.5, 2),
                done_y=round(height - dh, 2),
                done_h=round(dh, 2),
                failed_y=round(height - dh - fh, 2),
                failed_h=round(fh, 2),
                label=f"{minutes_ago}–{minutes_ago - 1} min ago: {done} done, {failed} failed",
            )
        )
    return Chart(
        bars=bars,
        bar_width=round(max(step - 1, 1), 2),
        width=width,
        height=height,
        peak=peak,
        total_done=sum(d for d, _ in per_minute),
        total_failed=sum(f for _, f in per_minute),
    )


@dataclass(frozen=True)
class Step:
    at: float
    event: str
    change: str  # "waiting → submitting", or "" for a note
    detail: list[tuple[str, str]]


def timeline(events: Sequence[Mapping[str, Any]]) -> list[Step]:
    steps = []
    for e in events:
        detail = decode_json(e.get("detail")) or {}
        if not isinstance(detail, dict):
            detail = {"detail": detail}
        src, dst = e.get("from_state"), e.get("to_state")
        change = f"{src or '·'} → {dst}" if dst and src != dst else (dst or "")
        steps.append(
            Step(
                at=e.get("at") or 0.0,
                event=e.get("event") or "",
                change=change,
                detail=[(str(k), _short(v)) for k, v in detail.items() if v is not None],
            )
        )
    return steps


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
