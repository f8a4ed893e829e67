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

import sys as _sys


def _asks_json(args: list[str]) -> bool:
    """Whether a command line asks for JSON on stdout (``--json``, ``--format json``; `featmap.cli` reads it too).

    Examples
    --------
    >>> _asks_json(["apply", "a.png", "--json"]), _asks_json(["shape", "--format", "json"]), _asks_json(["-o", "x"])
    (True, True, False)
    """
    return (
        "--json" in args
        or "--format=json" in args
        or any(a == "--format" and b == "json" for a, b in zip(args, args[1:], strict=False))
    )


def _stop_loading(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM while the ``featmap`` command loads featmap, before `featmap.cli.run` takes the signals
    over: one line (and the JSON document with ``--json``), exit 130 (143), never Python's traceback."""
    import signal

    terminated = signum == signal.SIGTERM
    message, code = ("terminated (SIGTERM)", 143) if terminated else ("interrupted", 130)
    _sys.stderr.write(f"featmap: error: {message}\n")
    if _asks_json(_sys.argv[1:]):
        import json

        _sys.stdout.write(json.dumps({"error": message, "exit_code": code}, indent=2) + "\n")
    raise SystemExit(code)


def _command_loads() -> bool:
    """Whether this import is the ``featmap`` command loading featmap (its console script, or ``python -m featmap``
    while Python finds the package), not a program importing the library."""
    argv = _sys.argv
    if not argv:
        return False
    if argv[0] == "-m":
        given = list(getattr(_sys, "orig_argv", ()))
        return "-mfeatmap" in given or any(a == "-m" and b == "featmap" for a, b in zip(given, given[1:], strict=False))
    return argv[0].replace("\\", "/").rsplit("/", 1)[-1] in ("featmap", "featmap.exe", "featmap-script.py")


if _command_loads():  # the first thing featmap runs: from here an interrupt is one line, not a traceback
    import signal as _signal

    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:  # an ignored signal stays ignored
        _signal.signal(_signal.SIGINT, _stop_loading)
    if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
        _signal.signal(_signal.SIGTERM, _stop_loading)

from typing import TYPE_CHECKING, Any  # noqa: E402 - after the signals (an import takes milliseconds)

from featmap.errors import (  # noqa: E402
    FeatmapError,
    ImageReadError,
    KernelFileError,
    OptionError,
    ShapeError,
    SpecError,
)

if TYPE_CHECKING:
    from os import PathLike

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
    "begin_resume",
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


def begin_resume(out: str | PathLike[str] | None, jobs: int | None = None) -> bool:
    """Begin the resume check of the output folder ``out`` now, before the batch's images are found, for an
    `apply_batch` with ``skip_existing`` on ``jobs`` processes (default: every core); False when nothing was begun.

    With more than one process and a big manifest index in ``out`` (10⁵ outputs or so), a helper process stats
    every output the index names, from the last back, while this process finds and names the images; the batch's
    check takes its answers where they are for the files it asks about and stats the rest itself
    (`featmap.run.resume_early`). Nothing is written. Not taken (no resume, another folder), it is stopped at exit.
    """
    import os
    from pathlib import Path

    if out is None or (_checked_jobs(jobs) or os.cpu_count() or 1) <= 1:
        return False
    from featmap.run.resume_early import began_early, begin_early

    begin_early(Path(out) if "://" not in str(out) else None, jobs)
    return began_early()


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
