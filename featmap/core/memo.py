"""Values worked out from weight arrays once, not once per image: a folded batch norm (`featmap.net.fold`), a
bank laid out as a GEMM's matrix (`featmap.core.engine`). A network's weights are the same arrays from one
image to the next, so such values are remembered by the arrays' identity, checked against a sum of their
values (an array changed in place is worked out again), and dropped when the arrays are.

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

__all__ = ["remembered"]

T = TypeVar("T")

# (what, ids of the arrays) -> (weak references to the arrays, their sums, the value)
_ENTRIES: dict[tuple[Any, ...], tuple[tuple[weakref.ref[Any], ...], tuple[float, ...], Any]] = {}


def _sums(arrays: Sequence[np.ndarray]) -> tuple[float, ...]:
    with np.errstate(over="ignore", invalid="ignore"):
        return tuple(float(np.sum(a)) for a in arrays)


def remembered(what: str, arrays: Sequence[np.ndarray], compute: Callable[[], T]) -> T:
    """``compute()``, remembered under ``what`` while ``arrays`` (the same objects, with the same sums) live."""
    key = (what, *(id(a) for a in arrays))
    sums = _sums(arrays)
    hit = _ENTRIES.get(key)
    if hit is not None:
        refs, seen, value = hit
        same = all(r() is a for r, a in zip(refs, arrays, strict=True))
        if same and all(x == y or (x != x and y != y) for x, y in zip(seen, sums, strict=True)):
            return value  # type: ignore[no-any-return]  # stored by this function as T
    value = compute()

    def forget(_: object) -> None:
        _ENTRIES.pop(key, None)

    try:
        refs = tuple(weakref.ref(a, forget) for a in arrays)
    except TypeError:  # an object that takes no weak reference: not remembered
        return value
    _ENTRIES[key] = (refs, sums, value)
    return value
