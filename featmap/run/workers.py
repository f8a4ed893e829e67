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
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
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

#: What every helper loads before its images: what it unpickles as it starts (its pipes, its slot in shared memory)
#: and its loop, `Helpers`', imported once in the server instead of after each fork.
_PRELOAD_POOL = ("multiprocessing.connection", "multiprocessing.sharedctypes", "multiprocessing.popen_forkserver")
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
    """Up to ``count`` helper processes that run ``work`` over ``tasks``, both sent once, as each helper starts:
    forked by the fork server (`start_server`, started here if it was not), or spawned where there is none.

    The hand-out is a pipe of task positions that this process fills (`give`) and pulls from itself (`take`),
    and every helper pulls from as it becomes free: a 4-byte record, whole in every read since each write of
    one is atomic, so nothing is assigned ahead and the last tasks go to whoever is free first. A helper reads
    each position straight into its slot of shared memory (one system call: a helper killed at any moment
    holds either the position it works on or none) and sends each outcome, ``work``'s return value, back
    through its own pipe (`collect`), then clears its slot. No thread of this process takes part: the cost of
    an image between the processes is a write, a read and the outcome's pickle.
    """

    def __init__(self, count: int, work: Callable[[Any], Any], tasks: Sequence[Any]) -> None:
        import select
        import threading

        self.count = count
        self._spawned = not start_server()  # forked helpers get the server's environment, spawned ones this one's
        self._context = _context()
        self._job = (work, list(tasks))
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)  # this process never waits on it (nor, through select, do helpers)
        self._slots = self._context.RawArray("i", [_FREE] * max(count, 1))
        self._live: dict[int, tuple[Any, Any]] = {}  # slot -> (process, its outcomes' pipe), until it ends
        self._watched: dict[int, tuple[int, int]] = {}  # slot -> (its end's fd, its pipe's fd), once `collect` saw it
        self._slot_of: dict[int, int] = {}  # a watched fd's slot
        self._poll = select.poll()
        self.started = 0  # helpers started
        self._stopped = False
        self._starting = threading.Lock()

    @property
    def working(self) -> int:
        """How many started helpers have not ended."""
        return len(self._live)

    def start(self) -> bool:
        """Start one more helper and return True; False once ``count`` have started, or after `stop`. A start
        waits until the fork server has finished its imports: call it from a thread while this process works."""
        from multiprocessing.connection import Connection

        with self._starting:
            if self._stopped or self.started >= self.count:
                return False
            slot = self.started
            outcomes, sender = self._context.Pipe(duplex=False)
            _roomy(sender.fileno())
            positions = Connection(os.dup(self._read), writable=False)
            process = self._context.Process(
                target=_serve,
                args=(os.getpid(), self._job, positions, sender, self._slots, slot),
                name=f"featmap-helper-{slot + 1}",
                daemon=True,
            )
            try:
                with _helper_environment() if self._spawned else nullcontext():  # forked: the server's environment
                    process.start()
            finally:
                positions.close()
                sender.close()
            self._live[slot] = (process, outcomes)
            self.started += 1
            return True

    def give(self, position: int) -> None:
        """Put ``tasks[position]`` up for whichever process is free first."""
        os.write(self._write, position.to_bytes(_RECORD, _ORDER, signed=True))

    def take(self) -> int | None:
        """The next position given and not yet taken, for this process to run; None when there is none."""
        try:
            record = os.read(self._read, _RECORD)
        except BlockingIOError:
            return None
        return int.from_bytes(record, _ORDER, signed=True)

    def collect(self, wait: bool = False) -> tuple[list[Any], list[tuple[int | None, int | None]]]:
        """The outcomes helpers have sent, and the helpers that ended meanwhile, each as ``(its exit code, the
        position it held or None)``; with ``wait``, until there is one or the other (at once when no helper
        works). One ``poll`` object watches every helper's pipe and end, so a call costs a system call or two."""
        import select

        outcomes: list[Any] = []
        ended: list[tuple[int | None, int | None]] = []
        for slot in [slot for slot in self._live if slot not in self._watched]:  # started since: watched from now
            process, pipe = self._live[slot]
            self._watched[slot] = (process.sentinel, pipe.fileno())
            for fd in self._watched[slot]:
                self._poll.register(fd, select.POLLIN)
                self._slot_of[fd] = slot
        if not self._live:
            return outcomes, ended
        timeout = None if wait else 0
        while events := self._poll.poll(timeout):
            timeout = 0  # then whatever else is there, without waiting
            ready = [(self._slot_of[fd], fd) for fd, _ in events if fd in self._slot_of]
            for slot, fd in ready:  # outcomes first
                if fd == self._watched[slot][1]:
                    try:
                        outcomes.append(self._live[slot][1].recv())
                    except (EOFError, OSError):  # its helper is gone: its end says so
                        self._forget(fd)
            for slot, fd in ready:  # then the helpers that ended: what each sent first, then what it held
                if slot in self._watched and fd == self._watched[slot][0]:
                    for watched in self._watched.pop(slot):
                        self._forget(watched)
                    process, pipe = self._live.pop(slot)
                    outcomes += _drain(pipe)
                    pipe.close()
                    process.join()
                    held = self._slots[slot]
                    ended.append((process.exitcode, None if held == _FREE else held))
        return outcomes, ended

    def _forget(self, fd: int) -> None:
        if self._slot_of.pop(fd, None) is not None:
            self._poll.unregister(fd)

    def close(self) -> None:
        """Tell the helpers there is no more (the pipe's end), let them exit, and release the pipes."""
        self._end(terminate=False)

    def stop(self) -> None:
        """Stop now: helpers terminated, whatever they run cut short (the caller removes their files)."""
        self._end(terminate=True)

    def _end(self, terminate: bool) -> None:
        with self._starting:  # a helper being started is started first
            if self._stopped:
                return
            self._stopped = True
        os.close(self._write)
        processes = [process for process, _ in self._live.values()]
        for process in processes if terminate else ():
            process.terminate()
        for process in processes:
            process.join(timeout=5)
            if process.exitcode is None:  # stuck: the pipe's end did not reach it
                process.terminate()
                process.join(timeout=5)
        for _, pipe in self._live.values():
            pipe.close()
        self._live.clear()
        os.close(self._read)


#: A task's position travels as one 4-byte signed integer, in this machine's byte order; a free slot holds -1.
_RECORD, _ORDER, _FREE = 4, sys.byteorder, -1


def _roomy(fd: int) -> None:
    """Room for a few outcomes (a network's: tens of kB) while this process works: 1 MiB on Linux, else 64 kB."""
    import fcntl

    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass


def _drain(pipe: Any) -> list[Any]:
    """Every outcome waiting in ``pipe`` (none once its helper has ended and it is empty)."""
    found = []
    try:
        while pipe.poll():
            found.append(pipe.recv())
    except (EOFError, OSError):
        pass
    return found


def _serve(
    parent: int, job: tuple[Callable[[Any], Any], list[Any]], positions: Any, outcomes: Any, slots: Any, slot: int
) -> None:
    """A helper's life: pull a position (straight into its slot), run its task, send the outcome, free the
    slot; until the pipe of positions ends."""
    import select

    _helper_init(parent)
    work, tasks = job
    source = positions.fileno()
    mine = memoryview(slots).cast("B")[slot * _RECORD : (slot + 1) * _RECORD]
    while True:
        select.select([source], [], [])
        try:
            if os.readv(source, [mine]) == 0:
                return  # no more positions: the batch is over
        except BlockingIOError:  # another process took it first
            continue
        outcomes.send(work(tasks[slots[slot]]))
        slots[slot] = _FREE
