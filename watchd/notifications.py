"""Notifications: tell someone when files fail, creates pause or stop at a cap, nothing moves,
and once a day what was done, through Apprise (e-mail, ntfy, Slack, Teams, Discord, Telegram,
Matrix, JSON webhooks and dozens more, each one URL).

Owns: the `notify:` config (`NotifyTarget`), the `Notifier` and the message texts.
- The Notifier is a transition observer (observe.py) plus a few calls the daemon makes for
  what is not a job's transition: `paused()`, `resumed()`, `cap_reached()`, and `tick()`
  (digest flushes, `stuck`, `daily_summary`), which takes the time as arguments.
- Everything the engine calls only updates memory or puts a message on a bounded queue;
  one worker thread of its own sends. A target that is down is tried `tries` times, then
  the message is logged and dropped. Nothing here can fail, hold or slow a job.
- Failures are batched per target: at most one message per `digest`, listing 20 files and
  a count of the rest. A pause, a cap or a resume is one message per episode, not per file.
- Every message passes through the log redaction (`logs.scrub`: the API key never leaves),
  and target URLs are secrets too: they are registered for redaction and shown only as
  their scheme (`slack://…`).

Never does: ledger writes, reads of the clock (times come in as arguments), blocking calls
on the caller's thread.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from watchd import logs
from watchd.keys import read_secret_file
from watchd.observe import Transition

EventName = Literal["failed", "paused", "cap_reached", "resumed", "stuck", "daily_summary"]
EVENTS: tuple[EventName, ...] = get_args(EventName)
LISTED = 20  # files named in one failure message; the rest are counted
QUEUE_LIMIT = 1000  # messages waiting for the worker; past that, new ones are dropped
URL_FILE_LIMIT = 4096

# -- config ------------------------------------------------------------------------------


def _fail(message: str) -> None:
    raise PydanticCustomError("watchd", "{detail}", {"detail": message})


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")
_UNIT = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> Any:
    if isinstance(value, bool):
        _fail(f"must be seconds, or a duration like 10m or 1h (got {value!r})")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        _fail(f"must be seconds, or a duration like 10m or 1h (got {value!r})")
    if not math.isfinite(seconds) or seconds <= 0:
        _fail(f"must be a duration > 0 (got {value!r})")
    return seconds


def _clock_time(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 08:00 as the base-60 number 480.
        _fail(f'must be quoted, like notify_at: "08:00" (got the number {value})')
    if isinstance(value, str) and (m := re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", value)):
        hour, minute = int(m.group(1)), int(m.group(2))
        if hour < 24 and minute < 60:
            return f"{hour:02d}:{minute:02d}"
    _fail(f'must be a time of day "HH:MM", like "08:00" (got {value!r})')
    return None  # unreachable


def _events(value: Any) -> Any:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        _fail(f"must be a list of events, some of: {', '.join(EVENTS)} (got {value!r})")
    for v in value:
        if v not in EVENTS:
            _fail(f"unknown event {v!r}; the events are: {', '.join(EVENTS)}")
    return tuple(dict.fromkeys(value))


def _url(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        _fail("must be an Apprise URL like ntfy://topic or json://host/path")
    if not _known_url(value.strip()):
        # Never echo it: a notification URL holds tokens and passwords.
        _fail(
            f"is not a notification URL Apprise knows (scheme {scheme_of(value)!r}; value not"
            " shown: it may hold secrets); see the Apprise wiki for the URL of each service"
        )
    return value.strip()


class NotifyTarget(BaseModel):
    """One place to send notifications, and what to send there."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    url: Annotated[str | None, BeforeValidator(_url)] = Field(
        None,
        description="The Apprise URL of the target, like ntfy://my-topic or"
        " mailto://user:pass@example.com. It holds secrets: prefer url_file.",
    )
    url_file: Path | None = Field(
        None,
        description="A file (readable by watchd only) whose content is the Apprise URL;"
        " read at start and on reload.",
    )
    on: Annotated[tuple[EventName, ...], BeforeValidator(_events)] = Field(
        EVENTS,
        description="What to send: failed (batched per digest), paused (HTTP 401 or a folder"
        " pause), cap_reached, resumed, stuck (files wait and none finished for stuck_after),"
        " daily_summary (at notify_at). Default: all of them.",
    )
    digest: Annotated[float, BeforeValidator(_duration)] = Field(
        600.0,
        description="At most one failure message per this long (seconds, or like 10m):"
        " the files that fail meanwhile come in the next one.",
    )
    stuck_after: Annotated[float, BeforeValidator(_duration)] = Field(
        3600.0,
        description="Send `stuck` when files wait and none finished for this long"
        " (seconds, or like 1h); not while creates are paused or at a cap.",
    )
    notify_at: Annotated[str, BeforeValidator(_clock_time)] = Field(
        "08:00",
        description='When the daily summary of the day before is sent, "HH:MM" in'
        " api.timezone (quote it).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> NotifyTarget:
        if (self.url is None) == (self.url_file is None):
            raise PydanticCustomError("watchd", "needs url or url_file (one of them)")
        return self

    def label(self, index: int) -> str:
        """How the target is shown: its scheme only, never the rest of the URL."""
        if self.url is not None:
            return f"notify[{index}] {scheme_of(self.url)}://…"
        return f"notify[{index}] url_file {self.url_file}"

    def describe(self, index: int) -> dict[str, Any]:
        return {
            "target": self.label(index),
            "on": list(self.on),
            "digest": self.digest,
            "stuck_after": self.stuck_after,
            "notify_at": self.notify_at,
        }


def load_targets(
    value: Any, base: Path, add_issue: Callable[[str, str], None]
) -> tuple[NotifyTarget, ...]:
    """The `notify:` list as written, checked; each problem reported at its key path."""
    from pydantic import ValidationError

    if value is None:
        return ()
    if not isinstance(value, list):
        add_issue("notify", "must be a list of targets, each {url: ..., on: [...]}")
        return ()
    out = []
    for i, entry in enumerate(value):
        where = f"notify[{i}]"
        if not isinstance(entry, dict):
            add_issue(where, "must be a map like {url: ntfy://topic, on: [failed]}")
            continue
        # YAML 1.1 reads a bare `on` key as the boolean true.
        entry = {("on" if k is True else k): v for k, v in entry.items()}
        if isinstance(entry.get("url_file"), str):
            path = Path(entry["url_file"]).expanduser()
            path = path if path.is_absolute() else base / path
            entry["url_file"] = path
            if not path.is_file():
                add_issue(f"{where}.url_file", f"{path} does not exist or is not a regular file")
                continue
        try:
            out.append(NotifyTarget.model_validate(entry))
        except ValidationError as exc:
            for err in exc.errors():
                loc = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in err["loc"])
                message = err["msg"]
                if err["type"] == "extra_forbidden":
                    message = f"unknown key (the keys are: {', '.join(NotifyTarget.model_fields)})"
                add_issue(where + loc, message)
    return tuple(out)


def scheme_of(url: str) -> str:
    head = url.strip().split("://", 1)[0] if "://" in url else ""
    return head if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,31}", head) else "?"


def _known_url(url: str) -> bool:
    import apprise

    return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None


def read_url(target: NotifyTarget) -> str:
    """The target's URL: inline, or the first line of its url_file. Raises ValueError with a
    message that never holds the URL."""
    if target.url is not None:
        return target.url
    assert target.url_file is not None
    text = read_secret_file(target.url_file, "notification URL", URL_FILE_LIMIT)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{target.url_file} is empty")
    if not _known_url(lines[0]):
        raise ValueError(
            f"{target.url_file} does not hold a notification URL Apprise knows"
            f" (scheme {scheme_of(lines[0])!r})"
        )
    return lines[0]


# -- sending -----------------------------------------------------------------------------

Sender = Callable[[str, str, str], "str | None"]  # (url, title, body) -> None or why it failed


def apprise_send(url: str, title: str, body: str) -> str | None:
    """Send one message with Apprise; None when delivered, else what went wrong."""
    import apprise

    quiet = logging.getLogger(apprise.LOGGER_NAME)  # its lines may name the URL's parts
    quiet.propagate = False
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())  # else logging's last resort prints them
    app = apprise.Apprise()
    if not app.add(url):
        return "not a notification URL Apprise knows"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = app.notify(body=body, title=title)
    if ok:
        return None
    lines = [ln.split(" - ", 2)[-1] for ln in captured.getvalue().splitlines() if ln.strip()]
    return _redact_url(url, lines[-1] if lines else "not delivered")


def _redact_url(url: str, text: str) -> str:
    """`text` without the URL or any of its longer parts (tokens, passwords, paths)."""
    parts = {url, *re.split(r"[/:@?&=#]+", url.split("://", 1)[-1])}
    for part in sorted(parts, key=len, reverse=True):
        if len(part) >= 6:
            text = text.replace(part, "***")
    return logs.scrub(text)


@dataclass(frozen=True)
class Message:
    target: int
    event: str
    title: str
    body: str


@dataclass(frozen=True)
class Result:
    label: str
    ok: bool
    error: str | None = None


def clean(text: str) -> str:
    """Message text as it may go out: no secret, no control characters, undecodable bytes
    of a file name shown as \\xNN."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = "".join(
        c if c == "\n" or unicodedata.category(c) != "Cc" else f"\\x{ord(c):02x}" for c in text
    )
    return logs.scrub(text)


def _one_line(text: str) -> str:
    return clean(text).replace("\n", "\\n")


# -- what the daemon shows the notifier --------------------------------------------------


class View(Protocol):
    """What `tick()` may ask of the ledger (asked only when a message may be due)."""

    def pending(self) -> Mapping[str, int]:
        """Unfinished jobs (waiting or in flight) per folder."""
        ...

    def day_summary(self, day: date) -> Mapping[str, Mapping[str, Any]]:
        """Per folder for one local day: done, failed, creates, extra (by cause)."""
        ...


@dataclass
class _Target:
    config: NotifyTarget
    label: str
    url: str | None  # None: unusable (logged once)
    failed: list[str] = field(default_factory=list)
    failed_more: int = 0
    next_failed: float = -math.inf  # mono: when the next failure message may go
    calm_since: float | None = None  # mono: last success, or since nothing was pending
    stuck_sent: bool = False
    stuck_checked: float = -math.inf
    next_summary: float | None = None  # wall: the next daily summary

    def wants(self, event: str) -> bool:
        return self.url is not None and event in self.config.on


STUCK_CHECK_EVERY = 60.0  # seconds between looks at the ledger once a target may be stuck


class Notifier:
    """The observer and the sender. `start()` once, `stop()` at shutdown."""

    def __init__(
        self,
        targets: Sequence[NotifyTarget],
        tz: ZoneInfo,
        *,
        send: Sender = apprise_send,
        tries: int = 3,
        retry_delays: Sequence[float] = (2.0, 10.0),
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self.tz = tz
        self.send = send
        self.tries = max(1, tries)
        self.retry_delays = tuple(retry_delays)
        self.log = logs.get_logger(part="notify")
        self.targets: list[_Target] = []
        self.held: dict[tuple[Any, ...], float | None] = {}  # pauses and caps announced
        self.dropped = 0
        self._success = False
        self._queue: queue.Queue[Message | None] = queue.Queue(queue_limit)
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.set_targets(targets)

    # -- life ----------------------------------------------------------------------------

    def set_targets(self, targets: Sequence[NotifyTarget]) -> None:
        """Start, or a reload: the same targets keep their batches and timers."""
        old = {(t.config.url, t.config.url_file): t for t in self.targets}
        fresh = []
        for i, config in enumerate(targets):
            label = config.label(i)
            try:
                url: str | None = read_url(config)
                logs.add_secret(url)
            except ValueError as exc:
                url = None
                self.log.error(
                    "notification target unusable; it is skipped", target=label, error=str(exc)
                )
            kept = old.get((config.url, config.url_file))
            state = _Target(config, label, url)
            if kept is not None:
                state.failed, state.failed_more = kept.failed, kept.failed_more
                state.next_failed, state.calm_since = kept.next_failed, kept.calm_since
                state.stuck_sent = kept.stuck_sent
            fresh.append(state)
        self.targets = fresh

    def start(self) -> Notifier:
        if self._thread is None and self.targets:
            self._thread = threading.Thread(target=self._work, name="watchd-notify", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is batched, give the worker `timeout` seconds to deliver, then go.
        A target that hangs never holds the shutdown longer (the thread is a daemon)."""
        for index, t in enumerate(self.targets):
            self._flush_failed(index, t)
        if self._thread is None:
            return
        self._closing.set()  # no more waiting between retries
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
        self._thread = None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued message was sent or given up (True), or `timeout`."""
        q = self._queue
        with q.all_tasks_done:
            return q.all_tasks_done.wait_for(lambda: q.unfinished_tasks == 0, timeout)

    # -- the engine's side: quick, never blocking ---------------------------------------

    def __call__(self, t: Transition) -> None:
        if t.dst == "done" and t.src != "done":
            self._success = True
        elif t.dst == "failed" and t.src != "failed":
            reason = t.job.get("error_reason") or t.detail.get("reason") or "failed"
            line = _one_line(f"{t.folder}/{t.name}: {reason}")
            for target in self.targets:
                if target.wants("failed"):
                    if len(target.failed) < LISTED:
                        target.failed.append(line)
                    else:
                        target.failed_more += 1

    def paused(self, reason: str, folder: str | None = None) -> None:
        """Creates stopped (HTTP 401 for the account, or a folder pause): one message."""
        key = ("paused", folder)
        if key in self.held:
            return
        self.held[key] = None
        where = f"folder {folder}" if folder else "all folders"
        self._announce(
            "paused",
            f"watchd: creates paused ({where})",
            f"{reason}\nFiles wait in their inbox; tasks already created finish.",
        )

    def cap_reached(self, block: Any) -> None:
        """A spending cap holds creates (a spend.Block): one message per cap and period."""
        key = ("cap", block.cap, block.folder, block.until)
        if key in self.held:
            return
        self.held[key] = block.until
        self._announce(
            "cap_reached",
            f"watchd: spending cap reached ({block.cap})",
            f"{block.text(self.tz)}.\nFiles wait in their inbox; tasks already created finish."
            "\nRaise the cap and reload to go on now.",
        )

    def resumed(self, reason: str, folder: str | None = None) -> None:
        """Creates go again (the key was fixed, a folder resumed, a cap raised): one message,
        and only after a pause or a cap was announced."""
        lifted = [k for k in self.held if _folder_of(k) == folder]
        if not lifted:
            return
        for k in lifted:
            del self.held[k]
        where = f"folder {folder}" if folder else "all folders"
        self._announce("resumed", f"watchd: creates resumed ({where})", reason)

    def account_pause(self, reason: str | None) -> None:
        """The account's pause as it is now (the engine's 401 pause): call it every turn;
        it says `paused` when one begins and `resumed` when it ends, once each."""
        if reason:
            self.paused(reason)
        elif ("paused", None) in self.held:
            self.resumed("the pause was lifted (a new API key, or a reload): creates go again")

    def tick(self, now_wall: float, mono: float, view: View) -> None:
        """Due work: failure digests, `stuck`, the daily summary. Call it every loop turn."""
        for key, until in list(self.held.items()):
            if until is not None and now_wall >= until:
                del self.held[key]  # a cap's period turned over
        success, self._success = self._success, False
        pending: Mapping[str, int] | None = None
        for index, t in enumerate(self.targets):
            if mono >= t.next_failed and self._flush_failed(index, t):
                t.next_failed = mono + t.config.digest
            if t.wants("stuck"):
                if success or t.calm_since is None or self.held:
                    t.calm_since, t.stuck_sent = mono, False
                elif (
                    not t.stuck_sent
                    and mono - t.calm_since >= t.config.stuck_after
                    and mono - t.stuck_checked >= STUCK_CHECK_EVERY
                ):
                    t.stuck_checked = mono
                    pending = view.pending() if pending is None else pending
                    if sum(pending.values()):
                        t.stuck_sent = True
                        self._put(index, "stuck", *self._stuck_text(pending, t.config))
                    else:
                        t.calm_since = mono  # nothing waits: not stuck, just quiet
            if t.wants("daily_summary"):
                if t.next_summary is None:
                    t.next_summary = next_at(now_wall, t.config.notify_at, self.tz)
                elif now_wall >= t.next_summary:
                    # The next one after now: a suspend or a wall step skips, never repeats;
                    # the day summed up is the one before the latest notify_at passed.
                    t.next_summary = next_at(now_wall, t.config.notify_at, self.tz)
                    day = datetime.fromtimestamp(t.next_summary, self.tz).date() - timedelta(2)
                    self._put(index, "daily_summary", *summary_text(day, view.day_summary(day)))

    # -- inside --------------------------------------------------------------------------

    def _flush_failed(self, index: int, t: _Target) -> bool:
        if not t.failed:
            return False
        n = len(t.failed) + t.failed_more
        body = "\n".join(t.failed)
        if t.failed_more:
            body += f"\nand {t.failed_more} more"
        t.failed, t.failed_more = [], 0
        files = "1 file" if n == 1 else f"{n} files"
        self._put(index, "failed", f"watchd: {files} failed", body)
        return True

    def _stuck_text(self, pending: Mapping[str, int], config: NotifyTarget) -> tuple[str, str]:
        n = sum(pending.values())
        per = ", ".join(f"{f} {c}" for f, c in sorted(pending.items()) if c)
        return (
            f"watchd: stuck, no file finished for {duration(config.stuck_after)}",
            f"{n} files wait or are in flight ({per}) and none finished for"
            f" {duration(config.stuck_after)}. `watchd status` says more.",
        )

    def _announce(self, event: str, title: str, body: str) -> None:
        for index, t in enumerate(self.targets):
            if t.wants(event):
                self._put(index, event, title, body)

    def _put(self, index: int, event: str, title: str, body: str) -> None:
        message = Message(index, event, _one_line(title), clean(body))
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                self.log.error("notification queue full; messages dropped", dropped=self.dropped)

    def _work(self) -> None:
        while True:
            message = self._queue.get()
            try:
                if message is None:
                    return
                self._deliver(message)
            except Exception as exc:  # a sender bug must not end the worker
                about = message.event if message else None
                self.log.error("notification failed", about=about, error=repr(exc))
            finally:
                self._queue.task_done()

    def _deliver(self, message: Message) -> None:
        target = self.targets[message.target] if message.target < len(self.targets) else None
        if target is None or target.url is None:
            return
        error = None
        for attempt in range(self.tries):
            error = self.send(target.url, message.title, message.body)
            if error is None:
                self.log.info("notification sent", target=target.label, about=message.event)
                return
            if attempt + 1 < self.tries:
                delays = self.retry_delays or (0.0,)
                if self._closing.wait(delays[min(attempt, len(delays) - 1)]):
                    break  # shutting down: one try is all there is time for
        self.log.warning(
            "notification not delivered; given up",
            target=target.label,
            about=message.event,
            tries=self.tries,
            error=_redact_url(target.url, error or ""),
        )


def send_test(targets: Sequence[NotifyTarget], send: Sender = apprise_send) -> list[Result]:
    """`watchd notify-test`: one message to each target, one try each, and how it went."""
    results = []
    for i, config in enumerate(targets):
        label = config.label(i)
        try:
            url = read_url(config)
        except ValueError as exc:
            results.append(Result(label, False, str(exc)))
            continue
        logs.add_secret(url)
        error = send(url, "watchd: test", "A test message from watchd notify-test.")
        results.append(
            Result(label, error is None, None if error is None else _redact_url(url, error))
        )
    return results


def _folder_of(key: tuple[Any, ...]) -> str | None:
    """The folder of a hold: ("paused", folder) or ("cap", cap, folder, until)."""
    return key[1] if key[0] == "paused" else key[2]


# -- texts and times ---------------------------------------------------------------------


def next_at(now_wall: float, hhmm: str, tz: ZoneInfo) -> float:
    """The next moment after `now_wall` whose local time is `hhmm` (a time that DST skips
    that day resolves to the instant the clock jumps)."""
    hour, minute = map(int, hhmm.split(":"))
    today = datetime.fromtimestamp(now_wall, tz).date()
    for d in (today, today + timedelta(1), today + timedelta(2)):
        at = datetime.combine(d, dtime(hour, minute), tzinfo=tz).timestamp()
        if at > now_wall:
            return at
    raise AssertionError("unreachable: a time of day comes within two days")


def summary_text(day: date, per_folder: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    lines = []
    for folder, v in sorted(per_folder.items()):
        extra = v.get("extra") or {}
        causes = ", ".join(f"{c} {n}" for c, n in sorted(extra.items()))
        line = (
            f"{folder}: {v.get('done', 0)} done, {v.get('failed', 0)} failed,"
            f" {v.get('creates', 0)} creates, {sum(extra.values())} extra creates"
        )
        lines.append(line + (f" ({causes})" if causes else ""))
    return f"watchd: summary of {day.isoformat()}", "\n".join(lines) or "nothing happened"


def duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


class LedgerView:
    """`View` over a ledger connection (the daemon's own; read-only queries)."""

    def __init__(self, conn: Any, tz: ZoneInfo) -> None:
        self.conn = conn
        self.tz = tz

    def pending(self) -> Mapping[str, int]:
        rows = self.conn.execute(
            "select folder, count(*) from jobs where state in"
            " ('waiting', 'submitting', 'processing', 'downloading', 'finishing')"
            " group by folder"
        )
        return dict(rows.fetchall())

    def day_summary(self, day: date) -> Mapping[str, Mapping[str, Any]]:
        from watchd import spend

        start = spend._midnight(day, self.tz)
        end = spend._midnight(day + timedelta(1), self.tz)
        out: dict[str, dict[str, Any]] = {}
        for folder, state, n in self.conn.execute(
            "select folder, state, count(*) from jobs where state in ('done', 'failed')"
            " and finished_at >= ? and finished_at < ? group by 1, 2",
            [start, end],
        ):
            out.setdefault(folder, {})[state] = n
        tally = spend.read_tally_since(self.conn, start - spend.LOOKBACK, self.tz)
        for folder, v in tally.day(day)["folders"].items():
            slot = out.setdefault(folder, {})
            slot["creates"] = v["accepted"]
            slot["extra"] = v["extra"]
        return out
