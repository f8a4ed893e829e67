"""featmap.core.blas: numpy's OpenBLAS thread count read and set at run time, and ``-j 1`` on one BLAS thread."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from featmap.core import blas
from featmap.run.backends import choose_backend

needs_openblas = pytest.mark.skipif(blas.threads() == 0, reason="numpy's BLAS is not an OpenBLAS featmap can control")


@needs_openblas
def test_set_threads_is_read_back_and_one_thread_restores() -> None:
    before = blas.threads()
    try:
        assert blas.set_threads(2) and blas.threads() == 2
        with blas.one_thread():
            assert blas.threads() == 1
            a = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
            assert float((a @ np.eye(64, dtype=np.float32))[3, 5]) == 3 * 64 + 5  # BLAS still works on one thread
        assert blas.threads() == 2
        assert blas.set_threads(0) and blas.threads() == 1  # at least one thread
    finally:
        blas.set_threads(before)


@needs_openblas
def test_one_job_runs_on_one_blas_thread_and_restores_the_count() -> None:
    before = blas.threads()
    blas.set_threads(2)
    seen: list[int] = []
    try:
        tasks: list[Any] = [(i, SimpleNamespace(path=f"img{i}.png")) for i in range(2)]
        choose_backend(None, jobs=1).run(
            tasks, lambda task: (seen.append(blas.threads()), task), lambda *_: None, lambda _: None
        )
        assert seen == [1, 1] and blas.threads() == 2
    finally:
        blas.set_threads(before)


needs_sgemm = pytest.mark.skipif(blas._sgemm() is None, reason="numpy's BLAS has no cblas_sgemm featmap can call")


@needs_sgemm
def test_sum_of_products_equals_a_float64_sum_of_shifted_products() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((50, 12)).astype(np.float32)
    matrices = rng.standard_normal((3, 12, 5)).astype(np.float32)
    offsets = [0, 7, 20]
    out = np.full((30, 5), np.nan, np.float32)  # overwritten by the first product, not added to
    assert blas.sum_of_products(out, a, offsets, matrices)
    want = sum(a[o : o + 30].astype(np.float64) @ m.astype(np.float64) for o, m in zip(offsets, matrices, strict=True))
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5 * np.abs(want).max())


@needs_sgemm
def test_sum_of_products_by_hand() -> None:
    a = np.arange(8, dtype=np.float32).reshape(4, 2)  # rows [0 1] [2 3] [4 5] [6 7]
    matrices = np.array([[[1.0], [0.0]], [[0.0], [10.0]]], np.float32)  # first column of rows 0-1, 10× second of 2-3
    out = np.empty((2, 1), np.float32)
    assert blas.sum_of_products(out, a, [0, 2], matrices)
    assert out.ravel().tolist() == [0 + 50, 2 + 70]


@needs_sgemm
@pytest.mark.parametrize(
    "case",
    ["offset past the end", "negative offset", "float64", "not contiguous", "matrix shape", "output overlaps"],
)
def test_sum_of_products_refuses_what_would_read_or_write_out_of_bounds(case: str) -> None:
    a = np.ones((10, 4), np.float32)
    matrices = np.ones((2, 4, 3), np.float32)
    out = np.empty((6, 3), np.float32)
    offsets = [0, 4]
    if case == "offset past the end":
        offsets = [0, 5]
    elif case == "negative offset":
        offsets = [-1, 0]
    elif case == "float64":
        a = a.astype(np.float64)
    elif case == "not contiguous":
        a = np.ones((10, 8), np.float32)[:, ::2]
    elif case == "matrix shape":
        matrices = np.ones((2, 3, 3), np.float32)
    else:
        a = np.ones((12, 3), np.float32)
        out, matrices = a[:6], np.ones((2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="sum_of_products"):
        blas.sum_of_products(out, a, offsets, matrices)  # type: ignore[arg-type]
