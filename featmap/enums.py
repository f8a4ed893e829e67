"""String enums for every option with a fixed vocabulary; the CLI builds its choices from these."""

from __future__ import annotations

from enum import Enum, unique
from typing import TypeVar

from featmap.errors import SpecError

__all__ = [
    "Activation",
    "Combine",
    "Normalize",
    "PaddingMode",
    "PoolKind",
    "parse_enum",
]


class _StrEnum(str, Enum):
    """A ``str`` enum whose ``str()`` is its value (``enum.StrEnum`` needs Python 3.11)."""

    def __str__(self) -> str:
        return str(self.value)


@unique
class PaddingMode(_StrEnum):
    """How a border is filled (PyTorch's names plus ``symmetric``).

    ============  ============  =============  ===============  ==================  ===========
    featmap       numpy.pad     scipy.ndimage  OpenCV           PyTorch ``F.pad``   ImageMagick
    ============  ============  =============  ===============  ==================  ===========
    zeros         constant      constant       BORDER_CONSTANT  constant            Background
    reflect       reflect       mirror         BORDER_REFLECT_101  reflect          (none)
    symmetric     symmetric     reflect        BORDER_REFLECT   (none)              Mirror
    replicate     edge          nearest        BORDER_REPLICATE replicate           Edge
    circular      wrap          wrap           BORDER_WRAP      circular            Tile
    ============  ============  =============  ===============  ==================  ===========
    """

    ZEROS = "zeros"
    REFLECT = "reflect"
    SYMMETRIC = "symmetric"
    REPLICATE = "replicate"
    CIRCULAR = "circular"


#: Other libraries' names accepted where they mean one thing only.
PADDING_ALIASES: dict[str, PaddingMode] = {
    "constant": PaddingMode.ZEROS,
    "zero": PaddingMode.ZEROS,
    "border_constant": PaddingMode.ZEROS,
    "background": PaddingMode.ZEROS,
    "reflect_101": PaddingMode.REFLECT,
    "reflect101": PaddingMode.REFLECT,
    "border_reflect_101": PaddingMode.REFLECT,
    "border_reflect101": PaddingMode.REFLECT,
    "border_reflect": PaddingMode.SYMMETRIC,
    "grid-mirror": PaddingMode.SYMMETRIC,
    "edge": PaddingMode.REPLICATE,
    "nearest": PaddingMode.REPLICATE,
    "border_replicate": PaddingMode.REPLICATE,
    "wrap": PaddingMode.CIRCULAR,
    "grid-wrap": PaddingMode.CIRCULAR,
    "tile": PaddingMode.CIRCULAR,
    "border_wrap": PaddingMode.CIRCULAR,
}

#: Names that mean different edges in different libraries: refused with a pointer.
AMBIGUOUS_PADDING: dict[str, str] = {
    "mirror": "scipy's `mirror` is `reflect` (cb|abc) but ImageMagick's Mirror is `symmetric` (cba|abc)",
}


@unique
class PoolKind(_StrEnum):
    """Pooling reductions."""

    MAX = "max"
    AVG = "avg"
    MIN = "min"


@unique
class Activation(_StrEnum):
    """Element-wise activations applied after the bias."""

    NONE = "none"
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    RELU6 = "relu6"
    ABS = "abs"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    SILU = "silu"
    HARDSWISH = "hardswish"
    HARDSIGMOID = "hardsigmoid"
    GELU = "gelu"


@unique
class Normalize(_StrEnum):
    """How a float map becomes pixel values in a PNG."""

    MINMAX = "minmax"
    CLIP = "clip"
    ABS = "abs"
    SYMMETRIC = "symmetric"
    PERCENTILE = "percentile"


@unique
class Combine(_StrEnum):
    """How several maps are merged into one extra map."""

    MAGNITUDE = "magnitude"
    MAX = "max"


E = TypeVar("E", bound="_StrEnum")


def parse_enum(enum: type[E], value: object, what: str) -> E:
    """Return ``value`` as a member of ``enum``, accepting aliases for padding modes.

    Examples
    --------
    >>> parse_enum(PaddingMode, "edge", "pad_mode")
    <PaddingMode.REPLICATE: 'replicate'>
    """
    if isinstance(value, enum):
        return value
    text = str(value).strip().lower().replace(" ", "_")
    try:
        return enum(text)
    except ValueError:
        pass
    if enum is PaddingMode:
        if text in PADDING_ALIASES:
            return enum(PADDING_ALIASES[text].value)
        if text in AMBIGUOUS_PADDING:
            raise SpecError(
                what,
                f"{value!r} is ambiguous: {AMBIGUOUS_PADDING[text]}",
                "use `reflect` or `symmetric`",
            )
    choices = ", ".join(m.value for m in enum)
    raise SpecError(what, f"unknown value {value!r}", f"use one of: {choices}")
