"""The nodes of an ONNX graph that featmap cannot map, collected while the mapping goes on past them, and the
error that lists every one of them, one a line.

Mapping continues after a refused node with the shape ONNX's own shape inference gives its output (worked out
only once something is refused), so that a node fed by a refused one is judged too: an unknown operator after an
unknown operator is listed, a convolution after it is not.

Examples
--------
>>> r = Refusals()
>>> r.note("/act/Erf", "Erf", "no featmap layer for this operator")
>>> r.note("/cond/If", "If", "control flow")
>>> e = r.error("net.onnx")
>>> print(e)
net.onnx: 2 nodes featmap cannot map (1 Erf, 1 If); see README, 'ONNX', for the operators featmap reads
>>> e.details
('/act/Erf (Erf): no featmap layer for this operator', '/cond/If (If): control flow')
>>> e.exit_code
2
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from featmap.errors import ModelMappingError

__all__ = ["CONTROL_FLOW", "MAX_LINES", "Refusals"]

Shape = tuple[int, ...]

#: Operators that run subgraphs: featmap runs one fixed stack of layers.
CONTROL_FLOW = {
    "If": "control flow (If): featmap runs one fixed stack of layers; export the model with the branch taken",
    "Loop": "control flow (Loop): featmap runs one fixed stack of layers; export the model unrolled",
    "Scan": "control flow (Scan): featmap runs one fixed stack of layers; export the model unrolled",
}

#: At most this many nodes are listed one a line (the first line counts them all by operator).
MAX_LINES = 1000

_FIX = "see README, 'ONNX', for the operators featmap reads"


class Refusals:
    """Refused nodes by name, in the order met, and ONNX's inferred shapes of the ``model`` (a ``ModelProto``)."""

    def __init__(self, model: Any = None) -> None:
        self.model = model
        self.found: dict[str, tuple[str, str]] = {}
        self.order: dict[str, int] = {}
        self._shapes: dict[str, tuple[int | None, ...]] | None = None

    def __bool__(self) -> bool:
        return bool(self.found)

    def note(self, name: str, op: str, reason: str, order: int = 0) -> None:
        """Refuse the node ``name`` (op type ``op``) for ``reason``; a node is listed once, by ``order`` (its place
        in the graph)."""
        self.found.setdefault(name, (op, reason))
        self.order.setdefault(name, order)

    def inferred(self, tensor: str, layout: str) -> Shape | None:
        """featmap's shape of ``tensor`` (``H×W×C`` or ``N``) from ONNX shape inference, or None when unknown."""
        if self._shapes is None:
            self._shapes = self._infer()
        dims = self._shapes.get(tensor)
        if dims is None or any(d is None or d < 1 for d in dims):
            return None
        if len(dims) == 4 and dims[0] == 1:
            _, a, b, c = dims
            return (b, c, a) if layout == "nchw" else (a, b, c)  # type: ignore[return-value]
        if len(dims) == 2 and dims[0] == 1:
            return (dims[1],)  # type: ignore[return-value]
        return None

    def _infer(self) -> dict[str, tuple[int | None, ...]]:
        if self.model is None:
            return {}
        try:
            from onnx import shape_inference

            graph = shape_inference.infer_shapes(self.model).graph
        except Exception:  # inference is a help for the listing, never a reason to fail differently
            return {}
        shapes = {}
        for info in (*graph.value_info, *graph.output, *graph.input):
            dims = info.type.tensor_type.shape.dim
            shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        return shapes

    def error(self, path: str, stopped: str | None = None) -> ModelMappingError:
        """The error listing every refused node (and, with ``stopped``, where the mapping could not go on)."""
        counts = Counter(op for op, _ in self.found.values())
        by_op = ", ".join(f"{n} {op}" for op, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        total = len(self.found)
        names = sorted(self.found, key=lambda name: self.order[name])
        lines = [f"{name} ({self.found[name][0]}): {self.found[name][1]}" for name in names]
        if len(lines) > MAX_LINES:
            lines = [*lines[:MAX_LINES], f"… and {len(lines) - MAX_LINES} more (counted above)"]
        if stopped:
            lines.append(f"and then: {stopped}")
        noun = "node" if total == 1 else "nodes"
        return ModelMappingError(path, f"{total} {noun} featmap cannot map ({by_op})", _FIX, details=tuple(lines))
