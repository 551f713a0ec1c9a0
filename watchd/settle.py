"""Is this file finished? A pure quiet-period tracker: only complete files are taken.

A file is taken once it has been quiet for `settle` seconds: no event or scan saw it in that
time, and its size and mtime are what they were when it was last seen. The caller feeds it
what it saw (`seen`), asks which files have waited long enough (`due`), re-stats those and
asks for the verdict (`confirm`).

This module owns only that bookkeeping. It must never do I/O and never read a clock: every
method takes `now` (the caller's monotonic time), so tests drive it without sleeping, which
is what paperless-ngx's FileStabilityTracker could not do.

Memory: one small tuple per pending file plus heap entries. Deadlines live in a heap with lazy
deletion; a file seen again leaves a stale entry behind, and the heap is rebuilt when stale
entries outnumber live ones two to one, so a file that keeps changing cannot grow it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import NamedTuple

# Below this many heap entries compaction is not worth its cost.
_COMPACT_MIN = 64
# A pending entry whose deadline was handed out by due() and that waits for confirm().
_HANDED_OUT = -1


@dataclass(frozen=True, slots=True)
class Stat:
    """The part of a stat result that says whether a file is still being written."""

    size: int
    mtime_ns: int


class _Pending(NamedTuple):
    # The stat's fields, not the Stat object: one tuple per file is all a pending file costs.
    size: int
    mtime_ns: int
    deadline: float
    seq: int  # matches the live heap entry; _HANDED_OUT once due() returned the key


class SettleTracker:
    """Files waiting for their quiet period, keyed by whatever the caller uses (a path)."""

    def __init__(self, settle: float) -> None:
        if settle < 0:
            raise ValueError(f"settle must be >= 0, got {settle!r}")
        self.settle = settle
        self._pending: dict[Hashable, _Pending] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def seen(self, key: Hashable, stat: Stat | None, now: float) -> None:
        """An event or a scan saw the file: (re)start its quiet period.

        Any sighting restarts the wait, even with an unchanged stat (a writer may be between
        two writes of the same size within one mtime tick). `stat=None` means it vanished.
        """
        if stat is None:
            self.forget(key)
            return
        self._schedule(key, stat, now + self.settle)

    def due(self, now: float) -> list[Hashable]:
        """Keys whose quiet period has passed, each handed out once.

        The caller re-stats each and calls `confirm` (or `seen`/`forget`) for it; until then
        the key stays pending but is not returned again.
        """
        out: list[Hashable] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _deadline, seq, key = heapq.heappop(heap)
            entry = self._pending.get(key)
            if entry is None or entry.seq != seq:
                continue  # stale: the file was seen again or forgotten since
            self._pending[key] = entry._replace(seq=_HANDED_OUT)
            out.append(key)
        return out

    def confirm(self, key: Hashable, stat: Stat | None, now: float) -> bool:
        """The caller's fresh stat of a due file: True if it is complete (and forgets it).

        A stat that differs from the recorded one restarts the wait; None forgets the file;
        an unknown key, or one whose quiet period was restarted meanwhile, gives False.
        """
        entry = self._pending.get(key)
        if entry is None:
            return False
        if stat is None:
            self.forget(key)
            return False
        if stat.size != entry.size or stat.mtime_ns != entry.mtime_ns:
            self._schedule(key, stat, now + self.settle)
            return False
        if now < entry.deadline:
            return False
        del self._pending[key]
        return True

    def next_deadline(self) -> float | None:
        """When the next file may become due (for sleeping until then), or None if none can."""
        heap = self._heap
        while heap:
            _deadline, seq, key = heap[0]
            entry = self._pending.get(key)
            if entry is not None and entry.seq == seq:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def forget(self, key: Hashable) -> None:
        """Stop tracking a file (its heap entry goes stale and is dropped lazily)."""
        self._pending.pop(key, None)
        self._maybe_compact()

    def _schedule(self, key: Hashable, stat: Stat, deadline: float) -> None:
        seq = next(self._seq)
        self._pending[key] = _Pending(stat.size, stat.mtime_ns, deadline, seq)
        heapq.heappush(self._heap, (deadline, seq, key))
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if len(self._heap) <= max(_COMPACT_MIN, 2 * len(self._pending)):
            return
        self._heap = [
            (entry.deadline, entry.seq, key)
            for key, entry in self._pending.items()
            if entry.seq != _HANDED_OUT
        ]
        heapq.heapify(self._heap)
