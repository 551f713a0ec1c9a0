"""`watchd pause FOLDER` and `watchd resume FOLDER`: thin shells over watchd.pause, added to
the `watchd` group when cli.py imports this module.

They write the ledger directly (a note, like `watchd retry`), so they work whether the
daemon runs (it reads the pause before each create) or not (the next start honours it).
"""

from __future__ import annotations

import click

from watchd.cli import Fatal, _config, _open_ledger, cli, config_option
from watchd.pause import PauseError, pause, resume


@cli.command("pause")
@config_option
@click.argument("folder")
@click.option("--reason", default="", help="Why, shown in status and on the dashboard.")
@click.pass_context
def pause_command(ctx: click.Context, config_path: str | None, folder: str, reason: str) -> None:
    """Pause a folder: its files wait in the inbox, tasks already created finish.

    The pause lives in the ledger: it lasts across restarts until `watchd resume`.

    \b
    Example:
      watchd pause products --reason "new backdrop being tested"
    """
    cfg = _config(ctx, config_path)
    ledger = _open_ledger(cfg, create=True)
    try:
        new = pause(cfg, ledger, folder, reason, by="watchd pause")
    except PauseError as exc:
        raise Fatal(str(exc)) from None
    finally:
        ledger.close()
    click.echo(
        f"folder {folder} paused: its files wait in the inbox until `watchd resume {folder}`"
        if new
        else f"folder {folder} was already paused; reason updated"
    )


@cli.command("resume")
@config_option
@click.argument("folder")
@click.pass_context
def resume_command(ctx: click.Context, config_path: str | None, folder: str) -> None:
    """Resume a paused folder: its waiting files are sent again.

    \b
    Example:
      watchd resume products
    """
    cfg = _config(ctx, config_path)
    ledger = _open_ledger(cfg)
    if ledger is None:  # nothing ran yet, so nothing is paused
        names = [f.name for f in cfg.folders]
        if folder not in names:
            raise Fatal(f"unknown folder {folder!r}; configured: {', '.join(names)}")
        click.echo(f"folder {folder} was not paused")
        return
    try:
        was = resume(cfg, ledger, folder)
    except PauseError as exc:
        raise Fatal(str(exc)) from None
    finally:
        ledger.close()
    click.echo(f"folder {folder} resumed" if was else f"folder {folder} was not paused")
