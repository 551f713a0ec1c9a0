"""Name rules: every derived name fits in 255 bytes and keeps the bytes it was made from."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchd.naming import (
    NAME_MAX,
    display,
    displayable,
    error_json_name,
    fit,
    fit_name,
    from_sql,
    is_temp_name,
    name_bytes,
    numbered,
    render_name,
    split_ext,
    temp_name,
    to_sql,
)

FIELDS = {"stem": "photo", "ext": ".jpg", "name": "photo.jpg", "folder": "f", "job": 7, "dir": ""}

# Any name a Linux filesystem accepts: 1..255 bytes, no "/" and no NUL ("." and ".." are
# directory entries, not names a file can have).
raw_names = st.binary(min_size=1, max_size=NAME_MAX).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)
# Names near the limit, built from pieces that stress the cut: 4-byte characters, 2-byte
# characters, lone bytes that are not UTF-8, and dots.
pieces = st.sampled_from(["😀".encode(), "é".encode(), b"\xe9", b"\xc3", b"\xa9", b".", b"a"])
long_names = (
    st.lists(pieces, min_size=60, max_size=130)
    .map(b"".join)
    .map(lambda b: b[:NAME_MAX])
    .filter(lambda b: b not in (b".", b".."))
)


def round_trips(name: str) -> bool:
    return os.fsdecode(os.fsencode(name)) == name


def is_valid_name(name: str) -> bool:
    raw = os.fsencode(name)
    return 0 < len(raw) <= NAME_MAX and b"/" not in raw and b"\0" not in raw


# -- the promises, over arbitrary byte names ---------------------------------------------


@settings(max_examples=400)
@given(raw=st.one_of(raw_names, long_names), n=st.integers(2, 10**6), sep=st.sampled_from("_-"))
def test_numbered_names_fit_and_round_trip(raw, n, sep):
    name = numbered(os.fsdecode(raw), n, sep)
    assert is_valid_name(name) and round_trips(name)
    assert name.endswith(f"{sep}{n}{split_ext(os.fsdecode(raw))[1]}")


@settings(max_examples=400)
@given(raw=st.one_of(raw_names, long_names))
def test_error_json_names_fit_round_trip_and_keep_the_suffix(raw):
    name = error_json_name(os.fsdecode(raw))
    assert is_valid_name(name) and round_trips(name)
    assert name.endswith(".error.json")


@settings(max_examples=400)
@given(raw=st.one_of(raw_names, long_names), ext=st.sampled_from([".png", ".jpeg", ".webp"]))
def test_rendered_output_names_fit_and_round_trip(raw, ext):
    original = os.fsdecode(raw)
    stem = split_ext(original)[0]
    fields = {**FIELDS, "stem": stem, "name": original, "ext": ext}
    for template in ("{stem}{ext}", "{folder}-{stem}-expanded{ext}", "{name}.out{ext}"):
        name = render_name(template, **fields)
        assert is_valid_name(name) and round_trips(name), template
        assert name.endswith(ext)


@settings(max_examples=400)
@given(raw=st.one_of(raw_names, long_names), extra=st.integers(0, 300))
def test_fit_keeps_a_prefix_of_the_bytes_and_the_whole_tail(raw, extra):
    stem = os.fsdecode(raw)
    tail = "_7.png"
    limit = max(32, NAME_MAX - extra)
    name = fit(stem, tail, limit)
    assert name_bytes(name) <= limit and round_trips(name)
    assert name.endswith(tail)
    if name != stem + tail:  # cut: a byte prefix of the stem, never a split character
        kept = os.fsencode(name)[: -len(tail) - 9]
        assert os.fsencode(stem).startswith(kept)
        assert os.fsdecode(kept) == name[: len(name) - len(tail) - 9]


def test_the_temporary_name_is_short_hidden_and_always_fits():
    name = temp_name()
    assert name.startswith(".watchd-") and name.endswith(".part") and name_bytes(name) == 29
    assert is_temp_name(name)
    assert temp_name() != name


@pytest.mark.parametrize(
    "name",
    ["a.part", ".a.png.1234abcd.part", ".watchd-0123.part", ".watchd-0123456789ABCDEF.part",
     ".watchd-0123456789abcdef.part.png", "x.watchd-0123456789abcdef.part", ".watchd-.part"],
)  # fmt: skip
def test_a_users_part_file_is_never_taken_for_a_temporary_one(name):
    assert not is_temp_name(name)


# -- the cut, at its edges ---------------------------------------------------------------


def test_a_name_of_exactly_255_bytes_fits_as_it_is():
    name = "x" * 251 + ".png"
    assert fit_name(name) == name


def test_numbering_a_255_byte_name_cuts_the_stem_and_keeps_extension_and_number():
    name = "x" * 251 + ".png"
    got = numbered(name, 2)
    assert name_bytes(got) == NAME_MAX
    assert got.endswith("_2.png") and got.startswith("x" * 200)
    assert "~" in got


def test_a_four_byte_character_at_the_cut_is_kept_whole_or_left_out():
    name = "a" + "😀" * 62 + ".jpg"  # 1 + 248 + 4 = 253 bytes
    got = numbered(name, 12)  # needs 3 more bytes
    assert name_bytes(got) <= NAME_MAX and round_trips(got)
    assert got.encode("utf-8").decode("utf-8") == got  # no broken character


def test_an_escaped_byte_at_the_cut_is_one_byte():
    name = os.fsdecode(b"\xe9" * 251 + b".jpg")
    got = numbered(name, 2)
    assert name_bytes(got) == NAME_MAX and round_trips(got)
    assert os.fsencode(got).startswith(b"\xe9" * 200)


def test_two_long_names_with_the_same_start_stay_two_names():
    a, b = "x" * 250 + "a.jpg", "x" * 250 + "b.jpg"
    assert error_json_name(a) != error_json_name(b)
    assert numbered(a, 2) != numbered(b, 2)


def test_short_names_are_left_alone():
    assert numbered("a/b.png", 2) == "a/b_2.png"
    assert numbered("b.png", 3, sep="-") == "b-3.png"
    assert numbered("noext", 2) == "noext_2"
    assert error_json_name("a_2.png") == "a_2.png.error.json"


@pytest.mark.parametrize(
    ("name", "parts"),
    [("a.png", ("a", ".png")), (".hidden", (".hidden", "")), ("a.", ("a.", "")),
     ("a.tar.gz", ("a.tar", ".gz")), ("n.a long text, no ext", ("n.a long text, no ext", "")),
     ("noext", ("noext", ""))],
)  # fmt: skip
def test_split_ext(name, parts):
    assert split_ext(name) == parts


def test_a_long_template_cuts_the_stem_not_the_templates_own_text():
    stem = "p" * 250
    name = render_name("{folder}-{stem}-expanded{ext}", **{**FIELDS, "stem": stem, "ext": ".webp"})
    assert name_bytes(name) == NAME_MAX
    assert name.startswith("f-ppp") and name.endswith("-expanded.webp")


def test_a_long_name_field_keeps_its_extension_in_the_template():
    original = "p" * 251 + ".jpg"
    name = render_name("{name}.expanded{ext}", **{**FIELDS, "name": original, "ext": ".png"})
    assert name_bytes(name) <= NAME_MAX
    assert name.endswith(".jpg.expanded.png")


def test_long_directory_parts_of_a_template_fit_too():
    name = render_name(
        "{folder}{dir}/{stem}{ext}", **{**FIELDS, "folder": "f" * 200, "dir": "d" * 100}
    )
    assert all(name_bytes(part) <= NAME_MAX for part in name.split("/"))


# -- display -----------------------------------------------------------------------------


def test_display_escapes_bytes_that_are_not_utf8_and_keeps_real_text():
    assert display(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"
    assert display("café 😀.jpg") == "café 😀.jpg"
    assert display("\ud800") == "\\ud800"  # no filesystem gives this, but it must not raise
    display(os.fsdecode(b"caf\xe9")).encode("utf-8")


def test_displayable_reaches_into_containers_and_paths():
    from pathlib import Path

    bad = os.fsdecode(b"\xe9")
    got = displayable({"a": [bad, (Path(bad), 1)], bad: None})
    assert got == {"a": ["\\xe9", ("\\xe9", 1)], "\\xe9": None}


def test_a_backslash_in_a_file_name_is_part_of_the_name():
    """On Linux `..\\x.jpg` is one name: it must not become a folder, let alone `..`."""
    fields = {**FIELDS, "stem": "..\\x", "name": "..\\x.jpg"}
    assert render_name("{stem}{ext}", **fields) == "..\\x.jpg"
    assert render_name("{dir}/{stem}{ext}", **{**fields, "stem": "\\x"}) == "\\x.jpg"


def test_a_backslash_in_the_template_still_separates_folders():
    assert render_name("out\\{stem}{ext}", **FIELDS) == "out/photo.jpg"


@settings(max_examples=200)
@given(raw=raw_names)
def test_every_name_can_be_stored_in_sqlite_and_found_again(raw):
    import sqlite3

    name = os.fsdecode(raw)
    with sqlite3.connect(":memory:") as db:
        db.execute("create table jobs (path text)")
        db.execute("insert into jobs values (?)", [to_sql("/in/" + name)])
        (stored,) = db.execute(
            "select path from jobs where path = ?", [to_sql("/in/" + name)]
        ).fetchone()
    assert from_sql(stored) == "/in/" + name
    assert to_sql("café.jpg") == "café.jpg"  # valid names stay readable text
