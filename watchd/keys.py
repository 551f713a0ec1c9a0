"""The API key: where it comes from, read without ever being shown.

Owns: the lookup order (`api.key_file`, then `$CREDENTIALS_DIRECTORY/api-key`, then
`$WATCHD_API_KEY`), reading a key file safely (a size cap, UTF-8 text, whitespace stripped),
the warning about a key file others may read, and telling a pasted key from a file name.

Never does: put the key, or anything read from a key file, into a message, an exception, a
repr or any value but `KeySource.key`. Messages name the file, never its content.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from watchd.errors import WatchdError

CREDENTIAL = "api-key"  # the name under $CREDENTIALS_DIRECTORY (systemd LoadCredential=)
# The largest key file worth reading: an API key is a short token, not a document.
_LIMIT = 4096
# One long token with no folder and no extension: what an API key pasted as a path looks like.
_TOKEN = re.compile(r"[A-Za-z0-9_+=-]{16,}")


class KeyFileError(WatchdError):
    """A key file that cannot be used. The message names the file, never what it holds."""


@dataclass(frozen=True)
class KeySource:
    """The key found, in words where it came from, and the file it was read from."""

    key: str | None = field(repr=False)
    where: str  # "from /etc/watchd/api-key", "from $WATCHD_API_KEY", "missing"
    path: Path | None = None


def find_key(key_file: Path | None, env: Mapping[str, str]) -> KeySource:
    """The first key found. A configured `key_file` that cannot be read raises KeyFileError
    rather than falling back: the operator asked for that file."""
    if key_file is not None:
        return KeySource(read_key_file(key_file, required=True), f"from {key_file}", key_file)
    if env.get("CREDENTIALS_DIRECTORY"):
        path = Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL
        key = read_key_file(path, required=False)
        if key:
            return KeySource(key, f"from $CREDENTIALS_DIRECTORY/{CREDENTIAL} ({path})", path)
    key = env.get("WATCHD_API_KEY", "").strip()
    if key:
        return KeySource(key, "from $WATCHD_API_KEY", None)
    return KeySource(None, "missing")


def read_secret_file(path: Path, what: str, limit: int = _LIMIT) -> str:
    """The stripped text of a small file that holds a secret (an API key, a dashboard token,
    a notification URL). Raises ValueError naming the file and `what` it should hold, never
    what it holds: a secret is never echoed, not even in an error."""
    try:
        if not path.is_file():
            raise ValueError(f"{what} file {path} does not exist or is not a regular file")
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except PermissionError:
        raise ValueError(f"cannot read {what} file {path}: permission denied") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise ValueError(f"{what} file {path} is too long to hold {what_an(what)}")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{what} file {path} is not UTF-8 text") from None


def what_an(what: str) -> str:
    return f"an {what}" if what[:1].lower() in "aeiou" else f"a {what}"


def read_key_file(path: Path, *, required: bool) -> str | None:
    """The stripped key in `path`; None if it is optional and absent or empty."""
    if not required and not path.exists():
        return None
    try:
        key = read_secret_file(path, "API key")
    except ValueError as exc:
        raise KeyFileError(str(exc)) from None
    if not key and required:
        raise KeyFileError(f"API key file {path} is empty")
    return key or None


def permission_warnings(source: KeySource) -> list[str]:
    """A warning when the key file in use may be read by its group or by others."""
    if source.path is None:
        return []
    try:
        mode = stat.S_IMODE(source.path.stat().st_mode)
    except OSError:
        return []
    if mode & 0o077:
        return [
            f"API key file {source.path} is accessible by group or others (mode {mode:04o}); "
            f"run `chmod 600 {source.path}`"
        ]
    return []


def unshowable_key_file(written: str, resolved: Path) -> str | None:
    """Why `key_file: WRITTEN` must not be echoed, or None when it is plainly a path.

    A value with no folder in it that names no file may well be the key itself, pasted where
    its path belongs; it is then never repeated back, in any message, whatever it holds.
    """
    if "/" in written or resolved.exists():
        return None
    if _TOKEN.fullmatch(written.strip()):
        return (
            "looks like the API key itself, not the path of a file (the value is not shown); "
            "put the key in a file only watchd can read (chmod 600) and give that file's path "
            "here, or leave key_file out and use $CREDENTIALS_DIRECTORY or $WATCHD_API_KEY"
        )
    return (
        "names no file beside the config (the value is not shown, in case it is the key "
        "itself); give the path of the file that holds the API key"
    )
