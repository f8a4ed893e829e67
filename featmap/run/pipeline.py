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
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from featmap.core.geometry import ConvGeometry
from featmap.core.ops import activate, row_bands
from featmap.enums import Activation, Combine, PoolKind, parse_enum
from featmap.errors import ShapeError, SpecError
from featmap.kernels import Kernel, KernelBank
from featmap.net.layers import Act, Conv2d, GlobalPool2d, LayerPlan, Pool2d
from featmap.net.records import FeatureMap, FeatureMaps, MapInfo, MapStats
from featmap.run import fused

__all__ = [
    "FeatureMap",
    "FeatureMaps",
    "KernelPlan",
    "MapInfo",
    "MapStats",
    "geometry_notes",
    "plan_kernels",
    "iter_feature_maps",
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


@dataclass(frozen=True)
class KernelPlan:
    """One kernel of a run as a conv layer (and its pooling), planned once on the image's shape."""

    kernel: Kernel
    conv: Conv2d
    conv_plan: LayerPlan
    pool: Pool2d | GlobalPool2d | None
    pool_plan: LayerPlan | None
    weights: dict[str, NDArray[np.floating]]

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
        tensors = {"weight": weights}
        if kernel.bias is not None:
            tensors["bias"] = np.full(weights.shape[0], kernel.bias, dtype=np.float32)
        pool_plan = None if pool is None else pool.plan(conv_plan.out_shape)
        plans.append(KernelPlan(kernel, layer, conv_plan, pool, pool_plan, tensors))
    return plans


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


# Non-decreasing activations: max and min pooling commute with them exactly (they only pick values).
_MONOTONE = frozenset({Activation.NONE, Activation.RELU, Activation.RELU6, Activation.SIGMOID, Activation.TANH})


def _commutes(act: Act, pool: Pool2d | GlobalPool2d | None) -> bool:
    """True when pooling before the activation gives the same map: then only the pooled pixels are activated."""
    if pool is None or parse_enum(PoolKind, pool.kind, "pool mode") is PoolKind.AVG:
        return False
    if act.kind is Activation.LEAKY_RELU:
        return float(dict(act.params).get("slope", 0.01)) >= 0
    return act.kind in _MONOTONE


def _pool(values: NDArray[np.floating], plan: KernelPlan) -> NDArray[np.floating]:
    if plan.pool is None or plan.pool_plan is None:
        return values
    return plan.pool.forward(values, plan.pool_plan, {})


def _finish(values: NDArray[np.floating], act: Act, plan: KernelPlan) -> NDArray[np.floating]:
    """Activate, then pool; max/min pooling goes first where it commutes (a 2×2 pool: a quarter of the work).

    ``values`` is the caller's to give up: it is activated in place, so a large map exists once.
    """
    if act.kind is Activation.NONE:
        return _pool(values, plan)
    if _commutes(act, plan.pool):
        pooled = _pool(values, plan)
        return activate(pooled, act.kind, out=pooled, **dict(act.params))
    return _pool(activate(values, act.kind, out=values, **dict(act.params)), plan)


def _shape3(arr: NDArray[np.floating]) -> Shape3:
    return (int(arr.shape[0]), int(arr.shape[1]), int(arr.shape[2]))


def _shape3_of(shape: tuple[int, ...]) -> Shape3:
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _info(plan: KernelPlan, conv_shape: Shape3, final: NDArray[np.floating], pooled: bool) -> MapInfo:
    assert plan.conv_plan.geometry is not None  # a conv plan always has one
    geometry = plan.conv_plan.geometry
    stats = MapStats.of(final)
    return MapInfo(
        plan.kernel.name, plan.kernel.size, geometry, conv_shape, _shape3(final), pooled, plan.conv_plan.params, stats
    )


def iter_feature_maps(
    image: NDArray[np.floating],
    bank: KernelBank,
    conv: Conv2d = _NO_CONV_OPTIONS,
    act: Act = _NO_ACTIVATION,
    pool: Pool2d | GlobalPool2d | None = None,
    *,
    combine: Combine | str | None = None,
    strict: bool = False,
) -> Iterator[FeatureMap]:
    """Yield each kernel's `FeatureMap` in bank order, then the combined map if ``combine`` is set.

    Per kernel: ``conv2d`` (with the kernel's bias) → activation → pooling. ``combine`` merges the
    kernels' convolution outputs *before* the activation (``magnitude``: ``sqrt(sum of squares)``, as
    for a Sobel pair; ``max``: the largest response, as over a compass set), then activates and pools
    the result like the others. ``strict=True`` turns a stride that leaves rows unused into a
    `ShapeError`. Image ``(H, W, C)``; a gray image has C = 1.
    """
    if image.ndim != 3:
        raise ShapeError("image", f"must be (H, W, C); got shape {image.shape}")
    how = None if combine is None else parse_enum(Combine, combine, "combine")
    plans = plan_kernels(_shape3(image), bank, conv, pool)
    if strict:
        for plan in plans:
            for what, problem in plan.notes():
                raise ShapeError(what, problem, "change the stride or padding, or drop `strict`")
    acc: NDArray[np.floating] | None = None
    first: tuple[MapInfo, KernelPlan] | None = None
    banded = fused.fits(image, conv, pool, how)  # the one place a run takes the fused, band-by-band path
    for plan in plans:
        kernel = plan.kernel
        if banded:
            assert isinstance(pool, Pool2d | None)  # fits() allows no other
            out_shape = _shape3_of(plan.conv_plan.out_shape if plan.pool_plan is None else plan.pool_plan.out_shape)
            final = fused.banded_map(
                image, plan.weights, plan.conv, plan.conv_plan, act, pool, out_shape, _commutes(act, pool)
            )
            yield FeatureMap(final, _info(plan, _shape3_of(plan.conv_plan.out_shape), final, pool is not None))
            continue
        response = plan.conv.forward(image, plan.conv_plan, plan.weights)
        if how is not None:
            if acc is not None and acc.shape != response.shape:
                raise ShapeError(
                    "`combine`",
                    f"maps differ in shape ({_shape3(acc)} vs {_shape3(response)} from {kernel.name!r})",
                    "use `padding` same, or combine kernels of one size",
                )
            if acc is None:
                acc = np.square(response) if how is Combine.MAGNITUDE else response.copy()
            elif how is Combine.MAGNITUDE:
                for rows in row_bands(acc):  # no full-size temporary for the square
                    acc[rows] += np.square(response[rows])
            else:
                np.maximum(acc, response, out=acc)
        final = _finish(response, act, plan)
        info = _info(plan, _shape3(response), final, pool is not None)
        first = first or (info, plan)
        yield FeatureMap(final, info)
    if how is not None and acc is not None and first is not None:
        merged = np.sqrt(acc, out=acc) if how is Combine.MAGNITUDE else acc
        final = _finish(merged, act, first[1])
        info = MapInfo(
            how.value,
            first[0].kernel_size,
            first[0].geometry,
            _shape3(merged),
            _shape3(final),
            pool is not None,
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
    maps = tuple(iter_feature_maps(image, bank, conv, act, pool, combine=combine, strict=strict))
    notes = _notes(plan_kernels(_shape3(image), bank, conv, pool))
    return FeatureMaps(_shape3(image), maps, notes)
