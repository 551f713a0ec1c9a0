"""The simulator's knobs (`SimConfig`) and what it remembers of each upload (`UploadRecord`).

Owns: the values, their validation and their JSON form (for `/_sim/config` and
`/_sim/uploads`). Must never: import the rest of watchd, do I/O, or hold live state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SimConfig", "UploadRecord", "config_to_json"]

# Knobs that are fractions of requests or tasks; each must lie in [0, 1].
_FRACTIONS = ("fail_500", "drop", "lose_create", "slow")


@dataclass(frozen=True)
class SimConfig:
    """How the simulated API behaves; change it live with `Simulator.update(**knobs)`."""

    qps: float | None = 2.0
    processing_time: tuple[float, float] = (1.0, 2.0)
    url_ttl: float = 3600
    task_ttl: float = 86400
    valid_keys: frozenset[str] | None = None
    fail_500: float = 0
    drop: float = 0
    lose_create: float = 0
    slow: float = 0
    slow_delay: float = 2.0
    task_fail: dict[int, float] = field(default_factory=dict)
    fail_prompt: dict[str, int] = field(default_factory=dict)
    offset_px: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        # Normalise friendly inputs (lists from JSON, a bare number) so every holder of a
        # SimConfig sees one shape; copies keep a caller's dict from changing us later.
        pt = self.processing_time
        low, high = (float(pt), float(pt)) if isinstance(pt, int | float) else map(float, pt)
        object.__setattr__(self, "processing_time", (low, high))
        if self.valid_keys is not None:
            object.__setattr__(self, "valid_keys", frozenset(self.valid_keys))
        object.__setattr__(self, "task_fail", {int(k): float(v) for k, v in self.task_fail.items()})
        object.__setattr__(
            self, "fail_prompt", {str(k): int(v) for k, v in self.fail_prompt.items()}
        )
        self._check()

    def _check(self) -> None:
        problems: list[str] = []
        if self.qps is not None and not (self.qps >= 0 and math.isfinite(self.qps)):
            problems.append("qps must be >= 0 (0 or None: unlimited)")
        low, high = self.processing_time
        if not 0 <= low <= high:
            problems.append("processing_time must be (low, high) with 0 <= low <= high")
        for name in _FRACTIONS:
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1]")
        for name in ("url_ttl", "task_ttl", "slow_delay"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if self.offset_px < 0:
            problems.append("offset_px must be >= 0")
        if any(state >= 0 for state in self.task_fail):
            problems.append("task_fail keys must be negative state codes")
        if any(p < 0 for p in self.task_fail.values()) or sum(self.task_fail.values()) > 1:
            problems.append("task_fail probabilities must be >= 0 and sum to at most 1")
        if any(state >= 0 for state in self.fail_prompt.values()):
            problems.append("fail_prompt values must be negative state codes")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class UploadRecord:
    """One create request whose body the simulator read, accepted or not."""

    at: float  # epoch seconds
    task_id: str | None  # None unless a task was created
    image_sha256: str | None  # None when no image_file was sent
    image_size: int
    image_format: str | None  # "PNG", "JPEG", or None when not an image we know
    width: int | None
    height: int | None
    complete: bool  # the image decoded fully (False for a truncated file)
    mask_sha256: str | None
    params: dict[str, str]  # every text field, as sent
    sync: bool
    status: int  # the HTTP status answered (0 when the connection was closed instead)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_to_json(cfg: SimConfig) -> dict[str, Any]:
    """The config as JSON-ready values (sets as sorted lists, int keys as strings)."""
    out = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    out["processing_time"] = list(cfg.processing_time)
    out["valid_keys"] = None if cfg.valid_keys is None else sorted(cfg.valid_keys)
    out["task_fail"] = {str(k): v for k, v in cfg.task_fail.items()}
    out["fail_prompt"] = dict(cfg.fail_prompt)
    return out
