"""JSON-ready dicts of `featmap.explain` records (``featmap explain --json``); the Rich views are
`featmap.render.explain`. Whole numbers become integers, a pooling's padding cells null.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from featmap.enums import Activation
from featmap.explain import (
    AxisArithmetic,
    ConvTrace,
    Explanation,
    PoolTrace,
    pick_positions,
)
from featmap.explain.examples import Example

__all__ = ["examples_dict", "explain_dict"]


def _num(value: float) -> float | int | None:
    """A JSON number: whole values as integers, NaN (a padding cell of a pooling) as null."""
    if not np.isfinite(value):
        return None
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def _matrix(values: np.ndarray) -> Any:
    return [_matrix(v) for v in values] if values.ndim > 1 else [_num(float(v)) for v in values]


def _channels(values: np.ndarray) -> Any:
    """``(H, W, C)`` as a list of C matrices."""
    return [_matrix(values[:, :, ch]) for ch in range(values.shape[2])]


def _axes_dict(axes: Sequence[AxisArithmetic]) -> list[dict[str, Any]]:
    return [
        {
            "axis": a.axis,
            "size": a.size,
            "kernel": a.kernel,
            "dilation": a.dilation,
            "pad_before": a.pad_before,
            "pad_after": a.pad_after,
            "stride": a.stride,
            "out": a.out,
            "unused": a.unused,
            "formula": a.formula,
            "worked": a.worked,
            "note": a.note,
        }
        for a in axes
    ]


def _geometry_dict(g: Any) -> dict[str, Any]:
    top, bottom, left, right = g.padding
    return {
        "kernel_size": list(g.kernel_hw),
        "stride": list(g.stride),
        "dilation": list(g.dilation),
        "padding": {"top": top, "bottom": bottom, "left": left, "right": right},
        "padded_shape": list(g.padded_hw),
        "out_shape": list(g.out_hw),
        "unused": list(g.dropped_hw),
    }


def _conv_dict(e: Explanation, t: ConvTrace, positions: list[tuple[int, int]]) -> dict[str, Any]:
    steps = []
    for r, c in positions:
        s = t.step(r, c)
        steps.append(
            {
                "at": [r, c],
                "rows": list(s.rows),
                "cols": list(s.cols),
                "window": [_matrix(w) for w in s.window],
                "products": [_matrix(p) for p in s.products],
                "channel_sums": [_num(v) for v in s.channel_sums],
                "sum": _num(s.total),
                "bias": _num(s.bias),
                "pre_activation": _num(s.pre_activation),
                "value": _num(s.value),
            }
        )
    return {
        "operation": "convolution" if t.flip else "cross-correlation",
        "kernel": {"name": e.kernel_name, "channels": [_matrix(k) for k in t.kernel], "flip": t.flip},
        "applied_kernel": [_matrix(k) for k in t.applied],
        "bias": _num(t.bias),
        "activation": {"name": t.activation.value, "slope": t.slope if t.activation is Activation.LEAKY_RELU else None},
        "pad_mode": t.pad_mode.value,
        "pad_value": t.pad_value,
        **_geometry_dict(t.geometry),
        "padded": {"channels": _channels(t.padded), "pad_mask": t.pad_mask.tolist()},
        "axes": _axes_dict(t.axes),
        "positions": len(t.positions),
        "steps": steps,
        "sums": _matrix(t.sums),
        "output": _matrix(t.output),
    }


def _pool_dict(t: PoolTrace, positions: list[tuple[int, int]]) -> dict[str, Any]:
    steps = []
    for r, c in positions:
        s = t.step(r, c)
        steps.append(
            {
                "at": [r, c],
                "rows": list(s.rows),
                "cols": list(s.cols),
                "window": _matrix(s.window),
                "winner": None if s.winner is None else list(s.winner),
                "sum": _num(s.total),
                "count": s.count,
                "value": _num(s.value),
            }
        )
    return {
        "kind": t.kind.value,
        "global": t.global_pool,
        **_geometry_dict(t.geometry),
        "padded": {"values": _matrix(t.padded[:, :, 0]), "pad_mask": t.pad_mask.tolist()},
        "axes": _axes_dict(t.axes),
        "positions": len(t.positions),
        "steps": steps,
        "counts": t.counts.tolist(),
        "output": _matrix(t.output),
    }


def explain_dict(e: Explanation, *, at: tuple[int, int] | None = None, steps: int | None = 3) -> dict[str, Any]:
    """The same facts as `explain_view`, JSON-ready (padding cells of a pooling are null)."""
    conv_at, pool_at = pick_positions(e, at, steps)
    first = e.conv.input if e.conv is not None else e.pool.input if e.pool is not None else np.zeros((0, 0, 1))
    return {
        "source": e.source,
        "title": e.title,
        "input": {"shape": list(first.shape), "channels": _channels(first)},
        "conv": None if e.conv is None else _conv_dict(e, e.conv, conv_at),
        "pool": None if e.pool is None else _pool_dict(e.pool, pool_at),
        "output": _matrix(e.output),
    }


def examples_dict(examples: Iterable[Example]) -> list[dict[str, str]]:
    """The shipped examples as JSON-ready data."""
    return [{"name": x.name, "title": x.title} for x in examples]
