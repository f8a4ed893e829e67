"""Weights of conv, dense and batch-norm layers: read from ``.npz``/``.safetensors``, matched, or seeded.

Naming convention
-----------------
A parameterised layer's *key* is the dotted path of its position in the spec: each component is the
layer's ``name`` when the spec gives one, else its 0-based index in its parent list, exactly what
``torch.nn.Sequential(...).state_dict()`` gives for an unnamed stack (``0.weight``, ``3.bias``) and for
a named one (``nn.Sequential(OrderedDict(C1=...))`` gives ``C1.weight``). Tensors, in PyTorch layout:

=============  =============================================  ============================
layer          tensors (featmap / PyTorch)                    shapes
=============  =============================================  ============================
conv           ``KEY.weight``, ``KEY.bias``                   (O, I/groups, kh, kw), (O,)
conv1d         ``KEY.weight``, ``KEY.bias``                   (O, I/groups, k), (O,)
dense          ``KEY.weight``, ``KEY.bias``                   (out, in), (out,)
batch norm     ``KEY.weight``, ``KEY.bias``,                  (C,) each
               ``KEY.running_mean``, ``KEY.running_var``
=============  =============================================  ============================

``KEY.num_batches_tracked`` (PyTorch's batch-norm counter) is ignored. Where the Keras layout is declared
(``layout="keras"``) a conv weight is ``KEY.kernel`` (kh, kw, I/groups, O) (a depthwise one
``KEY.depthwise_kernel`` (kh, kw, I, multiplier)), a dense weight ``KEY.kernel`` (in, out), batch norm
``KEY.gamma``, ``KEY.beta``, ``KEY.moving_mean``, ``KEY.moving_variance``; `to_torch_layout` converts them.
A dense layer after ``flatten`` of an H×W×C map sees featmap's (and Keras') row-major (H, W, C) order;
PyTorch flattens (C, H, W), so its weight's columns are reordered with `reorder_flatten_columns`.

Limits
------
A file larger than ``FEATMAP_MAX_WEIGHTS_BYTES`` (default 2 GiB; ``K``/``M``/``G`` suffixes allowed),
tensors whose decoded data together pass the same limit, or one tensor of more than
``FEATMAP_MAX_WEIGHTS_ELEMENTS`` elements (default 500,000,000) are refused before any data is read,
from the file size and the tensors' headers; `init_weights` applies the same two limits.

Examples
--------
>>> w = init_weights({"C1.weight": (6, 1, 5, 5), "C1.bias": (6,)}, {"C1": "conv"}, seed=0)
>>> float(abs(w["C1.weight"]).max()) <= 1 / 5  # kaiming: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 25
True
>>> to_torch_layout(np.zeros((5, 5, 1, 6)), "conv", "keras").shape
(6, 1, 5, 5)
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ShapeError, SpecError

__all__ = [
    "BYTES_ENV",
    "ELEMENTS_ENV",
    "KINDS",
    "init_weights",
    "load_weights",
    "match_weights",
    "reorder_flatten_columns",
    "to_torch_layout",
]

BYTES_ENV = "FEATMAP_MAX_WEIGHTS_BYTES"
ELEMENTS_ENV = "FEATMAP_MAX_WEIGHTS_ELEMENTS"
_DEFAULT_BYTES = 2 << 30
_DEFAULT_ELEMENTS = 500_000_000
#: Layer kinds that carry weights; ``depthwise`` is a conv with groups = input channels.
KINDS = ("conv", "depthwise", "conv1d", "dense", "bn")
_KERAS_NAMES = {"running_mean": ("moving_mean",), "running_var": ("moving_variance",)}
_SAFETENSORS_NUMERIC = {"F64", "F32", "F16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8"}
_FIX_FORMAT = "save it with numpy.savez(path, **tensors) or safetensors.numpy.save_file(tensors, path)"
_FIX_CORRUPT = "re-export or re-download the file"

Weights = dict[str, NDArray[np.floating[Any]]]


def _limit(env: str, default: int) -> int:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    match = re.fullmatch(r"(\d[\d_]*)\s*([kmg]?)(?:i?b)?", text, re.IGNORECASE)
    if not match or int(match[1]) < 1:
        raise SpecError(env, f"must be a whole number >= 1 (K/M/G allowed); got {text[:40]!r}", f"e.g. {env}=4G")
    return int(match[1]) << {"": 0, "k": 10, "m": 20, "g": 30}[match[2].lower()]


def _check_size(where: str, name: str, shape: tuple[int, ...], total_bytes: int) -> None:
    """Refuse one tensor over the element limit, or tensors whose data together pass the byte limit."""
    count, max_count = int(np.prod(shape, dtype=np.int64)), _limit(ELEMENTS_ENV, _DEFAULT_ELEMENTS)
    if count > max_count:
        raise SpecError(
            f"{where}: tensor `{name}`",
            f"has {count:,} elements, over the limit of {max_count:,} per tensor",
            f"set {ELEMENTS_ENV}={count} (or more) to allow it",
        )
    max_bytes = _limit(BYTES_ENV, _DEFAULT_BYTES)
    if total_bytes > max_bytes:
        raise SpecError(
            where,
            f"holds {total_bytes:,} bytes of tensors (at `{name}`), over the limit of {max_bytes:,}",
            f"set {BYTES_ENV}={total_bytes} (or more) to allow it",
        )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def load_weights(path: str | os.PathLike[str]) -> Weights:
    """Read every tensor of a ``.npz`` (numpy) or ``.safetensors`` file, by name, in file order.

    The format is recognised by content. Arrays come back as float32 (float64 kept); integer tensors
    are converted, anything else (strings, objects, booleans, complex) is refused. Needs the optional
    ``safetensors`` package for ``.safetensors`` (``pip install 'featmap[weights]'``).

    Raises `SpecError` naming the file (and the tensor) for a missing, empty, unknown, corrupt or
    truncated file, a non-numeric tensor, a NaN or infinity (with its first index), and a file or
    tensor over the limits (``FEATMAP_MAX_WEIGHTS_BYTES``, default 2 GiB, for the file and for the
    decoded tensors together; ``FEATMAP_MAX_WEIGHTS_ELEMENTS``, default 500,000,000, per tensor),
    checked before any tensor is read.
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(str(p), "does not exist" if not p.exists() else "is not a file", "give a .npz or .safetensors")
    size, max_bytes = p.stat().st_size, _limit(BYTES_ENV, _DEFAULT_BYTES)
    if size > max_bytes:
        raise SpecError(str(p), f"is {size:,} bytes, over the limit of {max_bytes:,}", f"set {BYTES_ENV}={size}")
    with p.open("rb") as fh:
        head = fh.read(9)
    if not head:
        raise SpecError(str(p), "is empty", _FIX_CORRUPT)
    if head.startswith(b"PK"):
        arrays = _read_npz(p)
    elif len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        arrays = _read_safetensors(p)
    elif head.startswith(b"\x93NUMPY"):
        raise SpecError(str(p), "is a single .npy array, not named tensors", _FIX_FORMAT)
    elif head.startswith(b"\x80"):
        raise SpecError(
            str(p), "looks like a pickle (a PyTorch .pt/.pth file?), which featmap never unpickles", _FIX_FORMAT
        )
    else:
        raise SpecError(str(p), "is not a weights file (.npz or .safetensors)", _FIX_FORMAT)
    return {name: _checked(p, name, a) for name, a in arrays.items()}


def _checked(p: Path, name: str, array: NDArray[Any]) -> NDArray[np.floating[Any]]:
    """float32 (float64 kept), finite: checked in blocks of 4M elements, so no tensor-sized mask is made."""
    out = array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)
    flat = out.reshape(-1)
    for start in range(0, flat.size, 1 << 22):
        bad = np.flatnonzero(~np.isfinite(flat[start : start + (1 << 22)]))
        if not bad.size:
            continue
        index = tuple(int(i) for i in np.unravel_index(start + int(bad[0]), out.shape))
        value = out[index]
        raise SpecError(
            f"{p}: tensor `{name}`",
            f"holds {value} at index {index}",
            "featmap runs only finite weights; re-export them (a NaN often means training diverged)",
        )
    return out


def _numeric(p: Path, name: str, dtype: np.dtype[Any]) -> None:
    if dtype.kind not in "iuf":
        raise SpecError(f"{p}: tensor `{name}`", f"has non-numeric dtype {dtype}", "store float32 (or float64) arrays")


def _read_npz(p: Path) -> dict[str, NDArray[Any]]:
    """An ``.npz``: every member's header (shape, dtype) is checked before any data is read."""
    try:
        with zipfile.ZipFile(p) as zf:
            members = zf.namelist()
            if any(m.endswith("data.pkl") for m in members):
                raise SpecError(
                    str(p), "is a PyTorch zip file (torch.save), which featmap never unpickles", _FIX_FORMAT
                )
            bad = [m for m in members if not m.endswith(".npy")]
            if bad or not members:
                problem = f"holds {bad[0]!r}, not a numpy array" if bad else "holds no arrays"
                raise SpecError(str(p), f"is a zip file but not a numpy .npz: it {problem}", _FIX_FORMAT)
            total, headers = 0, []
            for member in members:
                name = member[: -len(".npy")]
                with zf.open(member) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(fh)
                _numeric(p, name, dtype)
                total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                _check_size(str(p), name, tuple(shape), total)
                headers.append(name)
        with np.load(p, allow_pickle=False) as npz:
            return {name: npz[name] for name in headers}
    except SpecError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise SpecError(str(p), f"is corrupt or truncated ({str(exc)[:80]})", _FIX_CORRUPT) from None


def _read_safetensors(p: Path) -> dict[str, NDArray[Any]]:
    """A ``.safetensors`` file through the ``safetensors`` library: headers checked, then data read."""
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise SpecError(
            str(p),
            "is a .safetensors file and the safetensors package is not installed",
            "pip install 'featmap[weights]'",
        ) from None
    try:
        with safe_open(str(p), framework="numpy") as fh:
            total, names = 0, list(fh.keys())
            for name in names:
                piece = fh.get_slice(name)
                shape, dtype = tuple(int(n) for n in piece.get_shape()), str(piece.get_dtype())
                if dtype not in _SAFETENSORS_NUMERIC:
                    raise SpecError(
                        f"{p}: tensor `{name}`",
                        f"has dtype {dtype}, which numpy cannot hold",
                        "save float32 (or float64) tensors, e.g. tensor.float()",
                    )
                total += int(np.prod(shape, dtype=np.int64)) * int(re.sub(r"\D", "", dtype)) // 8
                _check_size(str(p), name, shape, total)
            return {name: fh.get_tensor(name) for name in names}
    except SafetensorError as exc:
        raise SpecError(str(p), f"is corrupt or truncated ({str(exc)[:80]})", _FIX_CORRUPT) from None


def to_torch_layout(array: NDArray[Any], kind: str, layout: str = "keras") -> NDArray[Any]:
    """One tensor of a ``kind`` layer from ``layout`` to featmap's (PyTorch's) layout.

    Keras → PyTorch: conv (kh, kw, I, O) → (O, I, kh, kw); depthwise (kh, kw, I, M) → (I·M, 1, kh, kw)
    (output channel i·M + m, as both libraries order them); conv1d (k, I, O) → (O, I, k); dense
    (in, out) → (out, in); 1-D tensors (biases, batch norm) unchanged. ``layout="torch"`` returns it as is.

    Examples
    --------
    >>> to_torch_layout(np.arange(6).reshape(2, 3), "dense", "keras").tolist()
    [[0, 3], [1, 4], [2, 5]]
    """
    if layout not in ("torch", "keras"):
        raise SpecError("`layout`", f"must be torch or keras; got {layout!r}")
    if kind not in KINDS:
        raise SpecError("`kind`", f"must be one of {', '.join(KINDS)}; got {kind!r}")
    a = np.asarray(array)
    if layout == "torch" or a.ndim <= 1:
        return a
    want = {"conv": 4, "depthwise": 4, "conv1d": 3, "dense": 2}.get(kind)
    if a.ndim != want:
        raise ShapeError(f"{kind} weight", f"has shape {_shape_text(a.shape)}; a Keras {kind} weight is {want}-D")
    if kind == "depthwise":
        kh, kw, c, m = a.shape
        return np.ascontiguousarray(a.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None])
    return np.ascontiguousarray(a.transpose(*range(a.ndim - 1, -1, -1)) if kind != "conv" else a.transpose(3, 2, 0, 1))


def reorder_flatten_columns(weight: NDArray[Any], hwc: tuple[int, int, int]) -> NDArray[Any]:
    """A PyTorch dense weight (out, C·H·W) that follows ``flatten`` of an H×W×C map → featmap's (H, W, C) order.

    Examples
    --------
    >>> reorder_flatten_columns(np.arange(4).reshape(1, 4), (1, 2, 2)).tolist()  # columns c0w0 c0w1 c1w0 c1w1
    [[0, 2, 1, 3]]
    """
    h, w, c = hwc
    a = np.asarray(weight)
    if a.ndim != 2 or a.shape[1] != h * w * c:
        raise ShapeError(
            "dense weight", f"has shape {_shape_text(a.shape)}; expected (out, {h * w * c}) for {h}×{w}×{c}"
        )
    return np.ascontiguousarray(a.reshape(a.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(a.shape[0], -1))


def _split(key: str) -> tuple[str, str]:
    layer, _, suffix = key.rpartition(".")
    return layer, suffix


def _file_names(key: str, ndim: int, kind: str | None, is_bn: bool) -> list[str]:
    """Names a tensor may have in a Keras-layout file, most specific first (its PyTorch name last)."""
    layer, suffix = _split(key)
    if suffix == "weight":
        keras = ["gamma"] if ndim == 1 else ["depthwise_kernel", "kernel"] if kind == "depthwise" else ["kernel"]
    elif suffix == "bias":
        keras = ["beta"] if is_bn else ["bias"]
    else:
        keras = list(_KERAS_NAMES.get(suffix, ()))
    return [f"{layer}.{n}" if layer else n for n in keras] + [key]


def match_weights(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[str, NDArray[Any]],
    *,
    layout: str = "torch",
    kinds: Mapping[str, str] | None = None,
    source: str = "weights",
) -> tuple[Weights, list[str]]:
    """The tensors a network needs, in ``expected`` order and PyTorch layout, and warnings.

    ``expected`` maps tensor names (the convention above) to PyTorch-layout shapes; ``found`` is what
    `load_weights` read from ``source``. With ``layout="keras"`` the Keras names and layouts are looked
    up and converted (``kinds`` maps layer keys to `KINDS`; the rank decides when it is absent).

    Raises `SpecError` for a missing tensor and `ShapeError` for a mis-shaped one, naming the layer, the
    expected and the found shape. The warnings name tensors the network does not use.

    Examples
    --------
    >>> w, warn = match_weights({"0.weight": (2, 3)}, {"0.weight": np.ones((2, 3)), "9.bias": np.ones(2)})
    >>> w["0.weight"].shape, warn
    ((2, 3), ['weights: 1 tensor not used by the network: 9.bias'])
    """
    kinds = kinds or {}
    if layout not in ("torch", "keras"):
        raise SpecError("`layout`", f"must be torch or keras; got {layout!r}")
    bn_layers = {_split(k)[0] for k in expected if _split(k)[1] == "running_mean"}
    out: Weights = {}
    used: set[str] = set()
    for key, shape in expected.items():
        layer, _ = _split(key)
        kind = kinds.get(layer) or (
            "bn" if layer in bn_layers else {4: "conv", 3: "conv1d", 2: "dense"}.get(len(shape))
        )
        names = _file_names(key, len(shape), kind, layer in bn_layers) if layout == "keras" else [key]
        name = next((n for n in names if n in found), None)
        if name is None:
            near = [n for n in found if n.startswith(f"{layer}.")] or list(found)[:4]
            raise SpecError(
                f"{source}: layer `{layer or key}`",
                f"has no tensor `{names[0]}` (expected shape {_shape_text(tuple(shape))})",
                f"the file has {', '.join(near) or 'no tensors'}; see README, 'weights files'",
            )
        array = np.asarray(found[name])
        converted = (
            to_torch_layout(array, kind, "keras")
            if layout == "keras" and kind and kind != "bn" and array.ndim == len(shape)
            else array
        )
        if converted.shape != tuple(shape):
            fix = "the weights are for another network; compare `featmap shape` with the one they came from"
            if (
                layout == "torch"
                and kind in ("conv", "dense", "conv1d")
                and array.ndim == len(shape)
                and to_torch_layout(array, kind, "keras").shape == tuple(shape)
            ):
                fix = "they look like Keras layout; declare the Keras layout"
            raise ShapeError(
                f"{source}: layer `{layer or key}`",
                f"tensor `{name}` has shape {_shape_text(array.shape)}; expected {_shape_text(tuple(shape))}"
                + (" (PyTorch layout)" if layout == "keras" else ""),
                fix,
            )
        out[key] = converted
        used.add(name)
    extra = [n for n in found if n not in used and not n.endswith("num_batches_tracked")]
    warnings = []
    if extra:
        shown = ", ".join(extra[:8]) + (f", … ({len(extra) - 8} more)" if len(extra) > 8 else "")
        warnings.append(
            f"{source}: {len(extra)} tensor{'s' if len(extra) > 1 else ''} not used by the network: {shown}"
        )
    return out, warnings


def _stream(seed: int, key: str) -> np.random.Generator:
    """A PCG64 stream of its own per tensor, from the seed and the tensor's name (not its position)."""
    digest = hashlib.sha256(key.encode()).digest()
    words = tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=words)))


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's ``_calculate_fan_in_and_fan_out`` on the PyTorch-layout shape (O, I/groups, *kernel)."""
    receptive = int(np.prod(shape[2:], dtype=np.int64))
    return shape[1] * receptive, shape[0] * receptive


def init_weights(
    expected: Mapping[str, tuple[int, ...]],
    kinds: Mapping[str, str],
    method: str = "kaiming",
    seed: int = 0,
) -> dict[str, NDArray[np.float32]]:
    """Seeded random weights as PyTorch (``kaiming``) or Keras (``glorot``) initialise a fresh layer.

    ``expected`` maps tensor names to PyTorch-layout shapes; ``kinds`` maps layer keys (or tensor names)
    to `KINDS`. Fans are PyTorch's ``_calculate_fan_in_and_fan_out`` on (O, I/groups, kh, kw):
    fan_in = I/groups·kh·kw, fan_out = O·kh·kw (dense: in, out), equal to Keras' ``compute_fans`` on
    its (kh, kw, I/groups, O) kernel.

    - ``kaiming``, PyTorch's default for ``Conv1d/Conv2d/Linear``: ``kaiming_uniform_(a=√5)``, i.e. weight
      ~ U(±1/√fan_in), and bias ~ U(±1/√fan_in);
    - ``glorot``, Keras' default: weight ~ U(±√(6 / (fan_in + fan_out))) (``glorot_uniform``), bias 0.
      (A Keras ``DepthwiseConv2D`` with multiplier M > 1 counts (I + M)·kh·kw where this counts
      (1 + I·M)·kh·kw; the two agree for M = 1.)
    - batch norm, both: weight 1, bias 0, running mean 0, running variance 1.

    Each tensor draws from its own ``Generator(PCG64)`` seeded by ``seed`` and its name, so a tensor
    does not change when layers are added before it. Returns float32 arrays in ``expected`` order.
    """
    if method not in ("kaiming", "glorot"):
        raise SpecError("`init`", f"must be kaiming or glorot; got {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError("`seed`", f"must be a whole number >= 0; got {seed!r}")
    out: dict[str, NDArray[np.float32]] = {}
    total = 0
    for key, shape in expected.items():
        layer, suffix = _split(key)
        shape = tuple(int(n) for n in shape)
        if any(n < 1 for n in shape):
            raise ShapeError(f"tensor `{key}`", f"has shape {_shape_text(shape)}; every size must be >= 1")
        total += int(np.prod(shape, dtype=np.int64)) * 4
        _check_size("initialisation", key, shape, total)
        kind = kinds.get(key) or kinds.get(layer)
        if kind not in KINDS:
            raise SpecError(f"tensor `{key}`", f"has layer kind {kind!r}", f"give one of {', '.join(KINDS)}")
        if kind == "bn":
            fill = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}.get(suffix)
            if fill is None:
                raise SpecError(
                    f"tensor `{key}`", "is not a batch-norm tensor", "use weight, bias, running_mean, running_var"
                )
            out[key] = np.full(shape, fill, dtype=np.float32)
            continue
        weight_shape = shape if suffix == "weight" else expected.get(f"{layer}.weight" if layer else "weight")
        if suffix not in ("weight", "bias") or weight_shape is None or len(weight_shape) < 2:
            raise SpecError(
                f"tensor `{key}`", f"is not a {kind} weight or bias with its weight", "name it KEY.weight / KEY.bias"
            )
        fan_in, fan_out = _fans(tuple(int(n) for n in weight_shape))
        if suffix == "bias" and method == "glorot":
            out[key] = np.zeros(shape, dtype=np.float32)
            continue
        bound = np.sqrt(6.0 / (fan_in + fan_out)) if method == "glorot" else 1.0 / np.sqrt(fan_in)
        out[key] = _stream(int(seed), key).uniform(-bound, bound, size=shape).astype(np.float32)
    return out
