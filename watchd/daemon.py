"""`watchd run`: the main loop that wires watcher, settle tracker, engine and systemd.

Signal handlers only set flags; the loop acts on them (stop: stop taking work, let requests
in flight finish for a few seconds, park the rest in the ledger; reload: validate the new
config and apply it, or keep the old one). The watchdog ping comes from this loop's own
progress, so a stuck loop stops pinging. Business rules live in the engine and below.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from watchd import logs
from watchd.api import PicWishClient
from watchd.config import Config, ConfigError, FolderConfig, load_api_key, load_config
from watchd.engine import Engine
from watchd.filters import InboxFilter, mask_stem
from watchd.intake import NeedsMask, Rejected, StillWriting
from watchd.ledger import Ledger
from watchd.lifecycle import State
from watchd.lock import StateLock
from watchd.sdnotify import Notifier
from watchd.settle import SettleTracker, Stat
from watchd.watch import Watcher, WatchSpec
from watchd.web.live import LiveState
from watchd.web.server import start_dashboard

INTAKE_WORKERS = 2
INTAKE_CHUNK = 64  # settled files checked per worker-thread hand-off
STATUS_EVERY = 5.0
PAUSE_REMINDER = 600.0  # seconds between reminders that submissions are paused on a 401
IDLE_WAKE = 30.0  # longest sleep with nothing to do (a retry from `watchd retry` is seen by then)


class StartupError(Exception):
    """watchd run cannot start (bad config, missing key, another daemon running)."""


@dataclass
class Flags:
    stop: bool = False
    reload: bool = False


def watch_specs(cfg: Config) -> list[WatchSpec]:
    return [
        WatchSpec(
            folder=f.name,
            inbox=Path(f.inbox),
            recursive=f.recursive,
            mode=f.watch,
            rescan_interval=f.rescan_interval,
            filter=_filter(f),
        )
        for f in cfg.folders
    ]


def _filter(folder: FolderConfig) -> InboxFilter:
    return InboxFilter(ignore=tuple(folder.ignore), sidecar=folder.mask == "sidecar")


def make_client(
    cfg: Config, key: str, transport: httpx.AsyncBaseTransport | None = None
) -> PicWishClient:
    return PicWishClient(
        cfg.api.base_url,
        key,
        transport=transport,
        request_timeout=cfg.api.request_timeout,
        sync_timeout=cfg.api.task_timeout,
        return_type=cfg.api.return_type,
    )


class Daemon:
    def __init__(
        self,
        config_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        until: Callable[[Ledger], bool] | None = None,
    ) -> None:
        self.config_path = config_path
        self.env = dict(os.environ if env is None else env)
        self.until = until  # `watchd demo`: stop once this holds
        self.flags = Flags()
        self.notifier = Notifier(self.env)
        self.log = logs.get_logger()
        self.hints: deque[tuple[str, Path]] = deque()
        self.trackers: dict[str, SettleTracker] = {}
        self.mask_waits: dict[tuple[str, Path], float] = {}
        self.intake_queue: asyncio.Queue[tuple[str, Path]] = asyncio.Queue()
        self.queued: set[tuple[str, Path]] = set()
        self.problems_seen: set[tuple[str, str]] = set()

    # -- start --------------------------------------------------------------------------

    def load(self) -> Config:
        cfg = load_config(self.config_path)
        logs.configure(cfg.log.format, cfg.log.level)
        return cfg

    async def run(self) -> int:
        cfg = self.load()
        key = load_api_key(cfg, self.env)
        if not key:
            raise StartupError(
                "no API key: set api.key_file, or $CREDENTIALS_DIRECTORY/api-key, or"
                " $WATCHD_API_KEY"
            )
        logs.add_secret(key)
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        lock = StateLock(cfg.state_dir).acquire()
        ledger = Ledger.open(cfg.state_dir / "watchd.db")
        loop = asyncio.get_running_loop()
        self.cfg = cfg
        self.key_stamp = self._key_stamp()
        self.engine = Engine(
            cfg,
            ledger,
            make_client(cfg, key),
            on_changed=lambda folder, path: self._hint(folder, path),
        )
        self.watcher = Watcher(
            on_hint=lambda folder, path: loop.call_soon_threadsafe(self._hint, folder, path),
            on_problem=lambda folder, kind, msg: loop.call_soon_threadsafe(
                self._problem, folder, kind, msg
            ),
        )
        for sig, flag in (
            (signal.SIGTERM, "stop"),
            (signal.SIGINT, "stop"),
            (signal.SIGHUP, "reload"),
        ):
            loop.add_signal_handler(sig, self._set_flag, flag)
        workers = [loop.create_task(self._intake_worker()) for _ in range(INTAKE_WORKERS)]
        # -- dashboard hook (issue 12; the lead carries it into the new runtime) --
        self.live = LiveState(started=time.monotonic(), qps=cfg.api.qps)
        self.dashboard = await start_dashboard(cfg, ledger, self.live, self._write, self.log)
        # --
        try:
            self.engine.reconcile()
            self._apply_folders(cfg)
            self.log.info(
                "watchd started",
                folders=[f.name for f in cfg.folders],
                watch=self.watcher.modes(),
                state_dir=str(cfg.state_dir),
                mode=cfg.api.mode,
                qps=cfg.api.qps,
                pid=os.getpid(),
            )
            self.notifier.ready(self._status_line())
            await self._loop()
        finally:
            self.notifier.stopping()
            self.log.info("stopping: parking work in flight")
            self.watcher.stop()
            for w in workers:
                w.cancel()
            await self.engine.drain()
            await self.engine.aclose()
            if self.dashboard is not None:  # dashboard hook (issue 12)
                await self.dashboard.stop()
            ledger.close()
            lock.release()
            self.log.info("watchd stopped")
        return 0

    def _set_flag(self, name: str) -> None:
        setattr(self.flags, name, True)
        self.engine.wake.set()

    # -- the loop -----------------------------------------------------------------------

    async def _loop(self) -> None:
        last_status = 0.0
        next_tick = 0.0
        while True:
            if self.flags.stop:
                return
            if self.flags.reload:
                self.flags.reload = False
                self._reload()
            now = time.time()
            self._drain_hints(now)
            self._settle(now)
            self._expire_mask_waits(now)
            sleep = await self.engine.pump()
            mono = time.monotonic()
            self._update_live(mono)  # dashboard hook (issue 12)
            if mono >= next_tick:
                next_tick = mono + self.watcher.tick()
                self._check_key_change()
                self._remind_paused(mono)
            if self.until is not None and self.until(self.engine.ledger):
                return
            if mono - last_status >= STATUS_EVERY:
                last_status = mono
                self.notifier.status(self._status_line())
            self.notifier.watchdog()
            sleep = min(sleep, max(0.0, next_tick - mono), IDLE_WAKE, self._next_settle(now))
            if self.notifier.watchdog_interval:
                # Ping at a third of WATCHDOG_USEC (the interval is half): margin for a slow turn.
                sleep = min(sleep, self.notifier.watchdog_interval * 2 / 3)
            self.engine.wake.clear()
            if sleep > 0 and not self.hints:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.engine.wake.wait(), timeout=sleep)
            else:
                await asyncio.sleep(0)

    # -- dashboard hook (issue 12; the lead carries it into the new runtime) ------------

    def _update_live(self, mono: float) -> None:
        live, budget = self.live, self.engine.budget
        live.beat(mono)
        live.qps, live.budget_rate, live.rate_limited = budget.qps, budget.rate, budget.rate_limited
        live.auth_pause = self.engine.paused
        if mono - getattr(self, "_learned_at", -1.0) >= 1.0:  # a sort of 200 numbers a folder
            self._learned_at = mono
            model = self.engine.model
            learned = {f: model.quantile(f, 0.95) for f in self.engine.folders}
            live.learned = {f: s for f, s in learned.items() if s is not None}

    def _write(self, fn: Callable[[Ledger], Any]) -> Any:
        """The dashboard's mutations (retry, pause): on our ledger, in this loop."""
        result = fn(self.engine.ledger)
        self.engine.wake.set()
        return result

    # -------------------------------------------------------------------------------------

    def _hint(self, folder: str, path: Path) -> None:
        self.hints.append((folder, Path(path)))
        if hasattr(self, "engine"):
            self.engine.wake.set()

    def _problem(self, folder: str, kind: str, message: str) -> None:
        self.log.warning(message, folder=folder, problem=kind)

    def _drain_hints(self, now: float) -> None:
        while self.hints:
            folder, path = self.hints.popleft()
            tracker = self.trackers.get(folder)
            if tracker is None:
                continue
            if self.engine.is_known(folder, path) or (folder, path) in self.queued:
                continue
            tracker.seen(path, _stat(path), now)

    def _settle(self, now: float) -> None:
        for folder, tracker in self.trackers.items():
            for path in tracker.due(now):
                if tracker.confirm(path, _stat(path), now):
                    self._settled(folder, path)

    def _next_settle(self, now: float) -> float:
        times = [t.next_deadline() for t in self.trackers.values()]
        times += list(self.mask_waits.values())
        times = [t for t in times if t is not None]
        return max(0.0, min(times) - now) if times else IDLE_WAKE

    def _settled(self, folder: str, path: Path) -> None:
        cfg = self.engine.folders.get(folder)
        if cfg is None:
            return
        if cfg.mask == "sidecar" and mask_stem(path.name) is not None:
            # A mask settled: take the image that waits for it (a lone mask stays put).
            stem = mask_stem(path.name)
            for (f, image), _ in list(self.mask_waits.items()):
                if f == folder and image.parent == path.parent and image.stem == stem:
                    self._enqueue(folder, image)
            return
        self._enqueue(folder, path)

    def _enqueue(self, folder: str, path: Path) -> None:
        if (folder, path) not in self.queued:
            self.queued.add((folder, path))
            self.intake_queue.put_nowait((folder, path))

    async def _intake_worker(self) -> None:
        while True:
            items = [await self.intake_queue.get()]
            while len(items) < INTAKE_CHUNK and not self.intake_queue.empty():
                items.append(self.intake_queue.get_nowait())
            try:
                outcomes = await self.engine.take_many(items)
            except Exception as exc:  # a file must never stop the daemon; it is retried
                self.log.error(
                    "intake failed; the files stay in the inbox and are retried at the next scan",
                    files=[p.name for _, p in items][:10],
                    error=repr(exc),
                )
                outcomes = [None] * len(items)
            for (folder, path), outcome in zip(items, outcomes, strict=True):
                self._after_intake(folder, path, outcome)
            self.engine.wake.set()

    def _after_intake(self, folder: str, path: Path, outcome: Any) -> None:
        self.queued.discard((folder, path))
        cfg = self.engine.folders.get(folder)
        if isinstance(outcome, NeedsMask) and cfg is not None:
            self.mask_waits.setdefault((folder, path), time.time() + cfg.sidecar_wait)
            return
        if isinstance(outcome, StillWriting) and folder in self.trackers:
            self.log.info(
                "file is cut short and still changing; waiting for the rest",
                folder=folder,
                file=path.name,
            )
            self.trackers[folder].seen(path, _stat(path), time.time())
        self.mask_waits.pop((folder, path), None)

    def _expire_mask_waits(self, now: float) -> None:
        for (folder, path), deadline in list(self.mask_waits.items()):
            if now < deadline:
                continue
            del self.mask_waits[(folder, path)]
            cfg = self.engine.folders.get(folder)
            if cfg is None or not path.exists():
                continue
            reason = (
                f"no sidecar mask ({path.stem}.mask.png, .mask.jpg or .mask.jpeg) arrived"
                f" within {cfg.sidecar_wait:g} s after the image"
            )
            self.engine.record(cfg, Rejected("sidecar_missing", reason, path))

    # -- reload, key, status ------------------------------------------------------------

    def _apply_folders(self, cfg: Config) -> None:
        for f in cfg.folders:
            tracker = self.trackers.get(f.name)
            if tracker is None or tracker.settle != f.settle:
                self.trackers[f.name] = SettleTracker(f.settle)
        for name in list(self.trackers):
            if name not in {f.name for f in cfg.folders}:
                del self.trackers[name]
        for f in cfg.folders:
            for d in (f.outbox, f.done, f.failed):
                try:
                    Path(d).mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    self.log.warning(
                        "cannot create folder", folder=f.name, path=str(d), error=str(exc)
                    )
        self.watcher.set_specs(watch_specs(cfg))

    def _reload(self) -> None:
        self.notifier.reloading()
        try:
            cfg = load_config(self.config_path)
        except ConfigError as exc:
            for issue in exc.issues:
                self.log.error(
                    "config reload refused; keeping the running config",
                    file=issue.file,
                    key=issue.path,
                    problem=issue.message,
                )
            self.reload_error = f"reload refused: {len(exc.issues)} config error(s)"
            self.notifier.ready(self._status_line())
            return
        logs.configure(cfg.log.format, cfg.log.level)
        self.reload_error = None
        self.cfg = cfg
        self.engine.apply_config(cfg)
        self._apply_folders(cfg)
        if self.dashboard is not None:  # dashboard hook (issue 12)
            self.dashboard.apply_config(cfg)
        key = load_api_key(cfg, self.env)
        if key:
            logs.add_secret(key)
            self.engine.client.set_key(key)
        self.engine.resume("config reloaded")
        self.log.info("config reloaded", folders=[f.name for f in cfg.folders], qps=cfg.api.qps)
        self.notifier.ready(self._status_line())

    def _remind_paused(self, mono: float) -> None:
        """While a 401 pause lasts, say so again now and then (not on every turn)."""
        if not self.engine.paused:
            self.paused_reminded = 0.0
            return
        if mono - getattr(self, "paused_reminded", 0.0) >= PAUSE_REMINDER:
            if getattr(self, "paused_reminded", 0.0):
                self.log.error(
                    "submissions still paused: the API refuses the key (HTTP 401)",
                    reason=self.engine.paused,
                )
            self.paused_reminded = mono

    def _key_stamp(self) -> Any:
        path = self.cfg.api.key_file
        if path is None and self.env.get("CREDENTIALS_DIRECTORY"):
            path = Path(self.env["CREDENTIALS_DIRECTORY"]) / "api-key"
        try:
            st = os.stat(path) if path else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st else None

    def _check_key_change(self) -> None:
        if not self.engine.paused:
            return
        stamp = self._key_stamp()
        if stamp != self.key_stamp:
            self.key_stamp = stamp
            key = load_api_key(self.cfg, self.env)
            if key:
                logs.add_secret(key)
                self.engine.client.set_key(key)
                self.engine.resume("the API key file changed")

    def _status_line(self) -> str:
        counts = self.engine.ledger.counts()
        total: dict[str, int] = {}
        for per_state in counts.values():
            for state, n in per_state.items():
                total[state] = total.get(state, 0) + n
        day = time.time() - 86400
        done_today = self.engine.ledger.db.execute(
            "select count(*) from jobs where state='done' and finished_at >= ?", [day]
        ).fetchone()[0]
        failed_today = self.engine.ledger.db.execute(
            "select count(*) from jobs where state='failed' and finished_at >= ?", [day]
        ).fetchone()[0]
        in_flight = sum(
            total.get(s, 0) for s in (State.SUBMITTING, State.PROCESSING, State.DOWNLOADING)
        )
        line = (
            f"waiting {total.get('waiting', 0)}, in flight {in_flight},"
            f" done today {done_today}, failed today {failed_today}"
        )
        if self.engine.paused:
            line += " | PAUSED: " + self.engine.paused
        if getattr(self, "reload_error", None):
            line += " | " + self.reload_error
        return line


def _stat(path: Path) -> Stat | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return Stat(st.st_size, st.st_mtime_ns)
