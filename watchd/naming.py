"""Names as the filesystem sees them: bytes, at most 255 of them in one path component.

This module owns every rule that derives a name from another name: the output template
(`render_name`), numbered names for collisions (`numbered`), the error report's name
(`error_json_name`), watchd's own temporary names (`temp_name`, `is_temp_name`) and the one
way to make any of them fit (`fit`). It also owns `display`, the form of a name that can
always be printed, logged or written as UTF-8 JSON.

Names are `str` as Python gives them: `os.fsdecode` of the bytes on disk, where a byte that
is not part of valid UTF-8 (a Latin-1 `é` from an old SMB client: `b"caf\\xe9.jpg"`) is the
lone surrogate U+DCE9. Lengths are measured in `os.fsencode` bytes, never in characters:
"é" is 2 bytes, an emoji 4, a surrogate-escaped byte 1.

When a derived name is too long, the stem is cut at a character boundary (so a multi-byte
character or an escaped byte is kept whole or left out whole) and `~` plus 8 hex digits of
the full stem's hash are put in its place: two long names that share their first 240 bytes
still get two different short names, and the extension and any suffix (`_2`, `-2`,
`.error.json`) are kept. Everything inserted is ASCII, so a derived name's bytes round-trip
through `os.fsdecode` and `os.fsencode` unchanged.

Never touches the filesystem.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import string
from pathlib import PurePath
from typing import Any

NAME_MAX = 255  # bytes in one path component (Linux, every common filesystem)
EXT_MAX = 16  # bytes: a longer "extension" is part of the stem (a name like "notes.my long text")
ERROR_JSON_SUFFIX = ".error.json"
TEMPLATE_FIELDS = ("stem", "ext", "name", "folder", "job", "dir")

_HASH_CHARS = 8
_MARK_BYTES = 1 + _HASH_CHARS  # "~" + hex digits
_TEMP_PREFIX = ".watchd-"
_TEMP_SUFFIX = ".part"
_TEMP_HEX = 16
_TEMP_RE = re.compile(rf"\.watchd-[0-9a-f]{{{_TEMP_HEX}}}\.part")


class TemplateError(ValueError):
    """An output template that is malformed or would leave the outbox."""


# -- measuring and cutting -------------------------------------------------------------


def name_bytes(name: str) -> int:
    """Length of `name` on disk, in bytes."""
    return len(os.fsencode(name))


def _char_bytes(ch: str) -> int:
    code = ord(ch)
    if code < 0x80 or 0xDC80 <= code <= 0xDCFF:  # ASCII, or one byte escaped by fsdecode
        return 1
    if code < 0x800:
        return 2
    return 3 if code < 0x10000 else 4


def _cut(text: str, limit: int) -> str:
    """The longest prefix of `text` that is at most `limit` bytes, cut between characters."""
    used = 0
    for i, ch in enumerate(text):
        used += _char_bytes(ch)
        if used > limit:
            return text[:i]
    return text


def _mark(text: str) -> str:
    return "~" + hashlib.sha256(os.fsencode(text)).hexdigest()[:_HASH_CHARS]


def split_ext(name: str) -> tuple[str, str]:
    """`photo.JPG` -> (`photo`, `.JPG`). A leading dot is no extension (`.hidden`), nor is a
    trailing one, nor a "suffix" over EXT_MAX bytes."""
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1 or name_bytes(name[dot:]) > EXT_MAX:
        return name, ""
    return name[:dot], name[dot:]


def fit(stem: str, tail: str = "", limit: int = NAME_MAX) -> str:
    """`stem + tail`, or, if that is over `limit` bytes, the stem cut short and marked
    (`~` and its hash) so that the whole fits. The tail (extension, number, `.error.json`)
    is kept whole unless it alone leaves no room, which no name watchd derives can reach."""
    if name_bytes(stem) + name_bytes(tail) <= limit:
        return stem + tail
    room = limit - name_bytes(tail) - _MARK_BYTES
    if room < 1:  # a tail that does not fit by itself: cut it as well
        whole = stem + tail
        return _cut(whole, limit - _MARK_BYTES) + _mark(whole)
    return _cut(stem, room) + _mark(stem) + tail


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """One path component made to fit, its extension kept."""
    stem, ext = split_ext(name)
    return fit(stem, ext, limit)


def fit_path(rel: str) -> str:
    """Every component of a relative "/"-separated path made to fit."""
    return "/".join(fit_name(part) for part in rel.split("/"))


# -- derived names ---------------------------------------------------------------------


def numbered(name: str, n: int, sep: str = "_") -> str:
    """`a/b.png`, 2 -> `a/b_2.png` (collisions); extra results use sep `-`. Always fits."""
    head, _, last = name.rpartition("/")
    stem, ext = split_ext(last)
    last = fit(stem, f"{sep}{n}{ext}")
    return f"{head}/{last}" if head else last


def error_json_name(name: str) -> str:
    """The error report's name for an original called `name` in failed/: `NAME.error.json`,
    the stem cut short when that would not fit (its extension kept: `long~1a2b3c4d.jpg...`)."""
    if name_bytes(name) + len(ERROR_JSON_SUFFIX) <= NAME_MAX:
        return name + ERROR_JSON_SUFFIX
    stem, ext = split_ext(name)
    return fit(stem, ext + ERROR_JSON_SUFFIX)


def temp_name() -> str:
    """A new name for one of watchd's temporary files: `.watchd-<16 hex>.part`.

    Hidden (so no inbox takes it as an input), 30 bytes whatever the final name, and of a
    shape `is_temp_name` recognises exactly, so a sweep after a crash removes only these.
    """
    return f"{_TEMP_PREFIX}{secrets.token_hex(_TEMP_HEX // 2)}{_TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """True only for a name `temp_name` could have made (never a user's `x.part`)."""
    return _TEMP_RE.fullmatch(name) is not None


def display(text: str) -> str:
    """`text` safe to print or encode as UTF-8: bytes that are not UTF-8 (surrogate escapes)
    become `\\xNN`, as in `caf\\xe9.jpg`. Valid text, accents and emoji included, is unchanged."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no filesystem name can hold
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def displayable(value: Any) -> Any:
    """`value` with `display` applied to every string and path in it (dicts, lists, tuples)."""
    if isinstance(value, str | PurePath):
        return display(str(value))
    if isinstance(value, dict):
        return {displayable(k): displayable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(displayable(v) for v in value)
    return value


def to_sql(text: str) -> str | bytes:
    """A name or path as SQLite can store it: text when it is UTF-8, else its bytes (a
    BLOB). sqlite3 encodes text as strict UTF-8 and raises on a surrogate escape. Apply it
    to stored values and to the values they are looked up by alike: a BLOB equals a BLOB."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def from_sql(value: str | bytes | None) -> str | None:
    """What `to_sql` stored, back as the str Python names the file by."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


# -- the output template ---------------------------------------------------------------


def render_name(template: str, **fields: Any) -> str:
    """The relative outbox path for one result; refuses anything that escapes the outbox.

    `/` and `\\` in the template's own text separate folders; in a field's value (a file
    may be called `a\\b.jpg` on Linux) a backslash is part of the name. Every component of
    the result fits in NAME_MAX bytes: when the file name is too long, `{stem}` (and the stem
    inside `{name}`) is cut first, so the template's own text and the extension stay; any
    component still too long is then cut like `fit_name`.
    """
    try:
        # Plain field names only: `{stem.x}` or `{stem[a]}` would otherwise reach attribute
        # and index lookups and fail with AttributeError or TypeError, not a TemplateError.
        for _, field, _, _ in string.Formatter().parse(template):
            if field is not None and field not in TEMPLATE_FIELDS:
                known = ", ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS)
                raise TemplateError(
                    f"bad output template {template!r}: unknown field {{{field}}} (use {known})"
                )
        raw = {k: fields.get(k, "") for k in TEMPLATE_FIELDS}
        values = {k: _literal(v) for k, v in raw.items()}
        rendered = template.format(**values)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        if isinstance(exc, TemplateError):
            raise
        raise TemplateError(f"bad output template {template!r}: {exc}") from None
    parts = _parts(rendered)
    # Absolute only by the template's own text or by a field that is itself absolute: the "/"
    # an empty `{dir}` leaves in front ("{dir}/{stem}{ext}" for a file at the top of the
    # inbox) is no escape, and a rendered name is always joined under the outbox.
    absolute = template.startswith(("/", "\\", "~")) or any(
        str(v).startswith("/") for v in values.values()
    )
    if not parts or absolute or ".." in parts:
        shown = rendered.replace(_BACKSLASH, "\\")
        raise TemplateError(f"output template {template!r} gives {shown!r}, outside the outbox")
    if any("\0" in p for p in parts):
        raise TemplateError("output name contains a NUL byte")
    if name_bytes(parts[-1]) > NAME_MAX:
        parts[-1] = _shorter_by_stem(template, raw) or parts[-1]
    return fit_path("/".join(parts))


# A backslash inside a field's value, kept apart from the template's separators while the
# name is split. U+DC5C is a surrogate that os.fsdecode never makes (it escapes only bytes
# 0x80-0xff, as U+DC80-U+DCFF), so no real name contains it.
_BACKSLASH = "\udc5c"


def _literal(value: Any) -> Any:
    return value.replace("\\", _BACKSLASH) if isinstance(value, str) else value


def _parts(rendered: str) -> list[str]:
    parts = rendered.replace("\\", "/").split("/")
    return [p.replace(_BACKSLASH, "\\") for p in parts if p not in ("", ".")]


def _shorter_by_stem(template: str, values: dict[str, Any]) -> str | None:
    """The last component rendered again with `{stem}` and the stem of `{name}` cut until it
    fits (None: the template's last component uses neither, or cutting is not enough)."""
    used = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    stem = str(values["stem"])
    name_stem, name_ext = split_ext(str(values["name"]))
    budgets = {
        "stem": name_bytes(stem) if "stem" in used else 0,
        "name": name_bytes(name_stem) if "name" in used else 0,
    }
    for _ in range(8):  # each round takes off at least the excess; a field used twice: twice
        cut = {
            "stem": fit(stem, "", budgets["stem"]) if budgets["stem"] else stem,
            "name": fit(name_stem, name_ext, budgets["name"] + name_bytes(name_ext))
            if budgets["name"]
            else values["name"],
        }
        rendered = template.format(**{k: _literal(v) for k, v in {**values, **cut}.items()})
        last = _parts(rendered)[-1]
        excess = name_bytes(last) - NAME_MAX
        if excess <= 0:
            return last
        shorter = {f: max(_MARK_BYTES + 1, b - excess) if b else 0 for f, b in budgets.items()}
        if shorter == budgets:  # cut to the bone and still too long: the template's own text
            return None
        budgets = shorter
    return None
