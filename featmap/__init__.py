"""featmap: see what a convolutional layer does to a picture.

The Python API: `apply` (kernels over an image: arrays and the table's facts), `forward` (a whole layer
stack on an image), `shape` (the layer calculator), `check_weights` (a weights file against a network),
`kernel` (one kernel); files and batches as ``featmap apply`` runs them (`ApplyOptions`, `build_job`,
`apply_file`, `find_images`, `apply_batch`); and the numeric functions
`conv2d`, `pool2d`, `activate`, ...
They are imported on first use, so that ``featmap --help`` does not load numpy.

Examples
--------
>>> import featmap
>>> featmap.conv2d([[1.0, 2.0], [3.0, 4.0]], [[1.0]]).shape
(2, 2, 1)
>>> featmap.shape(["conv:6@5x5"], input="32x32x1").totals.params
156
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featmap.errors import FeatmapError, ImageReadError, KernelFileError, OptionError, ShapeError, SpecError

if TYPE_CHECKING:
    from featmap.api import apply, check_weights, forward, kernel, shape
    from featmap.batch_api import (
        ApplyOptions,
        BatchInterrupted,
        FoundImages,
        apply_batch,
        apply_file,
        apply_layers,
        build_job,
        find_images,
    )
    from featmap.core.ops import activate, conv2d, pad
    from featmap.core.pool import global_pool, pool2d
    from featmap.explain import trace_conv, trace_pool

__version__ = "0.1.0"

__all__ = [
    "ApplyOptions",
    "BatchInterrupted",
    "FeatmapError",
    "FoundImages",
    "ImageReadError",
    "KernelFileError",
    "OptionError",
    "ShapeError",
    "SpecError",
    "__version__",
    "activate",
    "apply",
    "apply_batch",
    "apply_file",
    "apply_layers",
    "build_job",
    "check_weights",
    "conv2d",
    "find_images",
    "global_pool",
    "forward",
    "kernel",
    "pad",
    "pool2d",
    "shape",
    "start_helpers",
    "trace_conv",
    "trace_pool",
]

_LAZY = {
    "apply": "api",
    "kernel": "api",
    "check_weights": "api",
    "forward": "api",
    "shape": "api",
    "ApplyOptions": "batch_api",
    "BatchInterrupted": "batch_api",
    "FoundImages": "batch_api",
    "apply_batch": "batch_api",
    "apply_file": "batch_api",
    "apply_layers": "batch_api",
    "build_job": "batch_api",
    "find_images": "batch_api",
    "activate": "core.ops",
    "conv2d": "core.ops",
    "pad": "core.ops",
    "global_pool": "core.pool",
    "pool2d": "core.pool",
    "trace_conv": "explain",
    "trace_pool": "explain",
}


def start_helpers(jobs: int | None = None, *, network: bool | None = None) -> bool:
    """Start the server that forks a batch's helper processes now, if ``jobs`` (default: every core) asks for
    more than one process, and return at once; False when nothing was started.

    `apply_batch` starts it anyway as its run begins. Started first (``featmap apply`` does so before it builds
    the job), its imports run on another core while this process builds the job and finds the images, and the
    first helper then costs a fork instead of a wait (`featmap.run.workers.start_server`). ``network``: the
    batch's kind, when known (True for a network, False for kernels), so the server imports only that path.
    """
    import os

    if (_checked_jobs(jobs) or os.cpu_count() or 1) <= 1:
        return False
    from featmap.run.workers import start_server

    return start_server(network)


def _checked_jobs(jobs: object) -> int | None:
    """``jobs`` as the batch API takes it: a whole number >= 1, or None for every core; else a `SpecError`."""
    if jobs is None or (isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1):
        return jobs
    raise SpecError("`jobs`", f"must be a whole number >= 1 (or None: every core); got {jobs!r}")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'featmap' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the ones imported on first use included."""
    return sorted({*globals(), *_LAZY})
