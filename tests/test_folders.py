"""Folder identities: conflicts found through symlinks, bind mounts and folders not made yet."""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from watchd.folders import folder_conflicts


@dataclass(frozen=True)
class Folder:
    inbox: Path
    outbox: Path
    done: Path
    failed: Path
    recursive: bool = False


def folder(base: Path, recursive: bool = False, **paths: Path) -> Folder:
    """A folder laid out the usual way (base/inbox, base/outbox, ...), some paths replaced."""
    made = {k: base / k for k in ("inbox", "outbox", "done", "failed")}
    for path in made.values():
        path.mkdir(parents=True, exist_ok=True)
    return Folder(**{**made, **paths}, recursive=recursive)


def keys(conflicts):
    return [key for key, _ in conflicts]


def test_separate_folders_have_no_conflict(tmp_path: Path):
    assert folder_conflicts([folder(tmp_path / "a"), folder(tmp_path / "b")]) == []


def test_an_outbox_symlinked_to_its_own_inbox_is_refused(tmp_path: Path):
    """The report's 17 creates for one photo: every result came back as an input."""
    base = tmp_path / "x"
    (base / "inbox").mkdir(parents=True)
    os.symlink(base / "inbox", tmp_path / "out-link")
    conflicts = folder_conflicts([folder(base, outbox=tmp_path / "out-link")])
    assert conflicts == [
        (
            "folders[0].outbox",
            f"is folders[0].inbox ({base / 'inbox'}) through a symlink:"
            " every result would be taken as a new input",
        )
    ]


def test_an_outbox_inside_a_recursive_inbox_is_refused(tmp_path: Path):
    base = tmp_path / "x"
    conflicts = folder_conflicts([folder(base, recursive=True, outbox=base / "inbox" / "res")])
    assert keys(conflicts) == ["folders[0].outbox"]
    assert conflicts[0][1].startswith(f"resolves into folders[0].inbox ({base / 'inbox'}):")


def test_an_outbox_inside_an_inbox_that_is_not_recursive_is_no_loop(tmp_path: Path):
    """Its files are never seen: only the inbox's own top level is watched."""
    base = tmp_path / "x"
    assert folder_conflicts([folder(base, outbox=base / "inbox" / "results")]) == []


def test_done_and_failed_are_checked_as_well(tmp_path: Path):
    base = tmp_path / "x"
    conflicts = folder_conflicts(
        [folder(base, recursive=True, done=base / "inbox", failed=base / "inbox" / "failed")]
    )
    assert conflicts == [
        ("folders[0].done", f"is folders[0].inbox ({base / 'inbox'}): every original moved"
         " to done/ would be taken again"),
        ("folders[0].failed", f"resolves into folders[0].inbox ({base / 'inbox'}): every"
         " original moved to failed/ would be taken again"),
    ]  # fmt: skip


def test_another_folders_outbox_in_an_inbox_is_refused(tmp_path: Path):
    a = folder(tmp_path / "a")
    b = folder(tmp_path / "b", outbox=tmp_path / "a" / "inbox")
    assert keys(folder_conflicts([a, b])) == ["folders[1].outbox"]


def test_an_inbox_inside_an_outbox_is_refused(tmp_path: Path):
    a = folder(tmp_path / "a")
    b = folder(tmp_path / "b", inbox=tmp_path / "a" / "outbox" / "again")
    conflicts = folder_conflicts([a, b])
    assert keys(conflicts) == ["folders[1].inbox"]
    assert conflicts[0][1].startswith("resolves into folders[0].outbox")


def test_an_inbox_under_a_symlinked_path_inside_a_done_folder_is_refused(tmp_path: Path):
    a = folder(tmp_path / "a")
    os.symlink(tmp_path / "a" / "done", tmp_path / "shortcut")
    (tmp_path / "a" / "done" / "sub").mkdir()
    b = folder(tmp_path / "b", inbox=tmp_path / "shortcut" / "sub")
    conflicts = folder_conflicts([a, b])
    assert conflicts == [
        (
            "folders[1].inbox",
            f"resolves into folders[0].done ({tmp_path / 'a' / 'done'}) through a symlink:"
            " every original moved to done/ would be taken again",
        )
    ]


def test_the_same_inbox_twice_is_refused(tmp_path: Path):
    a = folder(tmp_path / "a")
    os.symlink(tmp_path / "a" / "inbox", tmp_path / "alias")
    b = folder(tmp_path / "b", inbox=tmp_path / "alias")
    assert folder_conflicts([a, b]) == [
        (
            "folders[1].inbox",
            f"is folders[0].inbox ({tmp_path / 'a' / 'inbox'}) through a symlink: both folders"
            " would take every file",
        )
    ]


def test_an_inbox_inside_a_recursive_inbox_is_refused_not_inside_a_flat_one(tmp_path: Path):
    inner = tmp_path / "a" / "inbox" / "inner"
    inner.mkdir(parents=True)
    flat = [folder(tmp_path / "a"), folder(tmp_path / "b", inbox=inner)]
    assert folder_conflicts(flat) == []
    deep = [folder(tmp_path / "a", recursive=True), folder(tmp_path / "b", inbox=inner)]
    assert folder_conflicts(deep) == [
        (
            "folders[1].inbox",
            f"resolves into folders[0].inbox ({tmp_path / 'a' / 'inbox'}): that inbox is"
            " recursive, so both folders would take every file here",
        )
    ]


def test_folders_not_made_yet_are_compared_by_their_nearest_existing_ancestor(tmp_path: Path):
    os.symlink(tmp_path, tmp_path / "here")
    missing = Folder(
        inbox=tmp_path / "new" / "inbox",
        outbox=tmp_path / "here" / "new" / "inbox",  # the same place, when made
        done=tmp_path / "new" / "done",
        failed=tmp_path / "new" / "failed",
    )
    conflicts = folder_conflicts([missing])
    assert keys(conflicts) == ["folders[0].outbox"]
    assert "through a symlink" in conflicts[0][1]


def test_relative_and_dotted_spellings_of_one_folder_are_one_folder(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = folder(tmp_path / "a", outbox=Path("a/./outbox/../inbox"))
    assert keys(folder_conflicts([base])) == ["folders[0].outbox"]


def test_a_bind_mount_of_an_inbox_is_the_inbox(tmp_path: Path):
    a = folder(tmp_path / "a")
    view = tmp_path / "view"
    view.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "--bind", str(a.inbox), str(view)], capture_output=True
        ).returncode
    ):
        pytest.skip("needs root and mount(8)")
    try:
        conflicts = folder_conflicts([folder(tmp_path / "b", outbox=view), a])
    finally:
        subprocess.run(["umount", str(view)], check=False)
    assert keys(conflicts) == ["folders[0].outbox"]
    assert "the same directory on disk" in conflicts[0][1]
