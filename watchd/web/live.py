"""`LiveState`: what only the running daemon knows, for the pages, /metrics and /healthz.

The daemon writes it from its main loop (one field at a time, in the loop thread) and the
dashboard reads it in the same thread: no lock. Everything the ledger knows stays in the
ledger; this holds the rest: the main loop's heartbeat, the request budget, what the
polling model learned, the 401 pause as the engine sees it, and the spending caps' state.
Times are the clock's monotonic seconds (never the wall).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STALE_AFTER = 90.0  # seconds without a loop turn before /healthz says stuck (the loop
# wakes at least every 30 s when idle, so three missed wake-ups)


@dataclass
class LiveState:
    started: float  # mono time the daemon started
    stale_after: float = STALE_AFTER
    heartbeat: float | None = None  # mono time of the main loop's last turn
    qps: float = 0.0  # api.qps, the account's request budget
    budget_rate: float = 0.0  # requests/s the budget allows now (halved on a 429)
    rate_limited: int = 0  # 429s the budget has seen since the start
    learned: dict[str, float] = field(default_factory=dict)  # folder → 95% task seconds
    auth_pause: str | None = None  # the 401 pause's reason, while it lasts
    caps: Mapping[str, Any] | None = None  # spending caps (issue 13): {"paused": reason, ...}
    stopping: bool = False

    def beat(self, mono: float) -> None:
        """One turn of the main loop is done."""
        self.heartbeat = mono

    def health(self, now: float) -> tuple[bool, float | None, str]:
        """(healthy, seconds since the last turn, why): a loop that has stopped turning
        is unhealthy even though the process, and this web server, still answer."""
        if self.stopping:
            return False, self._age(now), "stopping"
        if self.heartbeat is None:
            waited = now - self.started
            if waited > self.stale_after:
                return False, None, f"the main loop has not turned in {waited:.0f} s since start"
            return True, None, "starting"
        age = now - self.heartbeat
        if age > self.stale_after:
            return False, age, f"the main loop has not turned for {age:.0f} s (stuck)"
        return True, age, "ok"

    def _age(self, now: float) -> float | None:
        return None if self.heartbeat is None else now - self.heartbeat
