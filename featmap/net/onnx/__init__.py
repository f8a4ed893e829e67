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
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import MissingExtraError, ModelMappingError, SpecError, install_hint
from featmap.frozen import frozen_dataclass
from featmap.net.layers import LayerSpec
from featmap.net.spec import Model
from featmap.net.spec.model import STAND_IN_HW

if TYPE_CHECKING:  # the tensor store loads with a model (`_read`): telling a weights file's kind does not need it
    from featmap.net.onnx.tensors import TensorRef, TensorStore

__all__ = ["INSTALL_HINT", "is_onnx_file", "is_onnx_path", "load_onnx", "onnx_weights"]

INSTALL_HINT = install_hint("onnx")
Shape = tuple[int, ...]


def is_onnx_path(text: str | Path) -> bool:
    """Whether ``text`` names an ``.onnx`` file."""
    return str(text).lower().endswith(".onnx")


#: The keys of the fields that follow ``ir_version`` in a ``ModelProto`` (producer name and version, domain, model
#: version, doc string, graph, opset, metadata), as the first byte of each.
_MODEL_FIELD_KEYS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72}


def is_onnx_file(path: str | Path) -> bool:
    """Whether ``path`` is an ONNX model: by its extension, or by its first bytes (a ``ModelProto`` opens with its
    ``ir_version``, field 1: byte 0x08, a version from 3 to 40, then the key of another model field; no YAML or
    JSON text, zip, HDF5 or safetensors header of a usual size starts so)."""
    if is_onnx_path(path):
        return True
    if not Path(path).is_file():  # a pipe would block here, a device never end: the spec reader names it
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(3)
    except OSError:
        return False
    return len(head) == 3 and head[0] == 0x08 and 3 <= head[1] <= 40 and head[2] in _MODEL_FIELD_KEYS


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingExtraError("ONNX", "reading .onnx files needs the onnx package", INSTALL_HINT) from None
    return onnx


def _constants(graph: Any, store: TensorStore) -> tuple[dict[str, Shape], dict[str, np.ndarray]]:
    """Every initializer's and Constant node's shape, and the values of those small enough to keep (read through
    ``store``: a small tensor may lie in an external data file too)."""
    shapes: dict[str, Shape] = {}
    values: dict[str, np.ndarray] = {}
    tensors = [(t.name, t) for t in graph.initializer]
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensors.append((node.output[0], node.attribute[0].t))
    for name, tensor in tensors:
        shapes[name] = tuple(int(d) for d in tensor.dims)
        if np.prod(shapes[name], dtype=np.int64) <= 64:
            found = store.small(name, strict=name in store.tensors)
            if found is not None:
                values[name] = found
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


def _input(graph: Any, constants: dict[str, Shape]) -> tuple[str, tuple[int | str | None, ...]]:
    inputs = [i for i in graph.input if i.name not in constants]
    if not inputs:
        raise SpecError("ONNX", "the graph has no input")
    first = inputs[0]
    dims = tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in first.type.tensor_type.shape.dim
    )
    return first.name, dims


#: The sizes an input's open height and width are mapped at: a stand-in, then odd sizes that would show a mapping
#: depending on them (``SAME_LOWER`` pads). Each image is then planned at its own size.
OPEN_PROBES = (STAND_IN_HW, (225, 231))


def _featmap_shape(
    name: str, dims: tuple[int | str | None, ...], override: Shape | None, path: Path
) -> tuple[Shape, tuple[int | str, ...]]:
    """The shape to map the graph at, and the input's open dims as ``(H, W, C)`` (names for the open sizes; empty
    when the input is fixed or ``override`` fixes it)."""
    if override is not None:
        return override, ()
    fixed = [isinstance(d, int) and d > 0 for d in dims]
    if len(dims) == 4 and all(fixed[1:]):
        _, c, h, w = dims
        return (int(h), int(w), int(c)), ()  # type: ignore[arg-type]
    if len(dims) == 2 and fixed[1]:
        return (int(dims[1]),), ()  # type: ignore[arg-type]
    shown = "×".join("?" if d is None else str(d) for d in dims) or "unknown"
    if len(dims) == 4 and fixed[1]:  # open height and/or width: each image at its own size, as ONNX Runtime runs it
        c = int(dims[1])  # type: ignore[arg-type]
        h, w = (d if isinstance(d, int) and d > 0 else str(d or "?") for d in dims[2:])
        stand_in = tuple(d if isinstance(d, int) else p for d, p in zip((h, w), OPEN_PROBES[0], strict=True))
        return (*stand_in, c), (h, w, c)
    raise ModelMappingError(
        str(path),
        f"its input {name!r} has open sizes ({shown}) featmap cannot run: only height and width may be open",
        "export with fixed channels (and features), or give `featmap shape --input HxWxC`",
        details=(f"{name} (input): {shown}",),
    )


@frozen_dataclass
class _Mapped:
    """A read ONNX file: the model, the weighted layers' tensors by featmap key, and where to read them."""

    model: Model
    binding: dict[str, tuple[TensorRef, Shape]]
    store: TensorStore


def _size_checked(p: Path) -> int:
    """The file's size, refused over the weights limit (an ONNX file is mostly weights) before it is read."""
    from featmap.net.weights._common import BYTES_ENV, DEFAULT_BYTES, limit

    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise SpecError(str(p), "no such file", "check the path") from None
    except OSError as exc:
        raise SpecError(str(p), f"cannot be read ({exc.strerror})", "check the path") from None
    if not p.is_file():
        raise SpecError(str(p), "is not a file", "give an .onnx file")
    max_bytes = limit(BYTES_ENV, DEFAULT_BYTES)
    if size > max_bytes:
        raise SpecError(
            str(p),
            f"is {size:,} bytes, over the weights limit of {max_bytes:,} ({BYTES_ENV})",
            f"set {BYTES_ENV}={size} (or more) to allow it",
        )
    return size


def _read(p: Path, input_shape: Shape | None) -> _Mapped:
    from featmap.net.onnx._wire import read_structure
    from featmap.net.onnx.tensors import TensorStore
    from featmap.net.preprocess import from_metadata

    onnx = _import_onnx()
    _size_checked(p)
    try:
        data, payloads = read_structure(p)
        model = onnx.ModelProto.FromString(data)
    except FileNotFoundError:
        raise SpecError(str(p), "no such file", "check the path") from None
    except (OSError, ValueError, Exception) as exc:  # protobuf's DecodeError derives from Exception only
        if isinstance(exc, SpecError):
            raise
        raise SpecError(
            str(p), f"is not an ONNX model ({str(exc)[:120]})", "export it with torch.onnx.export or tf2onnx"
        ) from None
    graph = model.graph
    if not graph.node or not graph.output:
        raise SpecError(str(p), "has an empty graph", "export the model again")
    store = TensorStore(p, model, payloads)
    shapes, values = _constants(graph, store)
    start, dims = _input(graph, shapes)
    in_shape, open_dims = _featmap_shape(start, dims, input_shape, p)
    structure, layers = _map(p, graph, shapes, values, model, store, start, in_shape)
    if open_dims:
        _check_open(p, start, open_dims, layers, _map(p, graph, shapes, values, model, store, start, _probe(open_dims)))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    producer = f"{model.producer_name} {model.producer_version}".strip() or "unknown producer"
    mapped = Model(
        p.stem,
        layers,
        None if open_dims else in_shape,
        f"ONNX graph ({producer}, opset {opset}, {len(graph.node)} nodes)",
        str(p),
        weights=p,
        preprocess=from_metadata({prop.key: prop.value for prop in model.metadata_props}, str(p)),
        input_dims=open_dims,
    )
    return _Mapped(mapped, _binding(structure, layers, in_shape), store)


def _map(
    p: Path, graph: Any, shapes: dict[str, Shape], values: dict[str, np.ndarray], model: Any, store: TensorStore,
    start: str, in_shape: Shape,
) -> tuple[Any, tuple[LayerSpec, ...]]:  # fmt: skip
    """The graph's structure and layers mapped for an input of ``in_shape``; every refusal raised at once."""
    from featmap.net.onnx.graph import GraphStructure, NotExpressible

    structure = GraphStructure(graph, shapes, dict(values), model, store.small)  # shape values are worked out anew
    stopped = None
    try:
        layers = structure.layers(start, in_shape)
    except NotExpressible as exc:
        if not structure.refused:
            raise ModelMappingError(
                str(p), str(exc), "featmap maps sequences, residual adds, concats and gates"
            ) from None
        layers, stopped = (), str(exc)
    if structure.refused:
        raise structure.refused.error(str(p), stopped)
    return structure, layers


def _probe(open_dims: tuple[int | str, ...]) -> Shape:
    """The second size an input with open ``(H, W, C)`` is mapped at."""
    h, w, c = open_dims
    return (h if isinstance(h, int) else OPEN_PROBES[1][0], w if isinstance(w, int) else OPEN_PROBES[1][1], int(c))


def _check_open(
    p: Path, start: str, open_dims: tuple[int | str, ...], layers: tuple[LayerSpec, ...], probed: tuple[Any, Any]
) -> None:
    """Refuse a graph whose layers change with its open input size (one mapping must serve every image)."""
    from featmap.net.plan import layers_fingerprint

    other = probed[1]
    if layers_fingerprint(layers) == layers_fingerprint(other):
        return
    first = next(
        (getattr(a, "name", None) for a, b in zip(_leaves(layers), _leaves(other), strict=False) if a != b), None
    )
    shown = "×".join(map(str, open_dims))
    raise ModelMappingError(
        str(p),
        f"its input {start!r} has open sizes ({shown}) and node {first!r} maps to other layers at another size",
        "export with a fixed input size (no dynamic_axes / dynamic_shapes)",
    )


def _leaves(layers: tuple[LayerSpec, ...]) -> list[LayerSpec]:
    from featmap.net.layers import Parallel, Sequential

    out: list[LayerSpec] = []
    for layer in layers:
        if isinstance(layer, Sequential):
            out += _leaves(layer.layers)
        elif isinstance(layer, Parallel):
            for branch in layer.branches:
                out += _leaves(branch.layers)
        else:
            out.append(layer)
    return out


def _binding(structure: Any, layers: tuple[LayerSpec, ...], in_shape: Shape) -> dict[str, tuple[TensorRef, Shape]]:
    """Every weight of the planned layers (``KEY.weight``…) → the ONNX tensor it comes from and its shape."""
    from featmap.net.plan import iter_leaves, plan_layers

    binding: dict[str, tuple[TensorRef, Shape]] = {}
    for node in iter_leaves(plan_layers(layers, in_shape)):
        if not node.plan.weights:
            continue
        refs = structure.refs[getattr(node.layer, "name", None)]
        for name, shape in node.plan.weights:
            binding[f"{node.key}.{name}"] = (refs[name], shape)
    return binding


def load_onnx(path: str | Path, input_shape: Shape | None = None) -> Model:
    """The featmap layers of the ONNX model at ``path`` and its input shape (``H×W×C`` from ``N×C×H×W``); the
    model's ``weights`` is the file itself (`onnx_weights` reads its initializers).

    Each layer is named after the ONNX node it comes from (``/layer1/layer1.0/conv1/Conv``, or the node's output
    where it has no name). Raises `SpecError` naming the file when the package is missing, the file is too large
    or not ONNX, and `ModelMappingError` listing every node that cannot be mapped, one a line.
    """
    return _read(Path(path), input_shape).model


def onnx_weights(path: str | Path) -> dict[str, NDArray[np.floating[Any]]]:
    """The weights of the ONNX model at ``path`` by featmap key (``KEY.weight``, PyTorch layout), read from its
    initializers (and external data files) through memory maps, after the limits are checked on their sizes
    (``FEATMAP_MAX_WEIGHTS_BYTES``, ``FEATMAP_MAX_WEIGHTS_ELEMENTS``)."""
    from featmap.net.weights._common import check_size

    p = Path(path)
    mapped = _read(p, None)
    total = 0
    for ref, _ in mapped.binding.values():
        if ref.name is not None:
            total += mapped.store.nbytes(ref.name)
            check_size(str(p), ref.name, mapped.store.shape(ref.name), total)
    return {key: mapped.store.read(ref, shape) for key, (ref, shape) in mapped.binding.items()}
