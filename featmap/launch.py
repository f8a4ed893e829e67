"""The command's first step, before Click loads: a batch's helpers' server started from the raw command line.

The helpers' server (`featmap.start_helpers`) imports a batch's per-image modules in a fresh interpreter,
~0.14 s of CPU on another core, and the first helper is forked once it is done; ``featmap apply`` asked for it
after Click had loaded and parsed the options (~30-60 ms into the command on the 2-core bench machine). Here
it is asked for as soon as the command line shows a batch whose kind and process count are certain, before
``featmap.cli`` (Click) is imported. Anything less certain is left to ``featmap apply``, which asks again
(a running server is kept): a single image never starts a server it would not use.
"""

from __future__ import annotations

import gc
import os
from collections.abc import MutableMapping, Sequence

__all__ = [
    "batch_helpers",
    "collect_after_start_up",
    "no_resource_tracker",
    "quiet_blas_threads",
    "start_command_helpers",
    "start_helpers_early",
    "start_up_over",
]

#: OpenBLAS's idle threads spin for 2**N cycles before they sleep (OpenBLAS's default N is 28, about 0.1 s here):
#: N = 4, its least, makes them sleep at once.
_BLAS_IDLE_SPIN = "4"
#: The options that name a network (a network's batch); ``-k``/``--kernel`` name a kernel bank's.
_NETWORK_OPTIONS = ("--model", "--spec")
_KERNEL_OPTIONS = ("-k", "--kernel")
#: Options after which the command is not a local batch this can tell (help, a Dask scheduler).
_NOT_HERE = ("-h", "--help", "--scheduler")


#: The cyclic collector's youngest-generation threshold while the command starts (Python's is 700).
_START_UP_THRESHOLD = 100_000
#: The thresholds to restore once the start-up is over; None when `collect_after_start_up` was not called.
_saved_thresholds: tuple[int, ...] | None = None


def collect_after_start_up() -> None:
    """Hold the cyclic garbage collector back while the command starts. Its imports and the job make ~10^5
    objects that live as long as the process, and the collector ran ~80 times over them before the first image,
    finding a few hundred objects (22M of 1.29e9 instructions of a 2-image ``featmap apply -k``, callgrind).
    `start_up_over` lets it run again, before any image is read."""
    global _saved_thresholds
    if _saved_thresholds is None:
        _saved_thresholds = gc.get_threshold()
        gc.set_threshold(_START_UP_THRESHOLD, *_saved_thresholds[1:])


def start_up_over() -> None:
    """The start-up is over (the job is built): what it made is moved out of the collector's way for good
    (`gc.freeze`: never scanned again; a few hundred start-up objects that were garbage stay) and the collector's
    thresholds are restored, so images are collected as before. Nothing happens unless `collect_after_start_up`
    held it back (a command run inside another program, such as a test, keeps its collector as it is)."""
    global _saved_thresholds
    if _saved_thresholds is not None:
        from featmap.io.bulk import freeze_for_good

        freeze_for_good()
        gc.set_threshold(*_saved_thresholds)
        _saved_thresholds = None


def quiet_blas_threads(environment: MutableMapping[str, str]) -> None:
    """Tell the OpenBLAS libraries this process will load (numpy's, and the one OpenCV's wheels bundle) not to spin
    when idle, unless ``OPENBLAS_THREAD_TIMEOUT`` is set already. Each library starts its threads as it loads and
    they spin, waiting for work that a kernel batch never gives them: measured on the 2-core bench machine, 50-70
    ms of CPU per library per process (``import numpy`` 76 -> 129 ms of CPU, ``import cv2`` 89 -> 163 ms), taken
    from the other core while this process and the helpers' server import, and ~2 ms of CPU per image over a
    100-image ``featmap apply``. A network's BLAS calls still get every thread; a sleeping thread wakes in
    microseconds. The value is read once, when a library loads, so it must be set before numpy is imported;
    the helpers' server and helpers inherit it."""
    environment.setdefault("OPENBLAS_THREAD_TIMEOUT", _BLAS_IDLE_SPIN)


def no_resource_tracker() -> bool:
    """Start the command's helpers without multiprocessing's resource tracker: told that one runs (its pipe is the
    null device), the fork server does not start it first, a third interpreter (~45 ms of CPU on the 2-core bench
    machine, taken from this process's and the server's start-up) that a batch never gives any work. The tracker
    removes the named semaphores and shared-memory blocks a crashed process leaves; the helpers make neither (their
    pipes and `RawArray`'s unlinked file: `featmap.run.workers.Helpers`), nor does anything else the command runs,
    so what the server and the helpers would tell it is nothing. Returns False, changing nothing, when a tracker
    runs already or this Python's is not laid out as expected. For the command line only: a program that calls
    featmap may use the tracker for its own processes."""
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker, "_resource_tracker", None)
    if tracker is None or getattr(tracker, "_fd", 0) is not None or not hasattr(tracker, "_check_alive"):
        return False
    tracker._fd = os.open(os.devnull, os.O_WRONLY)
    return True


def _option(token: str, names: Sequence[str]) -> bool:
    return token in names or any(token.startswith(name + "=") for name in names if name.startswith("--"))


def _jobs(args: Sequence[str]) -> int | None | bool:
    """The ``-j``/``--jobs`` value (the last one, as Click takes it), None when not given, False when unreadable."""
    jobs: int | None | bool = None
    for i, token in enumerate(args):
        if token in ("-j", "--jobs"):
            text = args[i + 1] if i + 1 < len(args) else ""
        elif token.startswith("--jobs="):
            text = token[len("--jobs=") :]
        elif token.startswith("-j") and not token.startswith("--"):
            text = token[2:]
        else:
            continue
        jobs = int(text) if text.isascii() and text.isdigit() and int(text) >= 1 else False
    return jobs


def batch_helpers(argv: Sequence[str]) -> tuple[int | None, bool] | None:
    """``(jobs, network)`` for `featmap.start_helpers` when ``argv`` (the arguments after ``featmap``) is certainly
    an ``apply`` over a local folder with kernels (``-k``) or a network (``--model``/``--spec``), else None.

    A folder is an existing directory given as an input: a token that follows the command, another input or an
    option's value (an option takes one value), never an option's own value (``-o OUT``); ``--`` ends the options.

    Examples
    --------
    >>> batch_helpers(["apply", "/", "-k", "sobel_x", "-j", "2"])
    (2, False)
    >>> batch_helpers(["apply", "/", "--model", "lenet5", "--jobs=3"])
    (3, True)
    >>> batch_helpers(["apply", "photo.png", "-k", "sobel_x", "-o", "/"]) is None  # one image: no helpers
    True
    """
    args = list(argv)
    while args[:1] == ["--debug"]:
        args.pop(0)
    if args[:1] != ["apply"] or any(_option(token, _NOT_HERE) for token in args):
        return None
    args = args[1:]
    network = any(_option(token, _NETWORK_OPTIONS) for token in args)
    if not network and not any(_option(token, _KERNEL_OPTIONS) for token in args):
        return None
    jobs = _jobs(args)
    if isinstance(jobs, bool):  # unreadable: Click says so
        return None
    folder, expects_value = False, False
    for i, token in enumerate(args):
        if token == "--":
            folder = folder or any(os.path.isdir(rest) for rest in args[i + 1 :])
            break
        if not expects_value and not token.startswith("-") and os.path.isdir(token):
            folder = True
        # an option without ``=value`` may take the next token (a flag does not: then a folder is missed, not made up)
        expects_value = not expects_value and token.startswith("-") and token != "-" and "=" not in token
    return (jobs, network) if folder else None


def start_helpers_early(argv: Sequence[str]) -> bool:
    """Start the helpers' server now when `batch_helpers` is sure of the batch (OpenBLAS told not to spin first:
    the server inherits this environment); True when it was started."""
    asked = batch_helpers(argv)
    if asked is None:
        return False
    quiet_blas_threads(os.environ)
    return start_command_helpers(*asked)


def start_command_helpers(jobs: int | None, network: bool) -> bool:
    """`featmap.start_helpers` for the command line: the server started without a resource tracker
    (`no_resource_tracker`) when one will start (``jobs``, default every core, more than one)."""
    import featmap

    if (jobs or os.cpu_count() or 1) > 1:
        no_resource_tracker()
    return featmap.start_helpers(jobs, network=network)
