"""What a user installing from a wheel starts from: `watchd config ...`, `watchd
systemd-unit`, `--version`, and the packaged files behind them.

Commands run in-process through the real entry point with test_cli's `watchd` fixture (no
traceback, no key on any stream). The wheel itself is built and installed outside the
checkout by .ci/install-check.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_cli import watchd  # noqa: F401  (the fixture)
from watchd import __version__, bundled
from watchd.docgen import config_schema

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "watchd.service"


@pytest.fixture
def run(watchd: Any) -> Any:  # noqa: F811  (test_cli's fixture, imported above)
    """`watchd ARGS...` in-process: (exit code, stdout, stderr)."""
    return lambda *args: astuple(watchd(*args))


# --- watchd config generate / schema / validate ---------------------------------------------


def test_generate_writes_the_example_its_schema_and_its_mask(tmp_path: Path, run: Any) -> None:
    path = tmp_path / "etc" / "watchd.yaml"

    code, out, err = run("config", "generate", str(path))

    assert code == 0, err
    assert path.read_bytes() == bundled.read(bundled.EXAMPLE)
    assert json.loads((path.parent / bundled.SCHEMA).read_text()) == config_schema()
    assert (path.parent / "masks" / "banner.png").read_bytes() == bundled.read("masks/banner.png")
    assert out == "" and f"watchd check -c {path}" in err


def test_generate_never_overwrites(tmp_path: Path, run: Any) -> None:
    path = tmp_path / "watchd.yaml"
    path.write_text("# mine\n")

    code, _, err = run("config", "generate", str(path))

    assert code == 1
    assert err.strip() == f"watchd: {path} exists; not overwriting it (choose another PATH)"
    assert path.read_text() == "# mine\n"
    assert not (tmp_path / bundled.SCHEMA).exists()


def test_generate_keeps_a_mask_or_schema_already_there(tmp_path: Path, run: Any) -> None:
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "banner.png").write_bytes(b"my own mask")

    code, _, err = run("config", "generate", str(tmp_path / "watchd.yaml"))

    assert code == 0, err
    assert (tmp_path / "masks" / "banner.png").read_bytes() == b"my own mask"
    assert "kept" in err and "banner.png" in err


def test_generate_dash_prints_the_example(run: Any) -> None:
    code, out, _ = run("config", "generate", "-")

    assert code == 0
    assert out == bundled.read(bundled.EXAMPLE).decode()


def test_generate_defaults_to_watchd_yaml_here_and_check_finds_it(
    tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATCHD_API_KEY", "k" * 24)

    assert run("config", "generate")[0] == 0
    code, out, err = run("check")

    assert code == 0, err
    assert f"# {tmp_path / 'watchd.yaml'}: OK" in out
    cfg = yaml.safe_load(out.split("\n", 1)[1].split("# a 3000")[0])
    banners = next(f for f in cfg["folders"] if f["name"] == "banners")
    assert banners["mask"] == str(tmp_path / "masks" / "banner.png")


def test_schema_prints_the_json_schema(run: Any) -> None:
    code, out, _ = run("config", "schema")

    assert code == 0
    assert json.loads(out) == config_schema()


def test_validate_is_check(tmp_path: Path, run: Any) -> None:
    path = tmp_path / "watchd.yaml"
    run("config", "generate", str(path))

    checked = run("check", "-c", str(path))
    validated = run("config", "validate", "-c", str(path))
    before = run("-c", str(path), "config", "validate")

    assert checked[0] == 0
    assert validated == checked == before


def test_validate_fails_like_check(tmp_path: Path, run: Any) -> None:
    path = tmp_path / "watchd.yaml"
    path.write_text("folders: [{name: a, inbox: in, outbox: out, quality: 0}]\n")

    code, out, err = run("config", "validate", "-c", str(path))

    assert (code, out) == (1, "")
    assert "folders[0].quality: must be ≥ 1 and ≤ 100 (got 0)" in err


@pytest.mark.parametrize("args", [["generate", "--bad"], ["schema", "--bad"]])
def test_a_bad_flag_names_the_subcommands_help(run: Any, args: list[str]) -> None:
    code, _, err = run("config", *args)

    assert code == 2
    assert err.strip().endswith(f"(see: watchd config {args[0]} --help)")


# --- watchd systemd-unit ----------------------------------------------------------------------


def exec_start(unit: str) -> str:
    (line,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    return line


def test_the_shipped_unit_is_the_default_rendering_byte_for_byte() -> None:
    assert bundled.systemd_unit(bundled.UNIT_WATCHD).encode() == UNIT.read_bytes()


def test_systemd_unit_runs_this_install_and_is_otherwise_the_shipped_unit(run: Any) -> None:
    code, out, _ = run("systemd-unit")

    assert code == 0
    assert (
        exec_start(out) == f"ExecStart={bundled.this_watchd()} run --config {bundled.UNIT_CONFIG}"
    )
    shipped = UNIT.read_text().splitlines()
    printed = out.splitlines()
    assert [a for a, b in zip(shipped, printed, strict=True) if a != b] == [
        exec_start(UNIT.read_text())
    ]


def test_systemd_unit_takes_the_config_and_the_user(tmp_path: Path, run: Any) -> None:
    config = tmp_path / "my config.yaml"

    _, out, _ = run("systemd-unit", "--config", str(config), "--user", "photos")
    _, before, _ = run("-c", str(config), "systemd-unit", "--user", "photos")

    assert exec_start(out).endswith(f' run --config "{config}"')
    assert "\nUser=photos\nGroup=photos\n" in out
    assert before == out


def test_this_watchd_is_the_running_script_with_symlinks_followed(tmp_path: Path) -> None:
    venv = tmp_path / "opt" / "watchd" / "bin"
    venv.mkdir(parents=True)
    (venv / "watchd").write_text("#!/bin/sh\n")
    link = tmp_path / "watchd"
    link.symlink_to(venv / "watchd")

    assert bundled.this_watchd(argv0=str(link)) == str(venv / "watchd")


def test_this_watchd_under_python_dash_m_is_the_environments_script_or_python(
    tmp_path: Path,
) -> None:
    main_py = str(ROOT / "watchd" / "__main__.py")
    (tmp_path / "bin").mkdir()
    assert bundled.this_watchd(main_py, str(tmp_path), "/usr/bin/python3") == (
        "/usr/bin/python3 -m watchd"
    )
    (tmp_path / "bin" / "watchd").write_text("#!/bin/sh\n")
    assert bundled.this_watchd(main_py, str(tmp_path)) == str(tmp_path / "bin" / "watchd")


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("/opt/watchd/bin/watchd", "/opt/watchd/bin/watchd"),
        ("/srv/my photos/w.yaml", '"/srv/my photos/w.yaml"'),
        ("/srv/100%/w.yaml", "/srv/100%%/w.yaml"),
        ('/srv/"q"/$HOME', '"/srv/\\"q\\"/$$HOME"'),
    ],
)
def test_unit_words_are_quoted_for_systemd(word: str, quoted: str) -> None:
    assert bundled.unit_quote(word) == quoted


# --- the version --------------------------------------------------------------------------------


def test_the_version_is_written_once_and_shown_by_version_and_status(
    tmp_path: Path, run: Any
) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)  # no second copy
    assert run("--version")[1].strip() == f"watchd, version {__version__}"
    path = tmp_path / "watchd.yaml"
    path.write_text(f"state_dir: {tmp_path}/state\nfolders: [{{name: a, inbox: i, outbox: o}}]\n")
    code, out, err = run("status", "--json", "-c", str(path))
    assert code == 0, err
    assert json.loads(out)["version"] == __version__


def test_the_changelog_has_an_unreleased_section_and_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{__version__}]" in changelog


def test_python_dash_m_watchd_reports_the_same_version() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "watchd", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == f"watchd, version {__version__}"


def test_shell_completion_as_the_readme_says(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_WATCHD_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "watchd config ")
    monkeypatch.setenv("COMP_CWORD", "2")

    code, out, _ = run()

    assert code == 0
    assert out.split() == ["plain,generate", "plain,schema", "plain,validate"]
