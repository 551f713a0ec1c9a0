"""`/metrics`: Prometheus counters from job transitions, gauges from the ledger at scrape time.

Counters come from `Metrics.observe`, a transition observer (observe.py holds the contract:
event names and `detail` keys); it only bumps numbers, so it never slows the engine. They
count from the daemon's start, as Prometheus counters do. Gauges that the ledger knows
(jobs per folder and state, in flight, paused folders, the 401 pause, the last success) are
read from the ledger when Prometheus scrapes, through the dashboard's read-only connection;
what only the running daemon knows (budget, learned task time, heartbeat) comes from
`LiveState`.

    watchd_creates_total{folder,outcome}        creates, by the event that recorded their end
    watchd_queries_total{folder,outcome}        task queries, likewise
    watchd_rate_limited_total{folder,request}   creates and queries answered 429
    watchd_extra_creates_total{folder,cause}    the same content created again, by cause
    watchd_task_seconds{folder}                 histogram: create to finished task
    watchd_upload_bytes_total{folder}           bytes sent with creates the API accepted
    watchd_download_bytes_total{folder}         result bytes written to the outbox
    watchd_jobs_finished_total{folder,result}   originals moved to done/ or failed/
    watchd_requests_per_second                  creates and queries answered, last minute
    watchd_jobs{folder,state}                   jobs in the ledger
    watchd_in_flight                            jobs submitting, processing or downloading
    watchd_folder_paused{folder}                1 while the folder is paused
    watchd_submissions_paused                   1 while the API refuses the key (401)
    watchd_last_success_timestamp_seconds{folder}  when the folder's last job was done
    watchd_start_time_seconds                   when the daemon started
    watchd_qps, watchd_budget_rate_per_second, watchd_learned_task_seconds{folder},
    watchd_heartbeat_age_seconds                from LiveState
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from watchd.clock import Clock
from watchd.observe import Transition
from watchd.web import queries
from watchd.web.live import LiveState

CREATE_OUTCOMES = frozenset({"created", "sync_done", "create_lost", "unsent", "retry", "fail"})
QUERY_OUTCOMES = frozenset({"poll_pending", "poll_done", "poll_error", "retry", "fail"})
TASK_BUCKETS = (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)
RATE_WINDOW = 60.0  # seconds over which requests per second are counted


class Metrics:
    """Counters fed by job transitions, in a registry of their own (one per daemon)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.creates = Counter(
            "watchd_creates",
            "Create requests by outcome (the event that recorded how each ended).",
            ["folder", "outcome"],
            registry=r,
        )
        self.queries = Counter(
            "watchd_queries",
            "Task queries by outcome (the event that recorded how each ended).",
            ["folder", "outcome"],
            registry=r,
        )
        self.rate_limited = Counter(
            "watchd_rate_limited",
            "Creates and queries the API answered with 429 (too many requests).",
            ["folder", "request"],
            registry=r,
        )
        self.extra_creates = Counter(
            "watchd_extra_creates",
            "Creates of content that was created before (a lost answer, a failed task,"
            " a retry, the same bytes dropped again), by cause.",
            ["folder", "cause"],
            registry=r,
        )
        self.task_seconds = Histogram(
            "watchd_task_seconds",
            "Seconds from a task's create to its result, as the API reported or polls saw.",
            ["folder"],
            buckets=TASK_BUCKETS,
            registry=r,
        )
        self.bytes_up = Counter(
            "watchd_upload_bytes",
            "Bytes uploaded with creates the API accepted.",
            ["folder"],
            registry=r,
        )
        self.bytes_down = Counter(
            "watchd_download_bytes",
            "Result bytes downloaded and written to the outbox.",
            ["folder"],
            registry=r,
        )
        self.finished = Counter(
            "watchd_jobs_finished",
            "Originals moved to done/ (result=done) or failed/ (result=failed).",
            ["folder", "result"],
            registry=r,
        )
        ProcessCollector(registry=r)  # empty under systemd's ProcSubset=pid (no /proc/stat)
        self.started_at = clock.wall()
        self.last_success: dict[str, float] = {}
        self._answered: deque[float] = deque()  # mono times of answered requests
        self._lock = threading.Lock()  # observe() runs in the loop, scrapes in the reader

    # -- the observer -----------------------------------------------------------------

    def observe(self, t: Transition) -> None:
        """A committed transition (observe.py): count what it says, nothing else."""
        d = t.detail
        folder = t.folder
        if t.src == "submitting" and t.event in CREATE_OUTCOMES:
            self.creates.labels(folder, t.event).inc()
            self._request(d, folder, "create")
        elif t.src == "processing" and t.event in QUERY_OUTCOMES:
            self.queries.labels(folder, t.event).inc()
            self._request(d, folder, "query")
        if t.event == "submit" and d.get("cause"):
            self.extra_creates.labels(folder, str(d["cause"])).inc()
        if t.event in ("created", "sync_done"):
            self._add(self.bytes_up, folder, d.get("bytes_up"))
        if t.event in ("poll_done", "sync_done"):
            seconds = _number(d.get("seconds"))
            if seconds is not None and seconds >= 0:
                self.task_seconds.labels(folder).observe(seconds)
        if t.event == "written":
            self._add(self.bytes_down, folder, d.get("bytes_down"))
        if t.event == "moved" and t.dst in ("done", "failed"):
            self.finished.labels(folder, t.dst).inc()
            if t.dst == "done":
                self._succeeded(folder, t.at)

    def _succeeded(self, folder: str, at: float) -> None:
        with self._lock:
            self.last_success[folder] = max(self.last_success.get(folder, 0.0), at)

    def successes(self) -> dict[str, float]:
        with self._lock:
            return dict(self.last_success)

    def _request(self, detail: Any, folder: str, kind: str) -> None:
        with self._lock:
            self._answered.append(self.clock.mono())
        if detail.get("http_status") == 429:
            self.rate_limited.labels(folder, kind).inc()

    @staticmethod
    def _add(counter: Counter, folder: str, value: Any) -> None:
        amount = _number(value)
        if amount is not None and amount > 0:
            counter.labels(folder).inc(amount)

    def requests_per_second(self) -> float:
        """Creates and queries answered per second over the last minute."""
        now = self.clock.mono()
        with self._lock:
            while self._answered and self._answered[0] < now - RATE_WINDOW:
                self._answered.popleft()
            return len(self._answered) / RATE_WINDOW

    def seed_last_success(self, conn: sqlite3.Connection) -> None:
        """Start from what the ledger knows (counters restart at zero; this must not)."""
        for folder, at in conn.execute(
            "select folder, max(finished_at) from jobs where state = 'done' group by folder"
        ):
            if at is not None:
                self._succeeded(folder, at)

    def scrape(self) -> bytes:
        """The exposition text; call it where the ledger collector may read (reader thread)."""
        return generate_latest(self.registry)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class LedgerGauges(Collector):
    """Gauges read when Prometheus scrapes: the ledger (via `conn()`) and `LiveState`."""

    def __init__(
        self,
        conn: Callable[[], sqlite3.Connection],
        live: LiveState,
        metrics: Metrics,
        folders: Callable[[], Iterable[str]],
    ) -> None:
        self.conn = conn
        self.live = live
        self.metrics = metrics
        self.folders = folders

    def describe(self) -> list[Metric]:
        return []  # names are not known before the first scrape; skip the up-front check

    def collect(self) -> Iterator[Metric]:
        conn = self.conn()
        configured = list(self.folders())
        jobs = GaugeMetricFamily(
            "watchd_jobs", "Jobs in the ledger, by folder and state.", labels=["folder", "state"]
        )
        in_flight = 0
        known = queries.counts(conn)
        for folder in sorted(set(known) | set(configured)):
            per_state = known.get(folder, {})
            for state in queries.STATES:
                jobs.add_metric([folder, state], per_state.get(state, 0))
                if state in queries.IN_FLIGHT_STATES:
                    in_flight += per_state.get(state, 0)
        yield jobs
        yield GaugeMetricFamily(
            "watchd_in_flight", "Jobs submitting, processing or downloading.", value=in_flight
        )
        paused = queries.paused_folders(conn)
        folder_paused = GaugeMetricFamily(
            "watchd_folder_paused", "1 while the folder is paused.", labels=["folder"]
        )
        for folder in sorted(set(paused) | set(configured)):
            folder_paused.add_metric([folder], 1.0 if folder in paused else 0.0)
        yield folder_paused
        yield GaugeMetricFamily(
            "watchd_submissions_paused",
            "1 while every create is paused because the API refused the key (401).",
            value=1.0 if queries.meta(conn, "paused") else 0.0,
        )
        last = GaugeMetricFamily(
            "watchd_last_success_timestamp_seconds",
            "When the folder's last job was done (epoch seconds).",
            labels=["folder"],
        )
        for folder, at in sorted(self.metrics.successes().items()):
            last.add_metric([folder], at)
        yield last
        yield GaugeMetricFamily(
            "watchd_start_time_seconds",
            "When the daemon started (epoch seconds).",
            value=self.metrics.started_at,
        )
        yield GaugeMetricFamily(
            "watchd_requests_per_second",
            "Creates and queries answered per second over the last minute.",
            value=self.metrics.requests_per_second(),
        )
        yield GaugeMetricFamily(
            "watchd_qps", "The account's request budget (api.qps).", value=self.live.qps
        )
        yield GaugeMetricFamily(
            "watchd_budget_rate_per_second",
            "Requests per second the budget allows now (lowered after a 429).",
            value=self.live.budget_rate,
        )
        learned = GaugeMetricFamily(
            "watchd_learned_task_seconds",
            "Task time by which 95% of the folder's recent tasks finished (first poll).",
            labels=["folder"],
        )
        for folder, seconds in sorted(self.live.learned.items()):
            learned.add_metric([folder], seconds)
        yield learned
        _, age, _ = self.live.health(self.metrics.clock.mono())
        yield GaugeMetricFamily(
            "watchd_heartbeat_age_seconds",
            "Seconds since the main loop last turned.",
            value=age if age is not None else float("nan"),
        )
