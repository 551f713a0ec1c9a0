"""The config file: YAML in, frozen pydantic models out, every mistake reported at once.

Owns: finding the config file, parsing it, merging `defaults:` < preset < folder, resolving
paths, validating every value with a human message and the key path where the user wrote it
(`ConfigError` with one `ConfigIssue` per problem), and finding the API key.

Never does: I/O beyond reading the config file, the mask files it names and the API key file;
never puts the API key into a model, a message, `describe()` output or a repr (the models only
hold `key_file`, a path; the key itself is read by `load_api_key` and handed straight back).

How a folder is built, in order:
    1. each map the user wrote (`defaults`, `presets.NAME`, `folders[i]`) is checked for unknown
       keys and for `target` + `expand` side by side;
    2. the maps are merged key by key (`expand` and `target` merge side by side too); a layer
       that sets `target` drops an inherited `expand` and the other way round; `null` drops an
       inherited value so the built-in default applies;
    3. `{name}` and `~` are expanded in path values, relative paths resolve against the config
       file's folder, done/failed default to siblings of the inbox;
    4. pydantic validates the merged map; every error's location is mapped back through the
       merge (`provenance`) to the key the user actually wrote, e.g. `presets.banner.expand.top`;
    5. checks across folders (unique names, inboxes, outboxes inside recursive inboxes).
"""

import difflib
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from PIL import Image, UnidentifiedImageError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from watchd.errors import WatchdError
from watchd.outbox import TemplateError, render_name
from watchd.web.config import HttpConfig

__all__ = [
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
EXAMPLE_CONFIG = "config/watchd.example.yaml"
SIDECAR = "sidecar"
# The largest key file worth reading: an API key is a short token, not a document.
_KEY_FILE_LIMIT = 4096


# --- issues ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: the file, the key path as the user wrote it (`folders[1].expand.top`), why."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        if self.path:
            return f"{self.file}: {self.path}: {self.message}"
        return f"{self.file}: {self.message}"


class ConfigError(WatchdError):
    """The config cannot be used; `issues` lists every problem found, not just the first."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


class _Issues:
    """Collects issues for one file, in the order found, without duplicates.

    Duplicates are normal: a bad value in a preset is met again in every folder that uses it.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[ConfigIssue] = []

    def add(self, path: str, message: str) -> None:
        issue = ConfigIssue(self.file, path, message)
        if issue not in self.items:
            self.items.append(issue)

    def __bool__(self) -> bool:
        return bool(self.items)


# --- value checks with human messages ------------------------------------------------------


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def _num_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _fail(message: str) -> None:
    # The message travels in the context so that braces in user values are never formatted.
    raise PydanticCustomError("watchd", "{detail}", {"detail": message})


def _closest(word: str, options: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return found[0] if found else None


def _number(value: Any) -> Any:
    # bool is an int to Python but never a number to a person writing YAML.
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"must be a number (got {_show(value)})")
    if not math.isfinite(value):
        _fail(f"must be a finite number (got {_show(value)})")
    return value


def _whole(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"must be a whole number (got {_show(value)})")
    if isinstance(value, float):
        if not value.is_integer():
            _fail(f"must be a whole number (got {_show(value)})")
        return int(value)
    return value


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        _fail(f"must be true or false (got {_show(value)})")
    return value


def _text(value: Any) -> Any:
    if not isinstance(value, str):
        _fail(f"must be a string (got {_show(value)})")
    return value


def _range(
    *, gt: float | None = None, ge: float | None = None, le: float | None = None
) -> AfterValidator:
    parts = []
    if gt is not None:
        parts.append(f"> {_num_text(gt)}")
    if ge is not None:
        parts.append(f"≥ {_num_text(ge)}")
    if le is not None:
        parts.append(f"≤ {_num_text(le)}")
    rule = "must be " + " and ".join(parts)

    def check(value: float) -> float:
        if (
            (gt is not None and not value > gt)
            or (ge is not None and not value >= ge)
            or (le is not None and not value <= le)
        ):
            _fail(f"{rule} (got {_num_text(value)})")
        return value

    return AfterValidator(check)


def _one_of(choices: Any) -> BeforeValidator:
    options: tuple[str, ...] = get_args(choices)

    def check(value: Any) -> Any:
        if value not in options or not isinstance(value, str):
            listed = ", ".join(repr(o) for o in options)
            hint = _closest(value, options) if isinstance(value, str) else None
            extra = f"; did you mean {hint!r}?" if hint else ""
            _fail(f"must be one of {listed} (got {_show(value)}{extra})")
        return value

    return BeforeValidator(check)


Positive = Annotated[float, BeforeValidator(_number), _range(gt=0)]
NonNegative = Annotated[float, BeforeValidator(_number), _range(ge=0)]
Ratio = Annotated[float, BeforeValidator(_number), _range(gt=0, le=1)]
Flag = Annotated[bool, BeforeValidator(_flag)]

Mode = Literal["async", "sync"]
ReturnType = Literal["url", "base64"]
OnAmbiguous = Literal["resubmit", "fail"]
LogFormat = Literal["auto", "console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
Anchor = Literal["center", "top", "bottom", "left", "right"]
MaskFit = Literal["exact", "scale"]
OutputFormat = Literal["keep", "jpeg", "png", "webp"]
WatchMode = Literal["auto", "poll"]

_ASPECT = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")
_FOLDER_NAME = re.compile(r"[a-z0-9_-]+")


def _aspect(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 3:1 as the base-60 number 181: say so, it is a trap.
        _fail(
            f'must be quoted, like aspect: "3:1" (got the number {value}: '
            "YAML reads an unquoted W:H as a base-60 number)"
        )
    if isinstance(value, list | tuple) and len(value) == 2:
        pair = [_whole_or_none(v) for v in value]
    elif isinstance(value, str) and (m := _ASPECT.fullmatch(value)):
        pair = [int(m.group(1)), int(m.group(2))]
    else:
        pair = []
    if len(pair) != 2 or any(v is None or v <= 0 for v in pair):
        _fail(f'must be "W:H" with two whole numbers > 0, like "3:1" (got {_show(value)})')
    return (pair[0], pair[1])


def _whole_or_none(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _size(value: Any) -> Any:
    if value is None:
        return None
    ok = isinstance(value, list | tuple) and len(value) == 2
    pair = [_whole_or_none(v) for v in value] if ok else []
    if not ok or any(v is None or v < 1 for v in pair):
        _fail(f"must be [W, H], two whole numbers of pixels ≥ 1 (got {_show(value)})")
    return (pair[0], pair[1])


def _base_url(value: Any) -> Any:
    _text(value)
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        _fail(f"must be an http(s) URL like https://techhk.aoscdn.com (got {_show(value)})")
    return value.rstrip("/")


def _folder_name(value: Any) -> Any:
    _text(value)
    if not _FOLDER_NAME.fullmatch(value):
        _fail(f"must use only a-z, 0-9, '_' and '-' (got {_show(value)})")
    return value


def _mask(value: Any) -> Any:
    if value is None or value == SIDECAR or isinstance(value, Path):
        return value
    if isinstance(value, str) and value.strip():
        return Path(value)
    _fail(f"must be the path of a mask image or 'sidecar' (got {_show(value)})")
    return None  # unreachable: _fail raises


def _patterns(value: Any) -> Any:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        _fail(f'must be a list of glob patterns, like ["*-draft.*"] (got {_show(value)})')
    return tuple(value)


def _prompt(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        _fail(f"must be a non-empty string, or left out (got {_show(value)})")
    return value


def _template(value: Any) -> Any:
    _text(value)
    try:
        # The outbox owns the template rules; rendering once with sample values finds a bad
        # template at `watchd check` time instead of at the first finished job.
        render_name(value, stem="photo", ext=".jpg", name="photo.jpg", folder="f", job="1", dir="")
    except TemplateError as exc:
        _fail(str(exc))
    return value


# --- models ---------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApiConfig(_Frozen):
    """How to talk to the PicWish API. The key is not here: see `load_api_key`."""

    base_url: Annotated[str, BeforeValidator(_base_url)] = "https://techhk.aoscdn.com"
    key_file: Path | None = None
    qps: Positive = 2.0
    mode: Annotated[Mode, _one_of(Mode)] = "async"
    return_type: Annotated[ReturnType, _one_of(ReturnType)] = "url"
    max_in_flight: Annotated[int, BeforeValidator(_whole), _range(ge=1)] = 16
    request_timeout: Positive = 30.0
    poll_interval: Positive = 1.0
    task_timeout: Positive = 180.0
    on_ambiguous: Annotated[OnAmbiguous, _one_of(OnAmbiguous)] = "resubmit"


class RetryConfig(_Frozen):
    max_attempts: Annotated[int, BeforeValidator(_whole), _range(ge=1)] = 5
    base_delay: Positive = 2.0
    max_delay: Positive = 300.0

    @field_validator("max_delay")
    @classmethod
    def _not_below_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("base_delay")
        if base is not None and value < base:
            _fail(f"must be ≥ base_delay, {_num_text(base)} (got {_num_text(value)})")
        return value


class LogConfig(_Frozen):
    format: Annotated[LogFormat, _one_of(LogFormat)] = "auto"
    level: Annotated[LogLevel, _one_of(LogLevel)] = "info"


class Expand(_Frozen):
    """Four-side expansion ratios, fractions of the original's sides, each in (0, 1]."""

    top: Ratio = 0.1
    bottom: Ratio = 0.1
    left: Ratio = 0.1
    right: Ratio = 0.1


class Target(_Frozen):
    """A shape per image: `aspect` and/or `size` (which must agree), a margin, an anchor."""

    aspect: Annotated[tuple[int, int] | None, BeforeValidator(_aspect)] = None
    size: Annotated[tuple[int, int] | None, BeforeValidator(_size)] = None
    margin: Ratio = 0.05
    anchor: Annotated[Anchor, _one_of(Anchor)] = "center"

    @model_validator(mode="after")
    def _shape(self) -> "Target":
        if self.aspect is None and self.size is None:
            raise PydanticCustomError(
                "target_shape", 'needs aspect: "W:H" or size: [W, H] (or both)'
            )
        if self.aspect and self.size and _reduce(self.aspect) != _reduce(self.size):
            w, h = _reduce(self.size)
            a, b = self.aspect
            raise PydanticCustomError(
                "target_shape",
                "{detail}",
                {
                    "detail": f'aspect "{a}:{b}" and size {list(self.size)} disagree '
                    f"(the size is {w}:{h})"
                },
            )
        return self

    @property
    def ratio(self) -> tuple[int, int]:
        """The aspect reduced to lowest terms: "6:2" and size [3000, 1000] are both (3, 1)."""
        shape = self.aspect or self.size
        assert shape is not None  # the validator guarantees one of them
        return _reduce(shape)


def _reduce(pair: tuple[int, int]) -> tuple[int, int]:
    d = gcd(*pair)
    return (pair[0] // d, pair[1] // d)


class FolderConfig(_Frozen):
    """One watched folder, fully resolved: absolute paths, preset and defaults merged."""

    name: Annotated[str, BeforeValidator(_folder_name)]
    inbox: Path
    outbox: Path
    done: Path
    failed: Path
    preset: Annotated[str | None, BeforeValidator(lambda v: v if v is None else _text(v))] = None
    expand: Expand | None = None
    target: Target | None = None
    mask: Annotated[Path | Literal["sidecar"] | None, BeforeValidator(_mask)] = None
    mask_fit: Annotated[MaskFit, _one_of(MaskFit)] = "exact"
    sidecar_wait: NonNegative = 60.0
    fit: Flag = False
    output_format: Annotated[OutputFormat, _one_of(OutputFormat)] = "keep"
    quality: Annotated[int, BeforeValidator(_whole), _range(ge=1, le=100)] = 90
    prompt: Annotated[str | None, BeforeValidator(_prompt)] = None
    # Sane ranges from the API doc: strength [0, 1] (0 keeps the source), scale [1, 20],
    # steps a positive count (30 by default; more only costs time), seed -1 (random) or a
    # 32-bit value.
    strength: Annotated[float | None, BeforeValidator(_number), _range(ge=0, le=1)] = None
    scale: Annotated[float | None, BeforeValidator(_number), _range(ge=1, le=20)] = None
    steps: Annotated[int | None, BeforeValidator(_whole), _range(ge=1, le=100)] = None
    seed: Annotated[int | None, BeforeValidator(_whole), _range(ge=-1, le=2**32 - 1)] = None
    recursive: Flag = False
    watch: Annotated[WatchMode, _one_of(WatchMode)] = "auto"
    settle: NonNegative = 1.0
    rescan_interval: Positive = 300.0
    ignore: Annotated[tuple[str, ...], BeforeValidator(_patterns)] = ()
    output: Annotated[str, BeforeValidator(_template)] = "{stem}{ext}"

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("expand") is None and data.get("target") is None:
            data["expand"] = {}
        inbox = data.get("inbox")
        if isinstance(inbox, str | Path):
            for key in ("done", "failed"):
                if data.get(key) is None:
                    data[key] = _beside(Path(inbox), key)
        return data

    @model_validator(mode="after")
    def _one_shape(self) -> "FolderConfig":
        # load_config reports these at the user's key paths before validating; this guards
        # folders built directly in code.
        if self.expand is not None and self.target is not None:
            raise PydanticCustomError("folder_shape", "target and expand cannot both be set")
        if self.target is not None and self.mask is not None:
            raise PydanticCustomError("folder_shape", "target cannot be combined with mask")
        return self


def _beside(inbox: Path, name: str) -> Path:
    return inbox.parent / name


class Config(_Frozen):
    """The whole config file, resolved. `presets` keeps the preset maps as written."""

    path: Path
    api: ApiConfig = Field(default_factory=ApiConfig)
    state_dir: Path
    retry: RetryConfig = Field(default_factory=RetryConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    folders: tuple[FolderConfig, ...]
    http: HttpConfig = Field(default_factory=HttpConfig, description="The dashboard.")


TOP_KEYS = ("api", "state_dir", "retry", "log", "presets", "defaults", "folders", "http")
FOLDER_KEYS = tuple(FolderConfig.model_fields)
_PATH_KEYS = ("inbox", "outbox", "done", "failed")
_MAP_KEYS = {"expand": tuple(Expand.model_fields), "target": tuple(Target.model_fields)}
_SECTIONS: dict[str, type[BaseModel]] = {
    "api": ApiConfig,
    "retry": RetryConfig,
    "log": LogConfig,
    "http": HttpConfig,
}

# Where a key probably belongs when it is written one level off.
_TOP_HINTS = (
    {k: f"{s}.{k}" for s, m in _SECTIONS.items() for k in m.model_fields}
    | {k: f"folders[].{k}' or 'defaults.{k}" for k in FOLDER_KEYS}
    | {"name": "folders[].name"}
)
_FOLDER_HINTS = {k: f"{m}: {{{k}: ...}}" for m, keys in _MAP_KEYS.items() for k in keys}


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
    problem = None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = (
            f"config file not found; to start, copy {EXAMPLE_CONFIG} (and config/masks/) "
            f"to {path} and edit it, or pass --config PATH"
        )
    except IsADirectoryError:
        problem = "is a folder, not a config file"
    except PermissionError:
        problem = "cannot read the config file: permission denied"
    except UnicodeDecodeError as exc:
        problem = f"is not UTF-8 text ({exc.reason} at byte {exc.start})"
    else:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = _yaml_message(exc)
    raise ConfigError([ConfigIssue(str(path), "", problem)])


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"YAML syntax error: {problem}"
    return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"


# --- loading --------------------------------------------------------------------------------


def load_config(path: Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate the config file; raise `ConfigError` listing every problem.

    `env` supplies `$STATE_DIRECTORY` (the default state_dir under systemd); default os.environ.
    """
    env = os.environ if env is None else env
    path = Path(path)
    raw = _read(path)
    issues = _Issues(str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        issues.add("", f"must be a map of settings (api, folders, ...), got {_show(raw)}")
        raise ConfigError(issues.items)
    base = path.absolute().parent
    raw = _known_keys(raw, TOP_KEYS, "", issues, _TOP_HINTS)

    sections = {name: _section(raw, name, model, base, issues) for name, model in _SECTIONS.items()}
    state_dir = _state_dir(raw.get("state_dir"), base, env, issues)
    presets = _presets(raw.get("presets"), issues)
    defaults = _layer(raw.get("defaults"), "defaults", issues, "defaults") or {}
    folders = _folders(raw.get("folders"), defaults, presets, base, issues)
    if issues:
        raise ConfigError(issues.items)
    return Config(
        path=path.absolute(),
        api=sections["api"],
        state_dir=state_dir,
        retry=sections["retry"],
        log=sections["log"],
        presets=presets,
        folders=tuple(folders),
        http=sections["http"],
    )


def _join(prefix: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def _known_keys(
    data: dict[Any, Any],
    allowed: Iterable[str],
    prefix: str,
    issues: _Issues,
    hints: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`data` without the keys that are not in `allowed`, each of those reported."""
    allowed = tuple(allowed)
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key in allowed:
            kept[key] = value
            continue
        message = f"unknown key {_show(key)}"
        hint = _closest(key, allowed) if isinstance(key, str) else None
        if hint is None and hints and isinstance(key, str):
            hint = hints.get(key)
        if hint:
            message += f" (did you mean '{hint}'?)"
        issues.add(_join(prefix, key if isinstance(key, str) else _show(key)), message)
    return kept


def _section(
    raw: dict[str, Any], name: str, model: type[BaseModel], base: Path, issues: _Issues
) -> Any:
    value = raw.get(name)
    if value is None:
        return model()
    if not isinstance(value, dict):
        issues.add(name, f"must be a map of settings (got {_show(value)})")
        return None
    value = _known_keys(value, model.model_fields, name, issues)
    skip: set[str] = set()
    if value.get("key_file") is not None:
        resolved = _path_value(value["key_file"], base, f"{name}.key_file", issues)
        if resolved is not None and _looks_like_a_key(value["key_file"], resolved):
            issues.add(
                f"{name}.key_file",
                "looks like the API key itself, not a file path (value not shown); put the key "
                "in a file readable only by watchd and give its path here",
            )
            resolved = None
        if resolved is None:
            skip.add("key_file")
        value["key_file"] = resolved
    try:
        return model.model_validate(value, context={"base": base})
    except ValidationError as exc:
        for err in exc.errors():
            if err["loc"] and err["loc"][0] in skip:
                continue
            issues.add(_loc_text(name, err["loc"]), _message(err))
    return None


def _looks_like_a_key(written: str, path: Path) -> bool:
    """A pasted key instead of a path: one long token, no folder, no extension, no such file.

    Every message and `describe()` would otherwise echo it back as a file name.
    """
    token = re.fullmatch(r"[A-Za-z0-9_-]{20,}", written.strip())
    return bool(token) and any(c.isdigit() for c in written) and not path.exists()


def _loc_text(prefix: str, loc: Iterable[Any]) -> str:
    for part in loc:
        prefix = _join(prefix, part)
    return prefix


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind in ("watchd", "target_shape", "folder_shape"):
        return str(err["msg"])
    if kind == "missing":
        return "is required"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a map of settings (got {_show(err.get('input'))})"
    if kind == "path_type":
        return f"must be a path (got {_show(err.get('input'))})"
    return str(err["msg"])


_placeholder = re.compile(r"\{[^{}]*\}")


def _path_value(
    value: Any, base: Path, where: str, issues: _Issues, folder: str | None = None
) -> Path | None:
    """A path as written → absolute: `~` expanded, relative to the config file's folder.

    In a folder's paths (`folder` given, "" when its name is invalid) `{name}` is the folder
    name and any other `{...}` is a typo worth reporting.
    """
    if not isinstance(value, str) or not value.strip():
        issues.add(where, f"must be a path (got {_show(value)})")
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


def _state_dir(value: Any, base: Path, env: Mapping[str, str], issues: _Issues) -> Path:
    if value is not None:
        return _path_value(value, base, "state_dir", issues) or base / ".watchd"
    if env.get("STATE_DIRECTORY"):
        # systemd joins several StateDirectory= entries with ':'; the first is ours.
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    return base / ".watchd"


def _presets(value: Any, issues: _Issues) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        issues.add("presets", f"must be a map of preset names to settings (got {_show(value)})")
        return {}
    presets: dict[str, dict[str, Any]] = {}
    for name, body in value.items():
        if not isinstance(name, str):
            issues.add("presets", f"preset names must be strings (got {_show(name)})")
            continue
        layer = _layer(body, f"presets.{name}", issues, "a preset")
        if layer is not None:
            presets[name] = layer
            _check_alone(layer, f"presets.{name}", issues)
    return presets


def _layer(value: Any, src: str, issues: _Issues, kind: str) -> dict[str, Any] | None:
    """One map of folder keys as written, its unknown keys and same-map conflicts reported."""
    if value is None:
        return None
    if not isinstance(value, dict):
        issues.add(src, f"must be a map of folder settings (got {_show(value)})")
        return None
    layer = _known_keys(value, FOLDER_KEYS, src, issues, _FOLDER_HINTS)
    if kind != "folder" and "name" in layer:
        issues.add(_join(src, "name"), f"cannot be set in {kind}: each folder names itself")
        del layer["name"]
    if kind == "a preset" and "preset" in layer:
        issues.add(_join(src, "preset"), "a preset cannot use another preset")
        del layer["preset"]
    for key, allowed in _MAP_KEYS.items():
        if isinstance(layer.get(key), dict):
            layer[key] = _known_keys(layer[key], allowed, _join(src, key), issues)
    if layer.get("target") is not None and layer.get("expand") is not None:
        issues.add(
            _join(src, "target"),
            "cannot be used together with expand in the same map: target sets a shape per "
            "image, expand sets fixed ratios; keep one",
        )
        del layer["expand"]  # keep target, so its own mistakes are still reported
    return layer


def _check_alone(layer: dict[str, Any], src: str, issues: _Issues) -> None:
    """Validate the values of a preset on its own, so a preset no folder uses is checked too.

    Paths and masks are checked once merged into a folder (they need the folder's name);
    shape rules that need the other layers are left out here.
    """
    probe = {k: v for k, v in layer.items() if k not in (*_PATH_KEYS, "mask")}
    probe |= {"name": "probe", "inbox": Path("/"), "outbox": Path("/")}
    try:
        FolderConfig.model_validate(probe)
    except ValidationError as exc:
        for err in exc.errors():
            if err["type"] in ("target_shape", "folder_shape") or not err["loc"]:
                continue
            issues.add(_loc_text(src, err["loc"]), _message(err))


@dataclass
class _Draft:
    """A folder on its way to a FolderConfig: the merged map and where each key came from."""

    src: str
    name: str | None
    data: dict[str, Any]
    prov: dict[tuple[str, ...], str]
    bad: set[str] = field(default_factory=set)  # keys already reported, left out of checks

    def where(self, loc: tuple[Any, ...]) -> str:
        """The user's key path for a location in the merged map."""
        for n in (2, 1):
            head = tuple(loc[:n])
            if len(head) == n and head in self.prov:
                return _loc_text(self.prov[head], loc[n:])
        return _loc_text(self.src, loc)

    def path(self, key: str) -> Path | None:
        value = self.data.get(key)
        return value if isinstance(value, Path) and key not in self.bad else None


def _merge(layers: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[Any, str]]:
    merged: dict[str, Any] = {}
    prov: dict[tuple[str, ...], str] = {}

    def drop(key: str) -> None:
        merged.pop(key, None)
        for k in [k for k in prov if k[0] == key]:
            del prov[k]

    for src, layer in layers:
        # A layer's own target replaces an inherited expand, and the other way round.
        if layer.get("target") is not None:
            drop("expand")
        if layer.get("expand") is not None:
            drop("target")
        for key, value in layer.items():
            here = _join(src, key)
            if value is None:  # `key: null` = back to the built-in default
                drop(key)
                continue
            if key not in _MAP_KEYS or not isinstance(value, dict):
                drop(key)
                merged[key] = value
                prov[(key,)] = here
                continue
            inner = dict(merged[key]) if isinstance(merged.get(key), dict) else {}
            if not isinstance(merged.get(key), dict):
                drop(key)
            for sub, sub_value in value.items():
                if sub_value is None:
                    inner.pop(sub, None)
                    prov.pop((key, sub), None)
                else:
                    inner[sub] = sub_value
                    prov[(key, sub)] = _join(here, sub)
            merged[key] = inner
            prov[(key,)] = here
    return merged, prov


def _folders(
    value: Any,
    defaults: dict[str, Any],
    presets: dict[str, dict[str, Any]],
    base: Path,
    issues: _Issues,
) -> list[FolderConfig]:
    if value is None or value == []:
        issues.add("folders", "no folders configured: add at least one under folders:")
        return []
    if not isinstance(value, list):
        issues.add("folders", f"must be a list of folders (got {_show(value)})")
        return []
    drafts = []
    for i, entry in enumerate(value):
        src = _join("folders", i)
        layer = _layer(entry, src, issues, "folder")
        if layer is not None:
            drafts.append(_draft(src, layer, defaults, presets, base, issues))
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
                issues.add(draft.where(err["loc"]), _message(err))
    return built


def _draft(
    src: str,
    layer: dict[str, Any],
    defaults: dict[str, Any],
    presets: dict[str, dict[str, Any]],
    base: Path,
    issues: _Issues,
) -> _Draft:
    name = layer.get("name") if isinstance(layer.get("name"), str) else None
    layers = [("defaults", defaults)]
    preset_name, preset_src = None, ""
    if "preset" in layer:
        preset_name, preset_src = layer["preset"], _join(src, "preset")
    elif "preset" in defaults:
        preset_name, preset_src = defaults["preset"], "defaults.preset"
    if preset_name is not None:
        if isinstance(preset_name, str) and preset_name in presets:
            layers.append((f"presets.{preset_name}", presets[preset_name]))
        elif isinstance(preset_name, str):
            hint = _closest(preset_name, presets)
            known = (
                f"did you mean '{hint}'?"
                if hint
                else (
                    "defined: " + ", ".join(sorted(presets))
                    if presets
                    else "no presets are defined"
                )
            )
            issues.add(preset_src, f"unknown preset {_show(preset_name)} ({known})")
    layers.append((src, layer))
    data, prov = _merge(layers)
    draft = _Draft(src, name, data, prov)

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
            data.setdefault(key, _beside(inbox, key))
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


def _check_across(drafts: list[_Draft], issues: _Issues) -> None:
    """Names unique; no inbox shared; nothing written into any inbox or a recursive one."""
    names: dict[str, _Draft] = {}
    for d in drafts:
        if d.name is not None:
            if d.name in names:
                issues.add(
                    _join(d.src, "name"),
                    f"{_show(d.name)} is already the name of {names[d.name].src}",
                )
            else:
                names[d.name] = d

    def label(d: _Draft) -> str:
        return f"folder {_show(d.name)}" if d.name else d.src

    inboxes = [(d, p) for d in drafts if (p := d.path("inbox")) is not None]
    for n, (d, inbox) in enumerate(inboxes):
        for other, other_inbox in inboxes[:n]:
            if inbox == other_inbox:
                issues.add(d.where(("inbox",)), f"{inbox} is also the inbox of {label(other)}")
        for other, other_inbox in inboxes:
            if (
                other is not d
                and other.data.get("recursive") is True
                and inbox != other_inbox
                and inbox.is_relative_to(other_inbox)
            ):
                issues.add(
                    d.where(("inbox",)), f"{inbox} is inside the recursive inbox of {label(other)}"
                )
    for d in drafts:
        for key in ("outbox", "done", "failed"):
            p = d.path(key)
            if p is None:
                continue
            for other, other_inbox in inboxes:
                whose = "this folder's own inbox" if other is d else f"the inbox of {label(other)}"
                if p == other_inbox:
                    issues.add(d.where((key,)), f"{p} is {whose}")
                elif other.data.get("recursive") is True and p.is_relative_to(other_inbox):
                    issues.add(
                        d.where((key,)),
                        f"{p} is inside the recursive inbox of "
                        f"{label(other)}: its files would be taken as new input",
                    )


# --- the API key ----------------------------------------------------------------------------


def _key_lookup(cfg: Config, env: Mapping[str, str]) -> tuple[str | None, str, Path | None]:
    """(key, where it comes from, the file it was read from). Raises ConfigError on a bad file."""
    if cfg.api.key_file is not None:
        key = _read_key(cfg.api.key_file, str(cfg.path), "api.key_file", required=True)
        return key, f"from {cfg.api.key_file}", cfg.api.key_file
    if env.get("CREDENTIALS_DIRECTORY"):
        path = Path(env["CREDENTIALS_DIRECTORY"]) / "api-key"
        key = _read_key(path, str(cfg.path), "", required=False)
        if key:
            return key, f"from $CREDENTIALS_DIRECTORY/api-key ({path})", path
    key = env.get("WATCHD_API_KEY", "").strip()
    if key:
        return key, "from $WATCHD_API_KEY", None
    return None, "missing", None


def _read_key(path: Path, file: str, where: str, *, required: bool) -> str | None:
    # Messages name the file, never its content.
    def fail(message: str) -> ConfigError:
        return ConfigError([ConfigIssue(file, where, message)])

    try:
        if not path.is_file():
            if not required and not path.exists():
                return None
            raise fail(f"API key file {path} does not exist or is not a regular file")
        with path.open("rb") as f:
            data = f.read(_KEY_FILE_LIMIT + 1)
    except PermissionError:
        raise fail(f"cannot read API key file {path}: permission denied") from None
    except OSError as exc:
        raise fail(f"cannot read API key file {path}: {exc.strerror}") from None
    if len(data) > _KEY_FILE_LIMIT:
        raise fail(f"API key file {path} is too large to hold an API key")
    try:
        key = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise fail(f"API key file {path} is not text") from None
    if not key:
        if required:
            raise fail(f"API key file {path} is empty")
        return None
    return key


def load_api_key(cfg: Config, env: Mapping[str, str] | None = None) -> str | None:
    """The API key: `api.key_file`, else `$CREDENTIALS_DIRECTORY/api-key`, else `$WATCHD_API_KEY`.

    Whitespace is stripped; None when there is none. A configured `key_file` that cannot be
    read (missing, unreadable, empty) raises ConfigError rather than silently falling back.
    """
    return _key_lookup(cfg, os.environ if env is None else env)[0]


def key_file_warnings(cfg: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """Warnings about the key file in use, e.g. one that group or others may read."""
    env = os.environ if env is None else env
    try:
        _, _, path = _key_lookup(cfg, env)
    except ConfigError:
        return []  # load_api_key reports that one
    if path is None:
        return []
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return []
    if mode & 0o077:
        return [
            f"API key file {path} is accessible by group or others (mode {mode:04o}); "
            f"run `chmod 600 {path}`"
        ]
    return []


# --- describe -------------------------------------------------------------------------------


def describe(cfg: Config, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resolved settings as JSON-able data for `watchd check`; the key only as its source."""
    try:
        _, where, _ = _key_lookup(cfg, os.environ if env is None else env)
    except ConfigError as exc:
        where = "missing: " + "; ".join(issue.message for issue in exc.issues)
    api = cfg.api.model_dump(mode="json")
    api["key"] = where
    return {
        "config": str(cfg.path),
        "api": api,
        "state_dir": str(cfg.state_dir),
        "retry": cfg.retry.model_dump(mode="json"),
        "log": cfg.log.model_dump(mode="json"),
        "http": cfg.http.model_dump(mode="json"),
        "folders": [_describe_folder(f) for f in cfg.folders],
    }


def _describe_folder(folder: FolderConfig) -> dict[str, Any]:
    data = folder.model_dump(mode="json")
    if folder.target is not None:
        t = folder.target
        data["target"]["aspect"] = f"{t.aspect[0]}:{t.aspect[1]}" if t.aspect else None
        data["target"]["ratio"] = f"{t.ratio[0]}:{t.ratio[1]}"
    return data
