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
