"""Shapes, parameters, multiply-adds, receptive fields and memory of a layer stack, without running it.

`summarize` walks `featmap.layers` objects with the integer arithmetic of `featmap.shapes` and returns
frozen `LayerInfo` rows and `Totals`; `featmap.render` turns them into tables, JSON or Markdown.

Examples
--------
>>> from featmap.spec import parse_tokens
>>> s = summarize(parse_tokens(["conv:6@5x5", "avgpool:2"]), (32, 32, 3))
>>> [(row.out_shape, row.params) for row in s.layers]
[((28, 28, 6), 456), ((14, 14, 6), 0)]
>>> s.totals.params, s.totals.macs
(456, 352800)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import FeatmapError, ShapeError
from .layers import (
    Act,
    AdaptiveAvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GlobalPool2d,
    LayerSpec,
    Parallel,
    Pool2d,
    Sequential,
)
from .shapes import ConvGeometry, conv_geometry, conv_macs, conv_params, pool_geometry

__all__ = ["LayerInfo", "ReceptiveField", "Summary", "Totals", "summarize"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ReceptiveField:
    """What one output pixel sees, per spatial axis (rows, cols; one axis for 1-D).

    ``size`` input pixels wide, neighbouring outputs ``jump`` input pixels apart, the first output's
    field centred on input coordinate ``start`` (pixel centres at 0, 1, …; negative means padding).
    """

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]


@dataclass(frozen=True)
class LayerInfo:
    """The facts of one layer (or of a container: a block, a branch, a merge).

    ``params`` and ``non_trainable`` of a container are the sums over the layers inside it; the
    totals add up the leaf layers only. ``receptive_field`` is None once a layer sees the whole input
    (flatten, dense, global pooling).
    """

    path: str
    name: str
    kind: str
    depth: int
    in_shape: Shape
    out_shape: Shape
    params: int = 0
    non_trainable: int = 0
    macs: int = 0
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    receptive_field: ReceptiveField | None = None
    memory: int = 0
    container: bool = False
    detail: str = ""
    warnings: tuple[str, ...] = ()
    explain: tuple[str, ...] = ()


@dataclass(frozen=True)
class Totals:
    """Sums over the leaf layers; bytes at the summary's dtype size."""

    params: int
    trainable: int
    non_trainable: int
    macs: int
    flops: int
    param_bytes: int
    activation_bytes: int


@dataclass(frozen=True)
class Summary:
    """Every row in display order, the input and the totals."""

    input_shape: Shape
    batch: int
    layers: tuple[LayerInfo, ...]
    totals: Totals
    dtype_bytes: int = 4
    warnings: tuple[str, ...] = field(default=())


def _fmt(n: int) -> str:
    return f"{n:,}"


_KIND = {"max": "MaxPool", "avg": "AvgPool", "min": "MinPool"}


class _Walker:
    def __init__(self, batch: int, dtype_bytes: int) -> None:
        self.rows: list[LayerInfo] = []
        self.batch = batch
        self.dtype_bytes = dtype_bytes

    def memory(self, shape: Shape) -> int:
        return math.prod(shape) * self.batch * self.dtype_bytes

    def sequence(
        self, layers: Sequence[LayerSpec], shape: Shape, rf: ReceptiveField | None, depth: int, prefix: str
    ) -> tuple[Shape, ReceptiveField | None]:
        for index, layer in enumerate(layers, start=1):
            shape, rf = self.layer(layer, shape, rf, depth, f"{prefix}{index}")
        return shape, rf

    def container(self, slot: int, info: LayerInfo) -> None:
        inside = [r for r in self.rows[slot:] if not r.container]
        self.rows.insert(
            slot,
            LayerInfo(
                **{
                    **info.__dict__,
                    "params": sum(r.params for r in inside),
                    "non_trainable": sum(r.non_trainable for r in inside),
                    "macs": sum(r.macs for r in inside),
                    "container": True,
                },
            ),
        )

    def layer(
        self, layer: LayerSpec, shape: Shape, rf: ReceptiveField | None, depth: int, path: str
    ) -> tuple[Shape, ReceptiveField | None]:
        label = f"layer {path} ({getattr(layer, 'name', None) or type(layer).__name__.lower()})"
        try:
            return self._layer(layer, shape, rf, depth, path, label)
        except FeatmapError as exc:
            if exc.what.startswith("layer "):
                raise
            raise ShapeError(
                label, f"{exc.what.strip('`')}: {exc.problem}" if exc.what else exc.problem, exc.fix
            ) from None

    def _layer(
        self, layer: LayerSpec, shape: Shape, rf: ReceptiveField | None, depth: int, path: str, label: str
    ) -> tuple[Shape, ReceptiveField | None]:
        if isinstance(layer, Sequential):
            slot = len(self.rows)
            out, out_rf = self.sequence(layer.layers, shape, rf, depth + 1, f"{path}.")
            self.container(
                slot,
                LayerInfo(path, layer.name or "block", "Sequential", depth, shape, out, receptive_field=out_rf),
            )
            return out, out_rf
        if isinstance(layer, Parallel):
            return self.parallel(layer, shape, rf, depth, path, label)
        if isinstance(layer, (Conv2d, Conv1d)):
            return self.conv(layer, shape, rf, depth, path)
        if isinstance(layer, Pool2d):
            return self.pool(layer, shape, rf, depth, path)
        name = layer.name
        if isinstance(layer, (Act, Dropout)):
            kind = "Dropout" if isinstance(layer, Dropout) else layer.kind.value
            detail = f"p={layer.rate:g}" if isinstance(layer, Dropout) else ""
            self.rows.append(
                LayerInfo(
                    path,
                    name or kind.lower(),
                    kind,
                    depth,
                    shape,
                    shape,
                    receptive_field=rf,
                    memory=self.memory(shape),
                    detail=detail,
                )
            )
            return shape, rf
        if isinstance(layer, BatchNorm):
            channels = shape[-1]
            self.rows.append(
                LayerInfo(
                    path,
                    name or "bn",
                    "BatchNorm",
                    depth,
                    shape,
                    shape,
                    params=2 * channels,
                    non_trainable=2 * channels,
                    receptive_field=rf,
                    memory=self.memory(shape),
                    explain=(f"params: 2·{channels} (scale, shift) trainable + 2·{channels} (running mean, var) not",),
                ),
            )
            return shape, rf
        if isinstance(layer, Flatten):
            out = (math.prod(shape),)
            self.rows.append(
                LayerInfo(
                    path,
                    name or "flatten",
                    "Flatten",
                    depth,
                    shape,
                    out,
                    memory=self.memory(out),
                    explain=(f"{'·'.join(map(str, shape))} = {_fmt(out[0])}",),
                )
            )
            return out, None
        if isinstance(layer, Dense):
            return self.dense(layer, shape, depth, path)
        if isinstance(layer, GlobalPool2d):
            self.need_spatial(shape, "global pooling")
            out = (1,) * (len(shape) - 1) + (shape[-1],)
            kind = f"Global{_KIND[layer.kind.value]}"
            self.rows.append(LayerInfo(path, name or kind.lower(), kind, depth, shape, out, memory=self.memory(out)))
            return out, None
        if isinstance(layer, AdaptiveAvgPool2d):
            return self.adaptive(layer, shape, rf, depth, path)
        raise ShapeError(label, f"unsupported layer {layer!r}")  # pragma: no cover - all types handled

    @staticmethod
    def need_spatial(shape: Shape, what: str, dims: int | None = None) -> None:
        if len(shape) < 2 or (dims is not None and len(shape) != dims + 1):
            wanted = {2: "HxWxC", 1: "LxC"}.get(dims or 0, "HxWxC or LxC")
            raise ShapeError(
                "",
                f"{what} needs a {wanted} input but gets {'×'.join(map(str, shape))}",
                "check --input, or remove the flatten/dense before it",
            )

    def geometry(
        self,
        shape: Shape,
        kernel: Sequence[int],
        stride: Sequence[int],
        padding: object,
        dilation: Sequence[int],
        *,
        pool: bool = False,
        ceil_mode: bool = False,
    ) -> ConvGeometry:
        """Geometry on the spatial axes; a 1-D input is treated as a column of width 1."""
        if len(shape) == 2:
            pad = padding
            if isinstance(padding, int):
                pad = (padding, padding, 0, 0)
            elif isinstance(padding, tuple) and len(padding) == 2:
                pad = (padding[0], padding[1], 0, 0)
            in_hw, k, s, d = (shape[0], 1), (kernel[0], 1), (stride[0], 1), (dilation[0], 1)
        else:
            pad, in_hw = padding, (shape[0], shape[1])
            k, s, d = (kernel[0], kernel[-1]), (stride[0], stride[-1]), (dilation[0], dilation[-1])
        if pool:
            return pool_geometry(in_hw, k, stride=s, padding=pad, ceil_mode=ceil_mode)  # type: ignore[arg-type]
        return conv_geometry(in_hw, k, stride=s, padding=pad, dilation=d)  # type: ignore[arg-type]

    @staticmethod
    def axes(shape: Shape) -> int:
        return len(shape) - 1

    def advance(self, rf: ReceptiveField | None, g: ConvGeometry, n: int) -> ReceptiveField | None:
        if rf is None:
            return None
        size, jump, start = [], [], []
        for a in range(n):
            k_eff = g.dilation[a] * (g.kernel_hw[a] - 1) + 1
            before = g.padding[2 * a]
            size.append(rf.size[a] + (k_eff - 1) * rf.jump[a])
            start.append(rf.start[a] + ((k_eff - 1) / 2 - before) * rf.jump[a])
            jump.append(rf.jump[a] * g.stride[a])
        return ReceptiveField(tuple(size), tuple(jump), tuple(start))

    def spatial_notes(self, g: ConvGeometry, n: int, what: str) -> tuple[str, ...]:
        text = g.dropped_text(n)
        return () if text is None else (f"{what}: {text} unused",)

    def explain_axes(self, g: ConvGeometry, n: int) -> list[str]:
        lines: list[str] = []
        labels = ("H", "W") if n == 2 else ("L",)
        for a in range(n):
            if (
                a == 1
                and g.in_hw[0] == g.in_hw[1]
                and g.padding[:2] == g.padding[2:]
                and g.kernel_hw[0] == g.kernel_hw[1]
                and g.stride[0] == g.stride[1]
                and g.dilation[0] == g.dilation[1]
            ):
                lines[-1] = lines[-1].replace("H:", "H, W:", 1)
                break
            pads = g.padding[2 * a] + g.padding[2 * a + 1]
            lines.append(
                f"{labels[a]}: floor(({g.in_hw[a]} + {pads} - {g.dilation[a]}·({g.kernel_hw[a]} - 1) - 1)"
                f" / {g.stride[a]}) + 1"
                f" = {g.out_hw[a]}"
            )
        return lines

    def conv(
        self, layer: Conv2d | Conv1d, shape: Shape, rf: ReceptiveField | None, depth: int, path: str
    ) -> tuple[Shape, ReceptiveField | None]:
        one_d = isinstance(layer, Conv1d)
        self.need_spatial(shape, "conv1d" if one_d else "conv2d", 1 if one_d else 2)
        n = self.axes(shape)
        c_in = shape[-1]
        kernel: tuple[int, ...]
        stride: tuple[int, ...]
        dilation: tuple[int, ...]
        if isinstance(layer, Conv1d):
            kernel, stride, dilation = (layer.kernel,), (layer.stride,), (layer.dilation,)
            filters, groups, kind = layer.filters, layer.groups, "Conv1d"
        else:
            if layer.kernel is None:
                raise ShapeError("", "conv has no kernel size", "give one, e.g. conv:16@3x3")
            kernel, stride, dilation = layer.kernel, layer.stride, layer.dilation
            groups, kind = layer.groups, "Conv2d"
            if layer.depthwise:
                groups, filters, kind = c_in, c_in * (layer.filters or 1), "DepthwiseConv2d"
            elif layer.filters is None:
                raise ShapeError("", "conv has no filter count", "give one, e.g. conv:16@3x3")
            else:
                filters = layer.filters
        if c_in % groups or filters % groups:
            raise ShapeError(
                "",
                f"groups={groups} must divide the input channels ({c_in}) and the filters ({filters})",
                "change groups or the channel counts",
            )
        g = self.geometry(shape, kernel, stride, layer.padding, dilation)
        out = (*g.out_hw[:n], filters)
        params = conv_params((g.kernel_hw[0], g.kernel_hw[1]), c_in, filters, groups=groups, bias=layer.bias)
        macs = conv_macs((g.kernel_hw[0], g.kernel_hw[1]), c_in, filters, g.out_hw, groups=groups) * self.batch
        ks = "·".join(str(k) for k in kernel)
        bias = f" + {filters}" if layer.bias else ""
        explain = [
            *self.explain_axes(g, n),
            f"params: {ks}·{c_in // groups}·{filters}{bias} = {_fmt(params)}",
            f"MACs: {ks}·{c_in // groups}·{filters}·{'·'.join(map(str, g.out_hw[:n]))}"
            + (f"·{self.batch}" if self.batch > 1 else "")
            + f" = {_fmt(macs)}",
        ]
        self.rows.append(
            LayerInfo(
                path,
                layer.name or kind.lower(),
                kind,
                depth,
                shape,
                out,
                params=params,
                macs=macs,
                kernel=tuple(kernel),
                stride=g.stride[:n],
                padding=g.padding[: 2 * n],
                dilation=g.dilation[:n],
                receptive_field=self.advance(rf, g, n),
                memory=self.memory(out),
                detail=f"groups={groups}" if groups > 1 else "",
                warnings=self.spatial_notes(g, n, kind),
                explain=tuple(explain),
            )
        )
        return out, self.advance(rf, g, n)

    def pool(
        self, layer: Pool2d, shape: Shape, rf: ReceptiveField | None, depth: int, path: str
    ) -> tuple[Shape, ReceptiveField | None]:
        self.need_spatial(shape, "pooling")
        n = self.axes(shape)
        g = self.geometry(
            shape,
            layer.size,
            layer.stride or layer.size,
            layer.padding,
            (1, 1),
            pool=True,
            ceil_mode=layer.ceil_mode,
        )
        out = (*g.out_hw[:n], shape[-1])
        kind = _KIND[layer.kind.value] + ("1d" if n == 1 else "2d")
        notes = () if layer.ceil_mode else self.spatial_notes(g, n, kind)
        explain = self.explain_axes(g, n)
        if layer.ceil_mode:
            explain.append("ceil_mode: a last partial window is kept (the extra reach is shown as padding)")
        self.rows.append(
            LayerInfo(
                path,
                layer.name or kind.lower(),
                kind,
                depth,
                shape,
                out,
                kernel=g.kernel_hw[:n],
                stride=g.stride[:n],
                padding=g.padding[: 2 * n],
                receptive_field=self.advance(rf, g, n),
                memory=self.memory(out),
                detail="ceil" if layer.ceil_mode else "",
                warnings=notes,
                explain=tuple(explain),
            )
        )
        return out, self.advance(rf, g, n)

    def adaptive(
        self, layer: AdaptiveAvgPool2d, shape: Shape, rf: ReceptiveField | None, depth: int, path: str
    ) -> tuple[Shape, ReceptiveField | None]:
        self.need_spatial(shape, "adaptive pooling", 2)
        out = (*layer.output, shape[-1])
        even = all(shape[a] % layer.output[a] == 0 for a in (0, 1))
        new_rf = None
        explain = "windows of varying size (input not a multiple of the output)"
        if even:
            k = (shape[0] // layer.output[0], shape[1] // layer.output[1])
            g = conv_geometry((shape[0], shape[1]), k, stride=k)
            new_rf = self.advance(rf, g, 2)
            explain = f"window = stride = {k[0]}×{k[1]} (input ÷ output)"
        self.rows.append(
            LayerInfo(
                path,
                layer.name or "adaptiveavgpool",
                "AdaptiveAvgPool2d",
                depth,
                shape,
                out,
                receptive_field=new_rf,
                memory=self.memory(out),
                explain=(explain,),
            )
        )
        return out, new_rf

    def dense(self, layer: Dense, shape: Shape, depth: int, path: str) -> tuple[Shape, ReceptiveField | None]:
        features = shape[-1]
        out = (*shape[:-1], layer.units)
        positions = math.prod(shape[:-1])
        params = features * layer.units + (layer.units if layer.bias else 0)
        macs = features * layer.units * positions * self.batch
        notes = (
            ()
            if len(shape) == 1
            else (
                f"Dense: applies to the last axis ({features}) at every one of {positions} positions; flatten first "
                "for a classifier",
            )
        )
        bias = f" + {layer.units}" if layer.bias else ""
        self.rows.append(
            LayerInfo(
                path,
                layer.name or "dense",
                "Dense",
                depth,
                shape,
                out,
                params=params,
                macs=macs,
                memory=self.memory(out),
                warnings=notes,
                explain=(
                    f"params: {features}·{layer.units}{bias} = {_fmt(params)}",
                    f"MACs: {features}·{layer.units}"
                    + (f"·{positions}" if positions > 1 else "")
                    + (f"·{self.batch}" if self.batch > 1 else "")
                    + f" = {_fmt(macs)}",
                ),
            )
        )
        return out, None

    def parallel(
        self, layer: Parallel, shape: Shape, rf: ReceptiveField | None, depth: int, path: str, label: str
    ) -> tuple[Shape, ReceptiveField | None]:
        slot = len(self.rows)
        outs: list[tuple[Shape, ReceptiveField | None]] = []
        for b, branch in enumerate(layer.branches, start=1):
            branch_slot = len(self.rows)
            out_b, rf_b = self.sequence(branch.layers, shape, rf, depth + 2, f"{path}.{b}.")
            self.container(
                branch_slot,
                LayerInfo(
                    f"{path}.{b}",
                    branch.name or f"branch{b}",
                    "Branch" if branch.layers else "Identity",
                    depth + 1,
                    shape,
                    out_b,
                    receptive_field=rf_b,
                ),
            )
            outs.append((out_b, rf_b))
        shapes = [o for o, _ in outs]
        if layer.merge == "add":
            if len(set(shapes)) != 1:
                raise ShapeError(
                    label,
                    f"cannot add branches of shapes {', '.join('×'.join(map(str, s)) for s in shapes)}",
                    "make them equal, e.g. a 1x1 conv with the same stride as a projection shortcut",
                )
            out = shapes[0]
        else:
            if len({s[:-1] for s in shapes}) != 1:
                raise ShapeError(
                    label,
                    f"cannot concatenate branches of shapes {', '.join('×'.join(map(str, s)) for s in shapes)}",
                    "give every branch the same spatial size",
                )
            out = (*shapes[0][:-1], sum(s[-1] for s in shapes))
        rfs = [r for _, r in outs]
        merged = None
        if all(r is not None for r in rfs) and rfs:
            widest = max(rfs, key=lambda r: r.size if r else ())
            merged = widest
        kind = "Add" if layer.merge == "add" else "Concat"
        self.container(
            slot,
            LayerInfo(
                path,
                layer.name or kind.lower(),
                kind,
                depth,
                shape,
                out,
                receptive_field=merged,
                memory=self.memory(out),
                detail=f"{len(layer.branches)} branches",
                explain=(f"channels: {' + '.join(str(s[-1]) for s in shapes)} = {out[-1]}",)
                if layer.merge == "concat"
                else (),
            ),
        )
        return out, merged


def summarize(layers: Sequence[LayerSpec], input_shape: Shape, *, batch: int = 1, dtype_bytes: int = 4) -> Summary:
    """Work out every layer's output shape, parameters, MACs, receptive field and memory.

    Raises `ShapeError` naming the layer (index path and name) when a shape cannot work.
    """
    if batch < 1:
        raise ShapeError("--batch", f"must be >= 1; got {batch}")
    walker = _Walker(batch, dtype_bytes)
    spatial = len(input_shape) - 1
    rf = ReceptiveField((1,) * spatial, (1,) * spatial, (0.0,) * spatial) if spatial >= 1 else None
    walker.sequence(layers, tuple(input_shape), rf, 0, "")
    leaves = [r for r in walker.rows if not r.container]
    trainable = sum(r.params for r in leaves)
    frozen = sum(r.non_trainable for r in leaves)
    macs = sum(r.macs for r in leaves)
    totals = Totals(
        params=trainable + frozen,
        trainable=trainable,
        non_trainable=frozen,
        macs=macs,
        flops=2 * macs,
        param_bytes=(trainable + frozen) * dtype_bytes,
        activation_bytes=sum(r.memory for r in leaves),
    )
    notes = tuple(f"layer {r.path} ({r.name}): {w}" for r in walker.rows for w in r.warnings)
    return Summary(tuple(input_shape), batch, tuple(walker.rows), totals, dtype_bytes, notes)
