"""Outbox writes, numbered names and moving originals, on real temporary folders."""

import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from watchd import naming, outbox
from watchd.outbox import (
    TemplateError,
    ensure_written,
    error_json_path,
    fail_original,
    fail_original_to,
    free_name,
    move_original,
    move_original_to,
    plan_destination,
    rename_noreplace,
    render_name,
    sha256_file,
    sweep_temporaries,
    with_suffix_number,
    write_error_json,
    write_new,
)

FIELDS = {"stem": "photo", "ext": ".jpg", "name": "photo.jpg", "folder": "f", "job": 7, "dir": ""}


def listing(folder: Path) -> list[str]:
    """Every entry under `folder`, hidden ones included, as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def created_during(folder: Path, action: Callable[[], object]) -> list[str]:
    """Names created or renamed into `folder` while `action` runs, from the kernel (inotify),
    so short-lived temporary files are seen too."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    assert fd >= 0
    try:
        assert libc.inotify_add_watch(fd, os.fsencode(folder), 0x100 | 0x80) >= 0  # CREATE|MOVED_TO
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
    assert naming.is_temp_name(created[0])
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


def test_fail_original_never_takes_a_name_whose_report_is_left_over(tmp_path: Path, inbox: Path):
    """A report without its original (the original was taken away by hand) is another
    file's record: the new original and its report go beside it, not over it."""
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "a.png.error.json").write_text('{"reason": "first file"}')
    src = inbox / "a.png"
    src.write_bytes(b"original")
    assert fail_original(src, failed, {"reason": "second"}) == failed / "a_2.png"
    assert json.loads((failed / "a.png.error.json").read_text()) == {"reason": "first file"}
    assert listing(failed) == ["a.png.error.json", "a_2.png", "a_2.png.error.json"]


def test_error_json_path_is_beside_the_original():
    assert error_json_path(Path("/f/a_2.png")) == Path("/f/a_2.png.error.json")


def test_error_json_keeps_non_ascii_text(tmp_path: Path):
    path = outbox.write_error_json(tmp_path, "é.png", {"reason": "trop grand: é"})
    assert path == tmp_path / "é.png.error.json"
    assert "trop grand: é" in path.read_text(encoding="utf-8")
    assert listing(tmp_path) == ["é.png.error.json"]


def test_a_reason_holding_a_name_that_is_not_utf8_is_written_escaped(tmp_path: Path):
    bad = os.fsdecode(b"caf\xe9.jpg")
    path = write_error_json(tmp_path, bad, {"reason": f"{bad} is too small", "n": 1})
    assert os.fsencode(path.name) == b"caf\xe9.jpg.error.json"
    assert json.loads(path.read_bytes().decode("utf-8")) == {
        "reason": "caf\\xe9.jpg is too small",
        "n": 1,
    }


def test_write_error_json_replaces_its_own_earlier_report(tmp_path: Path):
    """The replay after a crash between report and ledger commit writes it again."""
    write_error_json(tmp_path, "a.png", {"reason": "first try"})
    write_error_json(tmp_path, "a.png", {"reason": "replay"})
    assert json.loads((tmp_path / "a.png.error.json").read_text()) == {"reason": "replay"}
    assert listing(tmp_path) == ["a.png.error.json"]


# -- no replace, ever ---------------------------------------------------------------------


def _refuse(code: int) -> Callable[[bytes, bytes], None]:
    def syscall(src: bytes, dest: bytes) -> None:
        raise OSError(code, os.strerror(code))

    return syscall


# The three ways to a name: renameat2, link + unlink (NFS refuses the flag with EINVAL), and
# an exclusive placeholder (no hard links either, as on vfat).
WAYS = {
    "renameat2": {},
    "link": {"renameat2": _refuse(errno.EINVAL)},
    "placeholder": {"renameat2": _refuse(errno.ENOSYS), "link": _refuse(errno.EPERM)},
}


@pytest.mark.parametrize("way", WAYS)
def test_rename_noreplace_moves_a_file(tmp_path: Path, way: str):
    (tmp_path / "a").write_bytes(b"mine")
    rename_noreplace(tmp_path / "a", tmp_path / "b", **WAYS[way])
    assert listing(tmp_path) == ["b"]
    assert (tmp_path / "b").read_bytes() == b"mine"


@pytest.mark.parametrize("way", WAYS)
def test_rename_noreplace_never_replaces(tmp_path: Path, way: str):
    (tmp_path / "a").write_bytes(b"mine")
    (tmp_path / "b").write_bytes(b"somebody else's")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "a", tmp_path / "b", **WAYS[way])
    assert (tmp_path / "a").read_bytes() == b"mine"
    assert (tmp_path / "b").read_bytes() == b"somebody else's"


@pytest.mark.parametrize("way", WAYS)
def test_rename_noreplace_moves_a_symlink_as_itself(tmp_path: Path, way: str):
    target = tmp_path / "target"
    target.write_bytes(b"not ours")
    os.symlink(target, tmp_path / "a")
    rename_noreplace(tmp_path / "a", tmp_path / "b", **WAYS[way])
    assert os.readlink(tmp_path / "b") == str(target)
    assert listing(tmp_path) == ["b", "target"]


def test_rename_noreplace_says_exdev_across_filesystems(tmp_path: Path, elsewhere: Path):
    (tmp_path / "a").write_bytes(b"x")
    with pytest.raises(OSError) as info:
        rename_noreplace(tmp_path / "a", elsewhere / "a")
    assert info.value.errno == errno.EXDEV


def test_two_writers_of_one_name_into_one_folder_lose_nothing(tmp_path: Path):
    """Eight threads move 100 originals each, all called a0..a4.png, into one done/ at once:
    checked-free-then-renamed, some replaced each other; no-replace keeps all 800."""
    done = tmp_path / "done"
    done.mkdir()
    threads, per_thread = 8, 100
    sources: list[list[Path]] = []
    for t in range(threads):
        sources.append([])
        for i in range(per_thread):
            folder = tmp_path / f"in{t}" / str(i)
            folder.mkdir(parents=True)
            path = folder / f"a{i % 5}.png"
            path.write_bytes(f"{t}-{i}".encode())
            sources[t].append(path)
    start = threading.Barrier(threads)

    def mover(paths: list[Path]) -> None:
        start.wait()
        for path in paths:
            move_original(path, done)

    workers = [threading.Thread(target=mover, args=(paths,)) for paths in sources]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    contents = sorted(p.read_bytes() for p in done.iterdir())
    assert contents == sorted(
        f"{t}-{i}".encode() for t in range(threads) for i in range(per_thread)
    )


# -- planned destinations and their replay ------------------------------------------------


def test_plan_then_move_to_the_exact_destination(tmp_path: Path, inbox: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    done = tmp_path / "done"
    done.mkdir()
    (done / "a.png").write_bytes(b"older")
    planned = plan_destination(done, "a.png")
    assert planned == done / "a_2.png"
    assert move_original_to(src, planned, sha256=sha(b"original")) is True
    assert (done / "a_2.png").read_bytes() == b"original"
    assert not os.path.lexists(src)


def test_a_destination_taken_between_plan_and_move_is_left_alone(tmp_path: Path, inbox: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    planned = plan_destination(tmp_path / "done", "a.png")
    planned.parent.mkdir()
    planned.write_bytes(b"arrived in between")
    with pytest.raises(FileExistsError):
        move_original_to(src, planned, sha256=sha(b"original"))
    assert planned.read_bytes() == b"arrived in between"
    assert src.read_bytes() == b"original"
    assert plan_destination(tmp_path / "done", "a.png") == tmp_path / "done" / "a_2.png"


def test_the_replay_of_a_finished_move_reports_success(tmp_path: Path, inbox: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    dest = tmp_path / "done" / "a.png"
    assert move_original_to(src, dest, sha256=sha(b"original")) is True
    assert move_original_to(src, dest, sha256=sha(b"original")) is False
    assert move_original_to(src, dest) is False  # no hash: the recorded plan is trusted
    assert dest.read_bytes() == b"original"


def test_the_replay_does_not_claim_a_stranger_at_the_destination(tmp_path: Path, inbox: Path):
    dest = tmp_path / "done" / "a.png"
    dest.parent.mkdir()
    dest.write_bytes(b"not the original")
    with pytest.raises(FileNotFoundError):
        move_original_to(inbox / "a.png", dest, sha256=sha(b"original"))
    assert dest.read_bytes() == b"not the original"


@pytest.mark.parametrize(
    "left_by",
    [os.link, shutil.copy2],  # where link + unlink, or a copy across filesystems, stops
    ids=["link", "copy"],
)
def test_the_replay_after_a_crash_before_the_unlink_finishes_the_move(
    tmp_path: Path, inbox: Path, left_by: Callable[[Path, Path], object]
):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    dest = tmp_path / "done" / "a.png"
    dest.parent.mkdir()
    left_by(src, dest)
    assert move_original_to(src, dest, sha256=sha(b"original")) is False
    assert not os.path.lexists(src)
    assert listing(tmp_path / "done") == ["a.png"]
    assert dest.read_bytes() == b"original"


def test_a_destination_with_other_bytes_keeps_both_files(tmp_path: Path, inbox: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    dest = tmp_path / "done" / "a.png"
    dest.parent.mkdir()
    dest.write_bytes(b"somebody else")
    with pytest.raises(FileExistsError):
        move_original_to(src, dest)
    assert src.read_bytes() == b"original" and dest.read_bytes() == b"somebody else"


def test_fail_original_to_writes_the_report_on_the_replay_too(tmp_path: Path, inbox: Path):
    """A crash after the move and before the report: the replay writes the report."""
    src = inbox / "a.png"
    src.write_bytes(b"original")
    dest = plan_destination(tmp_path / "failed", "a.png", report=True)
    move_original_to(src, dest)
    assert fail_original_to(src, dest, {"reason": "r"}, sha256=sha(b"original")) is False
    assert json.loads(error_json_path(dest).read_text()) == {"reason": "r"}
    assert listing(tmp_path / "failed") == ["a.png", "a.png.error.json"]


def test_planning_for_failed_skips_a_name_whose_report_exists(tmp_path: Path):
    (tmp_path / "a.png.error.json").write_text("{}")
    assert plan_destination(tmp_path, "a.png") == tmp_path / "a.png"
    assert plan_destination(tmp_path, "a.png", report=True) == tmp_path / "a_2.png"


# -- names that barely fit ----------------------------------------------------------------


def test_a_255_byte_original_is_moved_numbered_and_failed_with_its_report(
    tmp_path: Path, inbox: Path
):
    name = "é" * 124 + "xy.jpeg"  # 248 + 7 = 255 bytes
    assert naming.name_bytes(name) == 255
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / name).write_bytes(b"an earlier one")
    src = inbox / name
    src.write_bytes(b"original")
    moved = fail_original(src, failed, {"reason": "r"})
    assert moved.name.endswith("_2.jpeg") and naming.name_bytes(moved.name) <= 255
    report = error_json_path(moved)
    assert naming.name_bytes(report.name) <= 255 and report.name.endswith(".jpeg.error.json")
    assert json.loads(report.read_text()) == {"reason": "r"}
    assert moved.read_bytes() == b"original"
    assert len(listing(failed)) == 3


def test_a_255_byte_result_name_that_is_taken_is_written_numbered(tmp_path: Path):
    name = "x" * 251 + ".png"
    (tmp_path / name).write_bytes(b"older")
    got = write_new(tmp_path / name, b"result")
    assert got.name.endswith("_2.png") and naming.name_bytes(got.name) == 255
    assert got.read_bytes() == b"result"
    assert len(listing(tmp_path)) == 2  # and no temporary file left


def test_a_name_that_is_not_utf8_moves_and_fails_like_any_other(tmp_path: Path, inbox: Path):
    src = Path(os.fsdecode(os.fsencode(inbox) + b"/caf\xe9.jpg"))
    src.write_bytes(b"original")
    moved = fail_original(src, tmp_path / "failed", {"reason": f"{src.name}: bad"})
    assert sorted(os.listdir(os.fsencode(tmp_path / "failed"))) == [
        b"caf\xe9.jpg",
        b"caf\xe9.jpg.error.json",
    ]
    assert moved.read_bytes() == b"original"
    assert json.loads(error_json_path(moved).read_bytes()) == {"reason": "caf\\xe9.jpg: bad"}


# -- across filesystems (a tmpfs against the tmp_path disk) -----------------------------


@pytest.fixture
def elsewhere(tmp_path: Path):
    """A folder on another filesystem than tmp_path (/dev/shm is a tmpfs)."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary folder")
    path = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="watchd-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_move_across_filesystems_keeps_bytes_and_times(inbox: Path, elsewhere: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original bytes")
    os.utime(src, (1_000_000, 1_000_000))
    assert move_original_to(src, elsewhere / "done" / "a.png", sha256=sha(b"original bytes"))
    dest = elsewhere / "done" / "a.png"
    assert dest.read_bytes() == b"original bytes"
    assert dest.stat().st_mtime == 1_000_000
    assert not os.path.lexists(src)
    assert listing(elsewhere) == ["done", "done/a.png"]


def test_a_move_across_filesystems_never_replaces(inbox: Path, elsewhere: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    (elsewhere / "a.png").write_bytes(b"somebody else's")
    assert move_original(src, elsewhere) == elsewhere / "a_2.png"
    assert (elsewhere / "a.png").read_bytes() == b"somebody else's"
    assert (elsewhere / "a_2.png").read_bytes() == b"original"
    assert listing(elsewhere) == ["a.png", "a_2.png"]  # no temporary file left


def test_a_planned_destination_taken_across_filesystems_keeps_both(inbox: Path, elsewhere: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    (elsewhere / "a.png").write_bytes(b"somebody else's")
    with pytest.raises(FileExistsError):
        move_original_to(src, elsewhere / "a.png")
    assert src.read_bytes() == b"original"
    assert listing(elsewhere) == ["a.png"]


def test_a_symlink_moves_across_filesystems_as_a_symlink(
    tmp_path: Path, inbox: Path, elsewhere: Path
):
    target = tmp_path / "elsewhere.png"
    target.write_bytes(b"not ours")
    link = inbox / "a.png"
    os.symlink(target, link)
    moved = move_original(link, elsewhere)
    assert os.readlink(moved) == str(target)
    assert target.read_bytes() == b"not ours"
    assert not os.path.lexists(link)


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_a_fifo_or_socket_is_never_copied_across_filesystems(
    inbox: Path, elsewhere: Path, kind: str
):
    """Copying a FIFO would block forever (a device: never end); it stays where it is."""
    path = inbox / "a.png"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    with pytest.raises(OSError) as info:
        move_original(path, elsewhere)
    assert info.value.errno == errno.EXDEV
    assert os.path.lexists(path)
    assert listing(elsewhere) == []


def test_a_failed_copy_keeps_the_source_and_leaves_no_temporary_file(inbox: Path, elsewhere: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    (elsewhere / "ro").mkdir()
    if not _read_only_bind(elsewhere / "ro"):
        pytest.skip("needs root and mount(8)")
    try:
        with pytest.raises(OSError) as info:
            move_original(src, elsewhere / "ro")
        assert info.value.errno == errno.EROFS
    finally:
        subprocess.run(["umount", str(elsewhere / "ro")], check=False)
    assert src.read_bytes() == b"original"
    assert listing(elsewhere / "ro") == []


def test_a_read_only_done_folder_keeps_the_original(tmp_path: Path, inbox: Path):
    src = inbox / "a.png"
    src.write_bytes(b"original")
    done = tmp_path / "done"
    done.mkdir()
    if not _read_only_bind(done):
        pytest.skip("needs root and mount(8)")
    try:
        with pytest.raises(OSError):
            move_original(src, done)
        with pytest.raises(OSError):
            write_new(done / "r.png", b"result")
    finally:
        subprocess.run(["umount", str(done)], check=False)
    assert src.read_bytes() == b"original"
    assert listing(done) == []


def _read_only_bind(path: Path) -> bool:
    if os.geteuid() != 0:
        return False
    ok = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if ok.returncode != 0:
        return False
    ro = subprocess.run(
        ["mount", "-o", "remount,ro,bind", str(path)], capture_output=True, check=False
    )
    if ro.returncode != 0:
        subprocess.run(["umount", str(path)], check=False)
        return False
    return True


# -- temporary files left by a crash ------------------------------------------------------


def test_the_sweep_removes_only_old_temporary_files_of_watchd(tmp_path: Path):
    now = 1_000_000_000.0
    old, young = now - 3600, now - 10
    made = {}
    for rel, mtime in {
        ".watchd-0123456789abcdef.part": old,
        "sub/deeper/.watchd-fedcba9876543210.part": old,
        ".watchd-00000000000000aa.part": young,  # a write in progress, perhaps
        "photo.part": old,  # a user's download
        ".photo.png.1234abcd.part": old,  # the old temporary shape: not provably ours
        ".watchd-0123.part": old,
        "a.png": old,
    }.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
        made[rel] = path
    removed = sweep_temporaries(tmp_path, older_than_s=60, now=now)
    assert sorted(removed) == sorted(
        [made[".watchd-0123456789abcdef.part"], made["sub/deeper/.watchd-fedcba9876543210.part"]]
    )
    assert listing(tmp_path) == sorted(
        [".watchd-00000000000000aa.part", ".photo.png.1234abcd.part", ".watchd-0123.part",
         "a.png", "photo.part", "sub", "sub/deeper"]
    )  # fmt: skip


def test_the_sweep_removes_a_temporary_symlink_but_never_follows_one(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".watchd-0123456789abcdef.part").write_bytes(b"not under the swept folder")
    folder = tmp_path / "done"
    folder.mkdir()
    os.symlink(outside, folder / "link")
    os.symlink(outside, folder / ".watchd-00000000000000bb.part")  # a copied symlink original
    removed = sweep_temporaries(folder, older_than_s=0, now=2e9)
    assert removed == [folder / ".watchd-00000000000000bb.part"]
    assert (outside / ".watchd-0123456789abcdef.part").exists()


def test_the_sweep_of_a_missing_folder_removes_nothing(tmp_path: Path):
    assert sweep_temporaries(tmp_path / "nope", older_than_s=0, now=2e9) == []


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
