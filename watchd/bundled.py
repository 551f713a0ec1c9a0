"""What an installed watchd carries for its user: the example config, its mask, the unit.

Owns the files under `watchd/data/` (read through importlib.resources, so they are found in a
wheel as in a checkout), writing the example config where a user asks for it, and the systemd
unit as it should run this very install.

Never does: overwrite a file, or write anywhere but beside the path it is given.
"""

from __future__ import annotations

import re
import sys
from importlib.resources import files
from pathlib import Path

EXAMPLE = "watchd.example.yaml"
UNIT = "watchd.service"
SCHEMA = "watchd.schema.json"  # the name the example's modeline points at, beside the config
MASKS = ("masks/banner.png",)  # the masks the example config names
# What the shipped unit says, and `systemd_unit()` replaces for this install.
UNIT_WATCHD = "/opt/watchd/bin/watchd"
UNIT_CONFIG = "/etc/watchd/watchd.yaml"
UNIT_USER = "watchd"


def read(name: str) -> bytes:
    """One packaged file, by its path under watchd/data/."""
    return (files("watchd") / "data" / name).read_bytes()


def generate(path: Path, schema: str) -> tuple[list[Path], list[Path]]:
    """Write the example config to `path`, and beside it its JSON Schema and its mask.

    Returns (written, kept): a schema or mask already there is kept as it is. Raises
    FileExistsError, writing nothing, when `path` exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _create(path, read(EXAMPLE))
    written, kept = [path], []
    extras = {SCHEMA: schema.encode(), **{mask: read(mask) for mask in MASKS}}
    for name, data in extras.items():
        target = path.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            _create(target, data)
        except FileExistsError:
            kept.append(target)
        else:
            written.append(target)
    return written, kept


def _create(path: Path, data: bytes) -> None:
    with path.open("xb") as f:  # "x": an existing file is an error, never replaced
        f.write(data)


def systemd_unit(watchd: str, config: str = UNIT_CONFIG, user: str = UNIT_USER) -> str:
    """The shipped unit with ExecStart= running `watchd` on `config`, as User= and Group= `user`.

    With the defaults it is the shipped unit, byte for byte.
    """
    text = read(UNIT).decode()
    lines = {
        f"ExecStart={UNIT_WATCHD} run --config {UNIT_CONFIG}": (
            f"ExecStart={watchd} run --config {unit_quote(config)}"
        ),
        f"User={UNIT_USER}": f"User={user}",
        f"Group={UNIT_USER}": f"Group={user}",
    }
    for old, new in lines.items():
        assert text.count(f"\n{old}\n") == 1, f"the shipped unit lost its {old!r} line"
        text = text.replace(f"\n{old}\n", f"\n{new}\n")
    return text


def this_watchd(
    argv0: str | None = None, prefix: str | None = None, python: str | None = None
) -> str:
    """The command line that starts this very install's watchd, for ExecStart=.

    The `watchd` script that is running (a symlink such as /usr/local/bin/watchd or pipx's
    ~/.local/bin/watchd is followed to the install it belongs to), else the one in this
    interpreter's environment, else `python -m watchd` with this interpreter. The arguments
    default to sys.argv[0], sys.prefix and sys.executable.
    """
    running = Path(sys.argv[0] if argv0 is None else argv0)
    if running.name == "watchd" and running.is_file():
        return unit_quote(str(running.resolve()))
    script = Path(sys.prefix if prefix is None else prefix) / "bin" / "watchd"
    if script.is_file():
        return unit_quote(str(script))
    return f"{unit_quote(sys.executable if python is None else python)} -m watchd"


def unit_quote(word: str) -> str:
    """One word of a systemd command line: quoted if it must be, `%` and `$` escaped."""
    word = word.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[\w@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
