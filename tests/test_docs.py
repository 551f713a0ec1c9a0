"""Every config key is documented from one source: the models' descriptions.

docs/config.md, the JSON Schema and the source tree's copies of the packaged files are drawn
from the package by `python -m watchd.docgen`; these tests fail while any is out of step, the
way test_readme keeps the lifecycle diagram, and check that the schema an editor uses agrees
with what `watchd check` accepts.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from watchd import bundled, docgen
from watchd.config import load_config
from watchd.demo import CONFIG as DEMO_CONFIG
from watchd.settings import Config, FolderConfig, Settings, submodel

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "docs" / "config.md").read_text()


def all_fields(model: type[Settings], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for name, info in model.model_fields.items():
        found.append((f"{prefix}{name}", info))
        if inner := submodel(info):
            found += all_fields(inner, f"{prefix}{name}.")
    return found


def test_the_generated_files_of_the_source_tree_are_in_step() -> None:
    stale = docgen.out_of_step(ROOT)
    assert stale == [], f"out of step: {stale}; run `python -m watchd.docgen`"


def test_every_key_has_a_one_sentence_description() -> None:
    """A new field without `description=` fails here, before it reaches the docs (a section
    is described by its model's docstring)."""
    fields = all_fields(Config) + all_fields(FolderConfig, "folders[].")
    missing = [
        name
        for name, info in fields
        if not (info.description or getattr(submodel(info), "__doc__", "") or "").strip()
    ]
    assert missing == []


def test_the_reference_names_every_key_with_its_description() -> None:
    for name, info in all_fields(FolderConfig, "folders[]."):
        if submodel(info) is None:
            assert f"`{name}`" in REFERENCE, name
            assert info.description.replace("|", "\\|") in REFERENCE, name
    for name, _ in all_fields(Config):
        if name.split(".")[0] in ("api", "retry", "log", "state_dir") and "." in name:
            assert f"`{name}`" in REFERENCE, name


def test_the_reference_gives_type_default_and_allowed_values() -> None:
    row = next(line for line in REFERENCE.splitlines() if line.startswith("| `api.mode`"))
    assert "`async`, `sync`" in row and "| `async` |" in row
    row = next(line for line in REFERENCE.splitlines() if "`folders[].quality`" in line)
    assert "| integer | `90` | ≥ 1 and ≤ 100 |" in row


# --- the schema editors use ---------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = docgen.config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def examples() -> dict[str, Any]:
    readme = (ROOT / "README.md").read_text()
    return {
        "example": yaml.safe_load(bundled.read(bundled.EXAMPLE)),
        "readme": yaml.safe_load(re.findall(r"```yaml\n(.*?)```", readme, re.S)[0]),
        "demo": yaml.safe_load(DEMO_CONFIG.format(base_url="http://127.0.0.1:9", port=8750)),
    }


@pytest.mark.parametrize("name", ["example", "readme", "demo"])
def test_the_shipped_configs_satisfy_the_schema(name: str, validator: Any) -> None:
    assert list(validator.iter_errors(examples()[name])) == []


@pytest.mark.parametrize(
    ("where", "edit"),
    [
        ("api.qsp", lambda c: c["api"].update(qsp=2)),
        ("folders[0].expnd", lambda c: c["folders"][0].update(expnd={"top": 0.2})),
        ("folders[0].expand.tpo", lambda c: c["folders"][0]["expand"].update(tpo=0.2)),
        ("defaults.name", lambda c: c["defaults"].update(name="x")),
        ("folders[0].quality", lambda c: c["folders"][0].update(quality=0)),
        ("api.mode", lambda c: c["api"].update(mode="asynch")),
        ("folders[1].name", lambda c: c["folders"][1].pop("name")),
    ],
)
def test_an_editor_flags_what_watchd_check_refuses(
    where: str, edit: Any, validator: Any, tmp_path: Path
) -> None:
    cfg = copy.deepcopy(examples()["example"])
    edit(cfg)
    assert list(validator.iter_errors(cfg)), f"the schema accepts {where}"
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "banner.png").write_bytes(bundled.read("masks/banner.png"))
    path = tmp_path / "watchd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(Exception) as caught:
        load_config(path, env={})
    assert where in str(caught.value)


def test_null_brings_back_a_default_in_defaults_presets_and_folders(validator: Any) -> None:
    cfg = examples()["example"]
    cfg["defaults"]["settle"] = None
    cfg["presets"]["square"]["prompt"] = None
    cfg["folders"][0]["expand"]["left"] = None
    assert list(validator.iter_errors(cfg)) == []


def test_the_example_config_points_editors_at_the_schema_beside_it() -> None:
    first = bundled.read(bundled.EXAMPLE).decode().splitlines()[0]
    assert first == f"# yaml-language-server: $schema=./{bundled.SCHEMA}"
