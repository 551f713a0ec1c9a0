"""Outbox writes, numbered names and moving originals, on real temporary folders."""

import ctypes
import ctypes.util
import hashlib
import json
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from watchd import outbox
from watchd.outbox import (
    TemplateError,
    _copy_then_unlink,
    ensure_written,
    error_json_path,
    fail_original,
    free_name,
    move_original,
    render_name,
    sha256_file,
    with_suffix_number,
    write_new,
)

FIELDS = {"stem": "photo", "ext": ".jpg", "name": "photo.jpg", "folder": "f", "job": 7, "dir": ""}


def listing(folder: Path) -> list[str]:
    """Every entry under `folder`, hidden ones included, as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def created_during(folder: Path, action: Callable[[], object]) -> list[str]:
    """Names created in `folder` while `action` runs, from the kernel (inotify), so short-lived
    temporary files are seen too."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    assert fd >= 0
    try:
        assert libc.inotify_add_watch(fd, os.fsencode(folder), 0x100) >= 0  # IN_CREATE
        action()
        data = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    names, offset = [], 0
    while offset < len(data):
        _, _, _, size = struct.unpack_from("iIII", data, offset)
        offset += 16
        names.append(data[offset : offset + size].rstrip(b"\0").decode())
        offset += size
    return names


# -- names ------------------------------------------------------------------------------


def test_render_name_fills_every_field():
    name = render_name("{folder}/{job}-{stem}-{name}{ext}", **FIELDS)
    assert name == "f/7-photo-photo.jpg.jpg"


def test_render_name_honours_format_specs_of_the_values_given():
    assert render_name("{job:04d}-{stem}{ext}", **FIELDS) == "0007-photo.jpg"


def test_render_name_keeps_sub_directories_from_dir():
    assert render_name("{dir}/{stem}{ext}", **{**FIELDS, "dir": "2024/june"}) == (
        "2024/june/photo.jpg"
    )


def test_an_empty_dir_leaves_the_name_at_the_top_of_the_outbox():
    """A file at the top of a recursive inbox has dir '': "{dir}/..." is not absolute."""
    assert render_name("{dir}/{stem}{ext}", **FIELDS) == "photo.jpg"


def test_render_name_tidies_empty_and_dot_parts():
    assert render_name("./a//{stem}{ext}", **FIELDS) == "a/photo.jpg"


@pytest.mark.parametrize(
    ("template", "extra"),
    [
        ("../{name}", {}),
        ("a/../../{name}", {}),
        ("a\\..\\..\\{name}", {}),
        ("{dir}/{name}", {"dir": "../elsewhere"}),
        ("/tmp/{name}", {}),
        ("\\tmp\\{name}", {}),
        ("{dir}/{name}", {"dir": "/etc"}),
        ("~/{name}", {}),
        ("~root/{name}", {}),
        ("", {}),
        (".", {}),
        ("{dir}", {}),
        ("{stem}\0{ext}", {}),
    ],
)
def test_render_name_refuses_names_outside_the_outbox(template, extra):
    with pytest.raises(TemplateError):
        render_name(template, **{**FIELDS, **extra})


@pytest.mark.parametrize(
    "template",
    ["{nope}", "{0}", "{}", "{", "}", "{stem.upper}", "{stem[0]}", "{stem!z}", "{job:q}"],
)
def test_render_name_refuses_bad_templates_with_a_template_error(template):
    with pytest.raises(TemplateError, match="bad output template"):
        render_name(template, **FIELDS)


def test_a_template_error_names_the_known_fields():
    with pytest.raises(TemplateError, match=r"\{stem\}, \{ext\}"):
        render_name("{stem}{extension}", **FIELDS)


def test_a_template_error_is_a_value_error():
    assert issubclass(TemplateError, ValueError)


def test_numbered_names_go_before_the_extension():
    assert with_suffix_number("a/b.png", 2) == "a/b_2.png"
    assert with_suffix_number("b.png", 3, sep="-") == "b-3.png"
    assert with_suffix_number("noext", 2) == "noext_2"


def test_free_name_skips_taken_names_including_dangling_links(tmp_path: Path):
    assert free_name(tmp_path, "a.png") == tmp_path / "a.png"
    (tmp_path / "a.png").write_bytes(b"1")
    os.symlink(tmp_path / "missing", tmp_path / "a_2.png")
    assert free_name(tmp_path, "a.png") == tmp_path / "a_3.png"


# -- writing results --------------------------------------------------------------------


def test_write_new_writes_the_bytes_and_creates_folders(tmp_path: Path):
    dest = tmp_path / "out" / "2024" / "a.png"
    assert write_new(dest, b"result") == dest
    assert dest.read_bytes() == b"result"
    assert listing(tmp_path / "out") == ["2024", "2024/a.png"]


def test_write_new_never_overwrites(tmp_path: Path):
    dest = tmp_path / "a.png"
    dest.write_bytes(b"somebody else's")
    assert write_new(dest, b"one") == tmp_path / "a_2.png"
    assert write_new(dest, b"two") == tmp_path / "a_3.png"
    assert dest.read_bytes() == b"somebody else's"
    assert (tmp_path / "a_2.png").read_bytes() == b"one"
    assert (tmp_path / "a_3.png").read_bytes() == b"two"
    assert listing(tmp_path) == ["a.png", "a_2.png", "a_3.png"]  # no temporary file left


def test_write_new_never_writes_through_a_symlink(tmp_path: Path):
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(target, out / "a.png")
    assert write_new(out / "a.png", b"result") == out / "a_2.png"
    assert target.read_bytes() == b"keep"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")
def test_write_new_goes_through_a_hidden_part_file(tmp_path: Path):
    created = created_during(tmp_path, lambda: write_new(tmp_path / "a.png", b"x"))
    assert len(created) == 2 and created[1] == "a.png"
    temp = created[0]
    assert temp.startswith(".a.png.") and temp.endswith(".part")
    assert listing(tmp_path) == ["a.png"]


def test_a_name_near_the_length_limit_can_be_written(tmp_path: Path):
    name = "x" * 250 + ".png"  # the temporary name must not be longer than the limit
    assert write_new(tmp_path / name, b"x") == tmp_path / name
    assert listing(tmp_path) == [name]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path):
    with pytest.raises(TypeError):
        write_new(tmp_path / "a.png", "not bytes")  # type: ignore[arg-type]
    assert listing(tmp_path) == []


def test_ensure_written_keeps_its_own_earlier_write(tmp_path: Path):
    """A crash after the write: the replay finds the same bytes and writes no second file."""
    planned = tmp_path / "a.png"
    data = b"result"
    write_new(planned, data)
    sha = sha256_file(planned)
    assert sha is not None
    assert ensure_written(planned, data, sha) == planned
    assert listing(tmp_path) == ["a.png"]


def test_ensure_written_writes_at_the_planned_path_when_free(tmp_path: Path):
    planned = tmp_path / "sub" / "a.png"
    sha = hashlib.sha256(b"r").hexdigest()
    assert ensure_written(planned, b"r", sha) == planned
    assert planned.read_bytes() == b"r"


def test_ensure_written_never_overwrites_a_different_file(tmp_path: Path):
    planned = tmp_path / "a.png"
    planned.write_bytes(b"a user's file that took the name")
    got = ensure_written(planned, b"result", hashlib.sha256(b"result").hexdigest())
    assert got == tmp_path / "a_2.png"
    assert planned.read_bytes() == b"a user's file that took the name"
    assert got.read_bytes() == b"result"


def test_sha256_of_a_missing_file_is_none(tmp_path: Path):
    assert sha256_file(tmp_path / "nope") is None


# -- moving originals -------------------------------------------------------------------


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def test_move_original_moves_into_a_new_folder(tmp_path: Path, inbox: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    done = tmp_path / "done"
    assert move_original(src, done) == done / "a.png"
    assert not os.path.lexists(src)
    assert (done / "a.png").read_bytes() == b"original"


def test_move_original_never_overwrites(tmp_path: Path, inbox: Path):
    done = tmp_path / "done"
    done.mkdir()
    (done / "a.png").write_bytes(b"older")
    (done / "a_2.png").write_bytes(b"older still")
    src = inbox / "a.png"
    src.write_bytes(b"new")
    assert move_original(src, done) == done / "a_3.png"
    assert (done / "a.png").read_bytes() == b"older"
    assert (done / "a_2.png").read_bytes() == b"older still"
    assert (done / "a_3.png").read_bytes() == b"new"


def test_a_symlink_is_moved_as_a_symlink(tmp_path: Path, inbox: Path):
    target = tmp_path / "elsewhere.png"
    target.write_bytes(b"not ours")
    link = inbox / "a.png"
    os.symlink(target, link)
    moved = move_original(link, tmp_path / "failed")
    assert moved.is_symlink()
    assert os.readlink(moved) == str(target)
    assert target.read_bytes() == b"not ours"
    assert not os.path.lexists(link)


def test_a_missing_original_is_an_error_not_a_silent_success(tmp_path: Path, inbox: Path):
    with pytest.raises(FileNotFoundError):
        move_original(inbox / "gone.png", tmp_path / "done")


def test_fail_original_writes_the_reason_beside_the_moved_original(tmp_path: Path, inbox: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    failed = tmp_path / "failed"
    info = {
        "reason": "too large",
        "code": "too_large",
        "http_status": None,
        "task_id": None,
        "attempts": 0,
        "at": "2026-01-01T00:00:00Z",
    }
    moved = fail_original(src, failed, info)
    assert moved == failed / "a.png"
    assert json.loads((failed / "a.png.error.json").read_text()) == info
    assert listing(failed) == ["a.png", "a.png.error.json"]
    assert not os.path.lexists(src)


def test_fail_original_follows_a_numbered_name(tmp_path: Path, inbox: Path):
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "a.png").write_bytes(b"an earlier failure")
    (failed / "a.png.error.json").write_text('{"reason": "earlier"}')
    src = inbox / "a.png"
    src.write_bytes(b"new")
    moved = fail_original(src, failed, {"reason": "now"})
    assert moved == failed / "a_2.png"
    assert json.loads((failed / "a_2.png.error.json").read_text()) == {"reason": "now"}
    assert json.loads((failed / "a.png.error.json").read_text()) == {"reason": "earlier"}
    assert listing(failed) == ["a.png", "a.png.error.json", "a_2.png", "a_2.png.error.json"]


def test_fail_original_replays_after_a_crash_between_its_two_steps(tmp_path: Path, inbox: Path):
    """error.json written, original not yet moved: the replay rewrites the reason and moves."""
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "a.png.error.json").write_text('{"reason": "first try"}')
    src = inbox / "a.png"
    src.write_bytes(b"original")
    assert fail_original(src, failed, {"reason": "replay"}) == failed / "a.png"
    assert json.loads((failed / "a.png.error.json").read_text()) == {"reason": "replay"}
    assert listing(failed) == ["a.png", "a.png.error.json"]


def test_error_json_path_is_beside_the_original():
    assert error_json_path(Path("/f/a_2.png")) == Path("/f/a_2.png.error.json")


def test_error_json_keeps_non_ascii_text(tmp_path: Path):
    path = outbox.write_error_json(tmp_path, "é.png", {"reason": "trop grand: é"})
    assert path == tmp_path / "é.png.error.json"
    assert "trop grand: é" in path.read_text(encoding="utf-8")
    assert listing(tmp_path) == ["é.png.error.json"]


# -- across filesystems (the EXDEV path, called directly) -------------------------------


def test_copy_then_unlink_keeps_bytes_and_times_and_then_removes_the_source(
    tmp_path: Path, inbox: Path
):
    src = inbox / "a.png"
    src.write_bytes(b"original bytes")
    os.utime(src, (1_000_000, 1_000_000))
    done = tmp_path / "done"
    done.mkdir()
    _copy_then_unlink(src, done / "a.png")
    assert (done / "a.png").read_bytes() == b"original bytes"
    assert (done / "a.png").stat().st_mtime == 1_000_000
    assert not os.path.lexists(src)
    assert listing(done) == ["a.png"]


def test_copy_then_unlink_copies_a_symlink_as_a_symlink(tmp_path: Path, inbox: Path):
    target = tmp_path / "elsewhere.png"
    target.write_bytes(b"not ours")
    link = inbox / "a.png"
    os.symlink(target, link)
    done = tmp_path / "done"
    done.mkdir()
    _copy_then_unlink(link, done / "a.png")
    assert (done / "a.png").is_symlink()
    assert os.readlink(done / "a.png") == str(target)
    assert target.read_bytes() == b"not ours"
    assert not os.path.lexists(link)
    assert listing(done) == ["a.png"]


def test_copy_then_unlink_keeps_the_source_when_the_copy_fails(tmp_path: Path, inbox: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    with pytest.raises(FileNotFoundError):
        _copy_then_unlink(src, tmp_path / "no such folder" / "a.png")
    assert src.read_bytes() == b"original"
