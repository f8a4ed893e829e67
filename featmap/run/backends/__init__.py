"""Where a batch's images are processed: in this process, on a local pool of helpers, or on a Dask cluster.

Every back end runs the same per-image function (`featmap.run.imagejob.process_image`, through
`featmap.run.work.work_image`
or the fsspec wrapper `featmap.run.work.work_url`) and hands each image's outcome back to the caller,
which alone writes the manifest and reports progress. Only where the work runs differs.

>>> choose_backend(None, jobs=1).name
'in-process'
>>> choose_backend(None, jobs=2).name
'local pool of 2'
"""

from __future__ import annotations

from collections.abc import Sequence

from featmap.run.backends.base import (
    Backend,
    Finish,
    HandOut,
    InProcess,
    Outcome,
    Starting,
    Task,
    Work,
    _as_is,
)

__all__ = ["Backend", "Finish", "InProcess", "OneCore", "Outcome", "Starting", "Task", "Work", "choose_backend"]


class OneCore(InProcess):
    """``-j 1``: every image in this process on one OpenCV thread, so that ``-j N`` means N cores (OpenCV's
    own thread pool would otherwise spread one image's filters over every core)."""

    def run(
        self, tasks: Sequence[Task], work: Work, finish: Finish, starting: Starting, hand_out: HandOut = _as_is
    ) -> None:
        """Process the tasks in order with one OpenCV thread; the thread count is restored after."""
        from featmap.run.workers import one_opencv_thread

        with one_opencv_thread():
            super().run(tasks, work, finish, starting, hand_out)


def choose_backend(scheduler: str | None, *, jobs: int, chunk: int | None = None) -> Backend:
    """The back end for ``scheduler`` (``None``: this machine; ``local``: a Dask LocalCluster of ``jobs``
    single-threaded workers; ``tcp://host:8786``: a running Dask scheduler) and ``jobs`` processes."""
    if scheduler:
        from featmap.run.backends.dask import DaskBackend

        return DaskBackend(scheduler, jobs=jobs, chunk=chunk)
    if jobs <= 1:
        return OneCore()
    from featmap.run.backends.pool import LocalPool

    return LocalPool(jobs)
