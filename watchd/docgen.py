"""Documents drawn from the config models: the JSON Schema of the file, and docs/config.md.

Owns turning `watchd.settings` into what people and editors read: `config_schema()` (what
`watchd config schema` prints and `watchd config generate` writes beside a config) and
`config_reference()` (docs/config.md: every key with its type, default, allowed values and
description). `python -m watchd.docgen` also refreshes the source tree's copies of the
packaged files (config/, systemd/), whose one source is `watchd/data/`; tests/test_docs.py
fails while any of them is out of step.

Never does: decide what a key means; a description is written once, on its model's field.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from watchd import bundled
from watchd.settings import MERGED_MAPS, Config, number_text

REFERENCE = "docs/config.md"


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a config file as written (not of the resolved `Config`).

    Every folder key may also sit in `defaults:` or a preset, and any of them may be `null`
    there (back to the built-in default), so those maps require nothing and allow null.
    """
    schema = Config.model_json_schema()
    defs = schema["$defs"]
    props = schema["properties"]
    del props["path"]
    folder = defs.pop("FolderConfig")
    for model in MERGED_MAPS.values():  # `expand: {left: null}` drops an inherited side
        _allow_null(defs[model.__name__])
    keys = _allow_null({**folder, "required": []})
    keys["title"] = "FolderKeys"
    keys["description"] = "Folder keys, inherited by every folder (defaults) or chosen (preset)."
    keys["properties"] = {k: v for k, v in keys["properties"].items() if k != "name"}
    defs["FolderKeys"] = keys
    defs["Folder"] = {**_allow_null(copy.deepcopy(folder)), "required": ["name"]}
    folders = props.pop("folders")
    props["presets"] = {
        "description": props["presets"]["description"],
        "type": "object",
        "additionalProperties": {"$ref": "#/$defs/FolderKeys"},
        "default": {},
    }
    props["defaults"] = {
        "description": "Folder keys every folder inherits (any folder key but name).",
        "$ref": "#/$defs/FolderKeys",
        "default": {},
    }
    props["folders"] = {**folders, "items": {"$ref": "#/$defs/Folder"}, "minItems": 1}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "watchd config",
        "description": "The config file of watchd, the folder-to-PicWish image expansion daemon.",
        "required": ["folders"],
    }


def _allow_null(model: dict[str, Any]) -> dict[str, Any]:
    """Each key of a model's schema may also be null: `key: null` restores the default."""
    model.pop("required", None)
    for key, prop in model["properties"].items():
        if any(branch.get("type") == "null" for branch in prop.get("anyOf", [])):
            continue
        meta = {
            k: prop.pop(k) for k in ("title", "description", "default", "x-default") if k in prop
        }
        model["properties"][key] = {"anyOf": [prop, {"type": "null"}], **meta}
    return model


def schema_text() -> str:
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


# --- docs/config.md -------------------------------------------------------------------------

HEADER = """\
# Config reference

<!-- Generated from the config models (watchd/settings.py, watchd/params.py) by
     `python -m watchd.docgen`; do not edit by hand: tests/test_docs.py fails when this file
     is out of step. -->

One YAML file: `--config/-c PATH`, else `$WATCHD_CONFIG`, else `./watchd.yaml`, else
`/etc/watchd/watchd.yaml`. `watchd config generate PATH` writes a commented example to start
from, and `watchd check` (also `watchd config validate`) lists every mistake at once, each
with its key path.

- Relative paths resolve against the config file's folder; `~` is expanded; in a folder's
  paths `{name}` is the folder's name.
- Every folder key may also be set under `defaults:` (every folder inherits it) or in a
  preset (`presets.NAME`, which a folder picks with `preset: NAME`). A folder's own keys win
  over its preset's, which win over `defaults:`. Maps (`expand`, `target`) merge key by key,
  and `key: null` brings back the built-in default.
- Unknown keys are errors, with a "did you mean" when one is close.

## Editor support

`watchd config schema` prints the JSON Schema of this file, and `watchd config generate`
writes it as `watchd.schema.json` beside the config it makes. The generated config starts with

```yaml
# yaml-language-server: $schema=./watchd.schema.json
```

so editors that use the YAML language server (VS Code with the YAML extension, Neovim with
yamlls) check and complete the file as it is typed and show each key's description on hover.
The schema is a local file, not a URL, because it must match the installed version and work
offline. After an upgrade, refresh it: `watchd config schema > watchd.schema.json`.

"""


def config_reference() -> str:
    """docs/config.md: the top-level keys, then a table per map (or list of maps) of keys."""
    schema = config_schema()
    defs, top = schema["$defs"], schema["properties"]
    rows, sections = [], []
    for key, prop in top.items():
        listed = prop.get("type") == "array"
        model = _model(prop.get("items", {}) if listed else prop, defs)
        if key == "presets":
            rows.append((f"{key}.NAME", {**prop, "x-default": "none"}))
        elif model is None or listed or key == "defaults":
            rows.append((key, prop))
        if model is not None and key != "defaults":  # defaults: the keys of folders[]
            path = f"{key}[]" if listed else key
            about = prop.get("description") or model["description"]
            sections.append(f"## `{path}`\n\n{about}\n\n{_table(_rows(path, model, defs))}")
    return "\n".join([HEADER, "## Top level\n\n" + _table(rows), *sections])


def _rows(
    path: str, model: dict[str, Any], defs: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(key path, schema) of every key of a model's schema, maps of keys walked into."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for key, prop in model["properties"].items():
        inner = _model(prop, defs)
        rows += _rows(f"{path}.{key}", inner, defs) if inner else [(f"{path}.{key}", prop)]
    return rows


def _model(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """The model schema a key holds, through `$ref` and `anyOf` with null; None for a value."""
    for branch in [prop, *prop.get("anyOf", [])]:
        if "$ref" in branch:
            return defs[branch["$ref"].rsplit("/", 1)[1]]
    return None


def _table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    lines = ["| key | type | default | allowed | what it does |", "| --- | --- | --- | --- | --- |"]
    for key, prop in rows:
        cells = [f"`{key}`", _type(prop), _default(prop), _allowed(prop), prop["description"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]


def _type(prop: dict[str, Any]) -> str:
    names = []
    for b in _branches(prop):
        if "const" in b:
            names.append(f"`{b['const']}`")
        elif "$ref" in b or "additionalProperties" in b:
            names.append("map")
        elif b.get("format") == "path":
            names.append("path")
        elif b.get("type") == "array":
            item = "map" if "$ref" in b["items"] else b["items"].get("type", "value")
            names.append(f"list of {item}s" if "maxItems" not in b else f"[{item}, {item}]")
        else:
            names.append({"object": "map"}.get(b.get("type", ""), b.get("type", "value")))
    return " or ".join(dict.fromkeys(names))


def _default(prop: dict[str, Any]) -> str:
    if "x-default" in prop:
        return prop["x-default"]
    if "default" not in prop:
        return "required"
    value = prop["default"]
    if value is None:
        return "unset"
    if isinstance(value, float):
        value = number_text(value)
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def _allowed(prop: dict[str, Any]) -> str:
    found = []
    for b in _branches(prop):
        if "enum" in b:
            found.append(", ".join(f"`{v}`" for v in b["enum"]))
        signs = (
            ("exclusiveMinimum", ">"),
            ("minimum", "≥"),
            ("exclusiveMaximum", "<"),
            ("maximum", "≤"),
        )
        limits = [f"{sign} {b[k]}" for k, sign in signs if k in b]
        if limits:
            found.append(" and ".join(limits))
        if "examples" in b:
            found.append("like " + ", ".join(f"`{v}`" for v in b["examples"]))
        elif "pattern" in b:
            found.append(f"`{b['pattern']}`")
        if "minItems" in b and "maxItems" not in b:
            found.append(f"at least {b['minItems']}")
    return "; ".join(found)


# --- the source tree's copies ---------------------------------------------------------------


def tree_copies() -> dict[str, bytes]:
    """Every file of the source tree that is generated: its path → what it must hold."""
    copies = {
        REFERENCE: config_reference().encode(),
        f"config/{bundled.SCHEMA}": schema_text().encode(),
        f"config/{bundled.EXAMPLE}": bundled.read(bundled.EXAMPLE),
        f"systemd/{bundled.UNIT}": bundled.read(bundled.UNIT),
        "config/masks/README": bundled.read("masks/README"),
    }
    copies |= {f"config/{mask}": bundled.read(mask) for mask in bundled.MASKS}
    return copies


def out_of_step(root: Path) -> list[str]:
    """The generated files of the tree at `root` that differ from what they must hold."""
    return [name for name, data in tree_copies().items() if _content(root / name) != data]


def _content(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m watchd.docgen",
        description="Write docs/config.md, the config schema and the copies of the packaged "
        "files (config/, systemd/) into a source tree.",
    )
    parser.add_argument("root", nargs="?", default=".", type=Path, help="the source tree")
    parser.add_argument("--check", action="store_true", help="only list what is out of step")
    args = parser.parse_args(argv)
    stale = out_of_step(args.root)
    for name in stale:
        if args.check:
            print(f"out of step: {name}", file=sys.stderr)
        else:
            path = args.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tree_copies()[name])
            print(f"wrote {path}", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
