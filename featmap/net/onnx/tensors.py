"""An ONNX model's initializers as arrays, read only when a run needs them.

A payload inside the ``.onnx`` file is read where `featmap.net.onnx._wire` found it, through a memory map (no copy
of the file in memory; an aligned float32 payload stays a view of the mapped pages, which the processes of a
batch share); a payload in an external data file (``torch.onnx.export`` writes ``MODEL.onnx.data`` beside large
models) is mapped from that file, which must lie in the model's folder. A weight an exporter passes through an
``Identity`` or a ``Transpose`` node, or stores in a ``Constant`` node, is found through it.

Sizes are known from the headers before any payload is read: `TensorStore.nbytes` lets the caller check the
limits first (``FEATMAP_MAX_WEIGHTS_BYTES``, ``FEATMAP_MAX_WEIGHTS_ELEMENTS``, as for every weights file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import SpecError
from featmap.frozen import frozen_dataclass
from featmap.net.onnx._wire import Payload

__all__ = ["TensorRef", "TensorStore"]

Shape = tuple[int, ...]

#: ONNX ``TensorProto.DataType`` → numpy dtype, for the types a weight may have (bfloat16 is widened by hand).
_DTYPES: dict[int, str] = {
    1: "<f4",
    2: "u1",
    3: "i1",
    4: "<u2",
    5: "<i2",
    6: "<i4",
    7: "<i8",
    10: "<f2",
    11: "<f8",
    12: "<u4",
    13: "<u8",
    16: "<u2",  # bfloat16: the upper half of a float32
}
_BFLOAT16 = 16
_EXTERNAL = 1
_RAW_DATA, _FLOAT_DATA, _DOUBLE_DATA = 9, 4, 10
_FIX_CORRUPT = "export the model again"


@frozen_dataclass
class TensorRef:
    """Where one featmap weight comes from: an ONNX tensor ``name`` (``None``: zeros, for an absent bias),
    transposed (a ``MatMul`` or ``Gemm`` weight stored ``in × out``) and/or flattened (a ``C×1×1`` scale)."""

    name: str | None
    transpose: bool = False
    flatten: bool = False


class TensorStore:
    """The initializers and constants of one parsed (payload-free) ``ModelProto`` read from ``path``."""

    def __init__(self, path: Path, model: Any, payloads: dict[int, Payload]) -> None:
        self.path = path
        self.tensors: dict[str, tuple[Any, Payload | None]] = {}
        for index, tensor in enumerate(model.graph.initializer):
            self.tensors[tensor.name] = (tensor, payloads.get(index))
        self.aliases: dict[str, tuple[str, tuple[int, ...] | None]] = {}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.tensors.setdefault(node.output[0], (node.attribute[0].t, None))
            elif node.op_type in ("Identity", "Transpose") and node.input and node.output:
                perm = None
                if node.op_type == "Transpose":
                    perm = next((tuple(a.ints) for a in node.attribute if a.name == "perm"), ())
                self.aliases[node.output[0]] = (node.input[0], perm)

    def _source(self, name: str) -> tuple[str, list[tuple[int, ...] | None]]:
        """The stored tensor behind ``name`` and the transposes on the way (``()``: reverse the axes)."""
        perms: list[tuple[int, ...] | None] = []
        seen: set[str] = set()
        while name not in self.tensors and name in self.aliases and name not in seen:
            seen.add(name)
            name, perm = self.aliases[name]
            if perm is not None:
                perms.append(perm)
        if name not in self.tensors:
            raise SpecError(f"{self.path}: tensor `{name}`", "is computed by the graph, not stored", _FIX_CORRUPT)
        return name, perms[::-1]

    def shape(self, name: str) -> Shape:
        stored, _ = self._source(name)
        return tuple(int(d) for d in self.tensors[stored][0].dims)

    def nbytes(self, name: str) -> int:
        """How many bytes the stored tensor behind ``name`` holds (from its header; nothing is read)."""
        stored, _ = self._source(name)
        tensor, _ = self.tensors[stored]
        return (
            int(np.prod(self.shape(stored), dtype=np.int64)) * np.dtype(_DTYPES.get(tensor.data_type, "<f4")).itemsize
        )

    def small(self, name: str, strict: bool = False) -> NDArray[Any] | None:
        """A stored tensor of at most 1 MiB (an index table a mapping needs to see), or None; ``strict`` raises
        `SpecError` when it cannot be read (a missing external data file) instead."""
        try:
            if self.nbytes(name) > 1 << 20:
                return None
            stored, perms = self._source(name)
            array = np.asarray(self._stored(stored))
        except (SpecError, OSError):  # unreadable here: it is reported where it is needed as a weight
            if strict:
                raise
            return None
        for perm in perms:
            array = np.transpose(array, perm or None)
        return array

    def read(self, ref: TensorRef, shape: Shape) -> NDArray[np.floating[Any]]:
        """The weight ``ref`` points to, as float32 (float64 kept) of ``shape`` (zeros when ``ref.name`` is None)."""
        if ref.name is None:
            return np.zeros(shape, np.float32)
        stored, perms = self._source(ref.name)
        array = self._stored(stored)
        _check_finite(f"{self.path}: tensor `{stored}`", array)  # as stored: contiguous, read in place
        for perm in perms:
            array = np.transpose(array, perm or None)
        if ref.transpose:
            array = array.T
        if ref.flatten:
            array = array.reshape(-1)
        if array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float32)
        return array

    # ------------------------------------------------------------------ payloads

    def _stored(self, name: str) -> NDArray[Any]:
        tensor, payload = self.tensors[name]
        where = f"{self.path}: tensor `{name}`"
        code = int(tensor.data_type)
        if code not in _DTYPES:
            raise SpecError(where, f"has ONNX data type {code}, not a number featmap reads", "store float32 weights")
        dtype = np.dtype(_DTYPES[code])
        shape = tuple(int(d) for d in tensor.dims)
        if tensor.data_location == _EXTERNAL:
            array = self._external(tensor, where, dtype, shape)
        elif payload is None:
            from onnx import numpy_helper

            try:
                array = np.asarray(numpy_helper.to_array(tensor))
            except (ValueError, TypeError) as exc:
                raise SpecError(where, f"cannot be read ({str(exc)[:80]})", _FIX_CORRUPT) from None
            if code == _BFLOAT16:
                return _widen_bfloat16(array.view("<u2"))
        elif payload.field in (_RAW_DATA, _FLOAT_DATA, _DOUBLE_DATA) and payload.packed:
            if payload.field != _RAW_DATA:
                dtype = np.dtype("<f4" if payload.field == _FLOAT_DATA else "<f8")
            array = self._mapped(self.path, payload.start, payload.stop - payload.start, where, dtype, shape)
        else:  # numbers stored as varints (int32_data…): the tensor message itself is parsed
            array = self._parsed(payload, where)
        if code == _BFLOAT16:
            return _widen_bfloat16(array)
        return array

    @staticmethod
    def _mapped(file: Path, offset: int, length: int, where: str, dtype: np.dtype[Any], shape: Shape) -> NDArray[Any]:
        count = int(np.prod(shape, dtype=np.int64))
        if length != count * dtype.itemsize:
            raise SpecError(
                where,
                f"holds {length:,} bytes where {'×'.join(map(str, shape))} {dtype.name} needs "
                f"{count * dtype.itemsize:,}",
                _FIX_CORRUPT,
            )
        if count == 0:
            return np.zeros(shape, dtype)
        view = np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=shape)
        # a view needs its elements aligned to their size for the kernels; the payload's place in a protobuf is not
        return view if view.flags.aligned else np.array(view)

    def _parsed(self, payload: Payload, where: str) -> NDArray[Any]:
        import mmap

        import onnx
        from onnx import numpy_helper

        with self.path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            message = buf[payload.tensor_start : payload.tensor_stop]
        try:
            return np.asarray(numpy_helper.to_array(onnx.TensorProto.FromString(message)))
        except Exception as exc:  # protobuf's DecodeError derives from Exception only
            raise SpecError(where, f"cannot be read ({str(exc)[:80]})", _FIX_CORRUPT) from None

    def _external(self, tensor: Any, where: str, dtype: np.dtype[Any], shape: Shape) -> NDArray[Any]:
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        relative = Path(location)
        fix = "keep the external data file beside the model, as the exporter wrote it"
        if not location or relative.is_absolute() or ".." in relative.parts:
            raise SpecError(where, f"names external data {location!r} outside the model's folder", fix)
        file = self.path.parent / relative
        if not file.is_file():
            raise SpecError(where, f"its external data file {str(file)!r} is missing", fix)
        try:
            offset = int(entries.get("offset", 0))
            count = int(np.prod(shape, dtype=np.int64))
            length = int(entries.get("length", count * dtype.itemsize))
        except ValueError:
            raise SpecError(where, f"has a malformed external data entry {entries!r}", _FIX_CORRUPT) from None
        size = file.stat().st_size
        if offset < 0 or offset + length > size:
            raise SpecError(
                where, f"lies at bytes {offset:,}–{offset + length:,} of {file.name}, which has {size:,}", fix
            )
        return self._mapped(file, offset, length, where, dtype, shape)


def _widen_bfloat16(bits: NDArray[Any]) -> NDArray[np.float32]:
    return (np.asarray(bits, np.uint32) << 16).view(np.float32)


def _check_finite(where: str, array: NDArray[Any]) -> None:
    """Refuse a NaN or an infinity, naming its first index (checked in blocks: no weight-sized mask)."""
    if array.dtype.kind != "f":
        return
    flat = array.reshape(-1)
    for start in range(0, flat.size, 1 << 22):
        bad = np.flatnonzero(~np.isfinite(flat[start : start + (1 << 22)]))
        if bad.size:
            index = tuple(int(i) for i in np.unravel_index(start + int(bad[0]), array.shape))
            raise SpecError(
                where,
                f"holds {array[index]} at index {index}",
                "featmap runs only finite weights; re-export them (a NaN often means training diverged)",
            )
