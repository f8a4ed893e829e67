"""Read an ONNX model as featmap layers: ``featmap shape model.onnx`` prints the same table as for a preset.

Only the ``onnx`` package is needed (``pip install 'featmap[onnx]'``), not onnxruntime or torch. The weights are
not loaded: initializers are read for their shapes (parameters are counted from them and checked against each
layer's plan), and the file is walked on a memory map (`featmap.net.onnx._wire`).

Operators and how they map (see README, "ONNX"): Conv (groups, dilations, pads, auto_pad), Gemm, MatMul (+ a bias
Add), MaxPool / AveragePool (ceil_mode, count_include_pad), GlobalAveragePool / GlobalMaxPool, ReduceMean over
H and W, Relu, Clip (ReLU6), Sigmoid, Tanh, LeakyRelu, HardSigmoid, HardSwish, Gelu, Softmax, BatchNormalization,
LayerNormalization, Flatten / Reshape to 2-D, Reshape-Transpose-Reshape (channel shuffle), Transpose to and
from channels-last, Mul by a per-channel weight (layer scale), Dropout and Identity (nothing); forks meeting at
Add, Mul or Concat, and Split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featmap.errors import MissingExtraError, SpecError, install_hint
from featmap.net.spec import Model

__all__ = ["INSTALL_HINT", "is_onnx_path", "load_onnx"]

INSTALL_HINT = install_hint("onnx")
Shape = tuple[int, ...]


def is_onnx_path(text: str | Path) -> bool:
    """Whether ``text`` names an ``.onnx`` file."""
    return str(text).lower().endswith(".onnx")


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingExtraError("ONNX", "reading .onnx files needs the onnx package", INSTALL_HINT) from None
    return onnx


def _constants(onnx: Any, graph: Any) -> tuple[dict[str, Shape], dict[str, np.ndarray]]:
    """Every initializer's and Constant node's shape, and the values of those small enough to keep."""
    from onnx import numpy_helper

    shapes: dict[str, Shape] = {}
    values: dict[str, np.ndarray] = {}
    tensors = [(t.name, t) for t in graph.initializer]
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensors.append((node.output[0], node.attribute[0].t))
    for name, tensor in tensors:
        shapes[name] = tuple(int(d) for d in tensor.dims)
        if np.prod(shapes[name], dtype=np.int64) <= 64:
            try:
                values[name] = numpy_helper.to_array(tensor)
            except (ValueError, TypeError):  # a payload left on disk: only its shape is known
                pass
    for node in graph.node:  # weights aliased through Identity, or transposed at run time
        if node.op_type in ("Identity", "Transpose") and node.input and node.input[0] in shapes:
            shape = shapes[node.input[0]]
            if node.op_type == "Transpose":
                perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
                shape = tuple(shape[i] for i in perm) if perm else shape[::-1]
            shapes[node.output[0]] = shape
            if node.input[0] in values and node.op_type == "Identity":
                values[node.output[0]] = values[node.input[0]]
    return shapes, values


def _input(graph: Any, constants: dict[str, Shape]) -> tuple[str, tuple[int | None, ...]]:
    inputs = [i for i in graph.input if i.name not in constants]
    if not inputs:
        raise SpecError("ONNX", "the graph has no input")
    first = inputs[0]
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in first.type.tensor_type.shape.dim)
    return first.name, dims


def _featmap_shape(dims: tuple[int | None, ...], override: Shape | None, path: Path) -> Shape:
    if override is not None:
        return override
    if len(dims) == 4 and all(d for d in dims[1:]):
        _, c, h, w = dims
        return (int(h), int(w), int(c))  # type: ignore[arg-type]
    if len(dims) == 2 and dims[1]:
        return (int(dims[1]),)
    shown = "×".join("?" if d is None else str(d) for d in dims)
    raise SpecError(f"{path}", f"the input's shape is {shown} (not fixed N×C×H×W)", "give --input HxWxC")


def load_onnx(path: str | Path, input_shape: Shape | None = None) -> Model:
    """The featmap layers of the ONNX model at ``path`` and its input shape (``H×W×C`` from ``N×C×H×W``).

    Raises `SpecError` naming the file when the package is missing, the file is not ONNX, or operators cannot be
    mapped (one line per operator type, with counts).
    """
    from featmap.net.onnx.graph import GraphStructure, NotExpressible

    p = Path(path)
    onnx = _import_onnx()
    from featmap.net.onnx._wire import read_without_payloads

    try:
        data = read_without_payloads(p)
        model = onnx.ModelProto.FromString(data)
    except FileNotFoundError:
        raise SpecError(str(p), "no such file", "check the path") from None
    except (OSError, ValueError, Exception) as exc:  # protobuf's DecodeError derives from Exception only
        if isinstance(exc, SpecError):
            raise
        raise SpecError(
            str(p), f"is not an ONNX model ({exc})", "export it with torch.onnx.export or tf2onnx"
        ) from None
    graph = model.graph
    if not graph.node or not graph.output:
        raise SpecError(str(p), "has an empty graph", "export the model again")
    shapes, values = _constants(onnx, graph)
    start, dims = _input(graph, shapes)
    in_shape = _featmap_shape(dims, input_shape, p)
    structure = GraphStructure(graph, shapes, values)
    try:
        layers = structure.layers(start, in_shape)
    except NotExpressible as exc:
        if not structure.unsupported:
            raise SpecError(str(p), str(exc), "featmap maps sequences, residual adds, concats and gates") from None
        layers = ()
    if structure.unsupported:
        total = sum(structure.unsupported.values())
        lines = [f"{total} node(s) featmap cannot map:"]
        for (op, reason), count in sorted(structure.unsupported.items()):
            lines.append(f"  {op} × {count}: {reason} (first: {structure.first_seen[(op, reason)]})")
        raise SpecError(str(p), "\n".join(lines), "see README, 'ONNX', for the operators featmap reads")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    producer = f"{model.producer_name} {model.producer_version}".strip() or "unknown producer"
    return Model(
        p.stem,
        layers,
        in_shape,
        f"ONNX graph ({producer}, opset {opset}, {len(graph.node)} nodes)",
        str(p),
    )
