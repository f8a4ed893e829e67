"""A whole explanation from the layer objects `featmap apply` builds: a conv (from its plan), then a pool."""

from __future__ import annotations

from numpy.typing import ArrayLike

from featmap.errors import ShapeError, SpecError
from featmap.explain.arithmetic import AxisArithmetic
from featmap.explain.conv import ConvTrace, trace_conv
from featmap.explain.limits import Matrix, check_matrix
from featmap.explain.pool import PoolTrace, trace_pool
from featmap.frozen import frozen_dataclass
from featmap.net.layers import Act, Conv2d, GlobalPool2d, Pool2d

__all__ = ["Explanation", "explain", "pick_positions"]


@frozen_dataclass(eq=False)
class Explanation:
    """What `featmap explain` shows: a convolution, a pooling, or a convolution then a pooling.

    ``source`` says where the input came from (inline, a file, an image crop, an example).
    """

    source: str
    conv: ConvTrace | None
    pool: PoolTrace | None
    kernel_name: str = ""
    title: str = ""

    @property
    def output(self) -> Matrix:
        """The final matrix (after pooling when there is one)."""
        if self.pool is not None:
            return self.pool.output
        if self.conv is None:
            raise SpecError("explain", "nothing was explained", "give a kernel, a pooling, or both")
        return self.conv.output


def explain(
    x: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    conv: Conv2d | None = None,
    bias: float = 0.0,
    act: Act | None = None,
    pool: Pool2d | GlobalPool2d | None = None,
    strict: bool = False,
    source: str = "input",
    kernel_name: str = "",
    title: str = "",
) -> Explanation:
    """Explain ``x`` through the layers `featmap apply` runs: a conv (with ``weights``), then a pool.

    The layer objects are the ones `featmap apply` builds from the same options; ``strict`` refuses a
    stride that leaves input rows or columns unused, as ``--strict`` does.

    Examples
    --------
    >>> e = explain([[1, 5], [3, 2]], pool=Pool2d("max", 2))
    >>> e.output.tolist(), e.pool.step(0, 0).winner
    ([[5.0]], (0, 1))
    """
    if weights is None and pool is None:
        raise SpecError("explain", "nothing to explain", "give a kernel, a pooling, or both")
    conv_trace = None
    if weights is not None:
        activation = act or Act()
        conv_trace = trace_conv(  # the layer's own plan places the windows
            x,
            weights,
            bias,
            activation=activation.kind,
            slope=float(dict(activation.params).get("slope", 0.01)),
            layer=conv or Conv2d(),
        )
        _check_strict(conv_trace.axes, "conv", strict)
    pool_trace = None
    if pool is not None:
        source_map = conv_trace.output if conv_trace is not None else check_matrix(x, "input")
        if isinstance(pool, GlobalPool2d):
            pool_trace = trace_pool(source_map, mode=pool.kind, global_pool=True)
        else:
            pool_trace = trace_pool(source_map, layer=pool)  # the layer's own plan and forward pass
        _check_strict(pool_trace.axes, "pool", strict)
    return Explanation(source, conv_trace, pool_trace, kernel_name, title)


def _check_strict(axes: tuple[AxisArithmetic, AxisArithmetic], what: str, strict: bool) -> None:
    for axis in axes:
        if strict and axis.unused:
            raise ShapeError(
                what,
                f"{axis.reach_text()} leaves {axis.unused} {axis.axis} unused",
                "change the stride or padding, or drop --strict",
            )


def pick_positions(
    explanation: Explanation, at: tuple[int, int] | None, steps: int | None
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The conv and pool positions to show in detail: ``(conv_positions, pool_positions)``.

    ``at`` is a position of the final output: with a conv then a pool it selects the pooled cell and
    the conv positions inside its window. Otherwise the first ``steps`` positions of each stage (all
    when ``steps`` is None).

    Examples
    --------
    >>> from featmap.net.layers import Pool2d
    >>> e = explain([[1, 2, 3, 4]] * 4, [[1]], pool=Pool2d("max", 2))
    >>> pick_positions(e, (0, 1), None)
    ([(0, 2), (0, 3), (1, 2), (1, 3)], [(0, 1)])
    """
    conv, pool = explanation.conv, explanation.pool
    if at is None:
        first = slice(None) if steps is None else slice(0, steps)
        return (conv.positions[first] if conv else [], pool.positions[first] if pool else [])
    if pool is None:
        if conv is not None:
            conv.cells(*at)  # refuses a position outside the output
        return [at], []
    rows, cols = pool.cells(*at)
    if conv is None:
        return [], [at]
    top, _, left, _ = pool.geometry.padding
    inside = [(r - top, c - left) for r in rows for c in cols if not pool.pad_mask[r, c]]
    return inside, [at]
