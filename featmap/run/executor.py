"""Run a whole layer stack on an image: every layer's output, in order, from the same plans that
``featmap shape`` prints.

No files: arrays in, `LayerOutput` records out, one at a time (`iter_network`), so that a caller can write
each layer's maps and let them go. Weights come from a `WeightSource`: kernels named in the spec, tensors
from a weights file (`featmap.net.weights`), or seeded random initialisation, in that order of precedence.

Examples
--------
>>> import numpy as np
>>> from featmap.net.spec import parse_tokens
>>> layers = parse_tokens(["conv:4@3x3/same", "relu", "maxpool:2", "flatten", "dense:3"])
>>> result = run_network(layers, np.ones((8, 8, 1), np.float32), WeightSource(init="kaiming", seed=0))
>>> [out.values.shape for out in result.outputs]
[(8, 8, 4), (8, 8, 4), (4, 4, 4), (64,), (3,)]
>>> [row.out_shape for row in result.summary.layers]
[(8, 8, 4), (8, 8, 4), (4, 4, 4), (64,), (3,)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from featmap.core.samples import ImageData, ScaledSamples
from featmap.errors import FeatmapError, ShapeError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.net.labels import top_classes  # the prediction's classes (here for the callers that took it here)
from featmap.net.layers import Conv2d, RunContext
from featmap.net.plan import PlanNode, iter_leaves, plan_layers
from featmap.net.records import LayerOutput, MapStats
from featmap.run.groups import ChannelGroup, GroupOutput, Stack, run_stacks

if TYPE_CHECKING:  # the summary is made for a whole network only (`run_network`), not for a kernel bank's maps
    from featmap.net.layers import LayerSpec
    from featmap.net.summary import Summary

__all__ = [
    "ChannelGroup",
    "GroupOutput",
    "LayerOutput",
    "NetworkResult",
    "WeightSource",
    "iter_channel_groups",
    "iter_stack_groups",
    "iter_network",
    "run_network",
    "top_classes",
]

Array = NDArray[np.floating]
INIT_METHODS = ("kaiming", "glorot")


@dataclass
class WeightSource:
    """Where a run's weights come from, per layer: a conv layer's own kernels (``kernels:`` in the spec), else
    ``tensors`` (`featmap.net.weights.load_weights`) under the layer's key (``C1.weight``; every layer must find its
    tensors there), else seeded random ``init`` (``kaiming``: PyTorch's default; ``glorot``: Keras'), else an
    error naming the missing tensor.

    ``layout="keras"`` declares ``tensors`` in Keras' names and layout (conv ``KEY.kernel`` (kh, kw, I, O),
    dense (in, out), batch norm ``gamma``/``beta``/``moving_mean``/``moving_variance``).
    """

    tensors: Mapping[str, Array] = field(default_factory=dict)
    init: str | None = None
    seed: int = 0
    layout: str = "torch"
    source: str = "weights"
    _matched: dict[str, Array] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.init is not None and self.init not in INIT_METHODS:
            raise SpecError("`init`", f"unknown method {self.init!r}", f"use one of: {', '.join(INIT_METHODS)}")
        if self.layout not in ("torch", "keras"):
            raise SpecError("`layout`", f"must be torch or keras; got {self.layout!r}")

    def bind(self, nodes: Sequence[PlanNode]) -> None:
        """Match ``tensors`` to every layer of ``nodes`` at once (before any work): every missing or mis-shaped
        tensor is listed in one error; tensors no layer takes become a warning."""
        if not self.tensors:
            if self.init is None:  # every layer needs its kernels then: say which does not have them, before any work
                for node in iter_leaves(nodes):
                    if node.plan.weights and not _has_bank(node):
                        self.for_node(node)
            return
        from featmap.net.weights.binding import bound_weights  # matched once per plan and arrays

        matched, warnings = bound_weights(nodes, self.tensors, self.layout, self.source)
        for key, tensor in matched.items():
            if key.endswith("running_var") and np.any(np.asarray(tensor) < 0):
                raise SpecError(
                    f"{self.source}: `{key}`",
                    "has a negative variance",
                    "the weights file is damaged or not batch norm's",
                )
        self._matched = matched
        self.warnings = warnings

    def for_node(self, node: PlanNode) -> dict[str, Array]:
        """The tensors ``node``'s forward pass needs, by name (``weight``, ``bias``, …), in PyTorch's layout."""
        if not node.plan.weights:
            return {}
        if _has_bank(node):
            made = node.layer.bank_weights(node.plan.in_shape[-1])  # type: ignore[union-attr]  # a Conv2d
            for name, shape in node.plan.weights:
                if made[name].shape != shape:
                    raise ShapeError(
                        f"layer {node.path} ({node.plan.name})",
                        f"its kernels give a {name} of shape {made[name].shape}; the layer needs {shape}",
                        "check the kernels against the layer's input channels",
                    )
            return made
        names = {name: f"{node.key}.{name}" for name, _ in node.plan.weights}
        if self.tensors:
            return {name: self._matched[full] for name, full in names.items()}
        if self.init is None:
            first = next(iter(names.values()))
            raise SpecError(
                f"layer {node.path} ({node.plan.name})",
                f"has no weights (`{first}`, shape {node.plan.weights[0][1]})",
                "give a weights file, kernels in the spec (`kernels: [...]`) or seeded random weights "
                "(`init` kaiming or glorot)",
            )
        from featmap.net.weights import init_weights

        wanted = {full: dict(node.plan.weights)[name] for name, full in names.items()}
        made = init_weights(wanted, {node.key: _kind(node)}, self.init, self.seed)
        return {name: made[full] for name, full in names.items()}


def _has_bank(node: PlanNode) -> bool:
    return isinstance(node.layer, Conv2d) and node.layer.bank is not None


def _kind(node: PlanNode) -> str:
    """How a layer's tensors are laid out and initialised (`featmap.net.weights.KINDS`)."""
    kinds = {"Dense": "dense", "BatchNorm": "bn", "Conv1d": "conv1d", "DepthwiseConv2d": "depthwise"}
    # a layer norm's scale and shift, and a layer scale's factors, start as batch norm's: ones and zeros
    kinds.update({"LayerNorm": "bn", "LayerScale": "bn"})
    return kinds.get(node.plan.kind, "conv")


@frozen_dataclass
class NetworkResult:
    """Every layer's output of one run, the summary of the same plans, and the warnings."""

    input_shape: tuple[int, ...]
    outputs: tuple[LayerOutput, ...]
    summary: Summary
    warnings: tuple[str, ...] = ()

    @property
    def logits(self) -> Array:
        """The last output."""
        return self.outputs[-1].values


class _Stop(Exception):
    """Raised inside the walk once the ``upto`` layer has run."""


def _first_bad(values: Array) -> str:
    index = np.unravel_index(int(np.argmax(~np.isfinite(values))), values.shape)
    return f"{values[index]} at {tuple(int(i) for i in index)}"


class _Runner:
    def __init__(self, weights: WeightSource, context: RunContext, upto: str | None) -> None:
        self.weights = weights
        self.context = context
        self.upto = upto

    def output(self, node: PlanNode, values: Array) -> LayerOutput:
        stats = MapStats.of(values)  # a NaN or an infinity shows in min/max: no separate pass over the map
        if not (math.isfinite(stats.min) and math.isfinite(stats.max) and math.isfinite(stats.std)):
            raise ShapeError(
                f"layer {node.path} ({node.plan.name})",
                f"produced a non-finite value ({_first_bad(values)})",
                "check the weights and the input scale; nothing was written for this layer",
            )
        return LayerOutput(node, values, stats)

    def walk(self, nodes: Sequence[PlanNode], x: Array) -> Generator[LayerOutput, None, Array]:
        """Yield each output of ``nodes`` in order; return the final array (for ``yield from``)."""
        for node in nodes:
            if node.role == "layer":
                try:
                    x = node.layer.forward(x, node.plan, self.weights.for_node(node), self.context)  # type: ignore[union-attr]
                except FeatmapError as exc:
                    if exc.what.startswith("layer "):
                        raise
                    raise SpecError(f"layer {node.path} ({node.plan.name})", str(exc)) from None
                yield self.output(node, x)
            elif node.role == "block":
                x = yield from self.walk(node.children, x)
            else:
                branches = []
                for branch in node.children:
                    branches.append((yield from self.walk(branch.children, x)))
                x = node.layer.merge(branches)  # type: ignore[union-attr]  # role "merge" is a Parallel
                yield self.output(node, x)
            if self.upto is not None and self.upto in (node.path, node.key, node.plan.name):
                raise _Stop
        return x


def iter_network(
    nodes: Sequence[PlanNode],
    image: Array,
    weights: WeightSource,
    *,
    context: RunContext | None = None,
    upto: str | None = None,
) -> Iterator[LayerOutput]:
    """Run planned ``nodes`` on ``image`` and yield every leaf layer's and every merge's output in order.

    ``upto`` stops after the layer with that path (``5``), key (``C3``) or name. A layer whose output holds a
    NaN or an infinity stops the run with an error naming it.
    """
    _check_input(nodes, image)
    check_network_limits(nodes, image.dtype.itemsize)
    weights.bind(nodes)
    layout = weights.layout if context is None else context.layout
    runner = _Runner(weights, context or RunContext(layout), upto)
    try:
        yield from runner.walk(nodes, np.asarray(image))
    except _Stop:
        return


def iter_channel_groups(
    nodes: Sequence[PlanNode],
    image: ImageData,
    weights: WeightSource,
    groups: Sequence[ChannelGroup] | None = None,
    *,
    tap: Callable[[ChannelGroup, Array], None] | None = None,
    bands_above: int | None = None,
) -> Iterator[GroupOutput]:
    """Run planned ``nodes``, a conv layer and the per-channel layers after it (activation, pooling, batch norm),
    one channel group of the conv at a time (one output channel per group when ``groups`` is None), and yield each
    group's final maps: memory holds one group's maps, not the layer's (`featmap.run.groups`, where the fused band
    path serves every group that fits it; ``bands_above``: see `featmap.run.groups.run_groups`). A `-k` bank runs
    this way, a group per kernel: one stack of `iter_stack_groups`.
    """
    yield from iter_stack_groups([(nodes, groups)], image, weights, tap=tap, bands_above=bands_above)


def iter_stack_groups(
    stacks: Sequence[Stack],
    image: ImageData,
    weights: WeightSource,
    *,
    tap: Callable[[ChannelGroup, Array], None] | None = None,
    bands_above: int | None = None,
) -> Iterator[GroupOutput]:
    """`iter_channel_groups` over several stacks (planned nodes, their groups) on one image, every group's output in
    order: a `-k` bank's conv layers (one per kernel size), whose groups may share band loops
    (`featmap.run.groups.run_stacks`)."""
    for nodes, _ in stacks:
        _check_input(nodes, image)
        weights.bind(nodes)
    whole = image if isinstance(image, ScaledSamples) else np.asarray(image)  # samples stay samples (`run_stacks`)
    yield from run_stacks(stacks, whole, weights.for_node, tap=tap, bands_above=bands_above)


def check_network_limits(nodes: Sequence[PlanNode], itemsize: int = 4) -> int:
    """Check every layer's output against the output-size limit and the run's memory (the weights, plus the
    largest layer's input and output, held at once) against the memory limit, before anything is allocated.
    Returns the estimate in bytes."""
    import math

    from featmap.limits import MEMORY, OUTPUT_PIXELS

    weights, widest = 0, 0
    for node in iter_leaves(nodes):
        plan = node.plan
        size = math.prod(plan.out_shape)
        OUTPUT_PIXELS.check(size, f"layer {node.path} ({plan.name}): output {'×'.join(map(str, plan.out_shape))}")
        weights += sum(math.prod(shape) for _, shape in plan.weights)
        widest = max(widest, math.prod(plan.in_shape) + size)
    total = (weights + widest) * itemsize
    MEMORY.check(total, "network: estimated memory")
    return total


def _check_input(nodes: Sequence[PlanNode], image: ImageData) -> None:
    if nodes and tuple(image.shape) != nodes[0].plan.in_shape:
        raise ShapeError(
            "input",
            f"has shape {'×'.join(map(str, image.shape))} but the network was planned for "
            f"{'×'.join(map(str, nodes[0].plan.in_shape))}",
            "plan the layers on the image's shape",
        )
    if image.dtype.kind != "f":
        raise SpecError("input", f"must be a float array; got dtype {image.dtype}", "scale it to [0, 1] floats")


def run_network(
    layers: Sequence[LayerSpec],
    image: Array,
    weights: WeightSource,
    *,
    upto: str | None = None,
) -> NetworkResult:
    """Plan ``layers`` on ``image``'s shape once and run them; every output is kept (see `iter_network` to
    handle one layer at a time)."""
    from featmap.net.summary import summarize_plan

    nodes = plan_layers(layers, image.shape)
    outputs = tuple(iter_network(nodes, image, weights, upto=upto))
    summary = summarize_plan(nodes, tuple(image.shape))
    return NetworkResult(tuple(image.shape), outputs, summary, (*summary.warnings, *weights.warnings))


def leaf_count(nodes: Sequence[PlanNode]) -> int:
    """How many layers run on arrays."""
    return sum(1 for _ in iter_leaves(nodes))
