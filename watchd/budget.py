"""The one request budget: a token bucket shared by every API call (create and query).

Result downloads do not spend it (the real service serves them from a storage host).

Two paces, both on monotonic seconds the caller passes in:
- decisions: `try_take(now)` hands out one token per 1/rate (capacity one, so idle time is
  never saved up into a burst that a sliding-window limiter on the server would refuse);
- sends: `try_send(now)` lets a request leave only one interval after the last one that
  actually left, and marks it sent in the same call. The time between a decision and its
  send varies (a file read, a busy event loop on a loaded host): spacing decisions alone let
  a late request and the next one on time reach the server closer than 1/qps.

Headroom: the rate sits under `api.qps` (HEADROOM) because a request that left on time can
still reach the server late (a busy host, the network). Each 429 takes one more step of
headroom (down to MIN_HEADROOM, where requests still flow at 92% of the QPS) and many
successes in a row give it back; AIMD on top: a 429 halves the rate for the whole daemon and
blocks until Retry-After, successes raise it again slowly.

The bucket owns no clock and never sleeps: callers sleep until the time it names.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

HEADROOM = 0.985  # fraction of the account's QPS aimed at on a quiet host (15 ms a second)
MIN_HEADROOM = 0.92  # the most headroom 429s can take: requests still flow at 92% of the QPS
HEADROOM_STEP = 0.01  # taken per 429
HEADROOM_BACK = 0.0001  # given back per success (a step per 100 successes)
SLACK = 0.004  # a decision or send this late after its slot keeps the schedule (see _next_slot)
LAG_FACTOR = 1.5  # a late send and an on-time one: keep 1.5 × the lateness seen as margin
LAG_MEMORY = 100  # the margin covers the worst lateness of this many recent readings
HALVE_WITHIN = 20  # a 429 this few sends after the last one halves the rate (AIMD)
FLOOR = 0.1  # never slow below this fraction of the QPS
RECOVERY = 0.02  # fraction of the QPS added back per successful request


@dataclass
class Budget:
    qps: float
    rate: float = 0.0
    headroom: float = HEADROOM
    lag: float = 0.0  # the worst recent lateness of the caller (seconds)
    _lags: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_MEMORY))
    _ready_at: float = 0.0  # when the next decision token is available
    _last_sent: float = float("-inf")
    _wanted: float | None = None  # the slot a waiting request was told to come back at
    _last_429: int | None = None  # `sent` at the last 429
    blocked_until: float = 0.0
    rate_limited: int = 0  # 429s seen, for status
    sent: int = 0  # requests marked sent, for status

    def __post_init__(self) -> None:
        self.rate = self.rate or self.max_rate

    @property
    def window(self) -> float:
        """The server's limit window: QPS per second, or one request per 1/QPS below 1."""
        return max(1.0, 1.0 / self.qps)

    @property
    def max_rate(self) -> float:
        """The QPS less the headroom, and less the margin that recent lateness needs: a send
        that leaves `lag` late must not bring the next window's requests within it."""
        margin = self.window / (self.window + LAG_FACTOR * self.lag)
        return self.qps * min(self.headroom, margin)

    @property
    def interval(self) -> float:
        return 1.0 / min(self.rate, self.max_rate)

    # -- decisions ---------------------------------------------------------------------

    def next_time(self, now: float) -> float:
        """The earliest time a request may be decided (and sent)."""
        return max(now, self._ready_at, self._last_sent + self.interval, self.blocked_until)

    def try_take(self, now: float) -> bool:
        """Spend a decision token if one is available now."""
        if self.next_time(now) > now:
            return False
        # Even spacing: the next token is one interval after this one (capacity one: idle time
        # is not saved up into a burst that a sliding-window limiter would refuse).
        # Both paces keep one schedule: a decision counts at the later of its token and the
        # next send slot, so the two never drift apart by their lateness.
        slot = max(self._ready_at, self._last_sent + self.interval)
        self._ready_at = _next_slot(slot, now) + self.interval
        return True

    # -- sends -------------------------------------------------------------------------

    def try_send(self, now: float) -> float:
        """0.0 when a request may leave now, and it is marked sent; else the seconds to
        wait before asking again. Call it right before the request leaves, with nothing
        awaited between this call and the send: two requests then never share a slot.

        How late a waiting request comes back after its slot is the host's lag (a busy
        event loop, a loaded CPU); the budget keeps a margin for it."""
        delay = self.send_delay(now)
        if delay > 0:
            slot = now + delay
            self._wanted = slot if self._wanted is None else min(self._wanted, slot)
            return delay
        if self._wanted is not None:
            self.note_lag(now - self._wanted)
            self._wanted = None
        self.mark_sent(now)
        return 0.0

    def note_lag(self, seconds: float) -> None:
        """The caller woke `seconds` after the time it meant to (its event loop was busy):
        the same lateness can hit a send after it was marked, so keep a margin for it."""
        self._lags.append(min(max(0.0, seconds), self.window))
        self.lag = max(self._lags)

    def send_delay(self, now: float) -> float:
        """Seconds to hold a request so that sends stay one interval apart."""
        return max(0.0, self._last_sent + self.interval - now, self.blocked_until - now)

    def mark_sent(self, now: float) -> None:
        self._last_sent = _next_slot(self._last_sent + self.interval, now)
        self.sent += 1

    # -- what the API answered -----------------------------------------------------------

    def on_rate_limited(self, now: float, retry_after: float | None = None) -> None:
        """A 429: the whole daemon waits for Retry-After and keeps a step more headroom from
        now on; a second 429 soon after the last also halves the rate (AIMD)."""
        self.rate_limited += 1
        self.headroom = max(MIN_HEADROOM, self.headroom - HEADROOM_STEP)
        self.rate = min(self.rate, self.max_rate)
        if self._last_429 is not None and self.sent - self._last_429 <= HALVE_WITHIN:
            self.rate = max(self.qps * FLOOR, self.rate / 2)
        self._last_429 = self.sent
        wait = retry_after if retry_after is not None else self.interval
        self.blocked_until = max(self.blocked_until, now + wait)

    def on_success(self) -> None:
        self.headroom = min(HEADROOM, self.headroom + HEADROOM_BACK)
        if self.rate < self.max_rate:
            self.rate = min(self.max_rate, self.rate + self.qps * RECOVERY)

    def set_qps(self, qps: float) -> None:
        """Live reload of `api.qps`."""
        scale = self.rate / self.max_rate if self.max_rate else 1.0
        self.qps = qps
        self.rate = self.max_rate * min(1.0, scale)


def _next_slot(slot: float, now: float) -> float:
    """The time a decision or send taken at `now` for `slot` counts as taken.

    A few milliseconds late (the loop's wake-up, a commit before the send) keeps the
    schedule: counted at its slot, the next comes one interval after the slot, not after
    `now`. Anchoring on `now` instead lost that lateness on every request: at QPS 50 about
    3 ms of each 20, 13% of the account's rate. Gaps then shrink by at most SLACK, which
    HEADROOM covers (a window holds no more: 1.5% of a second is 15 ms, SLACK is 4). Later
    than SLACK, the schedule starts again from `now`."""
    return slot if 0.0 <= now - slot <= SLACK else max(slot, now)
