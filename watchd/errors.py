"""The error hierarchy of watchd and the one table that classifies PicWish API codes.

Every HTTP status and every `data.state` code of the API doc is a row of `HTTP_STATUS` or
`TASK_STATE` below, with the doc's own wording as its meaning (that text becomes the failure
reason in NAME.error.json). Nothing else in watchd decides whether an API answer is worth a
retry: callers ask `classify_http` / `classify_state` and raise `Classification.error_class`.

This module never does I/O and never holds a request object: an httpx request carries the
X-API-KEY header, so errors keep only the method and URL of the request that failed.

    WatchdError
    ├── ConfigError              (lives in config.py)
    ├── DownloadError            (lives in download.py: a result URL could not be fetched)
    └── ApiError                 the API answered with a failure, or did not answer
        ├── TransientApiError    retry with backoff (5xx, transient task states)
        │   └── RateLimited      429: the whole request budget slows down
        ├── PermanentApiError    fail the job at once (400, 404 on create, 413, bad input)
        ├── AuthError            401: pause all submissions; not a failure of the job
        ├── TaskGone             404 on a query: the task no longer exists
        └── ConnectionLost       no usable answer; `sent` says the request may have arrived
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "HTTP_STATUS",
    "TASK_STATE",
    "ApiError",
    "AuthError",
    "Classification",
    "ConnectionLost",
    "Kind",
    "Op",
    "PermanentApiError",
    "RateLimited",
    "RequestInfo",
    "Rule",
    "TaskGone",
    "TransientApiError",
    "WatchdError",
    "backoff_delay",
    "classify_http",
    "classify_state",
]

Kind = Literal["ok", "pending", "transient", "permanent", "auth", "rate_limited", "gone"]
Op = Literal["create", "query", "download"]


class WatchdError(Exception):
    """Base class of every error watchd raises on purpose."""


@dataclass(frozen=True)
class RequestInfo:
    """Method and URL of a request: what an error may keep (never the headers)."""

    method: str
    url: str


class ApiError(WatchdError):
    """The PicWish API answered with a failure, or gave no usable answer."""

    def __init__(
        self,
        message: str,
        *,
        request: RequestInfo | None = None,
        http_status: int | None = None,
        status: int | None = None,
        state: int | None = None,
        task_id: str | None = None,
        retry_after: float | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message  # the doc's meaning of the code: the failure reason
        self.request = request
        self.http_status = http_status  # the HTTP status line
        self.status = status  # the body's "status" field
        self.state = state  # data.state of a finished task
        self.task_id = task_id
        self.retry_after = retry_after  # seconds, from a Retry-After header
        self.server_message = server_message  # the body's "message", as the server wrote it

    @property
    def method(self) -> str | None:
        return self.request.method if self.request else None

    @property
    def url(self) -> str | None:
        return self.request.url if self.request else None

    @property
    def code(self) -> int | None:
        """The most specific code: data.state, else the body status, else the HTTP status."""
        for code in (self.state, self.status, self.http_status):
            if code is not None:
                return code
        return None

    def _details(self) -> list[str]:
        details = []
        if self.http_status is not None:
            details.append(f"HTTP {self.http_status}")
        if self.status is not None and self.status != self.http_status:
            details.append(f"status {self.status}")
        if self.state is not None:
            details.append(f"state {self.state}")
        if self.task_id is not None:
            details.append(f"task {self.task_id}")
        if self.retry_after is not None:
            details.append(f"retry after {self.retry_after:g}s")
        if self.server_message:
            details.append(f"server said {self.server_message!r}")
        if self.request is not None:
            details.append(f"{self.request.method} {self.request.url}")
        return details

    def __str__(self) -> str:
        details = self._details()
        return f"{self.message} ({'; '.join(details)})" if details else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TransientApiError(ApiError):
    """A failure that may pass: retry with backoff."""


class RateLimited(TransientApiError):
    """429: the account's request budget is exceeded; everything slows down."""


class PermanentApiError(ApiError):
    """A failure that retrying will not fix: fail the job at once."""


class AuthError(ApiError):
    """401: the API key is refused; pause all submissions, fail no job."""


class TaskGone(ApiError):
    """A query answered 404: the task no longer exists."""


class ConnectionLost(ApiError):
    """No usable answer; `sent` is True when the request may have reached the server."""

    def __init__(
        self,
        message: str,
        *,
        sent: bool,
        request: RequestInfo | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, request=request, http_status=http_status)
        self.sent = sent

    def _details(self) -> list[str]:
        return ["may have been received" if self.sent else "not sent", *super()._details()]


@dataclass(frozen=True)
class Rule:
    """One row of a classification table: what a code means and what to do about it."""

    kind: Kind
    meaning: str
    # A few HTTP codes mean different things depending on the request that got them.
    overrides: tuple[tuple[Op, Kind], ...] = ()

    def kind_for(self, op: Op) -> Kind:
        return dict(self.overrides).get(op, self.kind)


# HTTP status codes of the API doc ("HTTP response status codes"), meanings verbatim.
HTTP_STATUS: dict[int, Rule] = {
    200: Rule("ok", "The request is successful."),
    # The request itself is malformed: sending it again gets the same answer.
    400: Rule(
        "permanent",
        "Wrong parameter passed by the client. Check whether a parameter is missing or has an "
        "incorrect value.",
    ),
    # The key is wrong or the service is off: every request fails alike, so the daemon
    # pauses instead of failing each file. A result storage host's 401 says nothing about
    # our key, hence the download override.
    401: Rule(
        "auth",
        "Unauthorized API key. Check that X-API-KEY is correct and the service is enabled.",
        overrides=(("download", "permanent"),),
    ),
    # On a query the task ID is unknown (expired or never existed): the task is gone and the
    # job's policy decides whether to create it again. On a create the endpoint itself is
    # missing (a wrong base_url): no retry will find it.
    404: Rule(
        "gone",
        "The requested URL or resource does not exist. Check that the URL or task_id is correct.",
        overrides=(("create", "permanent"),),
    ),
    # Preflight keeps files under the limit; an upload the server still finds too big will
    # not shrink by itself.
    413: Rule(
        "permanent",
        "The uploaded file exceeds the allowed size. Refer to the supported image size.",
    ),
    # Too fast: nothing is wrong with the job; the whole daemon slows down.
    429: Rule(
        "rate_limited",
        "Request frequency exceeds the QPS limit (default QPS is 2). Slow down or contact us "
        "to raise your QPS.",
    ),
    # A server-side exception is usually passing (deploys, overload).
    500: Rule("transient", "Server-side exception. Please contact support."),
}

# Task status codes of the API doc (data.state), meanings verbatim. A failed task is not
# charged again by being retried, but a retry that cannot succeed only burns the request
# budget and delays the failure the user must see; so only input and content problems are
# permanent.
TASK_STATE: dict[int, Rule] = {
    # The prompt comes from the folder config: the same prompt fails the same way.
    -17: Rule("permanent", "Processing failed because the prompt is invalid."),
    # Content review verdicts are about the image; a retry gets the same verdict.
    -16: Rule(
        "permanent", "Processing failed because a third-party review detected prohibited content."
    ),
    # Capacity on the server side: passes.
    -15: Rule("transient", "Processing failed due to insufficient resources."),
    # The image content itself does not qualify.
    -14: Rule(
        "permanent",
        "Processing failed because the input image content does not meet the requirements.",
    ),
    # Canceled by a server exception, not by anything in the input.
    -13: Rule("transient", "Processing failed because the task was canceled due to an exception."),
    # An empty result is a generation hiccup; a new run usually yields an image.
    -11: Rule("transient", "Processing failed because the result is empty."),
    -10: Rule(
        "permanent", "Processing failed because internal review detected prohibited content."
    ),
    # An internal program failure, not the input's fault.
    -9: Rule(
        "transient", "Processing failed because the internal program failed during loop processing."
    ),
    # Timeouts come from load as much as from the image: worth another try (bounded).
    -8: Rule("transient", "Processing timed out. The maximum processing time is 180 seconds."),
    # The bytes are broken or not an image: they will still be broken next time.
    -7: Rule("permanent", "Invalid image file (e.g. corrupted image or incorrect format)."),
    -5: Rule("permanent", "The image_url image exceeds the size limit (30MB)."),
    # The server could not fetch its input; watchd uploads files, so this is on their side.
    -3: Rule(
        "transient",
        "The server failed to download your file. Check that the source image URL is available.",
    ),
    # The work was done and only the storage upload failed.
    -2: Rule("transient", "Processing completed, but uploading the result to OSS failed."),
    # No reason given: give it the benefit of a bounded retry.
    -1: Rule("transient", "Processing failed."),
    0: Rule("pending", "Queued. The task is waiting in the queue."),
    1: Rule("ok", "Completed. Processing succeeded."),
    2: Rule("pending", "Preparing."),
    3: Rule("pending", "Waiting."),
    4: Rule("pending", "Processing in progress."),
    5: Rule("pending", "Internally publishing the result."),
    6: Rule("pending", "Processing. Internal loop processing is in progress."),
}


@dataclass(frozen=True)
class Classification:
    """What to do about one code: its kind, the doc's meaning, and the error to raise."""

    code: int
    kind: Kind
    meaning: str

    @property
    def retryable(self) -> bool:
        return self.kind in ("transient", "rate_limited")

    @property
    def error_class(self) -> type[ApiError] | None:
        """The ApiError subclass for a failure, None for "ok" and "pending"."""
        return _ERROR_CLASS.get(self.kind)


_ERROR_CLASS: dict[Kind, type[ApiError]] = {
    "transient": TransientApiError,
    "rate_limited": RateLimited,
    "permanent": PermanentApiError,
    "auth": AuthError,
    "gone": TaskGone,
}


def classify_http(status: int, *, op: Op) -> Classification:
    """Classify an HTTP status (or a body "status") for a create, query or download."""
    rule = HTTP_STATUS.get(status)
    if rule is not None:
        return Classification(status, rule.kind_for(op), rule.meaning)
    if 200 <= status < 300:
        return Classification(status, "ok", f"HTTP {status}: success.")
    if status >= 500:
        # Codes outside the doc: server trouble passes like a 500 does.
        return Classification(status, "transient", f"HTTP {status}: server error.")
    if status == 408:
        # The server gave up waiting for our request: by definition worth sending again.
        return Classification(status, "transient", "HTTP 408: request timeout.")
    if 300 <= status < 400:
        # The API never redirects; following one would send the key elsewhere.
        return Classification(
            status, "permanent", f"HTTP {status}: unexpected redirect (check api.base_url)."
        )
    # Other 4xx: the request is wrong and will stay wrong.
    return Classification(status, "permanent", f"HTTP {status}: request refused.")


def classify_state(state: int) -> Classification:
    """Classify a task's data.state."""
    rule = TASK_STATE.get(state)
    if rule is not None:
        return Classification(state, rule.kind, rule.meaning)
    if state > 1:
        # The doc: "greater than 1 = still processing".
        return Classification(state, "pending", f"Processing (state {state}).")
    # A failure code newer than the doc: treated like the generic -1, a bounded retry.
    return Classification(state, "transient", f"Processing failed (state {state}).")


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before retry number `attempt` (1-based): full jitter, Retry-After floor.

    Full jitter (uniform over [0, min(cap, base * 2**(attempt-1))]) spreads the retries of
    many jobs that failed together; a server's Retry-After is a floor, never shortened.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    # Bound the exponent so a huge attempt number cannot overflow the float.
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
