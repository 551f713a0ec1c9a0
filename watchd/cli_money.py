"""The commands about money and attention: `watchd plan` and `watchd notify-test`.

Thin click shells, as in cli.py (registered there by `register(cli)`): load the config, call
plan.py or notifications.py, render. Library errors become one line and exit 1.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click


def register(group: click.Group) -> None:
    # Imported here: cli.py calls this at its end, once its helpers exist.
    from watchd.cli import Fatal, _config, config_option

    @group.command()
    @config_option
    @click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
    @click.option(
        "--folder", "folder", default=None, help="Use this folder (its inbox or settings)."
    )
    @click.option(
        "--json", "as_json", is_flag=True, help="JSON lines: one per file, then the total."
    )
    @click.pass_context
    def plan(
        ctx: click.Context,
        config_path: str | None,
        paths: tuple[Path, ...],
        folder: str | None,
        as_json: bool,
    ) -> None:
        """What the files in the inboxes (or PATHs) would be sent as, and what it would cost.

        For each file: the ratios, fit and mask it would be sent with, or why it would fail
        before paying, or why no create is needed (same content known). Then the total:
        creates, time at the current qps and learned task time, and whether a cap stops it.
        No API call and no ledger write: safe while the daemon runs.

        \b
        Example:
          watchd plan
          watchd plan --folder products ~/shots --json | jq -c 'select(.verdict)'
        """
        from watchd import plan as planner
        from watchd.clock import SystemClock

        cfg = _config(ctx, config_path)
        try:
            files = list(planner.targets(cfg, folder, paths))
        except planner.PlanError as exc:
            raise Fatal(str(exc)) from None
        now = SystemClock().wall()
        totals = planner.Totals()
        inboxes = {f.name: Path(f.inbox) for f in cfg.folders}
        conn = None
        try:
            conn = planner.open_ledger(cfg)
            with _progress(len(files)) as advance:
                for item in planner.plan_files(cfg, files, conn, now):
                    totals.add(item)
                    if as_json:
                        click.echo(json.dumps(item.to_json(), ensure_ascii=False))
                    else:
                        click.echo(_line(item, inboxes.get(item.folder)))
                    advance()
            total = planner.summary(cfg, totals, conn, now)
        except sqlite3.Error as exc:
            ledger = cfg.state_dir / "watchd.db"
            raise Fatal(f"cannot read the ledger {ledger}: {exc}") from None
        finally:
            if conn is not None:
                conn.close()
        if as_json:
            click.echo(json.dumps({"total": total}, ensure_ascii=False))
        else:
            for line in planner.summary_lines(total):
                click.echo(line)

    @group.command("notify-test")
    @config_option
    @click.pass_context
    def notify_test(ctx: click.Context, config_path: str | None) -> None:
        """Send one test message to every notification target and say how each went.

        Exit 1 if any target failed. Target URLs are shown redacted (they hold secrets).

        \b
        Example:
          watchd notify-test -c /etc/watchd/watchd.yaml
        """
        from watchd import notifications

        cfg = _config(ctx, config_path)
        if not cfg.notify:
            raise Fatal("no notification targets: add a notify: list to the config")
        failed = 0
        for result in notifications.send_test(cfg.notify):
            mark = "ok" if result.ok else "FAILED"
            failed += not result.ok
            click.echo(f"{mark:6} {result.label}" + (f": {result.error}" if result.error else ""))
        if failed:
            raise Fatal(f"{failed} of {len(cfg.notify)} targets failed")


def _line(item: Any, inbox: Path | None) -> str:
    from watchd.plan import shown

    path = item.path
    if inbox is not None and path.is_relative_to(inbox):
        path = path.relative_to(inbox)
    return f"{item.verdict:9} {item.folder}/{shown(path)}  {item.detail}"


class _progress:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return lambda: None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True), transient=True)
        self.bar.__enter__()
        task = self.bar.add_task("planning", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
