"""Helper processes for a batch: each starts with one BLAS and one OpenCV thread and leaves Ctrl-C to the
parent, and all can be stopped at once.

Processes are spawned (not forked: the parent may run threads, such as Rich's progress display), so a
helper pays ~0.3 s of imports before its first image; `featmap.batch` has the parent work meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from .cvfilter import set_threads, threads

__all__ = ["Helpers", "one_opencv_thread"]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _helper_init() -> None:
    """In each helper: one OpenCV thread (BLAS got one from its starting environment); Ctrl-C ignored."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(1)


@contextmanager
def _one_blas_thread_for_children() -> Iterator[None]:
    """BLAS reads its thread count when numpy loads, before any initializer runs: so the variables are set
    in this process's environment, which a helper inherits when it starts, and restored afterwards."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def one_opencv_thread() -> Iterator[None]:
    """This process on one OpenCV thread for a while (the parent, when it works beside its helpers)."""
    before = threads()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(before)


class Helpers:
    """A pool of ``count`` spawned helper processes."""

    def __init__(self, count: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(
            count, mp_context=multiprocessing.get_context("spawn"), initializer=_helper_init
        )

    def submit(self, func: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue ``func(*args)``; the pool starts a helper on submit while it has fewer than ``count``."""
        with _one_blas_thread_for_children():
            return self._pool.submit(func, *args)

    def close(self) -> None:
        """Wait for queued work, then let the helpers exit."""
        self._pool.shutdown(wait=True)

    def stop(self) -> None:
        """Stop now: queued work cancelled, running helpers terminated (the caller removes their files)."""
        processes = list((getattr(self._pool, "_processes", None) or {}).values())  # no public handle before 3.14
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)
