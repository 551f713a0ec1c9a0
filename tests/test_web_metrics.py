"""/metrics: counters fed by transitions built per observe.py's contract, gauges read from
the ledger at scrape time; scraped and parsed with the Prometheus text parser."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.web import close_world, make_world
from watchd.clock import FakeClock
from watchd.observe import Transition
from watchd.web.metrics import Metrics


def t(event: str, src: str | None, dst: str | None, folder: str = "f", **detail: Any) -> Transition:
    return Transition(
        job_id=1,
        folder=folder,
        name="a.png",
        event=event,
        src=src,
        dst=dst,
        at=1000.0,
        detail=detail,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def test_creates_and_queries_are_counted_by_the_event_that_ended_them() -> None:
    m = Metrics(FakeClock())
    for tr in [
        t("submit", "waiting", "submitting", attempt=1, cause=None),
        t("created", "submitting", "processing", task_id="a", bytes_up=5000),
        t("submit", "waiting", "submitting", attempt=2, cause="ambiguous"),
        t("create_lost", "submitting", "waiting", reason="lost"),
        t("submit", "waiting", "submitting", attempt=2, cause="retry"),
        t("unsent", "submitting", "waiting", reason="429", http_status=429),
        t("poll_pending", "processing", "processing", state=4, progress=50),
        t("poll_error", "processing", "processing", reason="slow down", http_status=429),
        t("poll_done", "processing", "downloading", task_id="a", seconds=9.5),
        t("retry", "processing", "waiting", reason="-15", code="state -15"),
        t("sync_done", "submitting", "downloading", task_id="b", bytes_up=3000, seconds=2.0),
        t("written", "downloading", "finishing", outputs=[], bytes_down=7000),
        t("moved", "finishing", "done", to="/done/a.png"),
        t("moved", "failing", "failed", to="/failed/b.png"),
        t("planned", "downloading", "downloading", outputs=[]),  # not a request
        t("url_expired", "downloading", "processing", reason="expired"),  # not a request
    ]:
        m.observe(tr)
    found = samples(m.scrape().decode())
    assert value(found, "watchd_creates_total", folder="f", outcome="created") == 1
    assert value(found, "watchd_creates_total", folder="f", outcome="create_lost") == 1
    assert value(found, "watchd_creates_total", folder="f", outcome="unsent") == 1
    assert value(found, "watchd_creates_total", folder="f", outcome="sync_done") == 1
    assert value(found, "watchd_queries_total", folder="f", outcome="poll_pending") == 1
    assert value(found, "watchd_queries_total", folder="f", outcome="poll_error") == 1
    assert value(found, "watchd_queries_total", folder="f", outcome="poll_done") == 1
    assert value(found, "watchd_queries_total", folder="f", outcome="retry") == 1
    assert value(found, "watchd_rate_limited_total", folder="f", request="create") == 1
    assert value(found, "watchd_rate_limited_total", folder="f", request="query") == 1
    assert value(found, "watchd_extra_creates_total", folder="f", cause="ambiguous") == 1
    assert value(found, "watchd_extra_creates_total", folder="f", cause="retry") == 1
    assert value(found, "watchd_task_seconds_count", folder="f") == 2
    assert value(found, "watchd_task_seconds_sum", folder="f") == 11.5
    assert value(found, "watchd_task_seconds_bucket", folder="f", le="10.0") == 2
    assert value(found, "watchd_task_seconds_bucket", folder="f", le="2.0") == 1
    assert value(found, "watchd_upload_bytes_total", folder="f") == 8000
    assert value(found, "watchd_download_bytes_total", folder="f") == 7000
    assert value(found, "watchd_jobs_finished_total", folder="f", result="done") == 1
    assert value(found, "watchd_jobs_finished_total", folder="f", result="failed") == 1
    assert m.last_success == {"f": 1000.0}
    assert m.requests_per_second() == pytest.approx(8 / 60)  # 4 creates and 4 queries ended


def test_odd_details_are_ignored_not_fatal() -> None:
    m = Metrics(FakeClock())
    m.observe(t("created", "submitting", "processing", bytes_up="lots"))
    m.observe(t("poll_done", "processing", "downloading", seconds=None))
    m.observe(t("poll_done", "processing", "downloading", seconds=-3))
    m.observe(t("written", "downloading", "finishing", bytes_down=True))
    found = samples(m.scrape().decode())
    assert value(found, "watchd_creates_total", folder="f", outcome="created") == 1
    assert ("watchd_task_seconds_count", (("folder", "f"),)) not in found
    assert ("watchd_upload_bytes_total", (("folder", "f"),)) not in found


def test_requests_per_second_counts_the_last_minute_only() -> None:
    clock = FakeClock()
    m = Metrics(clock)
    for _ in range(30):
        m.observe(t("poll_pending", "processing", "processing"))
    assert m.requests_per_second() == 0.5
    clock.advance(61)
    assert m.requests_per_second() == 0.0


def test_ledger_gauges_at_scrape_time(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    try:
        w.done_job("products", "mug.png")
        busy = w.waiting_job("banners", "shoe.png")
        from watchd.lifecycle import Event

        w.ledger.commit(busy, Event.SUBMIT, {"attempt": 1, "cause": None})
        w.waiting_job("banners", "bag.png", seed=33)
        w.ledger.pause_folder("banners", "backdrop", by="dashboard")
        w.ledger.set_meta("paused", "HTTP 401 from the API")
        w.live.learned = {"products": 8.5}
        w.clock.advance(5)
        with w.client() as http:
            found = samples(http.get("/metrics").text)
    finally:
        close_world(w)
    assert value(found, "watchd_jobs", folder="products", state="done") == 1
    assert value(found, "watchd_jobs", folder="banners", state="waiting") == 1
    assert value(found, "watchd_jobs", folder="banners", state="submitting") == 1
    assert value(found, "watchd_jobs", folder="products", state="failed") == 0
    assert value(found, "watchd_in_flight") == 1
    assert value(found, "watchd_folder_paused", folder="banners") == 1
    assert value(found, "watchd_folder_paused", folder="products") == 0
    assert value(found, "watchd_submissions_paused") == 1
    assert value(found, "watchd_qps") == 2.0
    assert value(found, "watchd_budget_rate_per_second") == 1.94
    assert value(found, "watchd_learned_task_seconds", folder="products") == 8.5
    assert value(found, "watchd_heartbeat_age_seconds") == 5.0
    assert value(found, "watchd_last_success_timestamp_seconds", folder="products") > 0
    assert value(found, "watchd_creates_total", folder="products", outcome="created") == 1
    assert value(found, "watchd_start_time_seconds") == 1_750_000_000.0  # the fake wall


def test_the_last_success_survives_a_restart_from_the_ledger(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    try:
        w.done_job("products", "mug.png")
        fresh = Metrics(w.clock)  # a new daemon: counters at zero, the ledger remembers
        fresh.seed_last_success(w.ledger.db.conn)
    finally:
        close_world(w)
    assert fresh.last_success == {"products": w.clock.wall()}


def test_health_before_the_first_turn_and_after_too_long_without_one() -> None:
    from watchd.web.live import LiveState

    live = LiveState(started=1000.0)
    ok, age, why = live.health(1010.0)
    assert ok and age is None and why == "starting"
    ok, age, why = live.health(1000.0 + live.stale_after + 1)
    assert not ok and "has not turned" in why


def test_the_heartbeat_gauge_is_nan_before_the_first_turn(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.live.heartbeat = None
    try:
        with w.client() as http:
            found = samples(http.get("/metrics").text)
    finally:
        close_world(w)
    assert math.isnan(value(found, "watchd_heartbeat_age_seconds"))


def test_the_alert_rule_example_is_valid_yaml_naming_our_metrics() -> None:
    import yaml

    rules = yaml.safe_load(Path("docs/watchd-alerts.yml").read_text())
    rule = rules["groups"][0]["rules"][0]
    assert rule["alert"] == "WatchdNoSuccessWhileFilesWait"
    for metric in ("watchd_last_success_timestamp_seconds", "watchd_jobs", "watchd_start_time"):
        assert metric in rule["expr"]
    assert rule["for"] and rule["annotations"]["summary"]


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) not installed"
)
def test_the_alert_rules_pass_promtools_own_unit_test() -> None:
    """Fires for a folder with files waiting and no success for an hour (or ever), not for
    one that had a success or one with nothing waiting, nor in the first hour after start."""
    done = subprocess.run(
        ["promtool", "test", "rules", "docs/watchd-alerts.test.yml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
