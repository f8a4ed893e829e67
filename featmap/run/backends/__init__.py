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

from featmap.run.backends.base import Backend, Finish, InProcess, Outcome, Starting, Task, Work

__all__ = ["Backend", "Finish", "InProcess", "Outcome", "Starting", "Task", "Work", "choose_backend"]


def choose_backend(scheduler: str | None, *, jobs: int, chunk: int | None = None) -> Backend:
    """The back end for ``scheduler`` (``None``: this machine; ``local``: a Dask LocalCluster of ``jobs``
    single-threaded workers; ``tcp://host:8786``: a running Dask scheduler) and ``jobs`` processes."""
    if scheduler:
        from featmap.run.backends.dask import DaskBackend

        return DaskBackend(scheduler, jobs=jobs, chunk=chunk)
    if jobs <= 1:
        return InProcess()
    from featmap.run.backends.pool import LocalPool

    return LocalPool(jobs)
