"""The config file's models: every key, its type, default, allowed values and description.

Owns the declarations and the rules of single values (a quoted "W:H", a folder name, an output
template) and of one model's keys together (a target's aspect and size agree). `watchd.config`
loads a file into these models; the JSON Schema and docs/config.md are drawn from them, so a
field declared here with a `description` is documented everywhere at once.

Never does: read files or the environment, or know where a value was written; messages at key
paths are `watchd.config`'s job.

Adding a section: declare a `Settings` model here and give `Config` a field of that type with a
default. Loading, hints for misplaced keys, path resolution, `describe()`, the JSON Schema and
docs/config.md pick it up from there.
"""

import re
from math import gcd
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from watchd import spend
from watchd.notifications import NotifyTarget
from watchd.outbox import TemplateError, render_name
from watchd.params import Expand, ImageParams, Settings
from watchd.web.config import HttpConfig

__all__ = [
    "MERGED_MAPS",
    "SECTIONS",
    "ApiConfig",
    "Config",
    "Expand",
    "FolderConfig",
    "ImageParams",
    "LogConfig",
    "RetryConfig",
    "Settings",
    "Target",
    "beside_inbox",
    "bounds",
    "model_types",
    "number_text",
    "submodel",
]

SIDECAR = "sidecar"
FOLDER_NAME = re.compile(r"[a-z0-9_-]+")
_ASPECT = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")


def number_text(x: float) -> str:
    """2.0 as "2", 0.5 as "0.5": numbers as a person writes them."""
    return str(int(x)) if float(x).is_integer() else str(x)


# --- values that need more than a type and a range ------------------------------------------


def _shape_error(message: str) -> PydanticCustomError:
    # Its own type: a preset checked alone skips shape rules the folder may still satisfy.
    # The message travels in the context so that braces in it are never formatted.
    return PydanticCustomError("shape", "{detail}", {"detail": message})


def _pair(value: Any, rule: str) -> tuple[int, int]:
    pair = isinstance(value, list | tuple) and len(value) == 2
    if pair and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return (value[0], value[1])
    raise ValueError(rule)


def _aspect(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            'must be quoted, like aspect: "3:1", because YAML reads an unquoted W:H as a '
            "base-60 number"
        )
    if isinstance(value, str) and (m := _ASPECT.fullmatch(value)):
        value = (int(m.group(1)), int(m.group(2)))
    return _pair(value, 'must be "W:H" with two whole numbers > 0, like "3:1"')


def _size(value: Any) -> tuple[int, int]:
    return _pair(value, "must be [W, H], two whole numbers of pixels ≥ 1")


def _base_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        raise ValueError("must be an http(s) URL like https://techhk.aoscdn.com")
    return value.rstrip("/")


def _folder_name(value: str) -> str:
    if not FOLDER_NAME.fullmatch(value):
        raise ValueError("must use only a-z, 0-9, '_' and '-'")
    return value


def _patterns(value: Any) -> Any:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError('must be a list of glob patterns, like ["*-draft.*"]')
    return tuple(value)


def _template(value: str) -> str:
    try:
        # The outbox owns the template rules; rendering once with sample values finds a bad
        # template at `watchd check` time instead of at the first finished job.
        render_name(value, stem="photo", ext=".jpg", name="photo.jpg", folder="f", job="1", dir="")
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    return value


# Two whole numbers ≥ 1, as YAML writes them: [W, H].
_PAIR = {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2}
_RATIO_TEXT = {"type": "string", "pattern": r"^\s*\d+\s*:\s*\d+\s*$", "examples": ["3:1"]}
Aspect = Annotated[
    tuple[int, int], BeforeValidator(_aspect), WithJsonSchema({"anyOf": [_RATIO_TEXT, _PAIR]})
]
Size = Annotated[tuple[int, int], BeforeValidator(_size), WithJsonSchema(_PAIR)]


# --- the models -----------------------------------------------------------------------------


class ApiConfig(Settings):
    """How watchd talks to the PicWish API. The API key itself is never in the config."""

    base_url: Annotated[str, AfterValidator(_base_url)] = Field(
        "https://techhk.aoscdn.com",
        description="Where the API answers; the demo points it at the bundled simulator.",
    )
    key_file: Path | None = Field(
        None,
        description="File holding the API key, readable by watchd only; when unset the key "
        "comes from $CREDENTIALS_DIRECTORY/api-key, else $WATCHD_API_KEY.",
    )
    qps: float = Field(
        2.0, gt=0, description="The account's requests per second, shared by every API call."
    )
    mode: Literal["async", "sync"] = Field(
        "async",
        description="async creates a task, then polls it; sync has the create wait for the "
        "result (one request a task).",
    )
    return_type: Literal["url", "base64"] = Field(
        "url",
        description="url: results are downloaded from a link valid for an hour; base64: the "
        "result comes inside the answer.",
    )
    max_in_flight: int = Field(
        16, ge=1, description="Tasks submitted and not yet finished, over all folders."
    )
    request_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds one HTTP request may take (a sync create waits up to task_timeout).",
    )
    poll_interval: float = Field(
        1.0, gt=0, description="Seconds between polls of one task while the budget has room."
    )
    task_timeout: float = Field(
        180.0, gt=0, description="Seconds after which an unfinished task is given up."
    )
    max_creates_per_day: spend.Cap = Field(None, description=spend.ACCOUNT_DAY_CAP)
    max_creates_per_month: spend.Cap = Field(None, description=spend.ACCOUNT_MONTH_CAP)
    timezone: spend.TimezoneName = Field(None, description=spend.TIMEZONE)
    on_ambiguous: Literal["resubmit", "fail"] = Field(
        "resubmit",
        description="A create cut off by a crash may or may not exist: resubmit it (at most one "
        "extra charge) or fail it.",
    )


class RetryConfig(Settings):
    """How transient failures (5xx, 429, timeouts) are retried."""

    max_attempts: int = Field(5, ge=1, description="Tries per job for transient failures.")
    base_delay: float = Field(
        2.0, gt=0, description="Seconds before the first retry; doubles each time, with jitter."
    )
    max_delay: float = Field(300.0, gt=0, description="The longest wait between tries, seconds.")

    @field_validator("max_delay")
    @classmethod
    def _not_below_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("base_delay")
        if base is not None and value < base:
            raise ValueError(f"must be ≥ base_delay ({number_text(base)})")
        return value


class LogConfig(Settings):
    """What the log looks like (it goes to stderr) and how much of it there is."""

    format: Literal["auto", "console", "json"] = Field(
        "auto",
        description="console on a terminal and JSON lines otherwise (auto), or always one of them.",
    )
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="The least severe level logged."
    )


class Target(Settings):
    """A shape per image: `aspect` and/or `size` (which must agree), a margin, an anchor."""

    aspect: Aspect | None = Field(
        None, description='The shape to reach, "W:H" (quoted), like "1:1" or "3:1".'
    )
    size: Size | None = Field(
        None, description="Exact output size [W, H] in pixels; the aspect is then W:H."
    )
    margin: float = Field(
        0.05, gt=0, le=1, description="Expansion every side gets, a fraction of the original's."
    )
    anchor: Literal["center", "top", "bottom", "left", "right"] = Field(
        "center", description="The side the original stays against; the rest goes opposite."
    )

    @model_validator(mode="after")
    def _shape(self) -> "Target":
        if self.aspect is None and self.size is None:
            raise _shape_error('needs aspect: "W:H" or size: [W, H] (or both)')
        if self.aspect and self.size and _reduce(self.aspect) != _reduce(self.size):
            w, h = _reduce(self.size)
            a, b = self.aspect
            raise _shape_error(
                f'aspect "{a}:{b}" and size {list(self.size)} disagree (the size is {w}:{h})'
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


def beside_inbox(inbox: Path, name: str) -> Path:
    """Where done/ and failed/ are when the config does not say."""
    return inbox.parent / name


class _FolderFiles(Settings):
    """Where a folder's files are and what is asked of the API for them."""

    name: Annotated[str, AfterValidator(_folder_name)] = Field(
        description="The folder's unique name, used in logs, the ledger and `{name}` in paths.",
        json_schema_extra={"pattern": f"^{FOLDER_NAME.pattern}$"},
    )
    inbox: Path = Field(description="Where images are dropped (here, in defaults or a preset).")
    outbox: Path = Field(description="Where the expanded images are written.")
    done: Path = Field(
        description="Where originals go after success.",
        json_schema_extra={"x-default": "done/ beside the inbox"},
    )
    failed: Path = Field(
        description="Where originals go after a permanent failure, each with NAME.error.json.",
        json_schema_extra={"x-default": "failed/ beside the inbox"},
    )
    preset: str | None = Field(None, description="A preset whose keys this folder starts from.")
    expand: Expand | None = Field(
        None, description="Four-side expansion ratios; the default unless target or mask is set."
    )
    target: Target | None = Field(
        None, description="A shape reached per image instead of fixed ratios (never with expand)."
    )
    mask: Path | Literal["sidecar"] | None = Field(
        None,
        description="Canvas mode: a PNG or JPEG mask for every image, or sidecar for "
        "NAME.mask.png dropped beside NAME.jpg.",
    )
    mask_fit: Literal["exact", "scale"] = Field(
        "exact", description="exact: mask and image sizes must match; scale: the mask is resized."
    )
    sidecar_wait: float = Field(
        60.0, ge=0, description="Seconds an image waits for its sidecar mask before it fails."
    )
    fit: bool = Field(
        False, description="Downscale and re-encode oversized photos to the API's limits first."
    )
    output_format: Literal["keep", "jpeg", "png", "webp"] = Field(
        "keep", description="The format written to the outbox; keep leaves the API's own."
    )
    quality: int = Field(90, ge=1, le=100, description="Quality of jpeg and webp outputs.")
    output: Annotated[str, AfterValidator(_template)] = Field(
        "{stem}{ext}",
        description="Name template in the outbox: {stem}, {ext}, {name}, {folder}, {job}, {dir}.",
    )


class FolderConfig(ImageParams, _FolderFiles):
    """One watched folder. Once loaded: absolute paths, its preset and defaults merged."""

    recursive: bool = Field(False, description="Also watch the subfolders of the inbox.")
    watch: Literal["auto", "poll"] = Field(
        "auto", description="auto: inotify, polling on network mounts; poll: always polling."
    )
    settle: float = Field(
        1.0, ge=0, description="Seconds a file must stay unchanged before it is taken."
    )
    rescan_interval: float = Field(
        300.0, gt=0, description="Seconds between safety rescans of the inbox."
    )
    ignore: Annotated[tuple[str, ...], BeforeValidator(_patterns)] = Field(
        (), description="Extra glob patterns to leave alone (junk files always are)."
    )
    max_creates_per_day: spend.Cap = Field(None, description=spend.FOLDER_DAY_CAP)

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("expand") is None and data.get("target") is None:
            data["expand"] = {}
        if isinstance(inbox := data.get("inbox"), Path):
            for key in ("done", "failed"):
                if data.get(key) is None:
                    data[key] = beside_inbox(inbox, key)
        return data

    @model_validator(mode="after")
    def _one_shape(self) -> "FolderConfig":
        # load_config reports these at the user's key paths before validating; this guards
        # folders built directly in code.
        if self.expand is not None and self.target is not None:
            raise _shape_error("target and expand cannot both be set")
        if self.target is not None and self.mask is not None:
            raise _shape_error("target cannot be combined with mask")
        return self


class Config(Settings):
    """The whole config file. Once loaded `presets` keeps the preset maps as written."""

    path: Path = Field(description="The config file itself.")
    api: ApiConfig = Field(default_factory=ApiConfig)
    state_dir: Path = Field(
        description="Folder of the job ledger (watchd.db) and the lock.",
        json_schema_extra={"x-default": "$STATE_DIRECTORY, else .watchd/ beside this file"},
    )
    retry: RetryConfig = Field(default_factory=RetryConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    presets: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named maps of folder keys; a folder picks one with preset: NAME.",
    )
    folders: tuple[FolderConfig, ...] = Field(description="The watched folders.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="The dashboard.")
    notify: tuple[NotifyTarget, ...] = Field(
        (), description="Where to send notifications: a list of {url | url_file, on: [...]}."
    )


def model_types(annotation: Any) -> list[Any]:
    """The types a field may hold, unions and Annotated unwrapped: `Expand | None` gives
    [Expand, NoneType]."""
    if get_origin(annotation) is Annotated:
        return model_types(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [t for arg in get_args(annotation) for t in model_types(arg)]
    return [annotation]


def submodel(info: FieldInfo) -> type[Settings] | None:
    """The config model a field holds (`expand` → Expand), or a list of (`folders` →
    FolderConfig); None for a plain value."""
    found = model_types(info.annotation)
    found += [t for f in found if get_origin(f) in (tuple, list) for t in get_args(f)]
    return next((t for t in found if isinstance(t, type) and issubclass(t, Settings)), None)


def bounds(info: FieldInfo) -> str:
    """A field's numeric range in words, "> 0 and ≤ 1"; "" when it has none."""
    signs = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    return " and ".join(
        f"{sign} {number_text(limit)}"
        for rule in info.metadata
        for name, sign in signs.items()
        if (limit := getattr(rule, name, None)) is not None
    )


# Folder keys whose maps merge key by key across defaults, a preset and the folder.
MERGED_MAPS: dict[str, type[Settings]] = {"expand": Expand, "target": Target}
# Top-level keys that hold a map of settings (`api:`) or a list of them, loaded alike; the
# others have loading rules of their own.
SECTIONS: dict[str, type[Settings]] = {
    name: model
    for name, info in Config.model_fields.items()
    if name not in ("path", "state_dir", "presets", "folders", "notify")
    and (model := submodel(info))
}
