"""Run a kernel bank through convolution, activation and pooling on one image array.

No files: arrays in, `FeatureMap` records out. Maps are produced one at a time
(`iter_feature_maps`), so a caller can write each and let it go.

Examples
--------
>>> import numpy as np
>>> from featmap.kernels import Kernel, KernelBank
>>> bank = KernelBank((Kernel("delta", [[0, 0, 0], [0, 1, 0], [0, 0, 0]]),))
>>> fm = run(np.ones((6, 6, 1), np.float32), bank, Conv2d(padding="same"), pool=Pool2d("max", 2))
>>> info = fm.maps[0].info
>>> info.conv_shape, info.shape, info.params
((6, 6, 1), (3, 3, 1), 9)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from featmap.core.geometry import ConvGeometry
from featmap.core.samples import ImageData, ScaledSamples
from featmap.enums import Activation, Combine, parse_enum
from featmap.errors import ShapeError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.kernels import Kernel, KernelBank
from featmap.net.layers import Act, CombineMaps, Conv2d, GlobalPool2d, LayerPlan, Pool2d
from featmap.net.plan import PlanNode
from featmap.net.records import (
    BandedFeatureMap,
    FeatureMap,
    FeatureMaps,
    MapBands,
    MapInfo,
    MapStats,
    StatsAccumulator,
)
from featmap.run.executor import WeightSource, iter_stack_groups
from featmap.run.groups import ChannelGroup, goes_by_bands, plan_stack, run_tail

if TYPE_CHECKING:  # `LayerSpec` (every kind) is made on first use: a kernel bank's run never needs it
    from featmap.net.layers import LayerSpec

__all__ = [
    "BankLayer",
    "FeatureMap",
    "FeatureMaps",
    "KernelPlan",
    "MapInfo",
    "MapStats",
    "bank_layers",
    "geometry_notes",
    "plan_kernels",
    "iter_feature_maps",
    "reads_floats_whole",
    "run",
    "stride_warnings",
]

Shape3 = tuple[int, int, int]
_NO_CONV_OPTIONS = Conv2d()  # frozen, so safe to share as a default
_NO_ACTIVATION = Act()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _dropped_text(geometry: ConvGeometry, what: str) -> tuple[str, str] | None:
    text = geometry.dropped_text()
    if text is None:
        return None
    ph, pw = geometry.padded_hw
    return what, f"{text} of the padded {ph}x{pw} input unused (floored, as PyTorch and Keras do)"


@frozen_dataclass
class KernelPlan:
    """One kernel of a run as a conv layer (and its pooling), planned once on the image's shape."""

    kernel: Kernel
    conv: Conv2d
    conv_plan: LayerPlan
    pool: Pool2d | GlobalPool2d | None
    pool_plan: LayerPlan | None

    def notes(self) -> list[tuple[str, str]]:
        """``(what, problem)`` for each stride that does not fit evenly: the conv's, then the pool's."""
        kh, kw = self.kernel.size
        assert self.conv_plan.geometry is not None  # a conv plan always has one
        found = [_dropped_text(self.conv_plan.geometry, f"conv {kh}x{kw}")]
        pool = self.pool
        if isinstance(pool, Pool2d) and not pool.ceil_mode and self.pool_plan and self.pool_plan.geometry:
            found.append(
                _dropped_text(self.pool_plan.geometry, f"{pool.kind.value} pool {pool.size[0]}x{pool.size[1]}")
            )
        return [n for n in found if n]


def plan_kernels(shape: Shape3, bank: KernelBank, conv: Conv2d, pool: Pool2d | GlobalPool2d | None) -> list[KernelPlan]:
    """Each kernel of ``bank`` as a conv layer with ``conv``'s options on an image of ``shape``, planned once."""
    return list(_plan_kernels((int(shape[0]), int(shape[1]), int(shape[2])), bank, conv, pool))


@lru_cache(maxsize=64)
def _plan_kernels(
    shape: Shape3, bank: KernelBank, conv: Conv2d, pool: Pool2d | GlobalPool2d | None
) -> tuple[KernelPlan, ...]:
    """`plan_kernels`, once per shape and bank (a batch plans the same bank on image after image)."""
    channels = shape[2]
    if (
        conv.filters is not None
        or conv.bank is not None
        or (conv.kernel is not None and len(bank) and any(k.size != conv.kernel for k in bank))
    ):
        raise SpecError(
            "`conv`",
            "gives filters, a kernel size or kernels of its own, but here the kernel bank supplies them",
            "pass only stride, padding, dilation and flip options, or run a layer stack with featmap.run.executor",
        )
    plans = []
    for kernel in bank:
        weights, groups = _weights_for(kernel, channels)
        layer = replace(
            conv, filters=weights.shape[0], kernel=kernel.size, groups=groups, bias=kernel.bias is not None, bank=None
        )
        conv_plan = layer.plan(shape)
        pool_plan = None if pool is None else pool.plan(conv_plan.out_shape)
        plans.append(KernelPlan(kernel, layer, conv_plan, pool, pool_plan))
    return tuple(plans)


def stride_warnings(
    in_hw: tuple[int, int], kernel_size: tuple[int, int], conv: Conv2d, pool: Pool2d | GlobalPool2d | None
) -> list[tuple[str, str]]:
    """``(what, problem)`` for each stride that does not fit evenly: the conv's, then the pool's."""
    kernel = Kernel("k", np.zeros(kernel_size, np.float32))
    return plan_kernels((in_hw[0], in_hw[1], 1), KernelBank((kernel,)), conv, pool)[0].notes()


def geometry_notes(
    in_hw: tuple[int, int],
    bank: KernelBank,
    conv: Conv2d,
    pool: Pool2d | GlobalPool2d | None,
    channels: int = 1,
) -> tuple[str, ...]:
    """Every distinct stride warning of a run on an image of ``channels`` channels, as ``"what: problem"`` lines."""
    return _notes(plan_kernels((in_hw[0], in_hw[1], channels), bank, conv, pool))


def _notes(plans: list[KernelPlan]) -> tuple[str, ...]:
    notes: dict[str, None] = {}
    for plan in plans:
        for what, problem in plan.notes():
            notes[f"{what}: {problem}"] = None
    return tuple(notes)


def _weights_for(kernel: Kernel, channels: int) -> tuple[NDArray[np.float32], int]:
    """The bank and groups that apply ``kernel`` to ``channels`` input channels."""
    w = kernel.weights
    if w.ndim == 3:
        if w.shape[0] != channels:
            fix = "pass `color` to keep the image's channels" if channels == 1 else "give one slice per channel"
            raise ShapeError(
                f"kernel {kernel.name!r}",
                f"has {w.shape[0]} channel slices but the image has {_plural(channels, 'channel')}",
                fix,
            )
        return w[np.newaxis], 1
    return np.broadcast_to(w, (channels, 1, *w.shape)), channels


def _shape3(shape: tuple[int, ...]) -> Shape3:
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _info(plan: KernelPlan, conv_shape: Shape3, final: NDArray[np.floating] | MapBands, pooled: bool) -> MapInfo:
    assert plan.conv_plan.geometry is not None  # a conv plan always has one
    kernel, geometry = plan.kernel, plan.conv_plan.geometry
    stats = MapStats.of(final) if isinstance(final, np.ndarray) else _band_stats(final)
    return MapInfo(
        kernel.name, kernel.size, geometry, conv_shape, _shape3(final.shape), pooled, plan.conv_plan.params, stats
    )


def _band_stats(final: MapBands) -> MapStats:
    """The statistics of a map never held (a pass over its bands): `MapStats.of`'s, bit for bit."""
    accumulator = StatsAccumulator(final.shape[0] * final.shape[1] * final.shape[2], final.dtype)
    for band in final.bands():
        accumulator.add(band)
    return accumulator.result()


@frozen_dataclass
class BankLayer:
    """Consecutive kernels of a bank that read the image alike, as one conv layer: the layer stack (a `Conv2d`
    whose filters are the kernels, then the activation and the pool) and its channel groups, one per kernel.

    A bank of one kernel size is one such layer; kernels of another size, or a per-channel kernel among 2-D ones on
    a colour image, start another, since their maps differ in shape or in channels.
    """

    kernels: tuple[Kernel, ...]
    layers: tuple[LayerSpec, ...]
    groups: tuple[ChannelGroup, ...]


def bank_layers(
    bank: KernelBank, conv: Conv2d, act: Act, pool: Pool2d | GlobalPool2d | None, channels: int
) -> list[BankLayer]:
    """``bank`` on an image of ``channels`` channels as conv layers with ``conv``'s options: each 2-D kernel on a
    colour image a depthwise filter of every channel (its map keeps the channels), every other kernel one filter
    over all the channels; then ``act`` (unless none) and ``pool``."""
    return list(_bank_layers(bank, conv, act, pool, channels))


@lru_cache(maxsize=64)
def _bank_layers(
    bank: KernelBank, conv: Conv2d, act: Act, pool: Pool2d | GlobalPool2d | None, channels: int
) -> tuple[BankLayer, ...]:
    """`bank_layers`, made once per bank and channel count."""
    runs: list[list[Kernel]] = []
    for kernel in bank:
        if runs and _reads(runs[-1][0], channels) == _reads(kernel, channels):
            runs[-1].append(kernel)
        else:
            runs.append([kernel])
    tail: tuple[LayerSpec, ...] = (() if act.kind is Activation.NONE else (act,)) + (() if pool is None else (pool,))
    found = []
    for run_ in runs:
        depthwise = channels > 1 and not run_[0].per_channel
        layer = replace(conv, filters=None, kernel=None, groups=1, bank=KernelBank(tuple(run_)), depthwise=depthwise)
        n = len(run_)
        groups = tuple(
            ChannelGroup(slice(i, None, n) if depthwise else slice(i, i + 1), k.bias is not None, k.name)
            for i, k in enumerate(run_)
        )
        found.append(BankLayer(tuple(run_), (layer, *tail), groups))
    return tuple(found)


class _KernelWeights(WeightSource):
    """A bank's conv layers take their tensors from their kernels, made once per layer and channel count."""

    def for_node(self, node: PlanNode) -> dict[str, NDArray[np.floating]]:
        layer = node.layer
        if isinstance(layer, Conv2d) and layer.bank is not None:
            return _bank_tensors(layer, node.plan.in_shape[-1])
        return super().for_node(node)


@lru_cache(maxsize=64)
def _bank_tensors(layer: Conv2d, channels: int) -> dict[str, NDArray[np.floating]]:
    made = layer.bank_weights(channels)
    for tensor in made.values():
        tensor.setflags(write=False)
    return made


def _reads(kernel: Kernel, channels: int) -> tuple[tuple[int, int], bool]:
    return kernel.size, channels > 1 and not kernel.per_channel


@lru_cache(maxsize=64)
def reads_floats_whole(
    shape: Shape3, bank: KernelBank, conv: Conv2d, act: Act, pool: Pool2d | GlobalPool2d | None, combine: object
) -> bool:
    """Whether any map of the bank on an image of ``shape`` is made from the image's float values whole (a combined
    map, or a conv layer that does not go band by band: `featmap.run.groups.goes_by_bands`), decided once per bank and
    shape: then a run converts 8-bit samples once and drops them, else it keeps them and converts band by band."""
    probe = ScaledSamples(np.broadcast_to(np.zeros(1, np.uint8), shape))  # plans read only its shape
    layers = _bank_layers(bank, conv, act, pool, shape[2])
    return combine is not None or not all(goes_by_bands(plan_stack(b.layers, shape), probe) for b in layers)


def iter_feature_maps(
    image: ImageData,
    bank: KernelBank,
    conv: Conv2d = _NO_CONV_OPTIONS,
    act: Act = _NO_ACTIVATION,
    pool: Pool2d | GlobalPool2d | None = None,
    *,
    combine: Combine | str | None = None,
    strict: bool = False,
    bands_above: int | None = None,
) -> Iterator[FeatureMap | BandedFeatureMap]:
    """Yield each kernel's `FeatureMap` in bank order, then the combined map if ``combine`` is set.

    Per kernel: ``conv2d`` (with the kernel's bias) → activation → pooling. ``combine`` merges the
    kernels' convolution outputs *before* the activation (``magnitude``: ``sqrt(sum of squares)``, as
    for a Sobel pair; ``max``: the largest response, as over a compass set), then activates and pools
    the result like the others. ``strict=True`` turns a stride that leaves rows unused into a
    `ShapeError`. Image ``(H, W, C)``; a gray image has C = 1. An image of 8-bit samples (`ScaledSamples`, as
    `featmap.io.images.load_image` keeps 8-bit gray) gives the maps of its float values, bit for bit.

    The bank runs as a layer stack (`bank_layers`: a conv layer whose filters are the kernels, the activation, the
    pool; `CombineMaps` for the combined map), planned by `featmap.net.plan` and run by the executor one channel
    group (one kernel's map) at a time (`featmap.run.executor.iter_stack_groups`; small maps of every kernel made
    in one band loop, bands outer: `featmap.run.bandloop`).

    ``bands_above`` (for a caller that needs a map only as bands, as the PNG writer does): a kernel's map that
    takes the fused band path and holds more values than this comes as a `BandedFeatureMap`, never held: its
    statistics from one pass over its bands, its values made again for each later read
    (`featmap.run.fused.FusedBands`). None (the default): every map is a `FeatureMap`.
    """
    if image.ndim != 3:
        raise ShapeError("image", f"must be (H, W, C); got shape {image.shape}")
    how = None if combine is None else parse_enum(Combine, combine, "combine")
    shape = _shape3(image.shape)
    plans = plan_kernels(shape, bank, conv, pool)
    if isinstance(image, ScaledSamples) and reads_floats_whole(shape, bank, conv, act, pool, how):
        image = image.floats()  # once for every conv layer, not once per layer
    if strict:
        for plan in plans:
            for what, problem in plan.notes():
                raise ShapeError(what, problem, "change the stride or padding, or drop `strict`")
    merge = None if how is None else CombineMaps(how, max(1, len(bank)))
    merged: list[NDArray[np.floating]] = []  # the running merge, once the first map is in

    def tap(group: ChannelGroup, maps: NDArray[np.floating]) -> None:
        assert merge is not None
        if merged and merged[0].shape != maps.shape:
            raise ShapeError(
                "`combine`",
                f"maps differ in shape ({_shape3(merged[0].shape)} vs {_shape3(maps.shape)} from {group.name!r})",
                "use `padding` same, or combine kernels of one size",
            )
        merged[:] = [merge.add(merged[0] if merged else None, maps)]

    pooled = pool is not None
    layers = bank_layers(bank, conv, act, pool, shape[2])
    stacks = [(plan_stack(layer.layers, shape), layer.groups) for layer in layers]
    groups = iter_stack_groups(
        stacks, image, _KernelWeights(), tap=None if merge is None else tap, bands_above=bands_above
    )
    kernel_plan = iter(plans)  # the kernels in bank order, as the layers' groups come
    for out in groups:  # not zip(): zip's reused result tuple would hold the last map while the next is made
        plan = next(kernel_plan)
        info = _info(plan, _shape3(out.nodes[0].plan.out_shape), out.values, pooled)
        values = out.values
        yield FeatureMap(values, info) if isinstance(values, np.ndarray) else BandedFeatureMap(values, info)
        del values
        del out  # one map at a time: the caller holds the last one
    if merge is not None and merged:
        first = plans[0]
        assert first.conv_plan.geometry is not None  # a conv plan always has one
        result = merge.finish(merged.pop())
        # the combined map's stack: the merge, then the bank's activation and pool
        tail = plan_stack((merge, *layers[0].layers[1:]), (*result.shape[:-1], result.shape[-1] * merge.maps))
        final = run_tail(tail[1:], result)
        info = MapInfo(
            merge.mode.value,
            first.kernel.size,
            first.conv_plan.geometry,
            _shape3(result.shape),
            _shape3(final.shape),
            pooled,
            0,
            MapStats.of(final),
            bank.names,
        )
        yield FeatureMap(final, info)


def run(
    image: NDArray[np.floating],
    bank: KernelBank,
    conv: Conv2d = _NO_CONV_OPTIONS,
    act: Act = _NO_ACTIVATION,
    pool: Pool2d | GlobalPool2d | None = None,
    *,
    combine: Combine | str | None = None,
    strict: bool = False,
) -> FeatureMaps:
    """Run every kernel and return all maps at once (see `iter_feature_maps`)."""
    maps: list[FeatureMap] = []
    for fmap in iter_feature_maps(image, bank, conv, act, pool, combine=combine, strict=strict):
        assert isinstance(fmap, FeatureMap)  # no bands_above: every map is held
        maps.append(fmap)
    notes = _notes(plan_kernels(_shape3(image.shape), bank, conv, pool))
    return FeatureMaps(_shape3(image.shape), tuple(maps), notes)
