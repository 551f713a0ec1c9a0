"""Folders as identities: which configured folders are, on disk, the same place or inside
one another.

Owns `folder_conflicts`, the check that no folder watchd writes into (outbox, done/, failed/)
is, or is inside, a folder it takes files from (an inbox), nor the reverse, nor one inbox
taken twice. An outbox symlinked to its own inbox made every result a new input: one photo
cost 17 creates. So folders are compared by what they are, not how they are written: the
resolved path (`os.path.realpath`, through every symlink), and the (st_dev, st_ino) of the
folder or, for a folder not created yet, of its nearest existing ancestor plus the rest of
the path (a bind mount of one directory at two places is still one directory).

Only stats; never creates, writes or lists anything. Called at config load and by `check`;
what exists then is what is compared (a symlink made later is the watcher's problem).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from watchd.naming import display

# A level of a path: the (st_dev, st_ino) of the nearest existing directory at or above it,
# and the rest of the path below that directory ("" when the level itself exists).
_Identity = tuple[int, int, str]

# What goes wrong when a folder watchd writes into is, or is inside, an inbox.
_WHY = {
    "outbox": "every result would be taken as a new input",
    "done": "every original moved to done/ would be taken again",
    "failed": "every original moved to failed/ would be taken again",
}


class FolderPaths(Protocol):
    """What `folder_conflicts` reads of a folder (watchd.config.FolderConfig has it)."""

    @property
    def inbox(self) -> Path: ...
    @property
    def outbox(self) -> Path: ...
    @property
    def done(self) -> Path: ...
    @property
    def failed(self) -> Path: ...
    @property
    def recursive(self) -> bool: ...


@dataclass(frozen=True)
class _Place:
    key: str  # "folders[0].outbox"
    written: str  # absolute and normalised, as configured
    resolved: str  # through every symlink
    chain: tuple[_Identity, ...]  # the place itself first, then each ancestor up to "/"

    @property
    def role(self) -> str:
        return self.key.rsplit(".", 1)[1]

    def within(self, other: _Place) -> bool:
        """This place is `other` or inside it."""
        return other.chain[0] in self.chain

    def same(self, other: _Place) -> bool:
        return self.chain[0] == other.chain[0]

    def how(self, other: _Place) -> str:
        """Why the two meet: plainly, through a symlink, or only as one directory on disk."""
        if _path_within(self.written, other.written):
            return ""
        if _path_within(self.resolved, other.resolved):
            return " through a symlink"
        return " (the same directory on disk, e.g. a bind mount)"


def folder_conflicts(folders: Sequence[FolderPaths]) -> list[tuple[str, str]]:
    """(key path, message) for each way these folders would feed watchd its own files.

    - an outbox, done or failed folder that is any inbox, or is inside a recursive one
      (inside an inbox that is not recursive, its files are never seen: no loop);
    - an inbox inside any folder's outbox, done or failed folder (output templates may
      write into subfolders);
    - one inbox configured twice, or inside another, recursive, inbox.
    """
    inboxes = [_place(f"folders[{i}].inbox", f.inbox) for i, f in enumerate(folders)]
    written = [
        _place(f"folders[{i}].{role}", getattr(f, role))
        for i, f in enumerate(folders)
        for role in ("outbox", "done", "failed")
    ]
    conflicts: list[tuple[str, str]] = []
    for place in written:
        for i, inbox in enumerate(inboxes):
            if place.same(inbox) or (place.within(inbox) and folders[i].recursive):
                conflicts.append(_said(place, inbox, _WHY[place.role]))
    for inbox in inboxes:
        for place in written:
            if inbox.within(place) and not inbox.same(place):  # the same: said just above
                conflicts.append(_said(inbox, place, _WHY[place.role]))
    for j, inbox in enumerate(inboxes):
        for i, other in enumerate(inboxes):
            if i == j or not inbox.within(other):
                continue
            if inbox.same(other) and i < j:
                conflicts.append(_said(inbox, other, "both folders would take every file"))
            elif not inbox.same(other) and folders[i].recursive:
                why = "that inbox is recursive, so both folders would take every file here"
                conflicts.append(_said(inbox, other, why))
    return conflicts


def _said(place: _Place, target: _Place, why: str) -> tuple[str, str]:
    verb = "is" if place.same(target) else "resolves into"
    shown = f"{target.key} ({display(target.resolved)})"
    return place.key, f"{verb} {shown}{place.how(target)}: {why}"


def _place(key: str, path: Path) -> _Place:
    written = os.path.normpath(os.path.abspath(path))
    resolved = os.path.realpath(written)
    return _Place(key=key, written=written, resolved=resolved, chain=_chain(resolved))


def _chain(resolved: str) -> tuple[_Identity, ...]:
    levels = [resolved]
    while (parent := os.path.dirname(levels[-1])) != levels[-1]:
        levels.append(parent)
    identities: list[_Identity] = []
    base: tuple[int, int] = (0, 0)
    base_path = "/"
    for level in reversed(levels):  # from "/" down: each missing level hangs off the last found
        try:
            st = os.stat(level)
        except OSError:
            identities.append((*base, os.path.relpath(level, base_path)))
            continue
        base, base_path = (st.st_dev, st.st_ino), level
        identities.append((*base, ""))
    return tuple(reversed(identities))


def _path_within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")
