"""Shapes, parameters, multiply-adds, receptive fields and memory of a layer stack, without running it.

`summarize` reads the plan tree of `featmap.net.plan` (each layer's geometry and cost, worked out once) and returns
frozen `LayerInfo` rows and `Totals`; `featmap.render` turns them into tables, JSON or Markdown.

Examples
--------
>>> from featmap.net.spec import parse_tokens
>>> s = summarize(parse_tokens(["conv:6@5x5", "avgpool:2"]), (32, 32, 3))
>>> [(row.out_shape, row.params) for row in s.layers]
[((28, 28, 6), 456), ((14, 14, 6), 0)]
>>> s.totals.params, s.totals.macs
(456, 352800)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import field, replace
from typing import Any

from featmap.frozen import frozen_dataclass
from featmap.net.layers import LayerPlan, LayerSpec
from featmap.net.plan import PlanNode, iter_leaves, plan_layers

__all__ = ["LayerInfo", "ReceptiveField", "Summary", "Totals", "summarize", "summarize_plan"]

Shape = tuple[int, ...]


@frozen_dataclass
class ReceptiveField:
    """What one output pixel sees, per spatial axis (rows, cols; one axis for 1-D).

    ``size`` input pixels wide, neighbouring outputs ``jump`` input pixels apart, the first output's
    field centred on input coordinate ``start`` (pixel centres at 0, 1, …; negative means padding).
    """

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]


@frozen_dataclass
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


@frozen_dataclass
class Totals:
    """Sums over the leaf layers; bytes at the summary's dtype size."""

    params: int
    trainable: int
    non_trainable: int
    macs: int
    flops: int
    param_bytes: int
    activation_bytes: int
    aux_params: int = 0
    """Trainable parameters of auxiliary heads (included in ``trainable``; training only)."""


@frozen_dataclass
class Summary:
    """Every row in display order, the input and the totals."""

    input_shape: Shape
    batch: int
    layers: tuple[LayerInfo, ...]
    totals: Totals
    dtype_bytes: int = 4
    warnings: tuple[str, ...] = field(default=())


def _advance(rf: ReceptiveField | None, plan: LayerPlan) -> ReceptiveField | None:
    """The receptive field after a layer: unchanged, one window step further, or the whole input (None)."""
    if plan.field == "all" or rf is None:
        return None
    g = plan.geometry
    if plan.field == "keep" or g is None:
        return rf
    size, jump, start = [], [], []
    for a in range(len(plan.in_shape) - 1):
        k_eff = g.dilation[a] * (g.kernel_hw[a] - 1) + 1
        size.append(rf.size[a] + (k_eff - 1) * rf.jump[a])
        start.append(rf.start[a] + ((k_eff - 1) / 2 - g.padding[2 * a]) * rf.jump[a])
        jump.append(rf.jump[a] * g.stride[a])
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


class _Rows:
    """Turns a plan tree into table rows, containers before what they hold, with the receptive field."""

    def __init__(self, batch: int, dtype_bytes: int) -> None:
        self.batch = batch
        self.dtype_bytes = dtype_bytes

    def memory(self, shape: Shape) -> int:
        return math.prod(shape) * self.batch * self.dtype_bytes

    def info(self, node: PlanNode, rf: ReceptiveField | None, memory: int = 0, **changes: Any) -> LayerInfo:
        p = node.plan
        row = LayerInfo(
            node.path,
            p.name,
            p.kind,
            node.depth,
            p.in_shape,
            p.out_shape,
            params=p.params,
            non_trainable=p.non_trainable,
            macs=p.macs,
            kernel=p.kernel,
            stride=p.stride,
            padding=p.padding,
            dilation=p.dilation,
            receptive_field=rf,
            memory=memory,
            detail=p.detail,
            warnings=p.warnings,
            explain=p.explain,
        )
        return replace(row, **changes) if changes else row

    def container(
        self, node: PlanNode, rf: ReceptiveField | None, inside: list[LayerInfo], memory: int = 0
    ) -> LayerInfo:
        leaves = [r for r in inside if not r.container]
        return self.info(
            node,
            rf,
            memory,
            params=sum(r.params for r in leaves),
            non_trainable=sum(r.non_trainable for r in leaves),
            macs=sum(r.macs for r in leaves),
            container=True,
        )

    def walk(
        self, nodes: Sequence[PlanNode], rf: ReceptiveField | None
    ) -> tuple[list[LayerInfo], ReceptiveField | None]:
        rows: list[LayerInfo] = []
        for node in nodes:
            if node.role == "layer":
                rf = _advance(rf, node.plan)
                rows.append(self.info(node, rf, self.memory(node.plan.out_shape)))
            elif node.role == "block":
                inside, rf = self.walk(node.children, rf)
                rows += [self.container(node, rf, inside), *inside]
            else:
                rows_rf = self.merge(node, rf)
                rows += rows_rf[0]
                rf = rows_rf[1]
        return rows, rf

    def merge(self, node: PlanNode, rf: ReceptiveField | None) -> tuple[list[LayerInfo], ReceptiveField | None]:
        inside: list[LayerInfo] = []
        fields: list[ReceptiveField | None] = []
        for branch in node.children:
            rows, branch_rf = self.walk(branch.children, rf)
            inside += [self.container(branch, branch_rf, rows), *rows]
            fields.append(branch_rf)
        merged = None
        if getattr(node.layer, "merge_mode", "") in ("mul", "aux"):
            merged = fields[0]  # a gate scales the main path; an auxiliary head feeds nothing
        elif fields and all(f is not None for f in fields):
            merged = max(fields, key=lambda f: f.size if f else ())
        return [self.container(node, merged, inside, self.memory(node.plan.out_shape)), *inside], merged


def _aux_params(node: PlanNode) -> int:
    """Trainable parameters inside the auxiliary branches under ``node``."""
    if node.role == "merge" and getattr(node.layer, "merge_mode", "") == "aux":
        heads = sum(leaf.plan.params for branch in node.children[1:] for leaf in iter_leaves(branch.children))
        return heads + _aux_params(node.children[0])
    return sum(_aux_params(child) for child in node.children)


def summarize(layers: Sequence[LayerSpec], input_shape: Shape, *, batch: int = 1, dtype_bytes: int = 4) -> Summary:
    """Work out every layer's output shape, parameters, MACs, receptive field and memory.

    Raises `ShapeError` naming the layer (index path and name) when a shape cannot work.
    """
    return summarize_plan(
        plan_layers(layers, input_shape, batch=batch), input_shape, batch=batch, dtype_bytes=dtype_bytes
    )


def summarize_plan(nodes: Sequence[PlanNode], input_shape: Shape, *, batch: int = 1, dtype_bytes: int = 4) -> Summary:
    """The `Summary` of an already planned stack (`featmap.net.plan.plan_layers`)."""
    spatial = len(input_shape) - 1
    rf = ReceptiveField((1,) * spatial, (1,) * spatial, (0.0,) * spatial) if spatial >= 1 else None
    rows, _ = _Rows(batch, dtype_bytes).walk(nodes, rf)
    leaves = [r for r in rows if not r.container]
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
        aux_params=sum(_aux_params(node) for node in nodes),
    )
    notes = tuple(f"layer {r.path} ({r.name}): {w}" for r in rows for w in r.warnings)
    return Summary(tuple(input_shape), batch, tuple(rows), totals, dtype_bytes, notes)
