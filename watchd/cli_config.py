"""`watchd config ...` and `watchd systemd-unit`: what an installed user starts from.

Thin shells over `watchd.bundled` (the packaged example config, mask and unit) and
`watchd.docgen` (the config's JSON Schema). `watchd config validate` is `watchd check`,
registered beside these in watchd/cli.py.
"""

from __future__ import annotations

from pathlib import Path

import click

from watchd import bundled
from watchd.docgen import schema_text


@click.group("config")
def config_commands() -> None:
    """Make, describe and check config files.

    \b
    Example:
      watchd config generate /etc/watchd/watchd.yaml
      watchd config schema > watchd.schema.json
      watchd config validate -c /etc/watchd/watchd.yaml
    """


@config_commands.command()
@click.argument("path", default="watchd.yaml", type=click.Path(dir_okay=False, allow_dash=True))
def generate(path: str) -> None:
    """Write the commented example config to PATH (default ./watchd.yaml); `-` prints it.

    Beside it go watchd.schema.json (for editors, see the file's first line) and the example
    mask masks/banner.png. An existing PATH is never overwritten.

    \b
    Example:
      watchd config generate /etc/watchd/watchd.yaml
      watchd config generate - | less
    """
    from watchd.cli import Fatal

    if path == "-":
        click.echo(bundled.read(bundled.EXAMPLE).decode(), nl=False)
        return
    try:
        written, kept = bundled.generate(Path(path), schema_text())
    except FileExistsError:
        raise Fatal(f"{path} exists; not overwriting it (choose another PATH)") from None
    except OSError as exc:
        raise Fatal(f"cannot write {exc.filename or path}: {exc.strerror}") from None
    for done in written:
        click.echo(f"wrote {done}", err=True)
    for there in kept:
        click.echo(f"kept {there} (it was there already)", err=True)
    click.echo(f"next: edit its folders, then run: watchd check -c {path}", err=True)


@config_commands.command()
def schema() -> None:
    """Print the JSON Schema of the config file, for editors and other tools.

    \b
    Example:
      watchd config schema > /etc/watchd/watchd.schema.json
    """
    click.echo(schema_text(), nl=False)


@click.command("systemd-unit")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"The config the service runs with (default: --config before the command, "
    f"else {bundled.UNIT_CONFIG}).",
)
@click.option(
    "--user", default=bundled.UNIT_USER, show_default=True, help="User= and Group= of the service."
)
@click.pass_context
def systemd_unit(ctx: click.Context, config_path: str | None, user: str) -> None:
    """Print the systemd unit, with ExecStart= running this very install of watchd.

    Otherwise it is the unit shipped as systemd/watchd.service: sandboxed, Type=notify,
    reloaded by SIGHUP. Save it as /etc/systemd/system/watchd.service.

    \b
    Example:
      watchd systemd-unit > /etc/systemd/system/watchd.service
      watchd systemd-unit --config /srv/photos/watchd.yaml --user photos
    """
    chosen = config_path or (ctx.obj or {}).get("config_path") or bundled.UNIT_CONFIG
    config = str(Path(chosen).expanduser().absolute())
    click.echo(bundled.systemd_unit(bundled.this_watchd(), config, user), nl=False)
