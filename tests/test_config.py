"""watchd.config: YAML → frozen models, every mistake at its key path, the API key kept out."""

import json
import os
import textwrap
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from watchd.config import (
    SECTIONS,
    Config,
    ConfigError,
    ConfigIssue,
    Expand,
    FolderConfig,
    Target,
    describe,
    key_file_warnings,
    load_api_key,
    load_config,
    resolve_config_path,
)

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-live-0123456789abcdef"

MINIMAL = """
folders:
  - name: products
    inbox: in
    outbox: out
"""


def write(tmp_path: Path, text: str, name: str = "watchd.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), env={} if env is None else env)


def issues(tmp_path: Path, text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.issues


def messages(tmp_path: Path, text: str) -> dict[str, str]:
    """{key path: message} of every issue."""
    return {i.path: i.message for i in issues(tmp_path, text)}


def folder(extra: str = "", name: str = "products") -> str:
    """A config with one folder; `extra` is more folder keys, one per line."""
    body = textwrap.indent(textwrap.dedent(extra).strip(), "    ")
    return f"folders:\n  - name: {name}\n    inbox: in\n    outbox: out\n{body}\n"


def png(path: Path, size: tuple[int, int] = (64, 48), kind: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, 255).save(path, kind)
    return path


# --- defaults and resolution -----------------------------------------------------------------


def test_minimal_config_gets_every_documented_default(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL)
    assert cfg.api.base_url == "https://techhk.aoscdn.com"
    assert (cfg.api.qps, cfg.api.mode, cfg.api.return_type) == (2, "async", "url")
    assert (cfg.api.max_in_flight, cfg.api.request_timeout, cfg.api.poll_interval) == (16, 30, 1.0)
    assert (cfg.api.task_timeout, cfg.api.on_ambiguous, cfg.api.key_file) == (180, "resubmit", None)
    assert (cfg.retry.max_attempts, cfg.retry.base_delay, cfg.retry.max_delay) == (5, 2, 300)
    assert (cfg.log.format, cfg.log.level) == ("auto", "info")
    f = cfg.folders[0]
    assert f.expand == Expand(top=0.1, bottom=0.1, left=0.1, right=0.1)
    assert (f.target, f.mask, f.mask_fit, f.sidecar_wait) == (None, None, "exact", 60)
    assert (f.fit, f.output_format, f.quality, f.recursive, f.watch) == (
        False,
        "keep",
        90,
        False,
        "auto",
    )
    assert (f.settle, f.rescan_interval, f.ignore, f.output) == (1.0, 300, (), "{stem}{ext}")
    assert (f.prompt, f.strength, f.scale, f.steps, f.seed, f.preset) == (None,) * 6


def test_relative_paths_resolve_against_the_config_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    monkeypatch.chdir(tmp_path)  # a cwd different from the config's folder
    cfg = load_config(write(conf_dir, MINIMAL), env={})
    f = cfg.folders[0]
    assert (f.inbox, f.outbox) == (conf_dir / "in", conf_dir / "out")
    assert cfg.path == conf_dir / "watchd.yaml"


def test_home_is_expanded_in_paths(tmp_path: Path) -> None:
    cfg = load(tmp_path, "folders: [{name: a, inbox: ~/in, outbox: /abs/out}]")
    assert cfg.folders[0].inbox == Path.home() / "in"
    assert cfg.folders[0].outbox == Path("/abs/out")


def test_done_and_failed_default_beside_the_inbox(tmp_path: Path) -> None:
    cfg = load(tmp_path, "folders: [{name: a, inbox: /srv/a/inbox, outbox: /srv/a/out}]")
    assert cfg.folders[0].done == Path("/srv/a/done")
    assert cfg.folders[0].failed == Path("/srv/a/failed")


def test_defaults_paths_take_the_folder_name(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        defaults:
          inbox: /srv/watchd/{name}/inbox
          outbox: /srv/watchd/{name}/outbox
          quality: 70
        folders:
          - name: products
          - name: banners
            quality: 80
    """,
    )
    a, b = cfg.folders
    assert (a.inbox, b.inbox) == (
        Path("/srv/watchd/products/inbox"),
        Path("/srv/watchd/banners/inbox"),
    )
    assert b.outbox == Path("/srv/watchd/banners/outbox")
    assert (a.quality, b.quality) == (70, 80)


def test_unknown_placeholder_in_a_path_is_named(tmp_path: Path) -> None:
    found = messages(tmp_path, "folders: [{name: a, inbox: '/srv/{nmae}/in', outbox: o}]")
    assert "{nmae}" in found["folders[0].inbox"]


def test_state_dir_defaults_to_state_directory_then_beside_the_config(tmp_path: Path) -> None:
    assert load(tmp_path, MINIMAL).state_dir == tmp_path / ".watchd"
    systemd = load(tmp_path, MINIMAL, env={"STATE_DIRECTORY": "/var/lib/watchd:/var/lib/other"})
    assert systemd.state_dir == Path("/var/lib/watchd")
    explicit = load(tmp_path, "state_dir: state\n" + MINIMAL, env={"STATE_DIRECTORY": "/x"})
    assert explicit.state_dir == tmp_path / "state"


def test_resolve_config_path_order(tmp_path: Path) -> None:
    system = tmp_path / "etc" / "watchd.yaml"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {"WATCHD_CONFIG": str(tmp_path / "env.yaml")}
    assert resolve_config_path("x.yaml", env=env, cwd=cwd, system=system) == Path("x.yaml")
    assert resolve_config_path(None, env=env, cwd=cwd, system=system) == tmp_path / "env.yaml"
    # Nothing exists: the first fallback, so the error names ./watchd.yaml.
    assert resolve_config_path(None, env={}, cwd=cwd, system=system) == cwd / "watchd.yaml"
    system.parent.mkdir()
    system.write_text("x: 1")
    assert resolve_config_path(None, env={}, cwd=cwd, system=system) == system
    write(cwd, "x: 1")
    assert resolve_config_path(None, env={}, cwd=cwd, system=system) == cwd / "watchd.yaml"


# --- how mistakes are reported ----------------------------------------------------------------


def test_missing_file_names_it_and_says_how_to_start(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    text = str(caught.value)
    assert str(missing) in text
    assert f"watchd config generate {missing}" in text


def test_yaml_syntax_error_is_one_issue_with_its_line(tmp_path: Path) -> None:
    found = issues(tmp_path, "api:\n  qps: 2\n folders: [\n")
    assert len(found) == 1
    assert "line 3" in found[0].message


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    found = messages(tmp_path, folder("expnd: {top: 0.2}"))
    assert found["folders[0].expnd"] == "unknown key 'expnd' (did you mean 'expand'?)"


def test_misplaced_keys_get_a_hint(tmp_path: Path) -> None:
    found = messages(tmp_path, "qps: 3\n" + folder("top: 0.2"))
    assert "api.qps" in found["qps"]
    assert "expand: {top: ...}" in found["folders[0].top"]


def test_several_mistakes_are_reported_at_once(tmp_path: Path) -> None:
    found = messages(tmp_path, "api: {qps: -1}\n" + folder("expnd: {top: 0.2}"))
    assert found["api.qps"] == "must be > 0 (got -1)"
    assert "did you mean 'expand'?" in found["folders[0].expnd"]


def test_error_str_is_one_line_per_issue_with_file_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, "api: {qps: 0, mode: fast}\n" + folder())
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0] == f"{path}: api.qps: must be > 0 (got 0)"
    assert lines[1].startswith(f"{path}: api.mode: must be one of 'async', 'sync'")


@pytest.mark.parametrize(
    ("yaml_text", "key_path", "words"),
    [
        ("api: {mode: asynch}\n" + folder(), "api.mode", "did you mean 'async'?"),
        ("api: {return_type: file}\n" + folder(), "api.return_type", "'url', 'base64'"),
        ("api: {max_in_flight: 0}\n" + folder(), "api.max_in_flight", "≥ 1 (got 0)"),
        ("api: {max_in_flight: 2.5}\n" + folder(), "api.max_in_flight", "whole number"),
        ("api: {request_timeout: 0}\n" + folder(), "api.request_timeout", "> 0"),
        ("api: {poll_interval: -1}\n" + folder(), "api.poll_interval", "> 0"),
        ("api: {task_timeout: 0}\n" + folder(), "api.task_timeout", "> 0"),
        ("api: {on_ambiguous: maybe}\n" + folder(), "api.on_ambiguous", "'resubmit', 'fail'"),
        ("api: {base_url: 'ftp://x'}\n" + folder(), "api.base_url", "http(s) URL"),
        ("api: {qps: fast}\n" + folder(), "api.qps", "must be a number (got 'fast')"),
        ("api: {qps: true}\n" + folder(), "api.qps", "must be a number (got true)"),
        ("api: 5\n" + folder(), "api", "must be a map"),
        ("retry: {max_attempts: 0}\n" + folder(), "retry.max_attempts", "≥ 1"),
        ("retry: {base_delay: 9, max_delay: 3}\n" + folder(), "retry.max_delay", "base_delay"),
        ("log: {level: verbose}\n" + folder(), "log.level", "'debug', 'info'"),
        ("log: {format: xml}\n" + folder(), "log.format", "'auto', 'console', 'json'"),
        ("foldrs: []\n" + folder(), "foldrs", "did you mean 'folders'?"),
        (folder("quality: 0"), "folders[0].quality", "must be ≥ 1 and ≤ 100 (got 0)"),
        (folder("quality: 101"), "folders[0].quality", "≤ 100"),
        (folder("settle: -1"), "folders[0].settle", "≥ 0"),
        (folder("rescan_interval: 0"), "folders[0].rescan_interval", "> 0"),
        (folder("sidecar_wait: -5"), "folders[0].sidecar_wait", "≥ 0"),
        (folder("strength: 1.5"), "folders[0].strength", "≥ 0 and ≤ 1"),
        (folder("scale: 0.5"), "folders[0].scale", "≥ 1 and ≤ 20"),
        (folder("steps: 0"), "folders[0].steps", "≥ 1"),
        (folder("seed: -2"), "folders[0].seed", "≥ -1"),
        (folder("prompt: ''"), "folders[0].prompt", "non-empty"),
        (folder("watch: inotify"), "folders[0].watch", "'auto', 'poll'"),
        (folder("output_format: gif"), "folders[0].output_format", "'keep', 'jpeg'"),
        (folder("mask_fit: stretch"), "folders[0].mask_fit", "'exact', 'scale'"),
        (folder("fit: maybe"), "folders[0].fit", "true or false"),
        (folder("recursive: 1"), "folders[0].recursive", "true or false"),
        (folder("ignore: '*.x'"), "folders[0].ignore", "list of glob patterns"),
        (folder("output: '../{stem}{ext}'"), "folders[0].output", "outside the outbox"),
        (folder("expand: {top: 1.5}"), "folders[0].expand.top", "must be > 0 and ≤ 1 (got 1.5)"),
        (folder("expand: {left: 0}"), "folders[0].expand.left", "> 0"),
        (folder("expand: wide"), "folders[0].expand", "must be a map"),
        (folder("expand: {tpo: 0.2}"), "folders[0].expand.tpo", "did you mean 'top'?"),
        (folder(name="Bad Name"), "folders[0].name", "a-z, 0-9"),
        ("folders: [{name: a, outbox: o}]", "folders[0].inbox", "is required"),
        ("folders: [{name: a, inbox: i}]", "folders[0].outbox", "is required"),
        ("folders: [{inbox: i, outbox: o}]", "folders[0].name", "is required"),
        ("folders: [{name: a, inbox: 5, outbox: o}]", "folders[0].inbox", "must be a path"),
        ("folders: [3]", "folders[0]", "must be a map"),
        ("folders: {a: 1}", "folders", "must be a list"),
        ("folders: []", "folders", "no folders configured"),
        ("api: {qps: 2}", "folders", "no folders configured"),
        ("defaults: {name: x}\n" + folder(), "defaults.name", "cannot be set in defaults"),
    ],
)
def test_each_mistake_names_its_key_path(
    tmp_path: Path, yaml_text: str, key_path: str, words: str
) -> None:
    found = messages(tmp_path, yaml_text)
    assert key_path in found, found
    assert words in found[key_path]


def test_duplicate_folder_names_are_an_error(tmp_path: Path) -> None:
    found = messages(
        tmp_path,
        """
        folders:
          - {name: a, inbox: in1, outbox: out1}
          - {name: a, inbox: in2, outbox: out2}
    """,
    )
    assert found["folders[1].name"] == "'a' is already the name of folders[0]"


def test_an_inbox_used_by_two_folders_is_an_error(tmp_path: Path) -> None:
    found = messages(
        tmp_path,
        """
        folders:
          - {name: a, inbox: in, outbox: out1}
          - {name: b, inbox: ./sub/../in, outbox: out2}
    """,
    )
    assert "is folders[0].inbox" in found["folders[1].inbox"]


def test_an_outbox_that_is_another_folders_inbox_is_an_error(tmp_path: Path) -> None:
    found = messages(
        tmp_path,
        """
        folders:
          - {name: a, inbox: in-a, outbox: in-b}
          - {name: b, inbox: in-b, outbox: out-b, failed: in-b}
    """,
    )
    assert "is folders[1].inbox" in found["folders[0].outbox"]
    assert "is folders[1].inbox" in found["folders[1].failed"]


def test_done_inside_a_recursive_inbox_is_an_error(tmp_path: Path) -> None:
    found = messages(tmp_path, folder("recursive: true\ndone: in/done\nfailed: elsewhere"))
    assert "resolves into folders[0].inbox" in found["folders[0].done"]
    assert "folders[0].failed" not in found


def test_an_inbox_inside_another_recursive_inbox_is_an_error(tmp_path: Path) -> None:
    found = messages(
        tmp_path,
        """
        folders:
          - {name: a, inbox: in, outbox: out, recursive: true}
          - {name: b, inbox: in/b, outbox: out-b}
    """,
    )
    assert "recursive" in found["folders[1].inbox"]


def test_done_inside_a_non_recursive_inbox_is_allowed(tmp_path: Path) -> None:
    cfg = load(tmp_path, folder("done: in/done"))
    assert cfg.folders[0].done == tmp_path / "in" / "done"


def test_models_are_frozen_and_reject_unknown_fields() -> None:
    e = Expand()
    with pytest.raises(ValidationError):
        e.top = 0.5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Expand(tpo=0.5)  # type: ignore[call-arg]


# --- presets and defaults ---------------------------------------------------------------------

PRESETS = """
presets:
  banner:
    expand: {top: 0.1, bottom: 0.1, left: 0.6, right: 0.6}
    prompt: "clean studio background"
    quality: 80
  square:
    target: {aspect: "1:1", margin: 0.1}
"""


def test_preset_is_merged_under_the_folder_and_maps_merge_by_key(tmp_path: Path) -> None:
    cfg = load(tmp_path, PRESETS + folder("preset: banner\nexpand: {top: 0.2}\nquality: 95"))
    f = cfg.folders[0]
    assert f.expand == Expand(top=0.2, bottom=0.1, left=0.6, right=0.6)
    assert (f.prompt, f.quality, f.preset) == ("clean studio background", 95, "banner")


def test_defaults_sit_under_the_preset(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        PRESETS + "defaults: {quality: 50, prompt: x, settle: 3}\n" + folder("preset: banner"),
    )
    f = cfg.folders[0]
    assert (f.quality, f.prompt, f.settle) == (80, "clean studio background", 3)


def test_a_preset_can_be_chosen_in_defaults_and_dropped_with_null(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        PRESETS
        + textwrap.dedent("""
        defaults: {preset: banner}
        folders:
          - {name: a, inbox: a, outbox: ao}
          - {name: b, inbox: b, outbox: bo, preset: null}
    """),
    )
    a, b = cfg.folders
    assert (a.preset, a.quality) == ("banner", 80)
    assert (b.preset, b.quality, b.expand) == (None, 90, Expand())


def test_null_drops_an_inherited_value(tmp_path: Path) -> None:
    cfg = load(tmp_path, PRESETS + folder("preset: banner\nprompt: null\nexpand: {left: null}"))
    f = cfg.folders[0]
    assert f.prompt is None
    assert f.expand == Expand(top=0.1, bottom=0.1, left=0.1, right=0.6)


def test_unknown_preset_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    found = messages(tmp_path, PRESETS + folder("preset: baner"))
    assert found["folders[0].preset"] == "unknown preset 'baner' (did you mean 'banner'?)"


def test_an_error_in_a_preset_points_at_the_preset(tmp_path: Path) -> None:
    text = PRESETS.replace("right: 0.6", "right: 1.6") + folder("preset: banner")
    found = issues(tmp_path, text)
    assert [(i.path, i.message) for i in found] == [
        ("presets.banner.expand.right", "must be > 0 and ≤ 1 (got 1.6)")
    ]


def test_an_error_in_defaults_points_at_defaults(tmp_path: Path) -> None:
    found = messages(
        tmp_path,
        """
        defaults: {quality: 0}
        folders:
          - {name: a, inbox: a, outbox: ao}
          - {name: b, inbox: b, outbox: bo}
    """,
    )
    assert list(found) == ["defaults.quality"]


def test_an_unused_preset_is_still_checked(tmp_path: Path) -> None:
    found = messages(tmp_path, "presets: {spare: {quality: 500, expnd: {}}}\n" + folder())
    assert "≤ 100" in found["presets.spare.quality"]
    assert "did you mean 'expand'?" in found["presets.spare.expnd"]


def test_a_preset_cannot_name_a_folder_or_another_preset(tmp_path: Path) -> None:
    found = messages(tmp_path, "presets: {p: {name: x, preset: q}}\n" + folder())
    assert "folders" not in found
    assert {"presets.p.name", "presets.p.preset"} <= set(found)


# --- target and expand ------------------------------------------------------------------------


def test_aspect_is_parsed_and_ratio_reduced(tmp_path: Path) -> None:
    cfg = load(tmp_path, folder('target: {aspect: "6:2", anchor: left}'))
    t = cfg.folders[0].target
    assert t == Target(aspect=(6, 2), margin=0.05, anchor="left")
    assert t is not None and t.ratio == (3, 1)
    assert cfg.folders[0].expand is None


def test_size_alone_gives_the_ratio(tmp_path: Path) -> None:
    t = load(tmp_path, folder("target: {size: [3000, 1000]}")).folders[0].target
    assert t is not None and (t.size, t.ratio, t.aspect) == ((3000, 1000), (3, 1), None)


@pytest.mark.parametrize(
    ("target", "key_path", "words"),
    [
        ('{aspect: "3x1"}', "target.aspect", '"W:H"'),
        ('{aspect: "0:1"}', "target.aspect", '"W:H"'),
        ('{aspect: "a:b"}', "target.aspect", '"W:H"'),
        ("{aspect: 3:1}", "target.aspect", "must be quoted"),
        ("{size: [100]}", "target.size", "[W, H]"),
        ("{size: [0, 10]}", "target.size", "[W, H]"),
        ('{aspect: "3:1", size: [2000, 2000]}', "target", "disagree"),
        ("{margin: 0.1}", "target", 'needs aspect: "W:H" or size'),
        ('{aspect: "1:1", margin: 0}', "target.margin", "> 0 and ≤ 1"),
        ('{aspect: "1:1", margin: 1.5}', "target.margin", "> 0 and ≤ 1"),
        ('{aspect: "1:1", anchor: middle}', "target.anchor", "'center', 'top'"),
        ('{aspect: "1:1", achor: top}', "target.achor", "did you mean 'anchor'?"),
    ],
)
def test_target_mistakes(tmp_path: Path, target: str, key_path: str, words: str) -> None:
    found = messages(tmp_path, folder(f"target: {target}"))
    assert words in found[f"folders[0].{key_path}"], found


def test_aspect_and_size_that_agree_are_fine(tmp_path: Path) -> None:
    t = load(tmp_path, folder('target: {aspect: "3:1", size: [3000, 1000]}')).folders[0].target
    assert t is not None and t.ratio == (3, 1)


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        (folder('target: {aspect: "1:1"}\nexpand: {top: 0.2}'), "folders[0].target"),
        (
            'presets: {p: {target: {aspect: "1:1"}, expand: {}}}\n' + folder("preset: p"),
            "presets.p.target",
        ),
        ('defaults: {target: {aspect: "1:1"}, expand: {}}\n' + folder(), "defaults.target"),
    ],
)
def test_target_and_expand_in_the_same_map_is_an_error(
    tmp_path: Path, text: str, key_path: str
) -> None:
    found = messages(tmp_path, text)
    assert list(found) == [key_path]  # reported once, where it was written
    assert "together with expand" in found[key_path]


def test_a_folders_target_replaces_an_expand_from_its_preset(tmp_path: Path) -> None:
    f = load(tmp_path, PRESETS + folder('preset: banner\ntarget: {aspect: "4:5"}')).folders[0]
    assert (f.expand, f.target) == (None, Target(aspect=(4, 5)))


def test_a_folders_expand_replaces_a_target_from_defaults(tmp_path: Path) -> None:
    text = 'defaults: {target: {aspect: "1:1"}}\n' + folder("expand: {top: 0.3}")
    f = load(tmp_path, text).folders[0]
    assert (f.target, f.expand) == (None, Expand(top=0.3))


def test_a_presets_target_replaces_an_expand_from_defaults(tmp_path: Path) -> None:
    text = PRESETS + "defaults: {expand: {top: 0.5}}\n" + folder("preset: square")
    f = load(tmp_path, text).folders[0]
    assert (f.expand, f.target) == (None, Target(aspect=(1, 1), margin=0.1))


def test_target_maps_merge_by_key_across_preset_and_folder(tmp_path: Path) -> None:
    f = load(tmp_path, PRESETS + folder("preset: square\ntarget: {size: [800, 800]}")).folders[0]
    assert f.target == Target(aspect=(1, 1), size=(800, 800), margin=0.1)


def test_target_with_an_inherited_mask_is_an_error(tmp_path: Path) -> None:
    found = messages(tmp_path, "defaults: {mask: sidecar}\n" + folder('target: {aspect: "1:1"}'))
    assert found["folders[0].target"].startswith("cannot be combined with mask")
    assert "defaults.mask" in found["folders[0].target"]


def test_target_given_to_folder_config_directly_still_excludes_expand() -> None:
    with pytest.raises(ValidationError):
        FolderConfig(
            name="a",
            inbox=Path("/i"),
            outbox=Path("/o"),
            expand=Expand(),
            target=Target(aspect=(1, 1)),
        )


# --- masks ------------------------------------------------------------------------------------


def test_a_readable_png_or_jpeg_mask_is_accepted_and_resolved(tmp_path: Path) -> None:
    png(tmp_path / "masks" / "m.png")
    png(tmp_path / "masks" / "m.jpg", kind="JPEG")
    cfg = load(
        tmp_path,
        """
        folders:
          - {name: a, inbox: a, outbox: ao, mask: masks/m.png}
          - {name: b, inbox: b, outbox: bo, mask: masks/m.jpg, mask_fit: scale}
          - {name: c, inbox: c, outbox: co, mask: sidecar}
    """,
    )
    assert [f.mask for f in cfg.folders] == [
        tmp_path / "masks" / "m.png",
        tmp_path / "masks" / "m.jpg",
        "sidecar",
    ]


def test_a_mask_path_may_use_the_folder_name(tmp_path: Path) -> None:
    png(tmp_path / "masks" / "products.png")
    cfg = load(tmp_path, "defaults: {mask: 'masks/{name}.png'}\n" + folder())
    assert cfg.folders[0].mask == tmp_path / "masks" / "products.png"


@pytest.mark.parametrize(
    ("setup", "mask", "words"),
    [
        (lambda d: None, "missing.png", "does not exist"),
        (lambda d: (d / "text.png").write_text("not an image"), "text.png", "not a PNG or JPEG"),
        (lambda d: png(d / "m.gif", kind="GIF"), "m.gif", "is a GIF image"),
        (lambda d: (d / "dir.png").mkdir(), "dir.png", "not a regular file"),
        (lambda d: (d / "cut.png").write_bytes(_truncated_png()), "cut.png", "not a readable"),
        (lambda d: None, "Sidecar", "did you mean 'sidecar'?"),
    ],
)
def test_a_mask_that_is_not_a_readable_png_or_jpeg_is_an_error(
    tmp_path: Path, setup, mask: str, words: str
) -> None:
    setup(tmp_path)
    found = messages(tmp_path, folder(f"mask: {mask}"))
    assert words in found["folders[0].mask"], found


def _truncated_png() -> bytes:
    import io

    buf = io.BytesIO()
    Image.effect_noise((200, 200), 50).save(buf, "PNG")
    return buf.getvalue()[:-400]


def test_an_error_in_a_presets_mask_points_at_the_preset(tmp_path: Path) -> None:
    found = messages(tmp_path, "presets: {p: {mask: nope.png}}\n" + folder("preset: p"))
    assert "does not exist" in found["presets.p.mask"]


# --- the API key ------------------------------------------------------------------------------


def keyed(tmp_path: Path, key_file: str | None = None) -> Config:
    api = f"api: {{key_file: {key_file}}}\n" if key_file else ""
    return load(tmp_path, api + MINIMAL)


def secret_file(path: Path, mode: int = 0o600) -> Path:
    path.write_text(f"  {SECRET}\n")
    path.chmod(mode)
    return path


def test_key_file_comes_first_and_is_stripped(tmp_path: Path) -> None:
    secret_file(tmp_path / "api-key")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api-key").write_text("from-credentials")
    cfg = keyed(tmp_path, "api-key")  # relative: beside the config file
    env = {"CREDENTIALS_DIRECTORY": str(creds), "WATCHD_API_KEY": "from-env"}
    assert cfg.api.key_file == tmp_path / "api-key"
    assert load_api_key(cfg, env) == SECRET


def test_credentials_directory_comes_before_the_environment(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    secret_file(creds / "api-key")
    env = {"CREDENTIALS_DIRECTORY": str(creds), "WATCHD_API_KEY": "from-env"}
    assert load_api_key(keyed(tmp_path), env) == SECRET


def test_environment_variable_is_the_last_resort(tmp_path: Path) -> None:
    cfg = keyed(tmp_path)
    empty_creds = tmp_path / "creds"
    empty_creds.mkdir()
    env = {"CREDENTIALS_DIRECTORY": str(empty_creds), "WATCHD_API_KEY": f" {SECRET}\n"}
    assert load_api_key(cfg, env) == SECRET
    assert load_api_key(cfg, {}) is None
    assert load_api_key(cfg, {"WATCHD_API_KEY": "  "}) is None


def test_a_configured_key_file_that_is_missing_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    cfg = keyed(tmp_path, "/nonexistent/api-key")
    with pytest.raises(ConfigError) as caught:
        load_api_key(cfg, {"WATCHD_API_KEY": SECRET})
    assert caught.value.issues[0].path == "api.key_file"
    assert "/nonexistent/api-key" in str(caught.value)


def test_an_empty_key_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "api-key").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_api_key(keyed(tmp_path, "api-key"), {})


@pytest.mark.parametrize("source", ["key_file", "credentials", "env"])
def test_the_key_never_appears_in_describe_repr_or_errors(tmp_path: Path, source: str) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    env: dict[str, str] = {}
    key_file = None
    if source == "key_file":
        key_file = str(secret_file(tmp_path / "api-key"))
    elif source == "credentials":
        secret_file(creds / "api-key")
        env["CREDENTIALS_DIRECTORY"] = str(creds)
    else:
        env["WATCHD_API_KEY"] = SECRET
    cfg = keyed(tmp_path, key_file)
    assert load_api_key(cfg, env) == SECRET
    shown = describe(cfg, env)
    text = json.dumps(shown) + repr(cfg) + str(cfg) + cfg.model_dump_json()
    assert SECRET not in text
    expected = {
        "key_file": f"from {tmp_path / 'api-key'}",
        "credentials": f"from $CREDENTIALS_DIRECTORY/api-key ({creds / 'api-key'})",
        "env": "from $WATCHD_API_KEY",
    }[source]
    assert shown["api"]["key"] == expected


def test_describe_says_missing_when_there_is_no_key(tmp_path: Path) -> None:
    assert describe(keyed(tmp_path), {})["api"]["key"] == "missing"
    unreadable = describe(keyed(tmp_path, "/nonexistent/api-key"), {})
    assert unreadable["api"]["key"].startswith("missing: API key file /nonexistent/api-key")


def test_a_mistyped_key_entry_never_echoes_its_value(tmp_path: Path) -> None:
    """Pasting the key itself under api: must not print it back."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"api: {{key: {SECRET}, api_key: {SECRET}}}\n" + MINIMAL)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("pasted", [SECRET, "wxAbCdEfGhIjKlMnOpQrStUvWxYz", "sk_live_abcdefghijkl"])
def test_a_key_pasted_as_key_file_is_refused_without_echoing_it(
    tmp_path: Path, pasted: str
) -> None:
    """With digits or letters only: the value never comes back, only its key path."""
    with pytest.raises(ConfigError) as caught:
        keyed(tmp_path, pasted)
    assert [i.path for i in caught.value.issues] == ["api.key_file"]
    assert "looks like the API key itself" in str(caught.value)
    assert pasted not in str(caught.value)


def test_a_bare_key_file_name_that_names_no_file_is_never_echoed(tmp_path: Path) -> None:
    """Short or oddly shaped, a name with no folder that is no file may still be a key."""
    with pytest.raises(ConfigError) as caught:
        keyed(tmp_path, "Zk9.q")
    assert [i.path for i in caught.value.issues] == ["api.key_file"]
    assert "Zk9.q" not in str(caught.value)
    secret_file(tmp_path / "Zk9.q")  # once it is a file, it is a path like any other
    assert load_api_key(keyed(tmp_path, "Zk9.q"), {}) == SECRET


def test_a_group_readable_key_file_is_warned_about(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "api-key", 0o640)
    warnings = key_file_warnings(keyed(tmp_path, "api-key"), {})
    assert len(warnings) == 1
    assert str(path) in warnings[0] and "chmod 600" in warnings[0]
    assert SECRET not in warnings[0]


def test_a_private_key_file_and_an_env_key_give_no_warning(tmp_path: Path) -> None:
    secret_file(tmp_path / "api-key", 0o600)
    assert key_file_warnings(keyed(tmp_path, "api-key"), {}) == []
    assert key_file_warnings(keyed(tmp_path), {"WATCHD_API_KEY": SECRET}) == []


# --- describe and the shipped example ---------------------------------------------------------


def test_describe_is_json_with_every_folder_resolved(tmp_path: Path) -> None:
    cfg = load(tmp_path, PRESETS + folder("preset: square"))
    shown = json.loads(json.dumps(describe(cfg, {})))
    assert set(shown) == {"config", "state_dir", "folders", "notify", *SECTIONS}
    assert "http" in SECTIONS
    assert {"api", "retry", "log"} <= set(SECTIONS)
    f = shown["folders"][0]
    assert f["inbox"] == str(tmp_path / "in")
    assert f["target"] == {
        "aspect": "1:1",
        "size": None,
        "margin": 0.1,
        "anchor": "center",
        "ratio": "1:1",
    }
    assert set(FolderConfig.model_fields) <= set(f)


def test_the_example_config_loads_cleanly_from_the_repo() -> None:
    cfg = load_config(REPO / "config" / "watchd.example.yaml", env={})
    products, banners, social = cfg.folders
    assert products.expand == Expand(top=0.1, bottom=0.1, left=0.3, right=0.3)
    assert banners.mask == REPO / "config" / "masks" / "banner.png"
    assert social.preset == "square" and social.target is not None
    assert social.target.ratio == (1, 1)
    json.dumps(describe(cfg, {}))


def test_the_example_config_shows_every_key() -> None:
    text = (REPO / "config" / "watchd.example.yaml").read_text()
    keys = {*FolderConfig.model_fields, "key_file", "state_dir", "max_delay", "on_ambiguous"}
    missing = sorted(k for k in keys if f"{k}:" not in text)
    assert missing == []


def test_the_example_mask_is_a_binary_png() -> None:
    with Image.open(REPO / "config" / "masks" / "banner.png") as im:
        assert im.format == "PNG"
        assert {color for _, color in im.convert("L").getcolors()} == {0, 255}


def test_unreadable_config_file_is_one_issue(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = write(tmp_path, MINIMAL)
    path.chmod(0)
    with pytest.raises(ConfigError, match="permission denied"):
        load_config(path)


def test_a_missing_inbox_is_one_error_not_three(tmp_path):
    """done/ and failed/ default beside the inbox: without one, only the inbox is named."""
    path = tmp_path / "watchd.yaml"
    path.write_text("folders:\n  - name: a\n    outbox: out\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [i.path for i in caught.value.issues] == ["folders[0].inbox"]
