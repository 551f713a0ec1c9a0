"""`watchd process FILE... --folder NAME`: the engine in burst mode over a few files.

It takes the state_dir lock, so it refuses while a daemon runs on the same ledger (the
daemon would be the one to process them: drop them into its inbox). Results go to the
folder's outbox; the files given stay where they are. Jobs are recorded in the ledger like
any other, so a file processed before is not paid for again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from watchd.config import Config, load_api_key
from watchd.daemon import make_client
from watchd.engine import Engine
from watchd.intake import NeedsMask, Rejected, prepare
from watchd.ledger import Ledger, decode
from watchd.lifecycle import TERMINAL
from watchd.lock import StateLock
from watchd.spend import Caps, SpendCounter, timezone_of


async def process_files(
    cfg: Config, folder_name: str, files: list[Path], console: Console
) -> list[dict[str, Any]]:
    folder = {f.name: f for f in cfg.folders}[folder_name]
    key = load_api_key(cfg)
    if not key:
        raise RuntimeError(
            "no API key: set api.key_file, $CREDENTIALS_DIRECTORY/api-key or $WATCHD_API_KEY"
        )
    with StateLock(cfg.state_dir):
        ledger = Ledger.open(cfg.state_dir / "watchd.db")
        # The spending caps hold here too: a one-shot run spends the same account.
        tz = timezone_of(cfg)
        spend = SpendCounter(ledger.db.conn, Caps.from_config(cfg), tz, ledger.clock.wall())
        ledger.observers.add(spend)

        def gate(folder: str) -> str | None:
            block = spend.block(folder, ledger.clock.wall())
            return None if block is None else block.text(tz)

        engine = Engine(cfg, ledger, make_client(cfg, key), gate=gate)
        engine.only = set()
        ids: dict[Path, int | None] = {}
        try:
            for path in files:
                outcome = await asyncio.to_thread(
                    prepare, folder, path.absolute(), now=ledger.clock.wall()
                )
                if isinstance(outcome, NeedsMask):
                    outcome = Rejected("sidecar_missing", "no sidecar mask beside the image", path)
                ids[path] = engine.record(folder, outcome, keep_original=True)
            engine.only = {i for i in ids.values() if i is not None}
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as progress:
                bar = progress.add_task(f"expanding with {folder_name}", total=len(files))
                unreadable = sum(v is None for v in ids.values())

                def finished() -> bool:
                    n = sum(1 for i in engine.only or () if _terminal(ledger, i))
                    progress.update(bar, completed=n + unreadable)
                    if n == len(engine.only or ()):
                        return True
                    # A spending cap holds the rest: they stay waiting, and the run ends.
                    rest = [ledger.get(i) for i in engine.only or () if not _terminal(ledger, i)]
                    held = gate(folder_name) is not None
                    return held and all(r is not None and r["state"] == "waiting" for r in rest)

                # The daemon's own loop in burst mode: it ends when these jobs have.
                await engine.run(until=finished)
            await engine.drain(grace=1)
        finally:
            await engine.aclose()
        results = []
        held = gate(folder_name)
        for path, job_id in ids.items():
            row = ledger.get(job_id) if job_id is not None else None
            if row is not None and row["state"] == "waiting" and held:
                row = {**row, "error_reason": f"not sent: {held}"}
            outputs = [o["path"] for o in (decode(row, "outputs") or [])] if row else []
            results.append(
                {
                    "file": str(path),
                    "job": job_id,
                    "state": row["state"] if row else "unreadable",
                    "outputs": outputs if row and row["state"] == "done" else [],
                    "reason": row["error_reason"] if row else "watchd may not read this file",
                }
            )
        ledger.close()
        return results


def _terminal(ledger: Ledger, job_id: int) -> bool:
    row = ledger.get(job_id)
    return row is None or row["state"] in TERMINAL
