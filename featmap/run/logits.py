"""A network's final output alone (``featmap.forward(..., outputs="final")``): the layers run as
`featmap.run.executor` runs them, but since no layer's own output is looked at, the run may change how it gets
there without changing what it gets:

- a batch norm right after a convolution is folded into it (`featmap.net.fold`): one layer's work, not two;
- an activation or a batch norm on an array that nothing else holds works in place (no new array per layer), and
  layer outputs reuse the memory of earlier ones nothing holds any more (`featmap.core.gemm.reused_results`);
- a stride-1 convolution over many channels may sum its kernel rows as one BLAS product each, on a third of
  im2col's copy (`featmap.core.kernelrows`): the same sum in another order of rounding;
- no statistics: each output is checked to be finite by one sum (finite only if every value is; not after an
  activation that cannot make a finite input non-finite, done in place on a checked input), and a run that meets
  a NaN or an infinity, or any error, is run again by the executor, which names the layer;
- a convolution's output (a folded batch norm's) is checked and then activated by the activation after it a band
  at a time, as the band is made (`featmap.core.gemm.after_each_band`), with no pass of their own;
- a residual add of two branches, one ending in a convolution and a batch norm, with an activation after it: the
  other branch runs first and the convolution's bands add it before the check and the activation (`_Pending`): no
  merge pass either, and the same bits (the same additions; IEEE addition commutes).

The result equals the executor's last output to float32 rounding (the fold rounds a product once instead of
twice, the kernel rows' sum is rounded in another order: within 1e-5 of the output's scale, tests/test_logits.py).

Examples
--------
>>> import numpy as np
>>> from featmap.net.plan import plan_layers
>>> from featmap.net.spec import parse_tokens
>>> from featmap.run.executor import WeightSource
>>> nodes = plan_layers(parse_tokens(["conv:4@3x3/same", "bn", "relu", "flatten", "dense:3"]), (8, 8, 1))
>>> node, logits = final_output(nodes, np.ones((8, 8, 1), np.float32), WeightSource(init="kaiming", seed=0))
>>> node.path, logits.shape
('5', (3,))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
from numpy.typing import NDArray

from featmap.core.gemm import after_each_band, reused_results
from featmap.core.kernelrows import kernel_row_sums
from featmap.core.memo import remembered
from featmap.core.ops import activate
from featmap.enums import Activation
from featmap.errors import FeatmapError, SpecError
from featmap.net.fold import bn_affine, fold_into_conv
from featmap.net.layers import Act, BatchNorm, Conv2d, LayerSpec, RunContext
from featmap.net.plan import PlanNode, iter_leaves, plan_layers
from featmap.net.records import LayerOutput, MapStats
from featmap.net.summary import summarize_plan
from featmap.run.executor import (
    NetworkResult,
    WeightSource,
    _check_input,
    check_network_limits,
    iter_network,
)

__all__ = ["final_output", "run_final"]

Array = NDArray[np.floating]


class _Stop(Exception):
    """The ``upto`` layer has run."""


class _NotFinite(Exception):
    """An output holds a NaN or an infinity: the executor runs again to name the layer."""


def _finite(values: Array) -> bool:
    """True when every value is finite: the sum of their squares is (a NaN or an infinity makes it NaN or infinite),
    worked out by BLAS's dot product (2.5× a numpy sum on 56²×64 float32); only a sum that overflows (values past
    ~1e19 in float32) is checked value by value."""
    flat = values.reshape(-1) if values.flags.c_contiguous else None
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.dot(flat, flat)) if flat is not None and flat.dtype.kind == "f" else float(np.sum(values))
    return math.isfinite(total) or bool(np.isfinite(values).all())


# Activations whose output is finite wherever their input is: bounded, or |f(x)| <= |x| (leaky ReLU with a slope
# of at most 1 in size).
_BOUNDED = {Activation.NONE, Activation.RELU, Activation.RELU6, Activation.ABS, Activation.SIGMOID, Activation.TANH}
_BOUNDED |= {Activation.SILU, Activation.HARDSWISH, Activation.HARDSIGMOID, Activation.GELU}


def _keeps_finite(layer: object) -> bool:
    """True for an activation that cannot turn a finite value into a NaN or an infinity."""
    if not isinstance(layer, Act):
        return False
    if layer.kind is Activation.LEAKY_RELU:
        return abs(dict(layer.params).get("slope", 0.01)) <= 1
    return layer.kind in _BOUNDED


def _band_activation(node: PlanNode | None) -> Act | None:
    """``node``'s activation if it keeps finite values finite (a convolution's bands may apply it as they are made),
    else None."""
    if node is not None and node.role == "layer" and isinstance(node.layer, Act) and _keeps_finite(node.layer):
        return node.layer
    return None


class _ActivatedBands:
    """A `featmap.core.gemm.after_each_band` epilogue: each band of a convolution's output (a folded batch norm's)
    checked as `_finite` checks (its sum of squares, added up), then activated in place, while it is in the cache:
    the activation that follows, with no pass of its own. A sum that is not finite (a NaN or an infinity, or values
    past ~1e19, whose squares overflow) makes the executor run again and say which (the band is activated)."""

    def __init__(self, act: Act, addend: Array | None = None) -> None:
        self.act, self.params = act, dict(act.params)
        self.total, self.values = 0.0, 0
        self.addend = addend  # flat: a residual merge's other branch, added to each band first (`_Pending`)

    def __call__(self, band: Array) -> None:
        flat = band.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):  # (an overflow is found by the check)
            if self.addend is not None:  # bands come in order: this one's values follow the ones before
                np.add(flat, self.addend[self.values : self.values + flat.size], out=flat)
            self.total += float(np.dot(flat, flat))
        activate(band, self.act.kind, out=band, **self.params)
        self.values += band.size


class _Pending:
    """A residual add (two branches) whose other branch's output ``addend`` the last folded convolution of
    ``branch`` (its last two nodes) adds to each band of its output, before ``activation`` (the layer after the
    merge) and the check: the merge and the activation with no pass of their own. ``done`` once every band took it
    (otherwise the merge runs as a layer)."""

    def __init__(self, branch: Sequence[PlanNode], addend: Array, activation: Act) -> None:
        self.branch, self.addend, self.activation = branch, addend, activation
        self.done = False


class _Runner:
    def __init__(self, weights: WeightSource, context: RunContext, upto: str | None) -> None:
        self.weights = weights
        self.context = context
        self.upto = upto
        self.last: PlanNode | None = None
        self.checked: Array | None = None  # the last output found finite
        self.pending: _Pending | None = None  # a residual add waiting for its branch's last convolution

    def _named(self, node: PlanNode) -> bool:
        return self.upto is not None and self.upto in (node.path, node.key, node.plan.name)

    def _foldable(self, node: PlanNode, after: PlanNode | None) -> bool:
        return (
            after is not None
            and after.role == "layer"
            and isinstance(node.layer, Conv2d)
            and isinstance(after.layer, BatchNorm)
            and not self._named(node)
        )

    def _folded(self, conv: PlanNode, bn: PlanNode) -> dict[str, Array]:
        """The convolution's weights with the batch norm after it folded in, worked out once per weights."""
        cw, bw = self.weights.for_node(conv), self.weights.for_node(bn)
        eps = bn.layer.eps  # type: ignore[union-attr]  # a BatchNorm
        arrays = [np.asarray(w[k]) for w, k in ((cw, "weight"), (bw, "weight"), (bw, "bias"))]
        arrays += [np.asarray(bw["running_mean"]), np.asarray(bw["running_var"])]
        if "bias" in cw:
            arrays.append(np.asarray(cw["bias"]))
        return remembered(f"fold/{eps!r}", arrays, lambda: fold_into_conv(cw, bw, eps))

    def _done(self, node: PlanNode, values: Array, known_finite: bool = False) -> None:
        if not known_finite and not _finite(values):
            raise _NotFinite
        self.checked = values
        self.last = node

    def _leaf(self, node: PlanNode, x: Array, owned: bool) -> tuple[Array, bool]:
        layer, weights = node.layer, self.weights.for_node(node)
        if owned and isinstance(layer, Act):
            return activate(x, layer.kind, out=x, **dict(layer.params)), True
        if owned and isinstance(layer, BatchNorm):  # the layer's own arithmetic, on the same array
            scale, shift = bn_affine(weights, layer.eps)
            x *= scale.astype(x.dtype)
            x += shift.astype(x.dtype)
            return x, True
        out = node.layer.forward(x, node.plan, weights, self.context)  # type: ignore[union-attr]  # a leaf
        return out, owned or not np.may_share_memory(out, x)

    def _take_pending(self, nodes: Sequence[PlanNode], i: int) -> _Pending | None:
        """The residual add waiting on ``nodes[i]`` (a convolution with its batch norm, the branch's last two)."""
        pending = self.pending
        if pending is None or pending.branch is not nodes or i + 2 != len(nodes) or self._named(nodes[i + 1]):
            return None
        self.pending = None
        return pending

    def _branches(self, node: PlanNode, x: Array, after: PlanNode | None) -> tuple[list[Array], _Pending | None]:
        """The outputs of a merge's branches on ``x``, in order. For a residual add of two branches, one ending in a
        convolution and a batch norm and followed by an activation that keeps finite values finite, the other
        branch first and then the convolution's bands add it and activate (a `_Pending`; when ``done``, the one
        output returned is the activation's)."""
        activation = _band_activation(after)
        main = [k for k, b in enumerate(node.children) if len(b.children) >= 2 and self._foldable(*b.children[-2:])]
        fits = activation is not None and getattr(node.layer, "merge_mode", None) == "add" and len(node.children) == 2
        if not (fits and main) or self._named(node) or x.dtype != np.float32:
            return [self.walk(branch.children, x, False)[0] for branch in node.children], None
        k = max(main, key=lambda b: len(node.children[b].children))  # the longer branch: a shortcut's pointwise
        # convolution (a downsample) makes no bands
        addend = self.walk(node.children[1 - k].children, x, False)[0]
        if addend.shape != node.children[k].children[-1].plan.out_shape or not addend.flags.c_contiguous:
            return ([addend, self.walk(node.children[k].children, x, False)[0]][:: 1 if k else -1]), None
        pending = self.pending = _Pending(node.children[k].children, addend, activation)  # type: ignore[arg-type]
        try:
            out = self.walk(node.children[k].children, x, False)[0]
        finally:
            self.pending = None
        if pending.done:
            return [out], pending
        return [addend, out][:: 1 if k else -1], pending

    def walk(self, nodes: Sequence[PlanNode], x: Array, owned: bool) -> tuple[Array, bool]:
        """The output of ``nodes`` on ``x``, and whether this run alone holds it (so it may be changed in place);
        raises `_Stop` holding nothing once the ``upto`` layer has run (`last` is then its output's node)."""
        i = 0
        while i < len(nodes):
            node = nodes[i]
            if node.role == "layer":
                after = nodes[i + 1] if i + 1 < len(nodes) else None
                if after is not None and self._foldable(node, after):
                    folded = self._folded(node, after)
                    act = nodes[i + 2] if i + 2 < len(nodes) and not self._named(after) else None
                    activation, pending = _band_activation(act), self._take_pending(nodes, i)
                    bands = None if activation is None else _ActivatedBands(activation)
                    if pending is not None:  # the branch's last convolution: the merge and its activation in bands
                        bands = _ActivatedBands(pending.activation, pending.addend.reshape(-1))
                    with after_each_band(bands) if bands is not None else nullcontext():
                        x, owned = node.layer.forward(x, node.plan, folded, self.context), True  # type: ignore[union-attr]
                    if pending is not None and bands is not None and bands.values == x.size:
                        if not math.isfinite(bands.total):
                            raise _NotFinite
                        pending.done = True  # the branch's output is the merge's, activated and checked
                        node, i = after, i + 1
                    elif act is not None and bands is not None and bands.values == x.size:  # checked and activated
                        if not math.isfinite(bands.total):
                            raise _NotFinite
                        node, i = act, i + 2
                        self._done(node, x, True)
                    else:
                        node, i = after, i + 1
                        self._done(node, x)
                else:
                    before = x
                    x, owned = self._leaf(node, x, owned)
                    # an activation that keeps finite values finite, on values found finite, in place: no check
                    self._done(node, x, x is before and before is self.checked and _keeps_finite(node.layer))
            elif node.role == "block":
                x, owned = self.walk(node.children, x, owned)
            else:
                after = nodes[i + 1] if i + 1 < len(nodes) else None
                branches, pending = self._branches(node, x, after)
                if pending is not None and pending.done:  # merged and activated by the last convolution's bands
                    x, owned, node, i = branches[0], True, nodes[i + 1], i + 1
                    self._done(node, x, True)
                else:
                    merged = node.layer.merge(branches)  # type: ignore[union-attr]  # role "merge" is a Parallel
                    owned = not any(np.may_share_memory(merged, b) for b in (x, *branches))
                    x = merged
                    self._done(node, x)
            if self._named(node):
                self.result = x
                raise _Stop
            i += 1
        return x, owned

    result: Array


# `_within_limits`' figures per planned network: its nodes, its largest output and its memory estimate.
_LIMITS: dict[tuple[int, int], tuple[tuple[PlanNode, ...], int, int]] = {}


def _within_limits(nodes: Sequence[PlanNode], itemsize: int) -> None:
    """`featmap.run.executor.check_network_limits`, its figures worked out once per planned network (the same node
    objects: a plan is immutable) and checked against the limits in force on each run (they follow the
    environment); where one is exceeded, the whole check runs and names the layer."""
    from featmap.limits import MEMORY, OUTPUT_PIXELS

    key = (id(nodes), itemsize)
    hit = _LIMITS.get(key)
    if hit is None or len(hit[0]) != len(nodes) or any(a is not b for a, b in zip(hit[0], nodes, strict=True)):
        total = check_network_limits(nodes, itemsize)
        largest = max((math.prod(node.plan.out_shape) for node in iter_leaves(nodes)), default=0)
        if len(_LIMITS) >= 16:
            _LIMITS.clear()
        hit = _LIMITS[key] = (tuple(nodes), largest, total)
    if hit[1] > OUTPUT_PIXELS.value() or hit[2] > MEMORY.value():
        check_network_limits(nodes, itemsize)  # raises, naming the layer


def final_output(
    nodes: Sequence[PlanNode],
    image: Array,
    weights: WeightSource,
    *,
    context: RunContext | None = None,
    upto: str | None = None,
) -> tuple[PlanNode, Array]:
    """The last output `featmap.run.executor.iter_network` would yield for the same arguments, and its node,
    without the outputs before it (see the module's notes)."""
    _check_input(nodes, image)
    _within_limits(nodes, image.dtype.itemsize)
    weights.bind(nodes)
    runner = _Runner(weights, context or RunContext(weights.layout), upto)
    try:
        # layer outputs in memory of earlier ones nothing holds (no page faults); convolutions summed by kernel row
        with reused_results(), kernel_row_sums():
            values, _ = runner.walk(nodes, np.asarray(image), False)
    except _Stop:
        values = runner.result
    except (_NotFinite, FeatmapError):
        outputs = list(iter_network(nodes, image, weights, context=context, upto=upto))  # raises, naming the layer
        values, runner.last = outputs[-1].values, outputs[-1].node  # (or, rounded otherwise, finds it finite)
    if runner.last is None:
        raise SpecError("network", "has no layers", "give at least one layer")
    return runner.last, values


def run_final(
    layers: Sequence[LayerSpec], image: Array, weights: WeightSource, *, upto: str | None = None
) -> NetworkResult:
    """`featmap.run.executor.run_network` with only the final output (and its statistics) in ``outputs``."""
    nodes = plan_layers(layers, image.shape)
    node, values = final_output(nodes, image, weights, upto=upto)
    summary = summarize_plan(nodes, tuple(image.shape))
    output = LayerOutput(node, values, MapStats.of(values))
    return NetworkResult(tuple(image.shape), (output,), summary, (*summary.warnings, *weights.warnings))
