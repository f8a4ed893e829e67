"""The thread count of numpy's BLAS (the OpenBLAS that numpy's wheels bundle), read and set at run time.

featmap's policy: ``-j N`` means N cores. A batch's helper processes start with one BLAS thread (their
environment, `featmap.run.workers`); ``-j 1`` runs in the calling process with one BLAS thread too
(`one_thread`), and the count is restored afterwards. A Python caller (``featmap.forward``) gets numpy's own
setting (every core, or ``OPENBLAS_NUM_THREADS``). On a shared machine one thread per process is also the
faster choice: OpenBLAS's idle threads spin, and a busy second core makes the other thread wait.

Where numpy's BLAS is not an OpenBLAS whose controls can be found (another build, another platform), the
functions do nothing: `threads` returns 0 and `set_threads` returns False.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["one_thread", "set_threads", "threads"]

# OpenBLAS's exported controls, by the names of its builds: scipy-openblas (numpy's wheels, 64-bit integers),
# then a plain OpenBLAS.
_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")


@cache
def _controls() -> tuple[Any, Any] | None:
    """``(get, set)`` of the OpenBLAS that numpy loaded, or None."""
    import numpy as np

    folder = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    candidates = sorted(folder.glob("*openblas*")) if folder.is_dir() else []
    for path in candidates:
        try:
            lib = ctypes.CDLL(str(path))  # already loaded by numpy: the same library, not a second copy
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                    return get, put
    return None


def threads() -> int:
    """BLAS's thread count now, or 0 where it cannot be read."""
    controls = _controls()
    return 0 if controls is None else int(controls[0]())


def set_threads(count: int) -> bool:
    """Give BLAS ``count`` threads (at least 1); False where it cannot be set."""
    controls = _controls()
    if controls is None:
        return False
    controls[1](max(1, int(count)))
    return True


@contextmanager
def one_thread() -> Iterator[None]:
    """BLAS on one thread inside the block (``-j 1``), the previous count restored after."""
    before = threads()
    set_threads(1)
    try:
        yield
    finally:
        if before:
            set_threads(before)
