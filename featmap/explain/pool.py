"""The step records of max, average and min pooling: windows, the winner, or the sum and its count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featmap.core.engine import window_taps
from featmap.core.geometry import ConvGeometry, PaddingArg, pool_geometry
from featmap.enums import PoolKind, parse_enum
from featmap.errors import ShapeError
from featmap.explain.arithmetic import AxisArithmetic, axes_of, check_fits, positions_of, window_cells
from featmap.explain.limits import Matrix, check_matrix

__all__ = ["PoolStep", "PoolTrace", "trace_pool"]


@dataclass(frozen=True, eq=False)
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


@dataclass(frozen=True, eq=False)
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
) -> PoolTrace:
    """Trace max, average or min pooling of a one-channel ``x``; ``stride`` defaults to ``size``.

    ``global_pool=True`` pools the whole plane into one value (``size`` is then ignored). ``geometry`` is a
    layer plan's (`featmap.net.layers.Pool2d.plan`); without one it is worked out from the options.
    """
    arr = check_matrix(x, "input")
    if arr.shape[2] != 1:
        raise ShapeError(
            "input",
            f"has {arr.shape[2]} channels; pooling is explained one channel at a time",
            "give a 2-D matrix (or a gray crop)",
        )
    kind = parse_enum(PoolKind, mode, "pool")
    if global_pool:
        size, stride, padding = arr.shape[:2], 1, "valid"
    g = geometry or pool_geometry(arr.shape[:2], size, stride=stride, padding=padding)
    check_fits(g, arr, g.kernel_hw)
    top, _, left, _ = g.padding
    mask = np.ones(g.padded_hw, dtype=bool)
    mask[top : top + arr.shape[0], left : left + arr.shape[1]] = False
    padded = np.full((*g.padded_hw, 1), np.nan)
    padded[~mask] = arr.reshape(-1, 1)
    fill = {PoolKind.MAX: -np.inf, PoolKind.MIN: np.inf, PoolKind.AVG: 0.0}[kind]
    filled = np.where(mask[:, :, np.newaxis], fill, padded)
    reduce: np.ufunc = {PoolKind.MAX: np.maximum, PoolKind.MIN: np.minimum, PoolKind.AVG: np.add}[kind]
    out = np.full(g.out_hw, fill)
    cells = np.zeros(g.out_hw)
    real_cells = (~mask[:, :, np.newaxis]).astype(np.float64)
    for (_, _, view), (_, _, real) in zip(window_taps(filled, g), window_taps(real_cells, g), strict=True):
        reduce(out, view[:, :, 0], out=out)
        cells += real[:, :, 0]
    counts = cells.astype(np.int64)
    if np.any(counts == 0):
        raise ShapeError(
            "padding",
            f"pooling pads of {g.padding} leave a {g.kernel_hw[0]}×{g.kernel_hw[1]} window with no input cell",
            "pad at most half the window, or use `same`",
        )
    if kind is PoolKind.AVG:
        out = out / counts
    return PoolTrace(arr, padded, mask, kind, g, axes_of(g), counts, out, global_pool)
