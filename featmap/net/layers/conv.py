"""Convolution layers: `Conv2d` (plain, grouped, depthwise; weights from a kernel bank or a tensor) and
`Conv1d`, each with its plan (geometry, parameters, MACs) and its forward pass.

Examples
--------
>>> import numpy as np
>>> layer = Conv2d(1, 3, padding="same")
>>> x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
>>> delta = np.zeros((1, 1, 3, 3), np.float32); delta[0, 0, 1, 1] = 1
>>> y = layer.forward(x, layer.plan(x.shape), {"weight": delta})
>>> bool(np.array_equal(y, x))
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from featmap.core.engine import correlate
from featmap.core.geometry import PaddingArg, as_pair, conv_macs, conv_params, resolve_padding
from featmap.enums import PaddingMode, parse_enum
from featmap.errors import ShapeError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.net.layers.base import (
    DEFAULT_CONTEXT,
    Array,
    LayerPlan,
    RunContext,
    Shape,
    Weights,
    as_planes,
    explain_axes,
    fmt_int,
    from_planes,
    need_spatial,
    spatial_geometry,
    stride_notes,
)

if TYPE_CHECKING:
    from featmap.kernels import KernelBank

__all__ = ["Conv1d", "Conv2d", "check_padding_form", "positive"]


def check_padding_form(padding: PaddingArg) -> PaddingArg:
    """Validate the padding form now (sizes are not needed for that) and return it hashable."""
    resolve_padding(padding, (1, 1), (1, 1))
    return padding if isinstance(padding, (str, int)) else tuple(padding)


def positive(value: object, what: str) -> int:
    """``value`` as a whole number >= 1, or a `SpecError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"`{what}`", f"must be a whole number >= 1; got {value!r}")
    return value


def _correlate(
    x: Array, plan: LayerPlan, weights: Weights, pad_mode: PaddingMode, pad_value: float, flip: bool
) -> Array:
    """The forward pass shared by 1-D and 2-D convolutions: the plan's geometry straight to the engine."""
    assert plan.geometry is not None  # every conv plan has one
    bank = np.asarray(weights["weight"])
    if bank.ndim == 3:  # Conv1d: (O, I/groups, k) is a column kernel
        bank = bank[..., np.newaxis]
    if flip:
        bank = bank[:, :, ::-1, ::-1]
    bank = np.ascontiguousarray(bank, dtype=x.dtype)
    bias = weights.get("bias")
    out = correlate(as_planes(x), bank, plan.geometry, plan.groups, pad_mode, pad_value, bias=bias)
    return from_planes(out, plan.in_shape)


@frozen_dataclass
class Conv2d:
    """A 2-D convolution (cross-correlation, as PyTorch and Keras); ``filters`` and ``kernel`` may be None
    when a kernel ``bank`` supplies them.

    ``depthwise=True`` sets ``groups`` to the input channels and ``filters`` to the input channels times
    ``filters`` (a channel multiplier, 1 when None) once the input is known. With a ``bank`` of 2-D kernels,
    each kernel is one filter whose slices over the C input channels all equal it, summed (the CNN reading);
    with ``depthwise=True`` each kernel filters every channel on its own instead.
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
    bank: KernelBank | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "stride", as_pair(self.stride, "stride"))
        set_(self, "dilation", as_pair(self.dilation, "dilation"))
        set_(self, "padding", check_padding_form(self.padding))
        set_(self, "pad_mode", parse_enum(PaddingMode, self.pad_mode, "pad_mode"))
        if self.kernel is not None:
            set_(self, "kernel", as_pair(self.kernel, "kernel"))
        if self.filters is not None:
            positive(self.filters, "filters")
        if isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 1:
            raise SpecError("`groups`", f"must be >= 1; got {self.groups}")
        if self.bank is not None:
            self._take_bank(self.bank)

    def _take_bank(self, bank: KernelBank) -> None:
        sizes = {k.size for k in bank}
        if len(bank) == 0:
            raise SpecError("kernels:", "is empty", "name at least one kernel")
        if len(sizes) > 1:
            listed = ", ".join(f"{k.name} {k.size[0]}x{k.size[1]}" for k in bank)
            raise SpecError(
                "kernels:",
                f"one conv layer needs kernels of one size; got {listed}",
                "give them one size (e.g. gabor:size=3,theta=45) or put each size in a conv layer of its own",
            )
        size = sizes.pop()
        if self.kernel is not None and self.kernel != size:
            raise SpecError("`kernel`", f"is {self.kernel} but the kernels are {size}", "drop `kernel`")
        if self.filters is not None and self.filters != len(bank) and not self.depthwise:
            raise SpecError("`filters`", f"is {self.filters} but {len(bank)} kernels are named", "drop `filters`")
        if self.groups != 1:
            raise SpecError(
                "kernels:",
                f"a conv layer of named kernels takes no groups; got {self.groups}",
                "drop groups (depthwise: true filters each channel on its own)",
            )
        if self.depthwise and any(k.per_channel for k in bank):
            raise SpecError("kernels:", "a depthwise layer takes 2-D kernels", "drop depthwise")
        set_ = object.__setattr__
        set_(self, "kernel", size)
        set_(self, "filters", len(bank))
        set_(self, "bias", any(k.bias is not None for k in bank))

    def channels(self, c_in: int) -> tuple[int, int, str]:
        """``(filters, groups, kind)`` on ``c_in`` input channels."""
        if self.depthwise:
            return c_in * (self.filters or 1), c_in, "DepthwiseConv2d"
        if self.filters is None:
            raise ShapeError("", "conv has no filter count", "give one, e.g. conv:16@3x3")
        return self.filters, self.groups, "Conv2d"

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """Output shape, padding per side, parameters and MACs on ``(H, W, C)``."""
        need_spatial(in_shape, "conv2d", 2)
        if self.kernel is None:
            raise ShapeError("", "conv has no kernel size", "give one, e.g. conv:16@3x3")
        filters, groups, kind = self.channels(in_shape[-1])
        return _conv_plan(
            kind,
            self.name,
            in_shape,
            batch,
            filters,
            groups,
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
            self.bias,
        )

    def bank_weights(self, channels: int) -> dict[str, Array]:
        """The weight (and bias) tensors made from the kernel ``bank`` for ``channels`` input channels."""
        if self.bank is None:
            raise SpecError("kernels:", "this layer names no kernels")
        kernels = list(self.bank)
        kh, kw = kernels[0].size
        if self.depthwise:  # filter c·N + n applies kernel n to channel c
            per = np.stack([k.weights for k in kernels])
            weight = np.tile(per, (channels, 1, 1))[:, np.newaxis]
        else:
            slices = []
            for k in kernels:
                if k.per_channel and k.weights.shape[0] != channels:
                    raise ShapeError(
                        f"kernel {k.name!r}",
                        f"has {k.weights.shape[0]} channel slices but the layer's input has {channels} channels",
                        "give one slice per input channel, or a 2-D kernel",
                    )
                slices.append(k.weights if k.per_channel else np.broadcast_to(k.weights, (channels, kh, kw)))
            weight = np.stack(slices)
        out: dict[str, Array] = {"weight": np.ascontiguousarray(weight, dtype=np.float32)}
        if self.bias:
            values = [k.bias or 0.0 for k in kernels]
            out["bias"] = np.array(np.tile(values, channels) if self.depthwise else values, dtype=np.float32)
        return out

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Cross-correlate ``x`` with ``weights["weight"]`` (+ ``bias``) on the plan's geometry."""
        return _correlate(x, plan, weights, self.pad_mode, self.pad_value, self.flip)


@frozen_dataclass
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
            positive(getattr(self, key), key)
        if not isinstance(self.padding, (str, int)) and len(tuple(self.padding)) != 2:
            raise SpecError("`padding`", f"a 1-D padding is N or (before, after); got {self.padding!r}")
        object.__setattr__(self, "padding", check_padding_form(self.padding))

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """Output shape, padding, parameters and MACs on ``(L, C)``."""
        need_spatial(in_shape, "conv1d", 1)
        return _conv_plan(
            "Conv1d",
            self.name,
            in_shape,
            batch,
            self.filters,
            self.groups,
            (self.kernel,),
            (self.stride,),
            self.padding,
            (self.dilation,),
            self.bias,
        )

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Cross-correlate ``(L, C)`` with ``weights["weight"]`` of shape ``(O, C/groups, k)``."""
        return _correlate(x, plan, weights, PaddingMode.ZEROS, 0.0, False)


def _conv_plan(
    kind: str,
    name: str | None,
    shape: Shape,
    batch: int,
    filters: int,
    groups: int,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: PaddingArg,
    dilation: tuple[int, ...],
    bias: bool,
) -> LayerPlan:
    n = len(shape) - 1
    c_in = shape[-1]
    if c_in % groups or filters % groups:
        raise ShapeError(
            "",
            f"groups={groups} must divide the input channels ({c_in}) and the filters ({filters})",
            "change groups or the channel counts",
        )
    g = spatial_geometry(shape, kernel, stride, padding, dilation)
    out = (*g.out_hw[:n], filters)
    k2 = (g.kernel_hw[0], g.kernel_hw[1])
    params = conv_params(k2, c_in, filters, groups=groups, bias=bias)
    macs = conv_macs(k2, c_in, filters, g.out_hw, groups=groups) * batch
    ks = "·".join(str(k) for k in kernel)
    plus_bias = f" + {filters}" if bias else ""
    explain = (
        *explain_axes(g, n),
        f"params: {ks}·{c_in // groups}·{filters}{plus_bias} = {fmt_int(params)}",
        f"MACs: {ks}·{c_in // groups}·{filters}·{'·'.join(map(str, g.out_hw[:n]))}"
        + (f"·{batch}" if batch > 1 else "")
        + f" = {fmt_int(macs)}",
    )
    weights: tuple[tuple[str, Shape], ...] = (("weight", (filters, c_in // groups, *kernel)),)
    if bias:
        weights += (("bias", (filters,)),)
    return LayerPlan(
        kind,
        name or kind.lower(),
        shape,
        out,
        params=params,
        macs=macs,
        geometry=g,
        field="window",
        kernel=tuple(kernel),
        stride=g.stride[:n],
        padding=g.padding[: 2 * n],
        dilation=g.dilation[:n],
        groups=groups,
        weights=weights,
        detail=f"groups={groups}" if groups > 1 else "",
        warnings=stride_notes(g, n, kind),
        explain=explain,
    )
