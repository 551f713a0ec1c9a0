"""The classification table, the error hierarchy and the backoff policy."""

from __future__ import annotations

import random

import pytest

from watchd.errors import (
    HTTP_STATUS,
    TASK_STATE,
    ApiError,
    AuthError,
    ConnectionLost,
    PermanentApiError,
    RateLimited,
    RequestInfo,
    TaskGone,
    TransientApiError,
    WatchdError,
    backoff_delay,
    classify_http,
    classify_state,
)

# The API doc's codes with the doc's words, copied from picwish-expand-api.md "Status codes".
DOC_HTTP = {
    200: "The request is successful.",
    400: "Wrong parameter passed by the client.",
    401: "Unauthorized API key.",
    404: "The requested URL or resource does not exist.",
    413: "The uploaded file exceeds the allowed size.",
    429: "Request frequency exceeds the QPS limit",
    500: "Server-side exception.",
}
DOC_STATES = {
    -17: "the prompt is invalid",
    -16: "third-party review detected prohibited content",
    -15: "insufficient resources",
    -14: "input image content does not meet the requirements",
    -13: "canceled due to an exception",
    -11: "the result is empty",
    -10: "internal review detected prohibited content",
    -9: "internal program failed during loop processing",
    -8: "Processing timed out.",
    -7: "Invalid image file",
    -5: "exceeds the size limit (30MB)",
    -3: "The server failed to download your file.",
    -2: "uploading the result to OSS failed",
    -1: "Processing failed.",
    0: "Queued.",
    1: "Completed.",
    2: "Preparing.",
    3: "Waiting.",
    4: "Processing in progress.",
    5: "Internally publishing the result.",
    6: "Internal loop processing is in progress.",
}

# The decisions, pinned: changing one must be deliberate.
EXPECTED_HTTP = {
    (200, "create"): "ok",
    (200, "query"): "ok",
    (400, "create"): "permanent",
    (400, "query"): "permanent",
    (401, "create"): "auth",
    (401, "query"): "auth",
    (404, "create"): "permanent",
    (404, "query"): "gone",
    (413, "create"): "permanent",
    (413, "query"): "permanent",
    (429, "create"): "rate_limited",
    (429, "query"): "rate_limited",
    (500, "create"): "transient",
    (500, "query"): "transient",
}
PERMANENT_STATES = {-17, -16, -14, -10, -7, -5}
TRANSIENT_STATES = {-15, -13, -11, -9, -8, -3, -2, -1}
PENDING_STATES = {0, 2, 3, 4, 5, 6}


@pytest.mark.parametrize("code", sorted(DOC_HTTP))
def test_every_doc_http_status_is_a_row_with_the_docs_meaning(code: int) -> None:
    assert code in HTTP_STATUS
    assert DOC_HTTP[code] in HTTP_STATUS[code].meaning


@pytest.mark.parametrize("state", sorted(DOC_STATES))
def test_every_doc_task_state_is_a_row_with_the_docs_meaning(state: int) -> None:
    assert state in TASK_STATE
    assert DOC_STATES[state] in TASK_STATE[state].meaning


def test_tables_hold_no_code_the_doc_does_not_know() -> None:
    assert set(HTTP_STATUS) == set(DOC_HTTP)
    assert set(TASK_STATE) == set(DOC_STATES)


@pytest.mark.parametrize(("code", "op"), sorted(EXPECTED_HTTP))
def test_http_status_is_classified_per_operation(code: int, op: str) -> None:
    c = classify_http(code, op=op)  # type: ignore[arg-type]
    assert (c.code, c.kind) == (code, EXPECTED_HTTP[code, op])
    assert c.meaning == HTTP_STATUS[code].meaning


@pytest.mark.parametrize("state", sorted(TASK_STATE))
def test_task_state_is_classified_as_decided(state: int) -> None:
    expected = (
        "ok"
        if state == 1
        else "permanent"
        if state in PERMANENT_STATES
        else "transient"
        if state in TRANSIENT_STATES
        else "pending"
    )
    assert state == 1 or state in PERMANENT_STATES | TRANSIENT_STATES | PENDING_STATES
    c = classify_state(state)
    assert (c.code, c.kind, c.meaning) == (state, expected, TASK_STATE[state].meaning)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("transient", TransientApiError),
        ("rate_limited", RateLimited),
        ("permanent", PermanentApiError),
        ("auth", AuthError),
        ("gone", TaskGone),
        ("ok", None),
        ("pending", None),
    ],
)
def test_each_kind_names_its_error_class(kind: str, cls: type | None) -> None:
    rows = [(c, "query") for c in HTTP_STATUS] + [(c, "create") for c in HTTP_STATUS]
    found = [classify_http(c, op=op) for c, op in rows] + [classify_state(s) for s in TASK_STATE]
    match = next(c for c in found if c.kind == kind)
    assert match.error_class is cls


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (502, "transient"),
        (503, "transient"),
        (599, "transient"),
        (408, "transient"),
        (403, "permanent"),
        (422, "permanent"),
        (204, "ok"),
        (301, "permanent"),
    ],
)
def test_codes_outside_the_doc_fall_back_by_class(code: int, kind: str) -> None:
    assert classify_http(code, op="create").kind == kind
    assert classify_http(code, op="query").kind == kind


def test_a_storage_hosts_401_does_not_pause_the_daemon() -> None:
    assert classify_http(401, op="download").kind == "permanent"
    assert classify_http(404, op="download").kind == "gone"


def test_unknown_states_follow_the_doc_signs() -> None:
    assert classify_state(7).kind == "pending"
    assert classify_state(-4).kind == "transient"  # like the generic -1
    assert "-4" in classify_state(-4).meaning


def test_rate_limited_is_transient_and_all_api_errors_are_watchd_errors() -> None:
    assert issubclass(RateLimited, TransientApiError)
    for cls in (TransientApiError, PermanentApiError, AuthError, TaskGone, ConnectionLost):
        assert issubclass(cls, ApiError)
    assert issubclass(ApiError, WatchdError)


def test_error_keeps_its_fields_and_says_them() -> None:
    err = PermanentApiError(
        TASK_STATE[-7].meaning,
        request=RequestInfo("GET", "https://api.test/x/t1"),
        http_status=200,
        status=200,
        state=-7,
        task_id="t1",
    )
    assert (err.method, err.url, err.code, err.message) == (
        "GET",
        "https://api.test/x/t1",
        -7,
        TASK_STATE[-7].meaning,
    )
    assert "state -7" in str(err) and "task t1" in str(err)
    assert repr(err).startswith("PermanentApiError(")


def test_error_code_falls_back_to_body_status_then_http_status() -> None:
    assert ApiError("x", http_status=200, status=401).code == 401
    assert ApiError("x", http_status=500).code == 500
    assert ApiError("x").code is None


def test_connection_lost_says_whether_it_was_sent() -> None:
    assert ConnectionLost("gone", sent=True).sent
    assert "may have been received" in str(ConnectionLost("gone", sent=True))
    assert "not sent" in str(ConnectionLost("gone", sent=False))


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 20, 10_000])
def test_backoff_stays_within_the_full_jitter_window(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(300.0, 2.0 * 2 ** min(attempt - 1, 64))
    delays = [backoff_delay(attempt, base=2, cap=300, rng=rng) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    # Full jitter: the low half of the window is used too, not just near the ceiling.
    assert min(delays) < ceiling / 2 < max(delays)


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    a = [backoff_delay(n, base=1, cap=60, rng=random.Random(7)) for n in range(1, 6)]
    b = [backoff_delay(n, base=1, cap=60, rng=random.Random(7)) for n in range(1, 6)]
    assert a == b


def test_backoff_never_undercuts_retry_after() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(1, base=2, cap=300, rng=rng, retry_after=30) for _ in range(100)]
    assert all(d >= 30 for d in delays)
    # Retry-After is a floor even above the cap: the server knows best.
    assert backoff_delay(1, base=2, cap=10, rng=rng, retry_after=120) == 120


def test_backoff_counts_attempts_from_one() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, base=1, cap=10, rng=random.Random(0))
