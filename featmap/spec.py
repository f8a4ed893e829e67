"""Layer specifications: validated, frozen descriptions of layers that both `featmap apply` and the
shape calculator run.

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

__all__ = ["Act", "Conv2d", "GlobalPool2d", "LayerSpec", "Pool2d"]


def _check_padding(padding: PaddingArg) -> PaddingArg:
    """Validate the padding form now (sizes are not needed for that) and return it hashable."""
    resolve_padding(padding, (1, 1), (1, 1))
    return padding if isinstance(padding, (str, int)) else tuple(padding)


@dataclass(frozen=True)
class Conv2d:
    """A 2-D convolution; ``filters`` and ``kernel`` may be None when the weights supply them."""

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_enum(PoolKind, self.kind, "global pool"))


@dataclass(frozen=True)
class Act:
    """An element-wise activation with its parameters (``leaky_relu`` takes ``slope``)."""

    name: Activation = Activation.NONE
    params: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", parse_enum(Activation, self.name, "activation"))
        object.__setattr__(self, "params", tuple(sorted(dict(self.params).items())))


LayerSpec = Conv2d | Pool2d | GlobalPool2d | Act
