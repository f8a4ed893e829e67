"""The thread count of numpy's BLAS (the OpenBLAS that numpy's wheels bundle), read and set at run time.

featmap's policy: ``-j N`` means N cores. A batch's helper processes start with one BLAS thread (their
environment, `featmap.run.workers`); ``-j 1`` runs in the calling process with one BLAS thread too
(`one_thread`), and the count is restored afterwards. A Python caller (``featmap.forward``) gets numpy's own
setting (every core, or ``OPENBLAS_NUM_THREADS``). On a shared machine one thread per process is also the
faster choice: OpenBLAS's idle threads spin, and a busy second core makes the other thread wait.

Where numpy's BLAS is not an OpenBLAS whose controls can be found (another build, another platform), the
functions do nothing: `threads` returns 0 and `set_threads` returns False.

`sum_of_products` calls the same OpenBLAS's ``cblas_sgemm`` with ``beta = 1``, which numpy does not offer: products
summed into one result in place, each added as BLAS finishes it (`featmap.core.gemm.kernel_row_conv`); it returns
False where that library is not found, and the caller computes another way.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["one_thread", "set_threads", "sum_of_products", "threads"]

# OpenBLAS's exported controls, by the names of its builds: scipy-openblas (numpy's wheels, 64-bit integers),
# then a plain OpenBLAS.
_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")


@cache
def _openblas() -> tuple[Any, str, str] | None:
    """numpy's OpenBLAS (loaded by ctypes) and the prefix and suffix of its exported names, or None."""
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
                names = (f"{prefix}_get_num_threads{suffix}", f"{prefix}_set_num_threads{suffix}")
                if all(getattr(lib, name, None) is not None for name in names):
                    return lib, prefix, suffix
    return None


@cache
def _controls() -> tuple[Any, Any] | None:
    """``(get, set)`` of the OpenBLAS that numpy loaded, or None."""
    found = _openblas()
    if found is None:
        return None
    lib, prefix, suffix = found
    get, put = getattr(lib, f"{prefix}_get_num_threads{suffix}"), getattr(lib, f"{prefix}_set_num_threads{suffix}")
    get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
    return get, put


@cache
def _sgemm() -> tuple[Any, type] | None:
    """numpy's OpenBLAS's ``cblas_sgemm`` and its integer type (64 bits in a ``USE64BITINT`` build), or None."""
    found = _openblas()
    if found is None:
        return None
    lib, prefix, suffix = found
    config = getattr(lib, f"{prefix}_get_config{suffix}", None)
    function = getattr(lib, f"{'scipy_' if prefix.startswith('scipy') else ''}cblas_sgemm{suffix}", None)
    if config is None or function is None:
        return None
    config.restype = ctypes.c_char_p
    integer = ctypes.c_int64 if b"USE64BITINT" in (config() or b"") else ctypes.c_int32
    pointer, single = ctypes.c_void_p, ctypes.c_float
    function.argtypes = [ctypes.c_int] * 3 + [integer] * 3 + [single, pointer, integer, pointer, integer]
    function.argtypes += [single, pointer, integer]
    function.restype = None
    return function, integer


_ROW_MAJOR, _NO_TRANSPOSE = 101, 111  # CBLAS's enums


def sum_of_products(
    out: NDArray[np.float32], a: NDArray[np.float32], offsets: Sequence[int], matrices: NDArray[np.float32]
) -> bool:
    """``out = Σ_k a[offsets[k] : offsets[k] + M] @ matrices[k]`` (``out`` ``(M, N)``, ``a`` ``(rows, K)``,
    ``matrices`` ``(len(offsets), K, N)``, all C-contiguous float32), the first product written, each next one
    added into ``out`` by BLAS as it is made (``beta = 1``): one pass over ``out`` per product, no temporary.
    Returns False, having done nothing, where numpy's BLAS is not an OpenBLAS whose ``cblas_sgemm`` can be found.
    Every shape, offset and layout is checked before the first call (a mistake would read or write out of bounds).
    """
    import numpy as np

    found = _sgemm()
    if found is None:
        return False
    function, integer = found
    (m, n), (rows, k) = out.shape, a.shape
    arrays = (out, a, matrices)
    if not (
        all(x.dtype == np.float32 and x.flags.c_contiguous for x in arrays)
        and out.flags.writeable
        and matrices.shape == (len(offsets), k, n)
        and all(0 <= offset <= rows - m for offset in offsets)
        and not any(np.may_share_memory(out, x) for x in arrays[1:])
    ):
        raise ValueError(f"sum_of_products: shapes {out.shape}, {a.shape}, {matrices.shape} or offsets {offsets}")
    base, row_bytes = a.ctypes.data, k * a.itemsize
    target, table, table_bytes = out.ctypes.data, matrices.ctypes.data, k * n * matrices.itemsize
    sizes = (integer(m), integer(n), integer(k))
    for index, offset in enumerate(offsets):
        function(
            _ROW_MAJOR, _NO_TRANSPOSE, _NO_TRANSPOSE, *sizes, 1.0, base + offset * row_bytes, k,
            table + index * table_bytes, n, 1.0 if index else 0.0, target, n,
        )  # fmt: skip
    return True


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
