"""The one request budget: a token bucket shared by every API call (create and query).

Result downloads do not spend it (the real service serves them from a storage host).
Capacity is one token, so requests leave evenly spaced at 1/rate: a burst of `qps` requests
right after an idle second would trip a sliding-window limiter on the server. The rate sits
a little under `api.qps` for the same reason. A 429 halves the rate for the whole daemon
and blocks until Retry-After; successes then raise it again slowly (AIMD).

The bucket owns no clock and never sleeps: callers pass `now` (monotonic seconds) and sleep
until `next_time(now)` themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADROOM = 0.97  # fraction of the account's QPS we aim at: jitter must not cross the limit
FLOOR = 0.1  # never slow below this fraction of the QPS
RECOVERY = 0.02  # fraction of the QPS added back per successful request


@dataclass
class Budget:
    qps: float
    rate: float = 0.0
    _ready_at: float = 0.0  # when the next token is available
    _last_sent: float = float("-inf")
    blocked_until: float = 0.0
    rate_limited: int = 0  # 429s seen, for status

    def __post_init__(self) -> None:
        self.rate = self.rate or self.qps * HEADROOM

    @property
    def max_rate(self) -> float:
        return self.qps * HEADROOM

    def next_time(self, now: float) -> float:
        """The earliest time a request may be sent."""
        return max(now, self._ready_at, self.blocked_until)

    def try_take(self, now: float) -> bool:
        """Spend a token if one is available now."""
        if self.next_time(now) > now:
            return False
        # Even spacing: the next token is one interval after this one (capacity one: idle time
        # is not saved up into a burst that a sliding-window limiter would refuse).
        self._ready_at = max(self._ready_at, now) + 1.0 / self.rate
        return True

    def send_delay(self, now: float) -> float:
        """Seconds to hold a request so that sends stay one interval apart."""
        return max(0.0, self._last_sent + 1.0 / self.rate - now, self.blocked_until - now)

    def mark_sent(self, now: float) -> None:
        self._last_sent = now

    def is_contended(self, now: float, demand_per_second: float) -> bool:
        """True when the requests we would like to send exceed what the budget allows."""
        return demand_per_second > self.rate or self.blocked_until > now

    def on_rate_limited(self, now: float, retry_after: float | None = None) -> None:
        """A 429: the whole daemon slows down, not just the request that got it."""
        self.rate_limited += 1
        self.rate = max(self.qps * FLOOR, self.rate / 2)
        wait = retry_after if retry_after is not None else 1.0 / self.rate
        self.blocked_until = max(self.blocked_until, now + wait)

    def on_success(self) -> None:
        if self.rate < self.max_rate:
            self.rate = min(self.max_rate, self.rate + self.qps * RECOVERY)

    def set_qps(self, qps: float) -> None:
        """Live reload of `api.qps`."""
        scale = self.rate / self.max_rate if self.max_rate else 1.0
        self.qps = qps
        self.rate = self.max_rate * min(1.0, scale)
