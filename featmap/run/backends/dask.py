"""The Dask back end: images in chunks on a Dask distributed cluster, the manifest and progress here.

``local`` starts a `distributed.LocalCluster` of ``jobs`` single-threaded worker processes (and closes it at
the end); ``tcp://host:8786`` (any scheduler address) connects to a running cluster. Each task carries a
chunk of a few images and runs the same per-image function as the local pool (`featmap.run.work.work_image`, or the
fsspec wrapper), so results are byte-identical; only the outcomes come back. A bounded window of chunks is in
flight at a time: the client's memory does not grow with the batch, and an interrupt has little to cancel.
On Ctrl-C the outstanding chunks are cancelled, a LocalCluster's workers are stopped at once, and on a
remote cluster the client waits until no chunk of this batch still runs, so that the caller can remove
the outputs of unfinished images knowing nothing will write them again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from featmap.errors import FeatmapError, MissingExtraError, install_hint
from featmap.run.backends.base import Finish, HandOut, Outcome, Starting, Task, Work, _as_is

__all__ = ["DEFAULT_CHUNK", "DaskBackend", "require_dask", "run_chunk"]

#: Images per task. Measured with bench/cluster_bench.py on 200 JPEGs of 1024² (2 single-threaded workers,
#: images/s over the local -j 2 pool's): 1 per task 0.92x, 4 per task 1.14x, 16 per task 1.19x. 4 keeps the
#: tail short and an interrupt cheap; large clusters want more (docs/scaling.md).
DEFAULT_CHUNK = 4
_DRAIN_SECONDS = 120.0

_prepared = False


def require_dask() -> Any:
    """Import `distributed`, or raise the one-line error that says which install brings it."""
    try:
        import distributed
    except ImportError:
        raise MissingExtraError(
            "--scheduler", "needs Dask distributed, which is not installed", install_hint("dask")
        ) from None
    return distributed


def _prepare_worker() -> None:
    """Once per worker process: one OpenCV thread (a worker is one core) and a malloc that keeps freed pages."""
    global _prepared
    if not _prepared:
        from featmap.core.cvfilter import set_threads
        from featmap.run.workers import keep_freed_memory

        set_threads(1)
        keep_freed_memory()
        _prepared = True


def run_chunk(work: Work, tasks: Sequence[Task]) -> list[Outcome]:
    """The Dask task: run ``work`` on each image of the chunk; a failure is an outcome, not an exception."""
    _prepare_worker()
    return [work(task) for task in tasks]


def _running_keys(prefix: str, dask_worker: Any = None) -> list[str]:
    """On a worker: the keys of this batch's chunks that are still executing (cancelled or not)."""
    tasks = getattr(getattr(dask_worker, "state", None), "tasks", {})
    busy = ("executing", "long-running", "cancelled", "resumed")
    return [str(key) for key, ts in tasks.items() if str(key).startswith(prefix) and ts.state in busy]


class DaskBackend:
    """Chunks of images on a Dask cluster (see the module's docstring)."""

    def __init__(
        self, scheduler: str, *, jobs: int = 1, chunk: int | None = None, connect_timeout: float = 10.0
    ) -> None:
        self.scheduler = scheduler
        self.connect_timeout = connect_timeout
        self.jobs = max(1, jobs)
        self.chunk = chunk or DEFAULT_CHUNK
        if self.chunk < 1:
            raise FeatmapError("--chunk", f"must be >= 1; got {self.chunk}", "use a few images per task, e.g. 4")
        self.name = "Dask LocalCluster" if scheduler == "local" else f"Dask scheduler {scheduler}"
        self._cluster: Any = None

    def _connect(self) -> Any:
        distributed = require_dask()
        if self.scheduler == "local":
            import logging
            import os

            saved = dict(os.environ)
            self._cluster = distributed.LocalCluster(
                n_workers=self.jobs,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
            os.environ.clear()  # the nannies run in this process and leave the workers' variables in it
            os.environ.update(saved)
            return distributed.Client(self._cluster)
        try:
            return distributed.Client(self.scheduler, timeout=self.connect_timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise FeatmapError(
                "--scheduler",
                f"cannot reach the Dask scheduler at {self.scheduler} ({exc})",
                "check the address (tcp://host:8786), or use --scheduler local",
            ) from None

    def run(
        self, tasks: Sequence[Task], work: Work, finish: Finish, starting: Starting, hand_out: HandOut = _as_is
    ) -> None:
        """Process the tasks on the cluster; outcomes are handed to ``finish`` as chunks complete."""
        if not tasks:
            return
        distributed = require_dask()
        client = self._connect()
        prefix = f"featmap-{uuid.uuid4().hex[:8]}"
        chunks = [list(tasks[i : i + self.chunk]) for i in range(0, len(tasks), self.chunk)]
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()) or 1
        window = max(4, 3 * threads)  # enough queued that no worker idles between chunks
        by_future: dict[Any, list[Task]] = {}
        try:
            completed = distributed.as_completed()
            position = 0

            def submit_next() -> None:
                nonlocal position
                chunk = [hand_out(task) for task in chunks[position]]
                future = client.submit(run_chunk, work, chunk, pure=False, key=f"{prefix}-{position}")
                by_future[future] = chunk
                completed.add(future)
                position += 1

            while position < len(chunks) and position < window:
                submit_next()
            for future in completed:
                chunk = by_future.pop(future)
                try:
                    outcomes = future.result()
                except Exception as exc:  # a worker died (KilledWorker) or the chunk could not run
                    reason = f"a Dask worker failed ({type(exc).__name__}: {exc}); retry, or check the workers' logs"
                    outcomes = [(task[0], None, reason) for task in chunk]
                for outcome in outcomes:
                    finish(*outcome)
                if position < len(chunks):
                    submit_next()
        except BaseException:
            self._cancel(client, list(by_future), prefix)
            raise
        finally:
            self._close(client)

    def _cancel(self, client: Any, futures: list[Any], prefix: str) -> None:
        """Cancel outstanding chunks; return once none of them can still write an output."""
        try:
            client.cancel(futures, force=True)
        except Exception:
            pass
        if self._cluster is not None:
            self._cluster.close()  # our own workers: stopped at once
            self._cluster = None
            return
        # A running task cannot be stopped remotely, and the scheduler forgets a cancelled one at once while
        # its worker thread goes on: ask the workers themselves until none still runs a chunk of ours.
        deadline = time.monotonic() + _DRAIN_SECONDS
        while time.monotonic() < deadline:
            try:
                busy = client.run(_running_keys, prefix)
            except Exception:
                return
            if not any(busy.values()):
                return
            time.sleep(0.1)

    def _close(self, client: Any) -> None:
        try:
            client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None
