"""Run a conv layer and the per-channel layers after it one channel group at a time.

A conv layer followed by layers that treat each channel on its own (activation, pooling, batch norm, dropout) can
be run for a few of its output channels at a time: the conv on the group's filters only, then the per-channel
layers on the group's maps. Memory then holds one group's maps, not the layer's: a `-k` bank of 5 kernels on a
6000×4000 photo holds one map at a time, a 64-filter conv on a big photo one channel at a time. Each group is its
own small stack (the conv's filters of the group, the same per-channel layers), planned by `featmap.net.plan`
and run by the layers' own forward passes, with two shortcuts that give the same values:

- the fused band path (`featmap.run.fused`): a conv(+activation)(+pool) group that `fused.fits` runs a band of
  rows at a time, with no full-size float temporary;
- max and min pooling go before a non-decreasing activation they commute with (only the pooled pixels are
  activated), and activations run in place on the group's own maps.

`featmap.run.executor.iter_channel_groups` is the entry point with a `WeightSource`; a kernel bank
(`featmap.run.pipeline`) is such a stack with one group per kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from featmap.core.ops import activate
from featmap.core.samples import CONVERT_WHOLE_UP_TO, ImageData, ScaledSamples, as_floats
from featmap.enums import Activation, PoolKind, parse_enum
from featmap.errors import SpecError
from featmap.frozen import frozen_dataclass
from featmap.net.layers import Act, BatchNorm, Conv2d, Dropout, GlobalPool2d, Pool2d
from featmap.net.plan import PlanNode, plan_layers
from featmap.net.records import MapBands
from featmap.run import bandloop, fused

if TYPE_CHECKING:  # `LayerSpec` (every kind) is made on first use: a kernel bank's run never needs it
    from featmap.net.layers import LayerSpec

__all__ = [
    "HELD_TOGETHER",
    "PER_CHANNEL",
    "ChannelGroup",
    "GroupOutput",
    "channel_groups",
    "channel_span",
    "commutes",
    "goes_by_bands",
    "plan_stack",
    "run_groups",
    "run_stacks",
    "run_tail",
]

Array = NDArray[np.floating]
WeightsFor = Callable[[PlanNode], Mapping[str, Array]]

#: Layer kinds that treat each channel on its own, so that they can run on a few channels of their input.
PER_CHANNEL = (Act, Pool2d, GlobalPool2d, BatchNorm, Dropout)

#: The most values the maps of several stacks' groups may hold together when they share band loops (`run_stacks`):
#: 8 MB of float32, the float image of `CONVERT_WHOLE_UP_TO` samples that a small image of 8-bit samples is
#: converted to whole when they do not (a 1024² gray image with 4 kernels and a 2×2 pool holds 1M values).
HELD_TOGETHER = CONVERT_WHOLE_UP_TO

# Non-decreasing activations: max and min pooling commute with them exactly (they only pick values).
_MONOTONE = frozenset({Activation.NONE, Activation.RELU, Activation.RELU6, Activation.SIGMOID, Activation.TANH})


@frozen_dataclass
class ChannelGroup:
    """Some output channels of a conv layer, run together: ``channels`` slices them (a step picks one filter per
    conv group, as a depthwise bank's kernel); ``bias=False`` leaves the layer's bias out for them (a kernel of a
    bank that has none); ``name`` is the caller's (a kernel's name)."""

    channels: slice
    bias: bool = True
    name: str = ""


@frozen_dataclass
class GroupOutput:
    """One group's final maps and the group's own planned stack (its conv, then the per-channel layers); the maps
    are `featmap.run.fused.FusedBands` (made again each time they are read) when `run_groups` was asked for that."""

    group: ChannelGroup
    nodes: tuple[PlanNode, ...]
    values: Array | MapBands


def commutes(act: Act, pool: object) -> bool:
    """True when pooling before the activation gives the same map: then only the pooled pixels are activated."""
    if not isinstance(pool, Pool2d | GlobalPool2d) or parse_enum(PoolKind, pool.kind, "pool mode") is PoolKind.AVG:
        return False
    if act.kind is Activation.LEAKY_RELU:
        return float(dict(act.params).get("slope", 0.01)) >= 0
    return act.kind in _MONOTONE


def channel_span(nodes: Sequence[PlanNode]) -> int:
    """How many of ``nodes``, from the first, form a `Conv2d` and the per-channel layers after it (0: none)."""
    if not nodes or nodes[0].role != "layer" or not isinstance(nodes[0].layer, Conv2d):
        return 0
    count = 1
    while count < len(nodes) and nodes[count].role == "layer" and isinstance(nodes[count].layer, PER_CHANNEL):
        count += 1
    return count


def channel_groups(node: PlanNode, size: int = 1) -> tuple[ChannelGroup, ...]:
    """A conv node's output channels in groups of ``size`` (rounded to whole conv groups where it has several)."""
    filters = node.plan.out_shape[-1]
    per = filters // node.plan.groups
    step = size if node.plan.groups == 1 else max(1, -(-size // per)) * per
    return tuple(ChannelGroup(slice(start, min(start + step, filters))) for start in range(0, filters, step))


@frozen_dataclass
class _Pick:
    """A group's conv layer (its filters only), the output channels it computes and the input channels it reads
    (None: all of them; a slice; or a list)."""

    layer: Conv2d
    index: NDArray[np.intp]
    inputs: slice | list[int] | None


@lru_cache(maxsize=1024)
def _pick(layer: Conv2d, shape: tuple[int, int, int], channels: tuple[int | None, ...], bias: bool) -> _Pick:
    """Work out a group's conv once (a batch runs the same groups on image after image); ``shape`` is the conv's
    ``(filters, groups, input channels)``."""
    filters, conv_groups, in_channels = shape
    picked = range(filters)[slice(*channels)]
    per, in_per = filters // conv_groups, in_channels // conv_groups
    owners = sorted({o // per for o in picked})
    if not picked or (channels[2] or 1) < 0 or len(picked) % len(owners):
        raise SpecError("channel group", f"{slice(*channels)} picks no whole set of {filters} filters")
    if conv_groups > 1 and any(sum(1 for o in picked if o // per == g) != len(picked) // len(owners) for g in owners):
        raise SpecError("channel group", f"{slice(*channels)} picks unequal filters from the conv's groups")
    inputs: slice | list[int] | None = None
    if conv_groups > 1 and len(owners) < conv_groups:
        if owners == list(range(owners[0], owners[-1] + 1)):
            inputs = slice(owners[0] * in_per, (owners[-1] + 1) * in_per)
        else:
            inputs = [c for g in owners for c in range(g * in_per, (g + 1) * in_per)]
    sub = replace(
        layer,
        filters=len(picked),
        groups=len(owners) if conv_groups > 1 else 1,
        bias=bias,
        depthwise=False,
        bank=None,
        name=None,
    )
    index = np.asarray(picked, dtype=np.intp)
    index.setflags(write=False)
    return _Pick(sub, index, inputs)


def _sub_conv(
    node: PlanNode, x: ImageData, weights: Mapping[str, Array], group: ChannelGroup
) -> tuple[Conv2d, ImageData, dict[str, Array], NDArray[np.intp]]:
    """The group's conv layer (its filters only), its input (the channels those filters read), its tensors and the
    output channels it computes."""
    layer = node.layer
    assert isinstance(layer, Conv2d)
    bias = group.bias and weights.get("bias") is not None
    shape = (node.plan.out_shape[-1], node.plan.groups, node.plan.in_shape[-1])
    pick = _pick(layer, shape, (group.channels.start, group.channels.stop, group.channels.step), bias)
    if pick.inputs is None:
        source = x
    elif isinstance(pick.inputs, slice):
        source = as_floats(x)[..., pick.inputs]
    else:
        source = np.take(as_floats(x), pick.inputs, axis=-1)
    tensors = {"weight": np.asarray(weights["weight"])[pick.index]}
    if bias:
        tensors["bias"] = np.asarray(weights["bias"])[pick.index]
    return pick.layer, source, tensors, pick.index


@lru_cache(maxsize=256)
def plan_stack(layers: tuple[LayerSpec, ...], shape: tuple[int, ...]) -> tuple[PlanNode, ...]:
    """A group's stack planned once per shape (a batch runs the same groups on image after image)."""
    return plan_layers(layers, shape)


def run_groups(
    nodes: Sequence[PlanNode],
    image: ImageData,
    weights_for: WeightsFor,
    groups: Sequence[ChannelGroup] | None = None,
    *,
    tap: Callable[[ChannelGroup, Array], None] | None = None,
    bands_above: int | None = None,
) -> Iterator[GroupOutput]:
    """Run ``nodes`` (a `Conv2d` node, then per-channel nodes: see `channel_span`) on ``image`` one channel group
    at a time, and yield each group's final maps (one group per output channel when ``groups`` is None).

    ``bands_above``: a group that takes the band path and whose final maps hold more values than this comes as a
    `featmap.run.fused.FusedBands`, never held (a reader that needs only bands of it, twice, pays two conv passes).

    ``tap(group, conv_maps)`` sees each group's conv output before the per-channel layers run (a combined map is
    merged from them); the fused band path, which never holds a conv output whole, is not taken then. An image of
    8-bit samples (`ScaledSamples`) goes to the band path as it is (each band converted as it is read), and is
    converted whole, once, for a run that does not take that path.
    """
    if not nodes or channel_span(nodes) != len(nodes):
        raise SpecError("layers", "a channel-group run is a conv layer followed only by per-channel layers")
    if isinstance(image, ScaledSamples) and (tap is not None or not goes_by_bands(nodes, image)):
        image = image.floats()
    conv, tail = nodes[0], tuple(nodes[1:])
    conv_weights = weights_for(conv)
    tail_weights = [weights_for(node) for node in tail]
    for group in groups if groups is not None else channel_groups(conv):
        layer, source, tensors, index = _sub_conv(conv, image, conv_weights, group)
        sliced = [{name: np.asarray(t)[index] for name, t in w.items()} if w else {} for w in tail_weights]
        planned = plan_stack((layer, *(node.layer for node in tail)), tuple(source.shape))
        values = _fused(planned, source, tensors, bands_above) if tap is None else None
        if values is None:
            whole = layer.forward(as_floats(source), planned[0].plan, tensors)
            if tap is not None:
                tap(group, whole)
            values = run_tail(planned[1:], whole, sliced)
            del whole
        yield GroupOutput(group, planned, values)
        del values  # the caller has the group's maps: make the next group's without holding them


Stack = tuple[Sequence[PlanNode], Sequence[ChannelGroup] | None]


def run_stacks(
    stacks: Sequence[Stack],
    image: ImageData,
    weights_for: WeightsFor,
    *,
    tap: Callable[[ChannelGroup, Array], None] | None = None,
    bands_above: int | None = None,
) -> Iterator[GroupOutput]:
    """`run_groups` over several stacks (nodes, groups) planned on one image, a kernel bank's conv layers (one per
    kernel size), yielding every group's output in order.

    When every group takes the band path (no ``tap``) to a held map (none above ``bands_above`` values) and their
    maps hold at most `HELD_TOGETHER` values together, the groups cut into the same bands share one band loop
    (`featmap.run.bandloop`: each band of the image converted once and filtered by each kernel in turn), and every
    map is made before the first is yielded. Otherwise the
    stacks run one after another by `run_groups` (one group's maps at a time), an image of at most
    `CONVERT_WHOLE_UP_TO` 8-bit samples converted whole once for all of them.
    """
    together = None if tap is not None else _together(stacks, image, weights_for, bands_above)
    if together is not None:
        yield from together
        return
    if isinstance(image, ScaledSamples) and image.samples.size <= CONVERT_WHOLE_UP_TO:
        image = image.floats()
    for nodes, groups in stacks:
        yield from run_groups(nodes, image, weights_for, groups, tap=tap, bands_above=bands_above)


def _together(
    stacks: Sequence[Stack], image: ImageData, weights_for: WeightsFor, bands_above: int | None
) -> Iterator[GroupOutput] | None:
    """Every group's output by shared band loops (`run_stacks`), made now; None when some group does not take the
    band path, a map holds more than ``bands_above`` values (it is never held), the maps would hold more than
    `HELD_TOGETHER` values together, or there is one group only."""
    made: list[tuple[ChannelGroup, tuple[PlanNode, ...], fused.BandRun]] = []
    held = 0
    for nodes, groups in stacks:
        if not nodes or channel_span(nodes) != len(nodes):
            return None  # `run_groups` says why
        conv, tail = nodes[0], tuple(node.layer for node in nodes[1:])
        conv_weights = weights_for(conv)
        for group in groups if groups is not None else channel_groups(conv):
            layer, source, tensors, _ = _sub_conv(conv, image, conv_weights, group)
            planned = plan_stack((layer, *tail), tuple(source.shape))
            run = _band_run(planned, source, tensors)
            size = 0 if run is None else math.prod(run.out_shape)
            held += size
            if run is None or held > HELD_TOGETHER or (bands_above is not None and size > bands_above):
                return None
            made.append((group, planned, run))
    if len(made) < 2:
        return None
    loops: dict[object, list[int]] = {}  # groups cut into the same bands of the same image share a loop
    for index, (_, _, run) in enumerate(made):
        loops.setdefault((id(run.image), bandloop.loop_bands(run)), []).append(index)
    maps: list[Array] = [np.empty(0, np.float32)] * len(made)
    for indices in loops.values():
        for index, values in zip(indices, bandloop.banded_maps([made[i][2] for i in indices]), strict=True):
            maps[index] = values
    return _handed_over(made, maps)


def _handed_over(
    made: list[tuple[ChannelGroup, tuple[PlanNode, ...], fused.BandRun]], maps: list[Array]
) -> Iterator[GroupOutput]:
    """The groups' outputs in order, each map let go here once yielded (the caller holds the last one only)."""
    maps.reverse()
    for group, planned, _ in made:
        yield GroupOutput(group, planned, maps.pop())


def goes_by_bands(nodes: Sequence[PlanNode], image: ImageData) -> bool:
    """Whether `run_groups` makes the maps of ``nodes`` (a conv, then per-channel layers) on ``image`` band by band
    (`featmap.run.fused`), so that it never needs ``image``'s float values whole; a combined map's ``tap`` aside."""
    return _band_layers(nodes, image) is not None


def _band_layers(planned: Sequence[PlanNode], source: ImageData) -> tuple[Act, Pool2d | None] | None:
    """The activation and pool of a conv(+activation)(+pool) stack that `featmap.run.fused` runs band by band on
    ``source`` (`fused.fits`), else None."""
    conv, rest = planned[0], [node.layer for node in planned[1:]]
    act = rest.pop(0) if rest and isinstance(rest[0], Act) else Act()
    pool = rest.pop(0) if rest and isinstance(rest[0], Pool2d) else None
    assert isinstance(conv.layer, Conv2d) and isinstance(act, Act) and isinstance(pool, Pool2d | None)
    if rest or not fused.fits(source, conv.layer, pool, None, conv.plan.geometry):
        return None
    return act, pool


def _fused(
    planned: tuple[PlanNode, ...], source: ImageData, tensors: dict[str, Array], bands_above: int | None = None
) -> Array | MapBands | None:
    """The group's maps by `featmap.run.fused` when its conv(+activation)(+pool) fits that path (as `FusedBands`
    when they hold more than ``bands_above`` values), else None."""
    run = _band_run(planned, source, tensors)
    if run is None:
        return None
    shape = run.out_shape
    if bands_above is not None and shape[0] * shape[1] * shape[2] > bands_above:
        return fused.FusedBands(run)
    return fused.banded_map(run)


def _band_run(planned: tuple[PlanNode, ...], source: ImageData, tensors: dict[str, Array]) -> fused.BandRun | None:
    """The group's band loop (`featmap.run.fused.band_run`) when its conv(+activation)(+pool) fits that path."""
    conv = planned[0]
    layers = _band_layers(planned, source)
    if layers is None:
        return None
    act, pool = layers
    assert isinstance(conv.layer, Conv2d)
    out = planned[-1].plan.out_shape
    shape = (int(out[0]), int(out[1]), int(out[2]))
    return fused.band_run(source, tensors, conv.layer, conv.plan, act, pool, shape, commutes(act, pool))


def run_tail(nodes: Sequence[PlanNode], values: Array, weights: Sequence[Mapping[str, Array]] = ()) -> Array:
    """Per-channel layers on maps the caller gives up (``weights`` per node, none by default): activations run in
    place, and a pool that commutes with the activation before it goes first."""
    weights = list(weights) or [{} for _ in nodes]
    i = 0
    while i < len(nodes):
        layer = nodes[i].layer
        if isinstance(layer, Act) and i + 1 < len(nodes) and commutes(layer, nodes[i + 1].layer):
            values = _forward(nodes[i + 1], values, weights[i + 1])
            values = activate(values, layer.kind, out=values, **dict(layer.params))
            i += 2
            continue
        if isinstance(layer, Act):
            values = activate(values, layer.kind, out=values, **dict(layer.params))
        else:
            values = _forward(nodes[i], values, weights[i])
        i += 1
    return values


def _forward(node: PlanNode, values: Array, weights: Mapping[str, Array]) -> Array:
    return node.layer.forward(values, node.plan, weights)  # type: ignore[union-attr]  # a leaf layer
