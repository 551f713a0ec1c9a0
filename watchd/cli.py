"""The `watchd` command: thin click shells over the library.

Each command loads the config, calls one library function and renders the result: tables and
JSON to stdout, logs and warnings to stderr. Library errors become one clear line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from watchd import __version__, logs
from watchd.cli_config import config_commands, systemd_unit
from watchd.config import (
    Config,
    ConfigError,
    describe,
    key_file_warnings,
    load_config,
    resolve_config_path,
)
from watchd.lock import AlreadyRunning

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_FAILED = 1


class Fatal(click.ClickException):
    """One clear line, exit 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"watchd: {self.message}", err=True)


def config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--config/-c` on every command, so it works before or after the command name."""
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Config file (default: $WATCHD_CONFIG, ./watchd.yaml, /etc/watchd/watchd.yaml).",
    )(fn)


def _config(ctx: click.Context, path: str | None) -> Config:
    chosen = path or (ctx.obj or {}).get("config_path")
    cfg_path = resolve_config_path(chosen)
    try:
        cfg = load_config(cfg_path)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            click.echo(line, err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from None
    logs.configure(cfg.log.format, cfg.log.level)
    return cfg


def _open_ledger(cfg: Config, *, create: bool = False, readonly: bool = False) -> Any:
    """The ledger, or None if nothing has run yet; a damaged file is one clear line.
    `readonly`: for the views (status, jobs), which must never write it."""
    from watchd.ledger import Ledger, LedgerError

    path = cfg.state_dir / "watchd.db"
    if not path.exists() and not create:
        return None
    try:
        return Ledger.open(path, readonly=readonly)
    except LedgerError as exc:
        raise Fatal(str(exc)) from None


def _now() -> float:
    from watchd.clock import SystemClock

    return SystemClock().wall()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(__version__, prog_name="watchd")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """watchd: folders in, expanded images out, with the PicWish image expand API.

    \b
    Example:
      watchd demo                         # offline end-to-end demo, no key needed
      watchd -c /etc/watchd/watchd.yaml check
    """
    ctx.obj = {"config_path": config_path}


@cli.command()
@config_option
@click.pass_context
def run(ctx: click.Context, config_path: str | None) -> None:
    """Run the daemon in the foreground (systemd runs this).

    SIGTERM/SIGINT stop it cleanly (work in flight is parked in the ledger); SIGHUP reloads
    the config (a bad config is refused and the old one kept).

    \b
    Example:
      watchd run -c /etc/watchd/watchd.yaml
    """
    from watchd.daemon import Daemon, StartupError
    from watchd.ledger import LedgerError

    cfg = _config(ctx, config_path)
    for warning in key_file_warnings(cfg):
        logs.get_logger().warning(warning)
    try:
        code = asyncio.run(Daemon(cfg.path).run())
    except (StartupError, AlreadyRunning, ConfigError, LedgerError) as exc:
        raise Fatal(str(exc)) from None
    sys.exit(code)


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the resolved settings as JSON.")
@click.pass_context
def check(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Validate the config and print each folder's resolved settings (API key redacted).

    Every error is listed at once with the file, the key path and what is wrong; exit 1.
    For each folder, shows what a 3000×2000 image would be sent as.

    \b
    Example:
      watchd check -c config/watchd.example.yaml
    """
    from watchd.preview import preview

    cfg = _config(ctx, config_path)
    for warning in key_file_warnings(cfg):
        click.echo(f"warning: {warning}", err=True)
    data = describe(cfg)
    previews = {f.name: preview(f, 3000, 2000) for f in cfg.folders}
    if as_json:
        data["example_3000x2000"] = previews
        click.echo(json.dumps(data, indent=2, default=str))
        return
    import yaml

    click.echo(f"# {cfg.path}: OK")
    click.echo(
        yaml.safe_dump(
            json.loads(json.dumps(data, default=str)), sort_keys=False, allow_unicode=True
        ).rstrip()
    )
    click.echo("# a 3000×2000 image would be sent as:")
    for name, text in previews.items():
        click.echo(f"#   {name}: {text}")


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def status(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Jobs per state per folder, recent failures, throughput; works while the daemon runs.

    \b
    Example:
      watchd status --json | jq .folders
    """
    from watchd.report import status as build
    from watchd.spend import status_lines as spend_lines

    cfg = _config(ctx, config_path)
    ledger = _open_ledger(cfg, readonly=True)
    try:
        data = build(cfg, ledger, _now())
    finally:
        if ledger is not None:
            ledger.close()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    daemon = data["daemon"]
    out.print(
        f"daemon: {'running, pid ' + str(daemon['pid']) if daemon['running'] else 'not running'}"
        f"   ledger: {data['state_dir']}/watchd.db"
    )
    if data["paused"]:
        out.print(f"[bold red]submissions PAUSED:[/] {data['paused']}")
    for name, note in data["paused_folders"].items():
        why = escape(str(note.get("reason") or ""))
        out.print(f"[bold yellow]folder {name} PAUSED:[/] {why} (`watchd resume {name}`)")
    if data["dashboard"]:
        out.print(f"dashboard: {data['dashboard']}" + ("" if daemon["running"] else " (when run)"))
    # Only the states that hold jobs, so the table fits a terminal (or a pipe's 80 columns).
    order = [
        "waiting",
        "submitting",
        "processing",
        "downloading",
        "finishing",
        "failing",
        "done",
        "failed",
        "gone",
    ]
    used = [s for s in order if any(c.get(s) for c in data["folders"].values())] or ["waiting"]
    table = Table(title="jobs")
    width = max([6, *map(len, data["folders"])])
    table.add_column("folder", no_wrap=True, min_width=width)
    for state in used:
        table.add_column(state, justify="right", no_wrap=True)
    for folder, counts in data["folders"].items():
        table.add_row(folder, *[str(counts.get(s, 0)) for s in used])
    out.print(table)
    hour = data["last_hour"]
    rpt = hour["requests_per_task"]
    out.print(
        f"last hour: {hour['tasks_done']} done, {hour['tasks_per_minute']} tasks/min,"
        f" {rpt if rpt is not None else '-'} requests/task"
    )
    if data["recent_failures"]:
        failures = Table("job", "folder", "file", "reason", "at", title="recent failures")
        for f in data["recent_failures"]:
            failures.add_row(str(f["id"]), f["folder"], f["file"], f["reason"] or "", f["at"] or "")
        out.print(failures)
    if data["lone_masks"]:
        out.print("masks waiting for their image: " + ", ".join(data["lone_masks"]))
    for line in spend_lines(data["spend"]):
        out.print(line)


@cli.command()
@config_option
@click.option("--state", "state", default=None, help="Only jobs in this state (e.g. failed).")
@click.option("--folder", "folder", default=None, help="Only jobs of this folder.")
@click.option(
    "--since", "since", default=None, help="Only jobs updated since: 30m, 2h, 3d or an ISO date."
)
@click.option(
    "--limit", default=200, show_default=True, help="At most this many jobs (newest first)."
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one job per line.")
@click.pass_context
def jobs(
    ctx: click.Context,
    config_path: str | None,
    state: str | None,
    folder: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs: id, folder, file, state, attempts, task id, age, last error.

    \b
    Example:
      watchd jobs --state failed --folder products --since 1d
    """
    from watchd.lifecycle import State
    from watchd.report import job_view, parse_since

    cfg = _config(ctx, config_path)
    if state and state not in {s.value for s in State}:
        raise Fatal(f"unknown state {state!r}; one of: {', '.join(s.value for s in State)}")
    if folder and folder not in {f.name for f in cfg.folders}:
        raise Fatal(
            f"unknown folder {folder!r}; configured: {', '.join(f.name for f in cfg.folders)}"
        )
    try:
        since_ts = parse_since(since, _now()) if since else None
    except ValueError as exc:
        raise Fatal(str(exc)) from None
    ledger = _open_ledger(cfg, readonly=True)
    rows = ledger.jobs(state=state, folder=folder, since=since_ts, limit=limit) if ledger else []
    views = [job_view(r, _now()) for r in rows]
    if as_json:
        for v in views:
            click.echo(json.dumps(v, ensure_ascii=False))
        return
    table = Table("id", "folder", "file", "state", "attempts", "task id", "age", "last error")
    for v in views:
        table.add_row(
            str(v["id"]),
            v["folder"],
            v["file"],
            v["state"],
            str(v["attempts"]),
            v["task_id"] or "",
            _age(v["age"]),
            v["last_error"] or "",
        )
    out.print(table)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@cli.command()
@config_option
@click.argument("job_ids", nargs=-1, type=int)
@click.option("--failed", "all_failed", is_flag=True, help="Requeue every failed job.")
@click.option("--folder", "folder", default=None, help="With --failed: only this folder.")
@click.pass_context
def retry(
    ctx: click.Context,
    config_path: str | None,
    job_ids: tuple[int, ...],
    all_failed: bool,
    folder: str | None,
) -> None:
    """Requeue failed jobs: the original goes back into its inbox, its history is kept.

    Works with the daemon running (it picks them up) or stopped (the next start does).

    \b
    Example:
      watchd retry 12 15
      watchd retry --failed --folder products
    """
    from watchd.requeue import RequeueError, requeue

    cfg = _config(ctx, config_path)
    if not job_ids and not all_failed:
        raise Fatal("name job ids, or use --failed")
    if folder and folder not in {f.name for f in cfg.folders}:
        raise Fatal(
            f"unknown folder {folder!r}; configured: {', '.join(f.name for f in cfg.folders)}"
        )
    ledger = _open_ledger(cfg)
    if ledger is None:
        raise Fatal(f"no ledger at {cfg.state_dir}: nothing has run yet")
    try:
        ids = list(job_ids)
        if all_failed:
            ids += [r["id"] for r in ledger.in_state("failed", folder=folder)]
        if not ids:
            click.echo("no failed jobs to retry", err=True)
            return
        refused: list[str] = []
        for job_id in ids:  # one job that cannot be retried stops none of the others
            try:
                where = requeue(cfg, ledger, job_id)
            except (RequeueError, OSError) as exc:
                refused.append(f"job {job_id}: not retried: {exc}")
                if len(ids) > 1:
                    click.echo(refused[-1], err=True)
                continue
            click.echo(
                f"job {job_id}: original back in the inbox at {where}; it will be taken again"
            )
    finally:
        ledger.close()
    if len(ids) == 1 and refused:
        raise Fatal(refused[0])
    if refused:
        done = len(ids) - len(refused)
        raise Fatal(f"{done} of {len(ids)} jobs retried; {len(refused)} could not be (above)")


@cli.command()
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--folder", "folder", required=True, help="Use this folder's settings and outbox.")
@click.pass_context
def process(
    ctx: click.Context, config_path: str | None, files: tuple[Path, ...], folder: str
) -> None:
    """Process these files once with a folder's settings, then exit (1 if any failed).

    Results go to the folder's outbox; the files themselves stay where they are. Refuses
    while a daemon runs on the same state_dir (drop the files into its inbox instead).

    \b
    Example:
      watchd process shots/*.jpg --folder products
    """
    from watchd.oneshot import process_files

    cfg = _config(ctx, config_path)
    if folder not in {f.name for f in cfg.folders}:
        raise Fatal(
            f"unknown folder {folder!r}; configured: {', '.join(f.name for f in cfg.folders)}"
        )
    missing = [str(f) for f in files if not f.exists() and not f.is_symlink()]
    if missing:
        raise Fatal(f"no such file: {', '.join(missing)}")
    try:
        results = asyncio.run(process_files(cfg, folder, list(files), err))
    except AlreadyRunning as exc:
        raise Fatal(f"{exc}; or drop the files into the inbox of folder {folder!r}") from None
    except RuntimeError as exc:
        raise Fatal(str(exc)) from None
    table = Table("file", "state", "output / reason")
    failed = 0
    for r in results:
        failed += r["state"] != "done"
        table.add_row(r["file"], r["state"], ", ".join(r["outputs"]) or (r["reason"] or ""))
    out.print(table)
    sys.exit(EXIT_FAILED if failed else 0)


@cli.command()
@click.option("--clean", is_flag=True, help="Delete the workspace afterwards.")
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Make the workspace here (default: a new temporary folder).",
)
@click.option("--serve", is_flag=True, help="Keep the demo and its dashboard up until Ctrl-C.")
def demo(clean: bool, workdir: Path | None, serve: bool) -> None:
    """Offline end-to-end demo: simulator + daemon + sample images, no key, no network.

    It prints the dashboard's address while it runs.

    \b
    Example:
      watchd demo --clean
      watchd demo --serve       # then open the printed http://127.0.0.1:8750/
    """
    from watchd.demo import run_demo

    sys.exit(run_demo(out, err, keep=not clean, workdir=workdir, serve=serve))


from watchd import pause_commands  # noqa: E402, F401 (`watchd pause`, `resume`: uses the above)

# Commands of their own modules; `watchd config validate` is `watchd check`.
cli.add_command(config_commands)
cli.add_command(systemd_unit)
config_commands.add_command(check, "validate")


def main(argv: list[str] | None = None) -> None:
    try:
        # Outside standalone mode click returns the code of an Exit instead of raising it.
        code = cli.main(args=argv, prog_name="watchd", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # `watchd` or `watchd config` alone
        click.echo(exc.format_message(), err=True)
        sys.exit(2)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "watchd"
        click.echo(f"watchd: {exc.format_message()} (see: {command} --help)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("watchd: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)


# Commands of their own modules (issue 13: plan, notify-test).
from watchd.cli_money import register as _register_money  # noqa: E402

_register_money(cli)
