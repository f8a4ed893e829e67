"""Read an ONNX file's structure without its weights: the protobuf is walked on a memory map and every large
tensor payload (an initializer's ``raw_data`` or ``float_data``) is left out before the ``onnx`` package parses
what remains. A 100 MB model is read touching a few pages of it, not copied into Python objects.

Wire format (protobuf): each field is a varint key ``(number << 3) | type`` followed by a varint (type 0), 8 bytes
(type 1), a varint length and that many bytes (type 2) or 4 bytes (type 5).
"""

from __future__ import annotations

import mmap
from pathlib import Path

from featmap.frozen import frozen_dataclass

__all__ = ["KEEP_BYTES", "Payload", "read_structure", "read_without_payloads"]

#: Tensor payloads up to this size are kept (shapes for Reshape, sizes for Split, a Clip's bounds…).
KEEP_BYTES = 4096

_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_PAYLOADS = {4, 5, 6, 7, 9, 10, 11}  # float/int32/string/int64/raw/double/uint64 data


def _varint(buf: mmap.mmap | bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: mmap.mmap | bytes, start: int, stop: int) -> list[tuple[int, int, int, int, int]]:
    """``(number, type, field_start, value_start, field_stop)`` for each field of the message in ``[start, stop)``."""
    out = []
    pos = start
    while pos < stop:
        key, value_start = _varint(buf, pos)
        number, kind = key >> 3, key & 7
        if kind == 0:
            _, end = _varint(buf, value_start)
        elif kind == 1:
            end = value_start + 8
        elif kind == 2:
            length, value_start = _varint(buf, value_start)
            end = value_start + length
        elif kind == 5:
            end = value_start + 4
        else:
            raise ValueError(f"unsupported wire type {kind}")
        if end > stop:
            raise ValueError("field runs past the end of its message")
        out.append((number, kind, pos, value_start, end))
        pos = end
    return out


def _key(number: int, kind: int) -> bytes:
    return _encode((number << 3) | kind)


def _encode(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@frozen_dataclass
class Payload:
    """Where a left-out tensor payload lies in the file: its protobuf field (9 ``raw_data``, 4 ``float_data``…),
    whether it is length-delimited (packed), the byte range of its value, and that of the whole tensor message."""

    field: int
    packed: bool
    start: int
    stop: int
    tensor_start: int
    tensor_stop: int


def _tensor_without_payload(buf: mmap.mmap, start: int, stop: int) -> tuple[bytes, Payload | None]:
    kept = bytearray()
    payload = None
    for number, kind, field_start, value_start, end in _fields(buf, start, stop):
        if number in _TENSOR_PAYLOADS and end - value_start > KEEP_BYTES:
            payload = Payload(number, kind == 2, value_start, end, start, stop)
            continue
        kept += buf[field_start:end]
    return bytes(kept), payload


def _graph_without_payloads(buf: mmap.mmap, start: int, stop: int) -> tuple[bytes, dict[int, Payload]]:
    out = bytearray()
    payloads: dict[int, Payload] = {}
    index = 0
    for number, kind, field_start, value_start, end in _fields(buf, start, stop):
        if number == _GRAPH_INITIALIZER and kind == 2 and end - value_start > KEEP_BYTES:
            tensor, payload = _tensor_without_payload(buf, value_start, end)
            if payload is not None:
                payloads[index] = payload
            out += _key(number, 2) + _encode(len(tensor)) + tensor
        else:
            out += buf[field_start:end]
        index += number == _GRAPH_INITIALIZER
    return bytes(out), payloads


def read_structure(path: Path) -> tuple[bytes, dict[int, Payload]]:
    """The bytes of the ONNX model at ``path`` with large initializer payloads removed (a valid ModelProto), and
    where each removed payload lies, by the initializer's position in the graph.

    Raises ``ValueError`` when the file is not a protobuf message.
    """
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            raise ValueError("the file is empty")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            out = bytearray()
            payloads: dict[int, Payload] = {}
            for number, kind, field_start, value_start, end in _fields(buf, 0, len(buf)):
                if number == _MODEL_GRAPH and kind == 2:
                    graph, payloads = _graph_without_payloads(buf, value_start, end)
                    out += _key(number, 2) + _encode(len(graph)) + graph
                else:
                    out += buf[field_start:end]
            return bytes(out), payloads


def read_without_payloads(path: Path) -> bytes:
    """The bytes of the ONNX model at ``path`` with large initializer payloads removed (see `read_structure`)."""
    return read_structure(path)[0]
