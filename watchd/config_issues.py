"""Config mistakes in words: where the user wrote them, and what is wrong, never a secret.

Owns `ConfigIssue` and `ConfigError`, the collector that keeps every issue of a file in order,
and the translation of pydantic's errors into what they mean to a person writing YAML:
"must be > 0 and ≤ 1 (got 1.5)", "unknown key 'expnd' (did you mean 'expand'?)".

Never does: read anything, or show the value of an unknown key (it may be an API key pasted
in the wrong place).
"""

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic_core import ErrorDetails

from watchd.errors import WatchdError
from watchd.settings import (
    MERGED_MAPS,
    SECTIONS,
    FolderConfig,
    Settings,
    bounds,
    number_text,
    submodel,
)

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "Issues",
    "closest",
    "join",
    "loc_text",
    "message",
    "show",
    "unknown_key",
]

# --- issues ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: the file, the key path as the user wrote it (`folders[1].expand.top`), why."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class ConfigError(WatchdError):
    """The config cannot be used; `issues` lists every problem found, not just the first."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


class Issues:
    """Collects issues for one file, in the order found, without duplicates.

    Duplicates are normal: a bad value in a preset is met again in every folder that uses it.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[ConfigIssue] = []

    def add(self, path: str, message: str) -> None:
        issue = ConfigIssue(self.file, path, message)
        if issue not in self.items:
            self.items.append(issue)

    def __bool__(self) -> bool:
        return bool(self.items)


# Where a key probably belongs when it is written one level off.
HINTS = (
    {k: f"{s}.{k}" for s, m in SECTIONS.items() for k in m.model_fields}
    | {k: f"folders[].{k}' or 'defaults.{k}" for k in FolderConfig.model_fields}
    | {"name": "folders[].name"}
    | {k: f"{m}: {{{k}: ...}}" for m, model in MERGED_MAPS.items() for k in model.model_fields}
)


# --- in words -------------------------------------------------------------------------------


def show(value: Any) -> str:
    """A value as the user wrote it in YAML, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return number_text(value)
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def closest(word: str, options: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return found[0] if found else None


# What each pydantic error type means to a person writing YAML.
_RULES = {
    "float_type": "must be a number",
    "int_type": "must be a whole number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "finite_number": "must be a finite number",
    "model_type": "must be a map of settings",
    "dict_type": "must be a map of settings",
    "path_type": "must be a path",
}
_RANGES = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def message(model: type[Settings], err: ErrorDetails) -> str:
    """A pydantic error in words: the rule, then what was written."""
    kind, value, loc = err["type"], err.get("input"), err["loc"]
    got = f"got {show(value)}"
    if kind == "missing":
        return "is required"
    if kind == "shape":
        return err["msg"]
    if kind == "extra_forbidden":  # never the value: it may be a key pasted in the wrong place
        known = _model_at(model, loc[:-1])
        return unknown_key(loc[-1], known.model_fields if known else ())
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
        if isinstance(value, str) and (hint := closest(value, options)):
            got += f"; did you mean {hint!r}?"
        return f"must be one of {', '.join(map(repr, options))} ({got})"
    if kind == "value_error":
        rule = str(err.get("ctx", {}).get("error", err["msg"]))
    elif kind in _RANGES and (owner := _model_at(model, loc[:-1])):
        rule = f"must be {bounds(owner.model_fields[str(loc[-1])])}"
    else:
        rule = _RULES.get(kind, err["msg"])
    return rule if isinstance(value, dict) else f"{rule} ({got})"


def unknown_key(key: Any, known: Iterable[str]) -> str:
    """The closest known key, or where a key of that name belongs; never the value."""
    hint = (closest(key, known) if isinstance(key, str) else None) or HINTS.get(key)
    return f"unknown key {show(key)}" + (f" (did you mean '{hint}'?)" if hint else "")


def _model_at(model: type[Settings] | None, loc: Iterable[Any]) -> type[Settings] | None:
    """The model that holds the keys at `loc` inside `model`: ("expand",) → Expand."""
    for part in loc:
        if isinstance(part, int):  # an item of a list of maps: the same model
            continue
        if model is None or part not in model.model_fields:
            return None
        model = submodel(model.model_fields[part])
    return model


def join(prefix: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def loc_text(prefix: str, loc: Iterable[Any]) -> str:
    for part in loc:
        prefix = join(prefix, part)
    return prefix
