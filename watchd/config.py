"""The config file: YAML in, the models of `watchd.settings` out, every mistake at once.

Owns: finding and reading the file, merging `defaults:` < preset < folder, resolving paths,
checks across folders, and turning every validation error into a human message at the key
path where the user wrote it (`ConfigError`, one `ConfigIssue` per problem).

Never does: I/O beyond reading the config file, the mask files it names and (through
`watchd.keys`) the API key; never puts the key into a model, a message or `describe()`.

How a folder is built, in order:
    1. each map the user wrote (`defaults`, `presets.NAME`, `folders[i]`) is validated on its
       own, so a mistake is named once, where it was written, e.g. `presets.banner.expand.top`;
    2. the maps are merged key by key (`expand` and `target` merge side by side too); a layer
       that sets `target` drops an inherited `expand` and the other way round; `null` drops an
       inherited value so the built-in default applies;
    3. `{name}` and `~` are expanded in path values, relative paths resolve against the config
       file's folder, done/failed default to siblings of the inbox;
    4. pydantic validates the merged map; what only the merge can break (a key still missing, a
       target's shape) is named at the layer that wrote the key (`provenance`);
    5. checks across folders (unique names, inboxes, outboxes inside recursive inboxes).
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, UnidentifiedImageError
from pydantic import TypeAdapter, ValidationError

from watchd.config_issues import (
    ConfigError,
    ConfigIssue,
    Issues,
    closest,
    join,
    loc_text,
    message,
    show,
    unknown_key,
)
from watchd.folders import folder_conflicts
from watchd.keys import KeyFileError, find_key, permission_warnings, unshowable_key_file
from watchd.notifications import load_targets
from watchd.settings import (
    MERGED_MAPS,
    SECTIONS,
    SIDECAR,
    ApiConfig,
    Config,
    Expand,
    FolderConfig,
    LogConfig,
    RetryConfig,
    Settings,
    Target,
    beside_inbox,
    model_types,
)

__all__ = [
    "SECTIONS",
    "ApiConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "Expand",
    "FolderConfig",
    "LogConfig",
    "RetryConfig",
    "Target",
    "describe",
    "key_file_warnings",
    "load_api_key",
    "load_config",
    "resolve_config_path",
]

SYSTEM_CONFIG = Path("/etc/watchd/watchd.yaml")
TOP_KEYS = (*(k for k in Config.model_fields if k != "path"), "defaults")
FOLDER_KEYS = tuple(FolderConfig.model_fields)
_PATH_KEYS = ("inbox", "outbox", "done", "failed")

# --- finding and reading the file -----------------------------------------------------------


def resolve_config_path(
    explicit: str | os.PathLike[str] | None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    system: Path = SYSTEM_CONFIG,
) -> Path:
    """`--config`, else `$WATCHD_CONFIG`, else ./watchd.yaml, else /etc/watchd/watchd.yaml.

    An explicit choice is returned even if missing, so the error names what the user asked
    for; of the two fallbacks the first that exists wins, else ./watchd.yaml.
    """
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit).expanduser()
    if env.get("WATCHD_CONFIG"):
        return Path(env["WATCHD_CONFIG"]).expanduser()
    local = Path("watchd.yaml") if cwd is None else cwd / "watchd.yaml"
    for candidate in (local, system):
        if candidate.is_file():
            return candidate
    return local


def _read(path: Path) -> Any:
    """The parsed YAML; a file that cannot be read or parsed is a single issue."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problem = (
            f"config file not found; to start, run `watchd config generate {path}` (a "
            "commented example) and edit it, or pass --config PATH"
        )
    except IsADirectoryError:
        problem = "is a folder, not a config file"
    except PermissionError:
        problem = "cannot read the config file: permission denied"
    except UnicodeDecodeError as exc:
        problem = f"is not UTF-8 text ({exc.reason} at byte {exc.start})"
    except yaml.YAMLError as exc:
        mark, what = getattr(exc, "problem_mark", None), getattr(exc, "problem", None) or exc
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = f"YAML syntax error{at}: {what}"
    raise ConfigError([ConfigIssue(str(path), "", problem)])


# --- loading --------------------------------------------------------------------------------


def load_config(path: Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate the config file; raise `ConfigError` listing every problem.

    `env` supplies `$STATE_DIRECTORY` (the default state_dir under systemd); default os.environ.
    """
    env = os.environ if env is None else env
    path = Path(path)
    raw = _read(path)
    issues = Issues(str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        issues.add("", f"must be a map of settings (api, folders, ...), got {show(raw)}")
        raise ConfigError(issues.items)
    base = path.absolute().parent
    for key in [k for k in raw if k not in TOP_KEYS]:
        issues.add(key if isinstance(key, str) else show(key), unknown_key(key, TOP_KEYS))

    sections = {name: _section(raw.get(name), name, base, issues) for name in SECTIONS}
    state_dir = _state_dir(raw.get("state_dir"), base, env, issues)
    presets = _presets(raw.get("presets"), issues)
    defaults = _layer(raw.get("defaults"), "defaults", issues, "defaults") or _Layer("defaults")
    folders = _folders(raw.get("folders"), defaults, presets, base, issues)
    notify = load_targets(raw.get("notify"), base, issues.add)
    if issues:
        raise ConfigError(issues.items)
    return Config(
        path=path.absolute(),
        state_dir=state_dir,
        presets={name: p.data for name, p in presets.items()},
        folders=tuple(folders),
        notify=notify,
        **sections,
    )


def _section(value: Any, name: str, base: Path, issues: Issues) -> Any:
    """A top-level map of settings (`api:`), or a list of them: paths resolved against the
    config file's folder, every mistake at its key path."""
    info, model = Config.model_fields[name], SECTIONS[name]
    if value is None:
        return info.get_default(call_default_factory=True)
    listed = isinstance(value, list)
    value = [dict(v) if isinstance(v, dict) else v for v in (value if listed else [value])]
    for i, item in enumerate(value):
        if isinstance(item, dict):
            _resolve_paths(item, model, join(name, i) if listed else name, base, issues)
    try:
        return TypeAdapter(info.annotation).validate_python(  # type: ignore[arg-type]
            value if listed else value[0]
        )
    except ValidationError as exc:
        for err in exc.errors():
            issues.add(loc_text(name, err["loc"]), message(model, err))
    return None


def _resolve_paths(
    item: dict[str, Any], model: type[Settings], where: str, base: Path, issues: Issues
) -> None:
    """The path keys of one map, made absolute; one that cannot be used is reported and left
    out, so that validating the rest does not name it again."""
    for key, info in model.model_fields.items():
        if Path not in model_types(info.annotation) or item.get(key) is None:
            continue
        resolved = _path_value(item[key], base, join(where, key), issues)
        problem = resolved and key == "key_file" and unshowable_key_file(item[key], resolved)
        if problem:
            issues.add(join(where, key), problem)
        if resolved is None or problem:
            del item[key]
        else:
            item[key] = resolved


_placeholder = re.compile(r"\{[^{}]*\}")


def _path_value(
    value: Any, base: Path, where: str, issues: Issues, folder: str | None = None
) -> Path | None:
    """A path as written → absolute: `~` expanded, relative to the config file's folder.

    In a folder's paths (`folder` given, "" when its name is invalid) `{name}` is the folder
    name and any other `{...}` is a typo worth reporting.
    """
    if not isinstance(value, str) or not value.strip():
        issues.add(where, f"must be a path (got {show(value)})")
        return None
    text = value
    if folder is not None:
        left = [p for p in _placeholder.findall(text) if p != "{name}"]
        if left:
            issues.add(where, f"unknown placeholder {left[0]} (only {{name}}, the folder name)")
            return None
        text = text.replace("{name}", folder)
    p = Path(text).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _state_dir(value: Any, base: Path, env: Mapping[str, str], issues: Issues) -> Path:
    if value is not None:
        return _path_value(value, base, "state_dir", issues) or base / ".watchd"
    if env.get("STATE_DIRECTORY"):
        # systemd joins several StateDirectory= entries with ':'; the first is ours.
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    return base / ".watchd"


@dataclass
class _Layer:
    """One map of folder keys as the user wrote it, and whether all its values passed."""

    src: str
    data: dict[str, Any] = field(default_factory=dict)
    clean: bool = True


def _presets(value: Any, issues: Issues) -> dict[str, _Layer]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        issues.add("presets", f"must be a map of preset names to settings (got {show(value)})")
        return {}
    presets: dict[str, _Layer] = {}
    for name, body in value.items():
        if not isinstance(name, str):
            issues.add("presets", f"preset names must be strings (got {show(name)})")
        elif layer := _layer(body, f"presets.{name}", issues, "a preset"):
            presets[name] = layer
    return presets


def _layer(value: Any, src: str, issues: Issues, kind: str) -> _Layer | None:
    """One map of folder keys, its values checked on their own, so that each mistake is
    named once, where it was written, and a preset no folder uses is checked too.

    Paths and masks are checked once merged into a folder (they need the folder's name);
    shape rules that need the other layers are left to the merge.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        issues.add(src, f"must be a map of folder settings (got {show(value)})")
        return None
    layer, found = dict(value), len(issues.items)
    if kind != "folder" and "name" in layer:
        issues.add(join(src, "name"), f"cannot be set in {kind}: each folder names itself")
        del layer["name"]
    if kind == "a preset" and "preset" in layer:
        issues.add(join(src, "preset"), "a preset cannot use another preset")
        del layer["preset"]
    if layer.get("target") is not None and layer.get("expand") is not None:
        issues.add(
            join(src, "target"),
            "cannot be used together with expand in the same map: target sets a shape per "
            "image, expand sets fixed ratios; keep one",
        )
        del layer["expand"]  # keep target, so its own mistakes are still reported
    probe: dict[str, Any] = {"name": "probe", "inbox": Path("/"), "outbox": Path("/")}
    for key, v in layer.items():
        if v is not None and key not in (*_PATH_KEYS, "mask"):
            probe[key] = {k: x for k, x in v.items() if x is not None} if isinstance(v, dict) else v
    try:
        FolderConfig.model_validate(probe)
    except ValidationError as exc:
        for err in exc.errors():
            if err["type"] != "shape" and err["loc"]:
                issues.add(loc_text(src, err["loc"]), message(FolderConfig, err))
    return _Layer(src, layer, clean=len(issues.items) == found)


@dataclass
class _Draft:
    """A folder on its way to a FolderConfig: the merged map and where each key came from."""

    src: str
    name: str | None
    data: dict[str, Any]
    prov: dict[str, str]  # key → where the value in `data` was written, e.g. "defaults.inbox"
    clean: bool  # every layer's own values passed
    bad: set[str] = field(default_factory=set)  # keys already reported, left out of checks

    def where(self, loc: tuple[Any, ...]) -> str:
        """The user's key path for a location in the merged map."""
        if not loc:
            return self.src
        return loc_text(self.prov.get(loc[0], join(self.src, loc[0])), loc[1:])

    def path(self, key: str) -> Path | None:
        value = self.data.get(key)
        return value if isinstance(value, Path) and key not in self.bad else None


def _merge(layers: list[_Layer]) -> tuple[dict[str, Any], dict[str, str]]:
    merged: dict[str, Any] = {}
    prov: dict[str, str] = {}
    for layer in layers:
        # A layer's own target replaces an inherited expand, and the other way round.
        for key, other in (("target", "expand"), ("expand", "target")):
            if layer.data.get(key) is not None:
                merged.pop(other, None)
        for key, value in layer.data.items():
            prov[key] = join(layer.src, key)
            if key in MERGED_MAPS and isinstance(value, dict):
                got = merged.get(key)
                inherited: dict[str, Any] = got if isinstance(got, dict) else {}
                value = {k: v for k, v in (inherited | value).items() if v is not None}
            if value is None:  # `key: null` = back to the built-in default
                merged.pop(key, None)
            else:
                merged[key] = value
    return merged, prov


def _folders(
    value: Any, defaults: _Layer, presets: dict[str, _Layer], base: Path, issues: Issues
) -> list[FolderConfig]:
    if value is None or value == []:
        issues.add("folders", "no folders configured: add at least one under folders:")
        return []
    if not isinstance(value, list):
        issues.add("folders", f"must be a list of folders (got {show(value)})")
        return []
    drafts = []
    for i, entry in enumerate(value):
        if layer := _layer(entry, join("folders", i), issues, "folder"):
            drafts.append(_draft(layer, defaults, presets, base, issues))
    _check_across(drafts, issues)
    built = []
    for draft in drafts:
        try:
            built.append(FolderConfig.model_validate(draft.data))
        except ValidationError as exc:
            errors = exc.errors()
            no_inbox = any(e["type"] == "missing" and e["loc"] == ("inbox",) for e in errors)
            for err in errors:
                if no_inbox and err["type"] == "missing" and err["loc"] in (("done",), ("failed",)):
                    continue  # they default beside the inbox: its own error says it all
                if err["type"] not in ("missing", "shape") and not draft.clean:
                    continue  # a value its own layer has reported already
                issues.add(draft.where(err["loc"]), message(FolderConfig, err))
    if len(built) == len(value):
        _check_places(built, issues)
    return built


def _check_places(folders: list[FolderConfig], issues: Issues) -> None:
    """No folder feeds watchd its own files: compared as the filesystem sees them (resolved
    symlinks, device and inode), never as text. An outbox that is a symlink to its inbox
    would otherwise make every result a new paid input."""
    for key, problem in folder_conflicts(folders):
        issues.add(key, problem)


def _draft(
    layer: _Layer, defaults: _Layer, presets: dict[str, _Layer], base: Path, issues: Issues
) -> _Draft:
    src = layer.src
    name = layer.data.get("name") if isinstance(layer.data.get("name"), str) else None
    chosen = [defaults]
    preset_name, preset_src = None, ""
    if "preset" in layer.data:
        preset_name, preset_src = layer.data["preset"], join(src, "preset")
    elif "preset" in defaults.data:
        preset_name, preset_src = defaults.data["preset"], "defaults.preset"
    if isinstance(preset_name, str) and preset_name in presets:
        chosen.append(presets[preset_name])
    elif isinstance(preset_name, str):
        hint = closest(preset_name, presets)
        if hint:
            known = f"did you mean '{hint}'?"
        elif presets:
            known = "defined: " + ", ".join(sorted(presets))
        else:
            known = "no presets are defined"
        issues.add(preset_src, f"unknown preset {show(preset_name)} ({known})")
    chosen.append(layer)
    data, prov = _merge(chosen)
    draft = _Draft(src, name, data, prov, clean=all(c.clean for c in chosen))

    for key in (*_PATH_KEYS, "mask"):
        value = data.get(key)
        if value is None or (key == "mask" and value == SIDECAR):
            continue
        where = draft.where((key,))
        resolved = _path_value(value, base, where, issues, folder=name or "")
        if resolved is None:
            # Reported already; a stand-in keeps pydantic from adding "is required".
            draft.bad.add(key)
            resolved = Path("/")
        elif key == "mask" and (problem := _mask_problem(resolved)):
            if value.strip().lower() == SIDECAR:
                problem += " (did you mean 'sidecar'?)"
            issues.add(where, problem)
        data[key] = resolved
    if (inbox := draft.path("inbox")) is not None:
        for key in ("done", "failed"):
            data.setdefault(key, beside_inbox(inbox, key))
    if data.get("target") is not None and data.get("mask") is not None:
        issues.add(
            draft.where(("target",)),
            f"cannot be combined with mask (set at {draft.where(('mask',))}): a mask sets the "
            "canvas itself; use expand or drop the mask",
        )
        del data["mask"]
    return draft


def _mask_problem(path: Path) -> str | None:
    """Why this file cannot be a mask, or None. Opens it with Pillow, never blocks on a FIFO."""
    try:
        if not path.exists():
            return f"mask file {path} does not exist"
        if not path.is_file():
            return f"mask {path} is not a regular file"
        with Image.open(path) as im:
            kind = im.format
            im.verify()
        if kind not in ("PNG", "JPEG"):
            return f"mask {path} is a {kind} image; masks must be PNG or JPEG"
        with Image.open(path) as im:  # verify() does not decode the pixels; load() does
            im.load()
    except PermissionError:
        return f"cannot read mask file {path}: permission denied"
    except UnidentifiedImageError:
        return f"mask {path} is not a PNG or JPEG image"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"mask {path} is not a readable image ({exc})"
    return None


def _check_across(drafts: list[_Draft], issues: Issues) -> None:
    """Names unique (where the folders are is `_check_places`' job)."""
    names: dict[str, _Draft] = {}
    for d in drafts:
        if d.name is not None and d.name in names:
            first = names[d.name].src
            issues.add(join(d.src, "name"), f"{show(d.name)} is already the name of {first}")
        elif d.name is not None:
            names[d.name] = d



# --- the API key and describe ---------------------------------------------------------------


def load_api_key(cfg: Config, env: Mapping[str, str] | None = None) -> str | None:
    """The API key: `api.key_file`, else `$CREDENTIALS_DIRECTORY/api-key`, else `$WATCHD_API_KEY`.

    Whitespace is stripped; None when there is none. A configured `key_file` that cannot be
    read (missing, unreadable, empty) raises ConfigError rather than silently falling back.
    """
    try:
        return find_key(cfg.api.key_file, os.environ if env is None else env).key
    except KeyFileError as exc:
        where = "api.key_file" if cfg.api.key_file is not None else ""
        raise ConfigError([ConfigIssue(str(cfg.path), where, str(exc))]) from None


def key_file_warnings(cfg: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """Warnings about the key file in use, e.g. one that group or others may read."""
    try:
        return permission_warnings(find_key(cfg.api.key_file, os.environ if env is None else env))
    except KeyFileError:
        return []  # load_api_key reports that one


def describe(cfg: Config, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resolved settings as JSON-able data for `watchd check`; the key only as its source."""
    try:
        where = find_key(cfg.api.key_file, os.environ if env is None else env).where
    except KeyFileError as exc:
        where = f"missing: {exc}"
    data: dict[str, Any] = {"config": str(cfg.path)}
    data |= cfg.model_dump(mode="json", exclude={"path", "presets", "folders", "notify"})
    data["api"]["key"] = where
    data["folders"] = [_describe_folder(f) for f in cfg.folders]
    data["notify"] = [t.describe(i) for i, t in enumerate(cfg.notify)]  # URLs redacted
    return data


def _describe_folder(folder: FolderConfig) -> dict[str, Any]:
    data = folder.model_dump(mode="json")
    if folder.target is not None:
        t = folder.target
        data["target"]["aspect"] = f"{t.aspect[0]}:{t.aspect[1]}" if t.aspect else None
        data["target"]["ratio"] = f"{t.ratio[0]}:{t.ratio[1]}"
    return data
