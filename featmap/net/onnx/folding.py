"""Shape plumbing worked out at read time: exporters compute a ``Reshape`` target or a chunk's bounds from the
tensor's own shape (``Shape`` → ``Gather`` → ``Unsqueeze`` → ``Concat``, ``Div``…); featmap knows every shape
on the data path, so these small integer tensors are folded to constants.

Examples
--------
>>> from types import SimpleNamespace
>>> batch_and_rest = [np.array([1]), np.array([-1])]
>>> fold(SimpleNamespace(op_type="Concat", attribute=[]), batch_and_rest).tolist()
[1, -1]
>>> fold(SimpleNamespace(op_type="Div", attribute=[]), [np.array(116), np.array(2)]).tolist()
58
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featmap.net.onnx.operators import attrs

__all__ = ["FIRST_INPUT_ONLY", "fold"]

#: Inputs of these operators beyond the first are parameters (a shape, split sizes, bounds), not data.
FIRST_INPUT_ONLY = {
    "Reshape",
    "Split",
    "Slice",
    "Clip",
    "Pad",
    "Resize",
    "Upsample",
    "ReduceMean",
    "Squeeze",
    "Unsqueeze",
    "Dropout",
    "Gather",
    "Expand",
    "Tile",
}

_ARITHMETIC = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract}


def fold(node: Any, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    """One shape-plumbing node on known inputs (integers, small), or None when featmap does not fold it."""
    op, a = node.op_type, attrs(node)
    first = inputs[0]
    assert first is not None
    if op in ("Identity", "Cast"):
        return first
    if op == "Gather" and inputs[1] is not None:
        return np.take(first, inputs[1], axis=a.get("axis", 0))
    if op in ("Unsqueeze", "Squeeze"):
        axes = a.get("axes") if len(inputs) < 2 or inputs[1] is None else inputs[1].tolist()
        if op == "Unsqueeze":
            out = first
            for axis in sorted(axes or []):
                out = np.expand_dims(out, axis)
            return out
        return np.squeeze(first, axis=tuple(axes) if axes else None)
    if op == "Concat" and all(v is not None for v in inputs):
        return np.concatenate([np.atleast_1d(v) for v in inputs if v is not None], axis=a.get("axis", 0))
    if op in _ARITHMETIC and inputs[1] is not None:
        return np.asarray(_ARITHMETIC[op](first, inputs[1]))
    if op == "Div" and inputs[1] is not None:
        if first.dtype.kind in "iu" and inputs[1].dtype.kind in "iu":
            return np.asarray(np.trunc(first / inputs[1]).astype(first.dtype))
        return np.asarray(first / inputs[1])
    if op == "Slice" and inputs[1] is not None and inputs[2] is not None:
        axes = inputs[3].tolist() if len(inputs) > 3 and inputs[3] is not None else list(range(len(inputs[1])))
        steps = inputs[4].tolist() if len(inputs) > 4 and inputs[4] is not None else [1] * len(axes)
        index = [slice(None)] * first.ndim
        for axis, start, stop, step in zip(axes, inputs[1].tolist(), inputs[2].tolist(), steps, strict=False):
            index[axis] = slice(start, stop, step)
        return first[tuple(index)]
    return None
