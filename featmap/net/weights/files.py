"""Reading weights files: ``.npz`` (numpy), ``.safetensors`` (the optional ``safetensors`` package), PyTorch
checkpoints (the optional ``torch``; `featmap.net.weights.torchfile`) and Keras 3 ``.weights.h5``/``.keras`` (the
optional ``h5py``; `featmap.net.weights.keras`)."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import MissingExtraError, SpecError, install_hint
from featmap.net.weights._common import BYTES_ENV, DEFAULT_BYTES, Weights, check_size, limit
from featmap.net.weights.keras import HDF5_MAGIC, is_keras_file, read_keras
from featmap.net.weights.torchfile import is_torch_zip, read_torch

__all__ = ["load_weights"]

_SAFETENSORS_NUMERIC = {"F64", "F32", "F16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8"}
_SAFETENSORS_HEADER = 100_000_000  # the largest header the format allows (its specification's bound)
_FIX_FORMAT = "save it with numpy.savez(path, **tensors) or safetensors.numpy.save_file(tensors, path)"
_FIX_CORRUPT = "re-export or re-download the file"


def load_weights(path: str | os.PathLike[str]) -> Weights:
    """Read every tensor of a ``.npz`` (numpy), ``.safetensors``, PyTorch (``torch.save``) or Keras 3 file, by
    name, in file order.

    The format is recognised by content. Arrays come back as float32 (float64 kept); integer tensors
    are converted, anything else (strings, objects, booleans, complex) is refused. Needs the optional
    ``safetensors`` package for ``.safetensors`` (``pip install 'featmap[weights]'``) and ``torch`` for a PyTorch
    checkpoint (``pip install 'featmap[torch]'``; `featmap.net.weights.torchfile`: a ``state_dict``, or one inside a
    training checkpoint, read with ``torch.load(weights_only=True)``; a whole pickled model or an optimiser's state is
    refused). A Keras file's tensors keep Keras names and layout (``c1.kernel``); `is_keras_file` tells such a file
    apart.

    Raises `SpecError` naming the file (and the tensor) for a missing, empty, unknown, corrupt or
    truncated file, a non-numeric tensor, a NaN or infinity (with its first index), and a file or
    tensor over the limits (``FEATMAP_MAX_WEIGHTS_BYTES``, default 2 GiB, for the file and for the
    decoded tensors together; ``FEATMAP_MAX_WEIGHTS_ELEMENTS``, default 500,000,000, per tensor),
    checked before any tensor is read.
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(
            str(p), "does not exist" if not p.exists() else "is not a file", "give a .safetensors, .npz or .pt file"
        )
    size, max_bytes = p.stat().st_size, limit(BYTES_ENV, DEFAULT_BYTES)
    if size > max_bytes:
        raise SpecError(str(p), f"is {size:,} bytes, over the limit of {max_bytes:,}", f"set {BYTES_ENV}={size}")
    with p.open("rb") as fh:
        head = fh.read(9)
    if not head:
        raise SpecError(str(p), "is empty", _FIX_CORRUPT)
    if head.startswith(HDF5_MAGIC) or head.startswith(b"PK") and is_keras_file(p):
        arrays = read_keras(p)  # Keras 3 .weights.h5 / .keras: Keras names and layout (featmap.net.weights.keras)
    elif len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        # before the pickle test: a header length whose low byte is 0x80 starts like a pickle
        arrays = _read_safetensors(p)
    elif head.startswith(b"PK") and is_torch_zip(p) or head.startswith(b"\x80"):
        arrays = read_torch(p)  # torch.save's zip or legacy format (featmap.net.weights.torchfile)
    elif head.startswith(b"PK"):
        arrays = _read_npz(p)
    elif len(head) == 9 and head[8:9] == b"{" and size - 8 < int.from_bytes(head[:8], "little") <= _SAFETENSORS_HEADER:
        header = int.from_bytes(head[:8], "little")
        raise SpecError(
            str(p),
            f"is corrupt or truncated (its header says {header} bytes, the file has {size - 8} after it)",
            _FIX_CORRUPT,
        )
    elif head.startswith(b"\x93NUMPY"):
        raise SpecError(str(p), "is a single .npy array, not named tensors", _FIX_FORMAT)
    else:
        raise SpecError(str(p), "is not a weights file (.safetensors, .npz, .pt/.pth, Keras .weights.h5)", _FIX_FORMAT)
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
                check_size(str(p), name, tuple(shape), total)
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
        raise MissingExtraError(
            str(p), "is a .safetensors file and the safetensors package is not installed", install_hint("weights")
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
                check_size(str(p), name, shape, total)
            return {name: fh.get_tensor(name) for name in names}
    except SafetensorError as exc:
        raise SpecError(str(p), f"is corrupt or truncated ({str(exc)[:80]})", _FIX_CORRUPT) from None
