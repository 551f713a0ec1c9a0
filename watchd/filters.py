"""Which names in an inbox are inputs, sidecar masks, or junk to leave alone.

This module owns the name rules of an inbox: which names are inputs (`.jpg .jpeg .png` in any
letter case) and which are junk left alone (hidden, temporary, OS and NAS litter), the ignore
globs of a folder, and the `NAME.mask.png` convention of sidecar masks. It works on names and
relative paths only: it must never touch the filesystem (the caller stats; a name that looks
right may still be a symlink or a FIFO).

Like watchfiles' filters these are plain predicates, so the watcher, the rescan and the daemon
all ask the same question and get the same answer.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

JUNK_DIRS = {"@eaDir", "__MACOSX", ".stfolder"}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MASK_SUFFIXES = (".mask.png", ".mask.jpg", ".mask.jpeg")

# Compared in lower case: Windows clients and SMB shares do not care about letter case, and a
# `THUMBS.DB` or `Report.TMP` is as much litter as the canonical spelling.
_JUNK_DIRS_LOWER = frozenset(name.lower() for name in JUNK_DIRS)
_JUNK_NAMES_LOWER = frozenset({"thumbs.db", "desktop.ini"})
_JUNK_SUFFIXES_LOWER = (".tmp", ".part", ".partial", ".crdownload", ".swp")


def is_junk_name(name: str) -> bool:
    """True for hidden, temporary and OS litter file names: never an input.

    `.*` covers `._*` and `.DS_Store`; `~*` covers Office's `~$*` lock files.
    """
    if not name or name.startswith((".", "~")):
        return True
    lower = name.lower()
    return lower in _JUNK_NAMES_LOWER or lower.endswith(_JUNK_SUFFIXES_LOWER)


def is_junk_dir(name: str) -> bool:
    """True for directories never entered: hidden ones and NAS/OS litter (`@eaDir`, ...)."""
    return not name or name.startswith(".") or name.lower() in _JUNK_DIRS_LOWER


def is_image_name(name: str) -> bool:
    """True for `.jpg`, `.jpeg` and `.png` in any letter case (the content is checked later)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def mask_stem(name: str) -> str | None:
    """`s1.mask.png` (or `.MASK.JPG`, `.mask.jpeg`, any case) -> `s1`; anything else -> None."""
    lower = name.lower()
    for suffix in MASK_SUFFIXES:
        if lower.endswith(suffix):
            stem = name[: -len(suffix)]
            return stem or None
    return None


def image_stem(name: str) -> str | None:
    """`s1.JPG` -> `s1`; None for a name that is not an image name."""
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)] or None
    return None


def sidecar_names(image_name: str) -> list[str]:
    """The canonical (lower-case suffix) mask names for an image: `s1.jpg` -> `s1.mask.png`, ...

    Real names may differ in the suffix's letter case; use `find_sidecar_masks` to match them.
    """
    stem = image_stem(image_name)
    if stem is None:
        return []
    return [stem + suffix for suffix in MASK_SUFFIXES]


def find_sidecar_masks(image_name: str, names_in_dir: Iterable[str]) -> list[str]:
    """The names among `names_in_dir` that are masks of `image_name`, in the order given.

    The mask suffix is matched in any letter case; the stem must match exactly, because on a
    case-sensitive filesystem `A.jpg` and `a.jpg` are two images and a mask belongs to one.
    Junk names (`.s1.mask.png`) never count. More than one result means the image is ambiguous.
    """
    stem = image_stem(image_name)
    if stem is None:
        return []
    return [n for n in names_in_dir if mask_stem(n) == stem and not is_junk_name(n)]


def _split(rel_path: str) -> list[str]:
    # Relative paths use "/" (the watcher builds them that way); tolerate a leading "./".
    return [part for part in rel_path.split("/") if part and part != "."]


@dataclass(frozen=True)
class InboxFilter:
    """A folder's view of its inbox: which relative paths are inputs, masks or left alone.

    `ignore` globs are matched with fnmatch, ignoring letter case, against each path
    component's name and against the relative path up to it, so `*-draft.*` hides a file
    anywhere and `drafts` or `drafts/*` hides a whole subfolder.
    """

    ignore: tuple[str, ...] = ()
    sidecar: bool = False

    def _ignored(self, name: str, rel: str) -> bool:
        name, rel = name.lower(), rel.lower()
        return any(
            fnmatch.fnmatchcase(name, pat.lower()) or fnmatch.fnmatchcase(rel, pat.lower())
            for pat in self.ignore
        )

    def enters(self, rel_dir: str) -> bool:
        """True if a recursive walk should go into this directory (relative to the inbox)."""
        parts = _split(rel_dir)
        for i, part in enumerate(parts):
            if is_junk_dir(part) or self._ignored(part, "/".join(parts[: i + 1])):
                return False
        return True

    def _plain_candidate(self, rel_path: str) -> str | None:
        """The file name if the path is an image name outside junk and ignored places."""
        parts = _split(rel_path)
        if not parts:
            return None
        name = parts[-1]
        if is_junk_name(name) or not is_image_name(name):
            return None
        if not self.enters("/".join(parts[:-1])) or self._ignored(name, "/".join(parts)):
            return None
        return name

    def wants(self, rel_path: str) -> bool:
        """True if this file is a candidate input (in a sidecar folder, masks are not)."""
        name = self._plain_candidate(rel_path)
        if name is None:
            return False
        return not (self.sidecar and mask_stem(name) is not None)

    def is_mask(self, rel_path: str) -> bool:
        """True if this file is a sidecar mask candidate (only in a `mask: sidecar` folder)."""
        if not self.sidecar:
            return False
        name = self._plain_candidate(rel_path)
        return name is not None and mask_stem(name) is not None

    def hints(self, rel_path: str) -> bool:
        """True if the watcher should report this file: an input or a mask."""
        return self.wants(rel_path) or self.is_mask(rel_path)
