"""`watchd run`: the main loop that wires watcher, settle tracker, engine and systemd.

Signal handlers only set flags; the loop acts on them (stop: stop taking work, let requests
in flight finish for a few seconds, park the rest in the ledger; reload: validate the new
config and apply it, or keep the old one). The watchdog ping comes from this loop's own
progress, so a stuck loop stops pinging. Business rules live in the engine and below.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from watchd import logs, notifications, outbox
from watchd.api import PicWishClient
from watchd.clock import Clock, SystemClock
from watchd.config import Config, ConfigError, FolderConfig, load_api_key, load_config
from watchd.engine import Engine
from watchd.filters import InboxFilter, mask_stem
from watchd.intake import StillWriting
from watchd.ledger import Ledger
from watchd.lifecycle import State
from watchd.lock import StateLock
from watchd.sdnotify import Notifier
from watchd.settle import SettleTracker, Stat
from watchd.spend import Block, Caps, SpendCounter, timezone_of
from watchd.watch import Watcher, WatchSpec
from watchd.web.live import LiveState
from watchd.web.server import start_dashboard

# Hints and settled files handled per pass of the loop: a 50,000-file scan must not hold the
# loop for seconds while the first files could already be checked, recorded and sent.
PER_TURN = 1000
INTAKE_WORKERS = 2
INTAKE_CHUNK = 64  # settled files checked per worker-thread hand-off
STATUS_EVERY = 5.0
PAUSE_REMINDER = 600.0  # seconds between reminders that submissions are paused on a 401
IDLE_TURN = 30.0  # longest sleep of the daemon's own part of the loop with nothing to settle
CLOCK_NOTE_EVERY = 60.0  # seconds between notes of how far the ledger's time has come
SHUTDOWN_GRACE = 8.0  # seconds steps in flight get to finish on SIGTERM (async mode)
SYNC_GRACE_MARGIN = 15.0  # sync mode: held creates get api.task_timeout plus this


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
        clock: Clock | None = None,
    ) -> None:
        self.config_path = config_path
        self.env = dict(os.environ if env is None else env)
        self.until = until  # `watchd demo`: stop once this holds
        self.base_clock = clock or SystemClock()
        self.flags = Flags()
        self.notifier = Notifier(self.env)
        self.log = logs.get_logger()
        self.hints: deque[tuple[str, Path]] = deque()
        # Settled by time, waiting for their confirming stat (at most PER_TURN a pass).
        self.confirming: deque[tuple[str, SettleTracker, Hashable]] = deque()
        self.trackers: dict[str, SettleTracker] = {}
        self.reload_error: str | None = None
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
        ledger = Ledger.open(cfg.state_dir / "watchd.db", self.base_clock)
        self.clock = ledger.clock
        # Spending and notifications are views of the transitions (observe.py), not paths
        # through the engine: the counter gates creates, the notifier tells people.
        tz = timezone_of(cfg)
        self.spend = SpendCounter(ledger.db.conn, Caps.from_config(cfg), tz, self.clock.wall())
        ledger.observers.add(self.spend)
        self.alerts = notifications.Notifier(cfg.notify, tz).start()
        self.alert_view = notifications.LedgerView(ledger.db.conn, tz)
        ledger.observers.add(self.alerts)
        self.cap_blocks: dict[str | None, Block] = {}
        self.folder_pauses: dict[str, dict[str, Any]] = ledger.paused_folders()
        loop = asyncio.get_running_loop()
        self.cfg = cfg
        self.key_stamp = self._key_stamp()
        self.engine = Engine(
            cfg,
            ledger,
            make_client(cfg, key),
            on_changed=lambda folder, path: self._hint(folder, path),
            gate=self._spend_gate,
        )
        self.next_tick = 0.0
        self.last_status = 0.0
        self.learned_at = float("-inf")
        self.clock_noted = self.clock.mono()
        # The dashboard: in this loop, reading the ledger through its own connection, and
        # writing only through `_write` (the same transitions the CLI uses).
        self.live = LiveState(started=self.clock.mono(), qps=cfg.api.qps)
        self.dashboard = await start_dashboard(
            cfg, ledger, self.live, self._write, self.log, self.clock
        )
        self.watcher = Watcher(
            clock=self.clock.mono,
            on_hint=lambda folder, path: _post(loop, self._hint, folder, path),
            on_problem=lambda folder, kind, msg: _post(loop, self._problem, folder, kind, msg),
        )
        for sig, flag in (
            (signal.SIGTERM, "stop"),
            (signal.SIGINT, "stop"),
            (signal.SIGHUP, "reload"),
        ):
            loop.add_signal_handler(sig, self._set_flag, flag)
        workers = [loop.create_task(self._intake_worker()) for _ in range(INTAKE_WORKERS)]
        sweep = loop.create_task(self._sweep_temporaries(cfg))
        try:
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
            await self.engine.run(turn=self._turn)
        finally:
            self.notifier.stopping()
            self.log.info("stopping: parking work in flight")
            self.watcher.stop()
            for w in (*workers, sweep):
                w.cancel()
            await self.engine.drain(self._grace())
            await self.engine.aclose()
            if self.dashboard is not None:
                await self.dashboard.stop()
            ledger.touch_clock()
            self.alerts.stop()
            ledger.close()
            lock.release()
            self.log.info("watchd stopped")
        return 0

    def _set_flag(self, name: str) -> None:
        setattr(self.flags, name, True)
        self.engine.wake.set()

    async def _sweep_temporaries(self, cfg: Config) -> None:
        """Temporary files a crash left behind (only watchd's own `.watchd-*.part` names),
        in the folders watchd writes; in a worker thread, so a large outbox delays nothing."""
        wall = self.clock.wall()
        for f in cfg.folders:
            for d in (f.outbox, f.done, f.failed):
                removed = await asyncio.to_thread(outbox.sweep_temporaries, Path(d), 60.0, wall)
                if removed:
                    self.log.info("removed temporary files a crash left", folder=f.name,
                                  path=str(d), count=len(removed))  # fmt: skip

    def _grace(self) -> float:
        """How long steps in flight may finish on SIGTERM. A held sync create is a paid
        task: cutting it off would make it ambiguous and pay for it again on restart, so it
        gets the whole task_timeout (the unit's TimeoutStopSec= allows for that)."""
        if self.cfg.api.mode == "sync":
            return self.cfg.api.task_timeout + SYNC_GRACE_MARGIN
        return SHUTDOWN_GRACE

    # -- the loop -----------------------------------------------------------------------

    async def _turn(self) -> float | None:
        """The daemon's part of each pass of the engine's loop: flags, hints, settling,
        the watcher's checks, status. Returns the longest sleep, or None to stop."""
        if self.flags.stop:
            return None
        if self.flags.reload:
            self.flags.reload = False
            self._reload()
        wall, mono = self.clock.wall(), self.clock.mono()
        self._drain_hints(mono)  # quiet periods are timeouts: monotonic, never the wall
        self._settle(mono)
        if mono >= self.next_tick:
            self.next_tick = mono + self.watcher.tick(mono)
            self._check_key_change()
            self._remind_paused(mono)
        if self.until is not None and self.until(self.engine.ledger):
            return None
        self.alerts.account_pause(self.engine.paused)
        self.alerts.tick(wall, mono, self.alert_view)
        self._update_live(mono)
        if mono - self.last_status >= STATUS_EVERY:
            self.last_status = mono
            self._watch_folder_pauses()
            self._lift_cap_blocks(wall)
            self.notifier.status(self._status_line())
        if mono - self.clock_noted >= CLOCK_NOTE_EVERY:
            self.clock_noted = mono  # a write (and an fsync): not on every turn
            self.engine.ledger.touch_clock()
        self.notifier.watchdog()
        sleep = min(max(0.0, self.next_tick - mono), self._next_settle(mono))
        if self.notifier.watchdog_interval:
            # Ping at a third of WATCHDOG_USEC (the interval is half): margin for a slow turn.
            sleep = min(sleep, self.notifier.watchdog_interval * 2 / 3)
        return 0.0 if self.hints or self.confirming else sleep

    # -- the dashboard's view of the running daemon ------------------------------------

    def _update_live(self, mono: float) -> None:
        live, budget = self.live, self.engine.budget
        live.beat(mono)  # /healthz: unhealthy when this loop stops turning
        live.qps, live.budget_rate, live.rate_limited = budget.qps, budget.rate, budget.rate_limited
        live.auth_pause = self.engine.paused
        blocked = [b.text(self.spend.tz) for b in self.cap_blocks.values()]
        live.caps = {"paused": " | ".join(blocked)} if blocked else {}
        if mono - self.learned_at >= 1.0:
            self.learned_at = mono
            model = self.engine.model
            learned = {f: model.quantile(f, 0.95) for f in self.engine.folders}
            live.learned = {f: s for f, s in learned.items() if s is not None}

    def _write(self, fn: Callable[[Ledger], Any]) -> Any:
        """The dashboard's mutations (retry, pause), on our ledger, in this loop."""
        result = fn(self.engine.ledger)
        self.engine.wake.set()
        return result

    # -- spending caps and pauses, as the operator sees them --------------------------

    def _spend_gate(self, folder: str) -> str | None:
        """Asked before every create (inside the transaction that commits it): a reached
        cap holds the folder's creates; it is announced once per cap and period."""
        block = self.spend.block(folder, self.clock.wall())
        if block is None:
            return None
        key = block.folder if block.folder else None
        if key not in self.cap_blocks:
            self.cap_blocks[key] = block
            self.log.warning("spending cap reached: creates wait", cap=block.cap,
                             until=block.until_text(self.spend.tz))  # fmt: skip
            self.alerts.cap_reached(block)
        return block.text(self.spend.tz)

    def _lift_cap_blocks(self, wall: float) -> None:
        for key, block in list(self.cap_blocks.items()):
            if self.spend.block(block.folder, wall) is None:
                del self.cap_blocks[key]
                self.alerts.resumed("the spending cap no longer holds", block.folder)
                self.engine.wake.set()

    def _watch_folder_pauses(self) -> None:
        """Folder pauses are set in the ledger by any process (CLI, dashboard): notice them."""
        now = self.engine.ledger.paused_folders()
        for folder, note in now.items():
            if folder not in self.folder_pauses:
                self.alerts.paused(note.get("reason") or "paused", folder)
        for folder in self.folder_pauses:
            if folder not in now:
                self.alerts.resumed("the folder was resumed", folder)
                self.engine.wake.set()
        self.folder_pauses = now

    def _hint(self, folder: str, path: Path) -> None:
        self.hints.append((folder, Path(path)))
        if hasattr(self, "engine"):
            self.engine.wake.set()

    def _problem(self, folder: str, kind: str, message: str) -> None:
        self.log.warning(message, folder=folder, problem=kind)

    def _drain_hints(self, now: float) -> None:
        for _ in range(min(len(self.hints), PER_TURN)):
            folder, path = self.hints.popleft()
            tracker = self.trackers.get(folder)
            if tracker is None:
                continue
            if self.engine.is_known(folder, path) or (folder, path) in self.queued:
                continue
            tracker.seen(path, _stat(path), now)

    def _settle(self, now: float) -> None:
        for folder, tracker in list(self.trackers.items()):
            self.confirming.extend((folder, tracker, path) for path in tracker.due(now))
        for _ in range(min(len(self.confirming), PER_TURN)):
            folder, tracker, path = self.confirming.popleft()
            assert isinstance(path, Path)
            current = self.trackers.get(folder)
            if current is None:
                continue  # the folder left the config
            if current is not tracker:  # a reload changed `settle`: wait anew under it
                current.seen(path, _stat(path), now)
            elif tracker.confirm(path, _stat(path), now):
                self._settled(folder, path)

    def _next_settle(self, now: float) -> float:
        times = [t for tr in self.trackers.values() if (t := tr.next_deadline()) is not None]
        return max(0.0, min(times) - now) if times else IDLE_TURN

    def _settled(self, folder: str, path: Path) -> None:
        cfg = self.engine.folders.get(folder)
        if cfg is None:
            return
        if cfg.mask == "sidecar" and mask_stem(path.name) is not None:
            # A mask settled: take the image that waits for it (a lone mask stays put).
            for image in self.engine.intake.images_waiting_for(folder, path):
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
        if isinstance(outcome, StillWriting) and folder in self.trackers:
            self.log.info(
                "file is cut short and still changing; waiting for the rest",
                folder=folder,
                file=path.name,
            )
            self.trackers[folder].seen(path, _stat(path), self.clock.mono())

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
        wall = self.clock.wall()
        self.spend.set_caps(Caps.from_config(cfg), timezone_of(cfg), wall)
        self._lift_cap_blocks(wall)  # a raised cap resumes at once
        self.alerts.set_targets(cfg.notify)
        if self.dashboard is not None:
            self.dashboard.apply_config(cfg)
        self._use_key()
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
        if self._key_stamp() != self.key_stamp and self._use_key():
            self.engine.resume("the API key file changed")

    def _use_key(self) -> bool:
        """Read the key and give it to the client, noting the file's stamp: a reload that
        read a new key must not count as a key change again (a wrong key then gave paused,
        resumed, paused). False when no key could be read."""
        self.key_stamp = self._key_stamp()
        key = load_api_key(self.cfg, self.env)
        if not key:
            return False
        logs.add_secret(key)
        self.engine.client.set_key(key)
        return True

    def _status_line(self) -> str:
        counts = self.engine.ledger.counts()
        total: dict[str, int] = {}
        for per_state in counts.values():
            for state, n in per_state.items():
                total[state] = total.get(state, 0) + n
        day = self.clock.wall() - 86400
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
        for folder in self.folder_pauses:
            line += f" | folder {folder} paused"
        for block in self.cap_blocks.values():
            line += " | " + block.text(self.spend.tz)
        if self.reload_error:
            line += " | " + self.reload_error
        return line


def _stat(path: Path) -> Stat | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return Stat(st.st_size, st.st_mtime_ns)


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Hand a watcher thread's report to the loop (the only thread that acts on it)."""
    loop.call_soon_threadsafe(fn, *args)
