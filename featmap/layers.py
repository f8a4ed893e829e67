"""Layer specifications: validated, frozen descriptions of layers that both `featmap apply` and the
shape calculator (`featmap.summary`) use. `featmap.spec` parses text and files into these.

Examples
--------
>>> Conv2d(stride=2, padding="same").stride
(2, 2)
>>> Pool2d("max", 2).stride
(2, 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .enums import Activation, PaddingMode, PoolKind, parse_enum
from .errors import SpecError
from .shapes import PaddingArg, as_pair, resolve_padding

__all__ = [
    "Act",
    "AdaptiveAvgPool2d",
    "BatchNorm",
    "Conv1d",
    "Conv2d",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalPool2d",
    "LayerSpec",
    "Parallel",
    "Pool2d",
    "Sequential",
]


def _check_padding(padding: PaddingArg) -> PaddingArg:
    """Validate the padding form now (sizes are not needed for that) and return it hashable."""
    resolve_padding(padding, (1, 1), (1, 1))
    return padding if isinstance(padding, (str, int)) else tuple(padding)


@dataclass(frozen=True)
class Conv2d:
    """A 2-D convolution; ``filters`` and ``kernel`` may be None when the weights supply them.

    ``depthwise=True`` sets ``groups`` to the input channels and ``filters`` to the input channels
    times ``filters`` (a channel multiplier, 1 when None) once the input is known.
    """

    filters: int | None = None
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] = (1, 1)
    padding: PaddingArg = "valid"
    pad_mode: PaddingMode = PaddingMode.ZEROS
    pad_value: float = 0.0
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True
    flip: bool = False
    name: str | None = None
    depthwise: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "stride", as_pair(self.stride, "stride"))
        set_(self, "dilation", as_pair(self.dilation, "dilation"))
        set_(self, "padding", _check_padding(self.padding))
        set_(self, "pad_mode", parse_enum(PaddingMode, self.pad_mode, "pad_mode"))
        if self.kernel is not None:
            set_(self, "kernel", as_pair(self.kernel, "kernel"))
        if self.filters is not None and (isinstance(self.filters, bool) or self.filters < 1):
            raise SpecError("`filters`", f"must be >= 1; got {self.filters}")
        if isinstance(self.groups, bool) or self.groups < 1:
            raise SpecError("`groups`", f"must be >= 1; got {self.groups}")


@dataclass(frozen=True)
class Pool2d:
    """Max, average or min pooling over ``size`` windows; ``stride`` defaults to ``size``."""

    kind: PoolKind = PoolKind.MAX
    size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None
    padding: PaddingArg = "valid"
    count_include_pad: bool = False
    ceil_mode: bool = False
    name: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "kind", parse_enum(PoolKind, self.kind, "pool"))
        set_(self, "size", as_pair(self.size, "pool size"))
        set_(self, "stride", self.size if self.stride is None else as_pair(self.stride, "pool stride"))
        set_(self, "padding", _check_padding(self.padding))


@dataclass(frozen=True)
class GlobalPool2d:
    """Global average, max or min pooling: H and W become 1."""

    kind: PoolKind = PoolKind.AVG
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_enum(PoolKind, self.kind, "global pool"))


@dataclass(frozen=True)
class Act:
    """An element-wise activation with its parameters (``leaky_relu`` takes ``slope``)."""

    kind: Activation = Activation.NONE
    params: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_enum(Activation, self.kind, "activation"))
        object.__setattr__(self, "params", tuple(sorted(dict(self.params).items())))


def _positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"`{what}`", f"must be a whole number >= 1; got {value!r}")
    return value


@dataclass(frozen=True)
class Conv1d:
    """A 1-D convolution over ``(L, C)``."""

    filters: int
    kernel: int
    stride: int = 1
    padding: PaddingArg = "valid"
    dilation: int = 1
    groups: int = 1
    bias: bool = True
    name: str | None = None

    def __post_init__(self) -> None:
        for key in ("filters", "kernel", "stride", "dilation", "groups"):
            _positive(getattr(self, key), key)
        if not isinstance(self.padding, (str, int)) and len(tuple(self.padding)) != 2:
            raise SpecError("`padding`", f"a 1-D padding is N or (before, after); got {self.padding!r}")
        object.__setattr__(self, "padding", _check_padding(self.padding))


@dataclass(frozen=True)
class AdaptiveAvgPool2d:
    """Average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d``."""

    output: tuple[int, int] = (1, 1)
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", as_pair(self.output, "adaptive pool output"))


@dataclass(frozen=True)
class Flatten:
    """Flatten everything but the batch into one axis (row-major over H, W, C)."""

    name: str | None = None


@dataclass(frozen=True)
class Dense:
    """A fully connected layer over the last axis."""

    units: int
    bias: bool = True
    name: str | None = None

    def __post_init__(self) -> None:
        _positive(self.units, "units")


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation over the channels: 2C trainable (scale, shift), 2C running statistics."""

    name: str | None = None


@dataclass(frozen=True)
class Dropout:
    """Dropout; changes nothing at inference and has no parameters."""

    rate: float = 0.5
    name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0 <= self.rate < 1:
            raise SpecError("`dropout`", f"rate must be in [0, 1); got {self.rate!r}")


@dataclass(frozen=True)
class Sequential:
    """Layers applied one after another (a named block, a repeated block, a residual branch)."""

    layers: tuple[LayerSpec, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))


@dataclass(frozen=True)
class Parallel:
    """Branches fed the same input, merged by ``add`` (residual) or ``concat`` (Inception, on channels).

    An empty branch is the identity (a plain residual shortcut).
    """

    branches: tuple[Sequential, ...]
    merge: str = "add"
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", tuple(self.branches))
        if self.merge not in ("add", "concat"):
            raise SpecError("`merge`", f"must be add or concat; got {self.merge!r}")
        if len(self.branches) < 2:
            raise SpecError("`branches`", f"a merge needs two or more branches; got {len(self.branches)}")


LayerSpec = (
    Conv2d
    | Conv1d
    | Pool2d
    | GlobalPool2d
    | AdaptiveAvgPool2d
    | Act
    | Flatten
    | Dense
    | BatchNorm
    | Dropout
    | Sequential
    | Parallel
)
