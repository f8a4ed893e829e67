"""Helper processes for a batch: each starts with one BLAS and one OpenCV thread and a malloc that keeps
freed memory, leaves Ctrl-C to the parent, and all can be stopped at once.

Helpers start warm: they are forked by a server (`multiprocessing`'s fork server), a fresh interpreter
started with the helpers' environment that imports featmap's per-image modules (`PRELOAD`, through
`featmap.run.warm`: the collector held back, then what they made frozen) once and never runs an image itself,
so no OpenCV or BLAS thread exists in it when it forks (a child forked from a process whose OpenCV thread pool
has started hangs in its first OpenCV call; this process, which works beside its helpers, has one).
`start_server` starts it without waiting; the local pool does that as its run begins, so the server's ~0.3 s of
imports run while this process does the first image, and a helper asked for later costs a fork. Where there is
no fork server (not POSIX), helpers are spawned.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

__all__ = [
    "PRELOAD",
    "PRELOAD_ENV",
    "PRELOAD_KERNELS",
    "PRELOAD_NETWORK",
    "Helpers",
    "keep_freed_memory",
    "one_opencv_thread",
    "signals_deferred",
    "start_server",
]

#: What every helper loads before its images: `concurrent.futures`' helper loop, the queues, locks and process
#: records it unpickles, and the pool's first task, imported once in the server instead of after each fork.
_PRELOAD_POOL = (
    "concurrent.futures.process",
    "multiprocessing.synchronize",
    "multiprocessing.popen_forkserver",
    "featmap.run.backends.pool",
)
#: The modules the helpers' server imports once for every helper of a kernel bank's batch: everything its images
#: need, with the PNG writer (a command imports only its own path, so each is named here).
PRELOAD_KERNELS = ("featmap.run.work", "featmap.run.pipeline", "featmap.io.writers.png", *_PRELOAD_POOL)
#: The same for a network's batch, with the network path, its sheet and report.
PRELOAD_NETWORK = (
    "featmap.run.work",
    "featmap.run.netjob",
    "featmap.net.networks",  # each helper reads the network's weights: the readers of every kind of file
    "featmap.net.onnx",
    "featmap.net.weights",
    "featmap.run.netreport",
    "featmap.io.writers.png",
    "featmap.io.writers.pictures",
    *_PRELOAD_POOL,
)
#: Both, for a server started before the batch's kind is known (a helper imports what its server did not).
PRELOAD = tuple(dict.fromkeys(PRELOAD_KERNELS + PRELOAD_NETWORK))
#: The environment variable that tells the server's one preloaded module, `featmap.run.warm`, what to import.
PRELOAD_ENV = "FEATMAP_HELPERS_PRELOAD"

# glibc's malloc: allocations under 32 MiB come from the heap and freed memory is kept, so the next image's
# arrays reuse pages already mapped instead of faulting in fresh ones. Measured on 1024² JPEGs with four
# kernels: 3,800 page faults per image -> 11, system time 10-12 ms -> 2-3 ms, 19-23 -> 24-33 img/s.
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 << 20, 256 << 20
_HELPER_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_MMAP_THRESHOLD_": str(_MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(_TRIM_THRESHOLD),
}


def keep_freed_memory() -> bool:
    """Apply the malloc settings above to this process (glibc only; elsewhere nothing happens and False is
    returned). For a process that runs many images, such as the ``featmap apply`` command."""
    import ctypes

    try:  # the C library is already loaded: its symbols are found from the program itself, without
        mallopt = ctypes.CDLL(None).mallopt  # find_library's `ldconfig -p` process (~6 ms at each start)
    except (OSError, AttributeError):
        import ctypes.util

        try:
            mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
        except (OSError, AttributeError, TypeError):
            return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, _MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold, _TRIM_THRESHOLD))


def _context() -> Any:
    """The helpers' start method: the fork server where there is one, else spawn."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def start_server(network: bool | None = None) -> bool:
    """Start the helpers' fork server now, with the helpers' environment, and return at once (its imports run
    beside this process's work); False where helpers are spawned instead. It imports `PRELOAD_KERNELS` for a
    kernel bank's batch (``network=False``: ~20 ms less than both), `PRELOAD_NETWORK` for a network's, both
    (`PRELOAD`) when the kind is not said. Starting it again does nothing while it runs. It ends when this
    process does."""
    context = _context()
    if context.get_start_method() != "forkserver":
        return False
    from multiprocessing import forkserver

    preload = PRELOAD if network is None else PRELOAD_NETWORK if network else PRELOAD_KERNELS
    with _helper_environment({PRELOAD_ENV: ",".join(preload)}):  # the server's environment is every helper's
        context.set_forkserver_preload(["featmap.run.warm"])  # which imports `preload` (and freezes it)
        forkserver.ensure_running()
    return True


def _helper_init(parent: int) -> None:
    """In each helper: one OpenCV thread (BLAS got one from its starting environment); Ctrl-C ignored;
    a watcher that ends the helper as soon as its parent is gone (``kill -9`` of the parent leaves no helper,
    and so no resource tracker either, holding the parent's pipes)."""
    import multiprocessing
    import signal
    import threading

    from featmap.core.cvfilter import set_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(1)
    # multiprocessing's handle on the process that asked for this one: its sentinel reads end-of-file once that
    # process is gone, zombie or reaped (a pid check would wait on a zombie parent forever, and a forked
    # helper's parent process is the fork server, which lives while any helper does).
    asker = multiprocessing.parent_process()

    def watch() -> None:
        import time

        if asker is not None:
            asker.join()
        else:
            while os.getppid() == parent:
                time.sleep(0.2)
        os._exit(1)  # the parent died: its results have nowhere to go

    threading.Thread(target=watch, name="featmap-parent-watch", daemon=True).start()


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held back for a few statements (a step that must not be cut in two), then delivered.
    Only in the main thread; elsewhere a plain block.

    Held by handlers that only note the signal, not by the thread's signal mask: a process-directed signal
    that the main thread blocks goes to another thread of the process (the pool's manager, the PNG writers),
    and CPython then runs the Python handler in the main thread at once, inside the block (seen: an image's
    maps written, its task taken off the pending list, the interrupt raised before its manifest lines, so the
    files were neither recorded nor removed). Noted signals are raised again, in order, after the block.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = [signal.SIGINT, signal.SIGTERM]
    noted: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: noted.append(number)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for number in dict.fromkeys(noted):
            signal.raise_signal(number)


@contextmanager
def _helper_environment(extra: dict[str, str] | None = None) -> Iterator[None]:
    """BLAS reads its thread count when numpy loads and malloc its settings when the process starts, both
    before any initializer runs: so the variables (and ``extra``) are set in this process's environment, which a
    helper inherits when it starts, and restored afterwards."""
    variables = {**_HELPER_ENVIRONMENT, **(extra or {})}
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
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
    """This process on one OpenCV thread and one BLAS thread for a while (``-j 1``; the parent, when it works
    beside its helpers): ``-j N`` means N cores (`featmap.core.blas`)."""
    from featmap.core import blas
    from featmap.core.cvfilter import set_threads, threads

    before = threads()
    set_threads(1)
    try:
        with blas.one_thread():
            yield
    finally:
        set_threads(before)


class Helpers:
    """A pool of ``count`` helper processes, forked by the fork server (`start_server`, started here if it was
    not), or spawned where there is none."""

    def __init__(self, count: int) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.count = count
        self._spawned = not start_server()  # forked helpers get the server's environment, spawned ones this one's
        self._pool = ProcessPoolExecutor(
            count, mp_context=_context(), initializer=_helper_init, initargs=(os.getpid(),)
        )

    def submit(self, func: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue ``func(*args)``; the pool starts a helper on submit while it has fewer than ``count`` (thread-safe:
        a fork server's helpers leave this process's environment alone)."""
        if not self._spawned:
            return self._pool.submit(func, *args)
        with _helper_environment():
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
