"""Values worked out from weight arrays once, not once per image: a folded batch norm (`featmap.net.fold`), a
bank laid out as a GEMM's matrix (`featmap.core.engine`). A network's weights are the same arrays from one
image to the next, so such values are remembered by the arrays' identity, checked against a fingerprint of their
bytes (an array changed in place is worked out again), and dropped when the arrays are.

The fingerprint is the shape, the dtype and the wrapping 64-bit sum of the bytes read as integers: one pass at
memory speed (a float sum missed a change too small to move it, and cost ~1.7× as much). An array that cannot
change (`frozen`: read-only, owning its memory or a read-only view of such an array, as every value this module
helps make, and the tensors `featmap.net.weights.load_weights` reads, `owned_frozen`) is not read at all: a
network's folded weights and GEMM matrices, and weights featmap loaded itself, are then checked for the price of a
weak reference. Arrays a caller holds (writeable) are read once a run: resnet18's 47 MB cost ~4.5 ms.

Examples
--------
>>> import numpy as np
>>> w = np.arange(6, dtype=np.float32).reshape(2, 3)
>>> calls = []
>>> def transpose():
...     calls.append(1)
...     return np.ascontiguousarray(w.T)
>>> a = remembered("t", (w,), transpose)
>>> b = remembered("t", (w,), transpose)
>>> a is b, len(calls)
(True, 1)
>>> w[0, 0] = 9.0  # changed in place: worked out again
>>> float(remembered("t", (w,), transpose)[0, 0]), len(calls)
(9.0, 2)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = ["fingerprint", "freeze", "frozen", "owned_frozen", "remembered"]

T = TypeVar("T")

# (what, ids of the arrays) -> (weak references to the arrays, their sums, the value)
_ENTRIES: dict[tuple[Any, ...], tuple[tuple[weakref.ref[Any], ...], tuple[Any, ...], Any]] = {}


# Arrays up to this size are fingerprinted by their bytes (0.4 µs) rather than a sum (2.9 µs a call).
_SMALL_BYTES = 4096


def frozen(array: np.ndarray) -> bool:
    """True when ``array``'s values cannot change in place: it and every array it views are read-only and the
    last owns its memory (numpy refuses to make a view writeable again while its base is read-only)."""
    a: Any = array
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        if a.base is None:
            return True
        a = a.base
    return False


def freeze(array: np.ndarray) -> np.ndarray:
    """``array`` made read-only (a value worked out here, so that its own checks cost nothing); returned."""
    array.flags.writeable = False
    return array


def owned_frozen(array: np.ndarray) -> np.ndarray:
    """``array`` as a `frozen` array: read-only, with every array it views made read-only too, or a read-only copy
    where its memory is not an array's (a buffer of a file reader, another library's tensor). For arrays that
    nothing else will change (weights featmap read from a file itself), so that a run need not re-read them."""
    chain: list[np.ndarray] = []
    a: Any = array
    while isinstance(a, np.ndarray):
        chain.append(a)
        a = a.base
    if a is not None:  # the memory belongs to some other object, which could change it
        chain = [np.array(array, copy=True)]
    for view in reversed(chain):  # the owner first: numpy then keeps each view read-only
        view.flags.writeable = False
    return chain[0]


def fingerprint(array: np.ndarray) -> tuple[Any, ...]:
    """What must stay equal for a value worked out from ``array`` to stay valid: its shape, its dtype and the
    wrapping sum of its bytes as 64-bit integers (8-bit ones for a size not a multiple of 8), or the bytes
    themselves for a small array; nothing more for a `frozen` array."""
    if frozen(array):
        return ()
    if array.nbytes <= _SMALL_BYTES:  # a batch norm's vectors, a bias: the bytes themselves, exact and quicker
        return (array.shape, array.dtype.str, array.tobytes())
    raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    if raw.size % 8 == 0:
        total = int(np.add.reduce(raw.view(np.uint64)))
    else:
        total = int(np.add.reduce(raw, dtype=np.uint64))
    return (array.shape, array.dtype.str, total)


def remembered(what: str, arrays: Sequence[np.ndarray], compute: Callable[[], T]) -> T:
    """``compute()``, remembered under ``what`` while ``arrays`` (the same objects, with the same sums) live."""
    key = (what, *(id(a) for a in arrays))
    prints = tuple(fingerprint(a) for a in arrays)
    hit = _ENTRIES.get(key)
    if hit is not None:
        refs, seen, value = hit
        if seen == prints and all(r() is a for r, a in zip(refs, arrays, strict=True)):
            return value  # type: ignore[no-any-return]  # stored by this function as T
    value = compute()

    def forget(_: object) -> None:
        _ENTRIES.pop(key, None)

    try:
        refs = tuple(weakref.ref(a, forget) for a in arrays)
    except TypeError:  # an object that takes no weak reference: not remembered
        return value
    _ENTRIES[key] = (refs, prints, value)
    return value
