"""The step records of max, average and min pooling: windows, the winner, or the sum and its count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featmap.core.engine import window_taps
from featmap.core.geometry import ConvGeometry, PaddingArg, as_pair, pool_geometry
from featmap.enums import PoolKind, parse_enum
from featmap.errors import ShapeError
from featmap.explain.arithmetic import AxisArithmetic, axes_of, check_fits, positions_of, window_cells
from featmap.explain.limits import Matrix, check_matrix
from featmap.frozen import frozen_dataclass
from featmap.net.layers import Pool2d

__all__ = ["PoolStep", "PoolTrace", "trace_pool"]


@frozen_dataclass(eq=False)
class PoolStep:
    """One pooled position: the window (NaN on padding), the winner or the average and its count."""

    position: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    window: Matrix
    real: NDArray[np.bool_]
    winner: tuple[int, int] | None
    total: float
    count: int
    value: float


@frozen_dataclass(eq=False)
class PoolTrace:
    """Max, average or min pooling of one channel: padded input (NaN on padding), geometry, output.

    Padded cells never win and are not counted in an average (featmap's and TensorFlow's rule), so
    ``output`` equals `featmap.pool2d`.
    """

    input: Matrix
    padded: Matrix
    pad_mask: NDArray[np.bool_]
    kind: PoolKind
    geometry: ConvGeometry
    axes: tuple[AxisArithmetic, AxisArithmetic]
    counts: NDArray[np.int64]
    output: Matrix
    global_pool: bool = False

    @property
    def positions(self) -> list[tuple[int, int]]:
        """Every output position, row by row."""
        return positions_of(self.geometry)

    def cells(self, r: int, c: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Padded-input rows and columns of the window of output ``(r, c)``."""
        return window_cells(self.geometry, r, c)

    def step(self, r: int, c: int) -> PoolStep:
        """The record of output position ``(r, c)``."""
        rows, cols = self.cells(r, c)
        window = self.padded[np.ix_(rows, cols)][:, :, 0]
        real = ~self.pad_mask[np.ix_(rows, cols)]
        value = float(self.output[r, c])
        winner = None
        if self.kind is not PoolKind.AVG:
            hits = np.argwhere(real & (window == value))  # the first in reading order, as np.argmax picks
            winner = (rows[int(hits[0][0])], cols[int(hits[0][1])])
        total = float(window[real].sum())
        return PoolStep((r, c), rows, cols, window, real, winner, total, int(self.counts[r, c]), value)


def trace_pool(
    x: ArrayLike,
    size: int | Sequence[int] = 2,
    *,
    stride: int | Sequence[int] | None = None,
    padding: PaddingArg = "valid",
    mode: str | PoolKind = "max",
    global_pool: bool = False,
    geometry: ConvGeometry | None = None,
    layer: Pool2d | None = None,
) -> PoolTrace:
    """Trace max, average or min pooling of a one-channel ``x``; ``stride`` defaults to ``size``.

    ``global_pool=True`` pools the whole plane into one value (``size`` is then ignored). ``layer`` is the
    pooling layer to trace (`featmap.net.layers.Pool2d`; without one it is made from the options): its plan
    places the windows (``geometry``, a plan's, overrides it) and its forward pass gives the output; the trace
    adds what the layer does not keep: the padded cells, each window's count and winner.
    """
    arr = check_matrix(x, "input")
    if arr.shape[2] != 1:
        raise ShapeError(
            "input",
            f"has {arr.shape[2]} channels; pooling is explained one channel at a time",
            "give a 2-D matrix (or a gray crop)",
        )
    if global_pool:  # one window over the whole plane
        layer = Pool2d(parse_enum(PoolKind, mode, "pool"), (int(arr.shape[0]), int(arr.shape[1])), (1, 1), "valid")
    elif layer is None:
        # the options' form says an empty window in its own words before the layer's rule on padding does
        _window_counts(pool_geometry(arr.shape[:2], size, stride=stride, padding=padding), arr.shape)
        pool_stride = None if stride is None else as_pair(stride, "stride")
        layer = Pool2d(parse_enum(PoolKind, mode, "pool"), as_pair(size, "size"), pool_stride, padding)
    kind = layer.kind
    plan = layer.plan(arr.shape)
    if geometry is not None:
        plan = replace(plan, geometry=geometry)
    g = plan.geometry
    assert g is not None  # a window pooling's plan has one
    check_fits(g, arr, g.kernel_hw)
    mask, counts = _window_counts(g, arr.shape)
    padded = np.full((*g.padded_hw, 1), np.nan)
    padded[~mask] = arr.reshape(-1, 1)
    output = layer.forward(arr, plan, {})[:, :, 0]
    return PoolTrace(arr, padded, mask, kind, g, axes_of(g), counts, output, global_pool)


def _window_counts(g: ConvGeometry, shape: tuple[int, ...]) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """The padding's cells (True) of the padded plane, and how many input cells each window holds (none: an
    error)."""
    top, _, left, _ = g.padding
    mask = np.ones(g.padded_hw, dtype=bool)
    mask[top : top + shape[0], left : left + shape[1]] = False
    cells = np.zeros(g.out_hw)
    for _, _, real in window_taps((~mask[:, :, np.newaxis]).astype(np.float64), g):
        cells += real[:, :, 0]
    counts = cells.astype(np.int64)
    if np.any(counts == 0):
        raise ShapeError(
            "padding",
            f"pooling pads of {g.padding} leave a {g.kernel_hw[0]}×{g.kernel_hw[1]} window with no input cell",
            "pad at most half the window, or use `same`",
        )
    return mask, counts
