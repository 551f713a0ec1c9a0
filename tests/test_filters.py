"""Name rules of an inbox: inputs, junk, ignore globs, sidecar masks."""

import pytest

from watchd.filters import (
    JUNK_DIRS,
    InboxFilter,
    find_sidecar_masks,
    is_image_name,
    is_junk_name,
    mask_stem,
    sidecar_names,
)

JUNK_FILES = [
    ".hidden.jpg",
    "._photo.jpg",
    ".DS_Store",
    "~photo.jpg",
    "~$report.png",
    "photo.tmp",
    "photo.TMP",
    "photo.jpg.part",
    "photo.jpg.PART",
    "photo.jpg.partial",
    "photo.jpg.crdownload",
    "photo.jpg.CRDOWNLOAD",
    ".photo.jpg.swp",
    "photo.swp",
    "Thumbs.db",
    "THUMBS.DB",
    "thumbs.db",
    "desktop.ini",
    "Desktop.ini",
]


@pytest.mark.parametrize("name", JUNK_FILES)
def test_every_documented_junk_pattern_is_junk(name):
    assert is_junk_name(name)
    assert not InboxFilter().wants(name)


@pytest.mark.parametrize(
    "name", ["photo.jpg", "photo.JPG", "a.jpeg", "a.JPEG", "b.png", "b.Png", "tmp.jpg", "x~.png"]
)
def test_images_in_any_letter_case_are_inputs(name):
    assert is_image_name(name)
    assert not is_junk_name(name)
    assert InboxFilter().wants(name)


@pytest.mark.parametrize("name", ["doc.pdf", "photo.gif", "photo.webp", "photo.jpg.bak", "jpg"])
def test_other_extensions_are_not_inputs(name):
    assert not InboxFilter().wants(name)


@pytest.mark.parametrize("junk_dir", [*sorted(JUNK_DIRS), "@EADIR", "__macosx", ".git", ".sync"])
def test_files_under_junk_or_hidden_dirs_are_not_inputs(junk_dir):
    flt = InboxFilter()
    assert not flt.wants(f"{junk_dir}/photo.jpg")
    assert not flt.wants(f"sub/{junk_dir}/photo.jpg")
    assert not flt.enters(junk_dir)
    assert not flt.enters(f"sub/{junk_dir}/deeper")


def test_ordinary_subdirectories_are_entered_and_their_images_wanted():
    flt = InboxFilter()
    assert flt.enters("")
    assert flt.enters("2024/june")
    assert flt.wants("2024/june/photo.jpg")


def test_ignore_glob_matches_the_name_anywhere_in_any_case():
    flt = InboxFilter(ignore=("*-draft.*",))
    assert not flt.wants("cover-draft.jpg")
    assert not flt.wants("cover-DRAFT.JPG")
    assert not flt.wants("sub/cover-draft.png")
    assert flt.wants("cover-final.jpg")


def test_ignore_glob_on_a_relative_path_hides_a_subfolder():
    flt = InboxFilter(ignore=("drafts/*",))
    assert not flt.wants("drafts/a.jpg")
    assert flt.wants("final/a.jpg")


def test_ignore_glob_naming_a_directory_keeps_the_walk_out_of_it():
    flt = InboxFilter(ignore=("raw",))
    assert not flt.enters("raw")
    assert not flt.enters("shoot/raw")
    assert not flt.wants("shoot/raw/a.jpg")
    assert flt.wants("shoot/a.jpg")


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("s1.mask.png", "s1"),
        ("s1.MASK.JPG", "s1"),
        ("s1.mask.jpeg", "s1"),
        ("My Photo.Mask.Png", "My Photo"),
        ("s1.png", None),
        ("s1.mask.gif", None),
        ("s1mask.png", None),
        (".mask.png", None),
    ],
)
def test_mask_stem(name, stem):
    assert mask_stem(name) == stem


def test_sidecar_names_are_the_three_mask_spellings_of_the_stem():
    assert sidecar_names("s1.JPG") == ["s1.mask.png", "s1.mask.jpg", "s1.mask.jpeg"]
    assert sidecar_names("notes.txt") == []


def test_find_sidecar_masks_matches_the_suffix_in_any_case_and_the_stem_exactly():
    names = ["s1.jpg", "s1.MASK.PNG", "S1.mask.png", "s10.mask.png", ".s1.mask.png", "s1.mask.jpg"]
    assert find_sidecar_masks("s1.jpg", names) == ["s1.MASK.PNG", "s1.mask.jpg"]
    assert find_sidecar_masks("s2.jpg", names) == []


def test_in_a_sidecar_folder_a_mask_is_never_an_input():
    flt = InboxFilter(sidecar=True)
    assert not flt.wants("s1.mask.png")
    assert flt.is_mask("s1.mask.png")
    assert flt.is_mask("sub/s1.MASK.JPEG")
    assert flt.wants("s1.png")
    assert not flt.is_mask("s1.png")
    assert flt.hints("s1.png") and flt.hints("s1.mask.png")


def test_outside_a_sidecar_folder_a_mask_name_is_an_ordinary_input():
    flt = InboxFilter()
    assert flt.wants("s1.mask.png")
    assert not flt.is_mask("s1.mask.png")


def test_junk_or_ignored_masks_are_not_masks():
    flt = InboxFilter(ignore=("*-old.*",), sidecar=True)
    assert not flt.is_mask("._s1.mask.png")
    assert not flt.is_mask("s1-old.mask.png")
    assert not flt.is_mask("@eaDir/s1.mask.png")
    assert not flt.hints("._s1.mask.png")
