"""The README's promises: the diagram is the table's, the commands are the real ones."""

from __future__ import annotations

import re
from pathlib import Path

from watchd.lifecycle import mermaid

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_the_lifecycle_diagram_in_the_readme_is_drawn_from_the_table() -> None:
    blocks = re.findall(r"```mermaid\n(.*?)```", README, re.S)
    assert blocks, "README has no mermaid diagram"
    assert blocks[0].strip() == mermaid().strip()


def test_the_readme_starts_with_what_watchd_does_then_the_two_commands() -> None:
    intro, _, rest = README.partition("## Try it")
    assert "watchd turns folders into an AI image-expansion pipeline" in intro
    commands = re.findall(r"```sh\n(.*?)```", rest, re.S)
    assert commands[0].strip().endswith("watchd demo")
    assert commands[1].strip().endswith("python -m pytest")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert "pip install -q -e '.[test]'" in ci and "\npython -m pytest" in ci
    assert "ruff check" in ci
    assert "\n.ci/install-check\n" in ci  # the wheel, installed outside the checkout


def test_the_readme_config_example_is_a_valid_config(tmp_path) -> None:
    from watchd.config import load_config

    example = re.findall(r"```yaml\n(.*?)```", README, re.S)[0]
    path = tmp_path / "watchd.yaml"
    path.write_text(example)
    cfg = load_config(path)
    assert [f.name for f in cfg.folders] == ["products", "banners", "square"]
    assert str(cfg.folders[0].inbox) == "/srv/watchd/products/inbox"


def test_the_readme_shows_pipx_and_shell_completion() -> None:
    assert "pipx install watchd" in README
    assert "_WATCHD_COMPLETE=bash_source watchd" in README
