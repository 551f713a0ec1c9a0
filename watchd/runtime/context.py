"""What the engine's rooms share, passed in explicitly: no room reaches into another.

One `Context` holds the ledger (the only truth), the clock (the ledger's: wall for records,
monotonic for deadlines), the retry policy, the current config, how blocking file work is
run (`offload`: a worker thread in the daemon, inline in the deterministic simulation), the
logger, and `wake()` to tell the runtime that something became due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from watchd.config import Config, FolderConfig
from watchd.ledger import Ledger, LedgerClock
from watchd.lifecycle import Event, Step
from watchd.logs import get_logger
from watchd.policy import Policy, Verdict

T = TypeVar("T")
Offload = Callable[..., Awaitable[Any]]


def policy_for(cfg: Config, rng: Any = None) -> Policy:
    return Policy(
        max_attempts=cfg.retry.max_attempts,
        base_delay=cfg.retry.base_delay,
        max_delay=cfg.retry.max_delay,
        poll_interval=cfg.api.poll_interval,
        task_timeout=cfg.api.task_timeout,
        on_ambiguous=cfg.api.on_ambiguous,
        rng=rng,
    )


@dataclass
class Context:
    cfg: Config
    ledger: Ledger
    policy: Policy
    offload: Offload = asyncio.to_thread
    wake: Callable[[], None] = lambda: None
    log: Any = field(default_factory=get_logger)

    @property
    def clock(self) -> LedgerClock:
        return self.ledger.clock

    @property
    def folders(self) -> dict[str, FolderConfig]:
        return {f.name: f for f in self.cfg.folders}

    def job_log(self, job: Mapping[str, Any]) -> Any:
        return self.log.bind(job=job["id"], folder=job["folder"], file=job["name"])

    def commit(
        self, job_id: int, event: Event, detail: Mapping[str, Any] | None = None, **data: Any
    ) -> Step:
        step = self.ledger.commit(job_id, event, detail, **data)
        self.wake()
        return step

    def apply(self, job: Mapping[str, Any], verdict: Verdict, **extra: Any) -> Step:
        """Commit a policy verdict for `job`, with its due time and reason."""
        now = self.clock.mono()
        detail = {**verdict.detail(), **extra.pop("detail", {})}
        return self.commit(job["id"], verdict.event, detail, **verdict.fields(now), **extra)
