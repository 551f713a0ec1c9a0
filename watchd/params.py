"""The PicWish API's optional body parameters, declared once, and the base of config models.

Owns the names, types and ranges of what a job may send besides the image, the mask and the
mode flags: the four expansion ratios (`Expand`, a folder's `expand:` map) and the generation
settings (`ImageParams`: prompt, strength, scale, steps, seed, flat keys of a folder). The
config's folder model is built from these classes, intake copies their values into a job, and
the client refuses any name not in `API_PARAMS`. The ranges are the API doc's.

Never does: I/O. It knows nothing of folders, files or the config file.
"""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["API_PARAMS", "Expand", "ImageParams", "Settings"]


class Settings(BaseModel):
    """The base of every config model: frozen, unknown keys refused, and no coercion.

    Strict, because YAML's `true` is not a number to the person who wrote it, and a quoted
    "2" is a typo worth naming rather than guessing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


Ratio = Annotated[float, Field(gt=0, le=1)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string, or left out")
    return value


class Expand(Settings):
    """Four-side expansion ratios: fractions of the original's sides, each in (0, 1]."""

    top: Ratio = Field(0.1, description="Expansion above the image, a fraction of its height.")
    bottom: Ratio = Field(0.1, description="Expansion below the image, a fraction of its height.")
    left: Ratio = Field(0.1, description="Expansion left of the image, a fraction of its width.")
    right: Ratio = Field(0.1, description="Expansion right of the image, a fraction of its width.")


class ImageParams(Settings):
    """Generation settings sent with every create; one left out gets the API's default."""

    prompt: Annotated[str, AfterValidator(_not_blank)] | None = Field(
        None,
        description="Text that guides what the API paints in the new area (kept short; the "
        "API reviews it).",
    )
    strength: float | None = Field(
        None,
        ge=0,
        le=1,
        description="How far the result may move from the source towards the prompt; 0 keeps "
        "it almost unchanged.",
    )
    scale: float | None = Field(
        None, ge=1, le=20, description="Prompt guidance scale (the API's default is 7)."
    )
    steps: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Sampling steps (the API's default is 30); more may look finer and take "
        "longer.",
    )
    seed: int | None = Field(
        None,
        ge=-1,
        le=2**32 - 1,
        description="Random seed; -1, the API's default, picks one at random, a fixed one "
        "makes results repeatable.",
    )


# Every optional body parameter a create may carry, in the order the API doc lists them.
API_PARAMS: tuple[str, ...] = (*Expand.model_fields, *ImageParams.model_fields)
