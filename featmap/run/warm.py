"""The one module the helpers' fork server is told to import: the per-image modules `featmap.run.workers.start_server`
names in ``FEATMAP_HELPERS_PRELOAD``, and what a helper's first image loads on first use (`first_image_loads`),
imported with the cyclic collector held back, then frozen.

Importing is what this module is for. The imports make ~10^5 objects (modules, classes, functions) that live as
long as the server and every helper forked from it; the collector ran over them ~50 times and found next to
nothing (callgrind, the kernel path: 814M -> 757M instructions). Frozen (`gc.freeze`) before the server forks,
they are never scanned again, in the server or in a helper, so a helper's collections do not write to, and so
copy, the pages it shares with the server. The collector's thresholds are Python's again afterwards.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from collections.abc import Iterable
from importlib import import_module

from featmap.run.workers import PRELOAD_ENV

__all__ = ["exit_without_teardown", "first_image_loads", "preload"]

#: The collector's youngest-generation threshold while they are imported (Python's is 700).
_HELD_THRESHOLD = 100_000


def first_image_loads() -> None:
    """Load what featmap's image path loads on first use: OpenCV (`featmap.core.cvfilter.opencv`: unless absent
    or turned off), ISA-L's deflate (`featmap.io.pngencode.isal_zlib`) and Pillow's common decoders
    (`PIL.Image.preinit`, which Pillow's first ``open`` calls). Done in the server, it is done once for every
    helper, before the batch asks for one, instead of in each helper after its fork (~25 ms of a helper's first
    image on the 2-core bench machine, mostly OpenCV's import). Importing OpenCV starts no thread: OpenCV's pool
    starts with its first parallel call, and the bundled OpenBLAS starts none with the helpers' one BLAS thread."""
    from PIL import Image

    from featmap.core.cvfilter import opencv
    from featmap.io.pngencode import isal_zlib

    opencv()
    isal_zlib()
    Image.preinit()


def preload(names: Iterable[str]) -> None:
    """Import ``names`` and `first_image_loads` with the collector held back, then freeze what exists and restore
    its thresholds."""
    saved = gc.get_threshold()
    gc.set_threshold(_HELD_THRESHOLD, *saved[1:])
    try:
        for name in names:
            import_module(name)
        first_image_loads()
    finally:
        gc.freeze()
        gc.set_threshold(*saved)


def exit_without_teardown() -> None:
    """End this process, once it is exiting, as soon as the exit handlers registered after this call have run,
    without Python's teardown: for the server, which ends when the command does, the teardown would free every
    module and object the preload made (~20 ms of CPU and ~1.2k page faults, the memory it shares with
    nothing any more copied to be written), and it has no file, buffer or child left to finish by then."""
    atexit.register(_exit_now)


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed, or None (no console)
            pass
    os._exit(0)


_NAMES = [name for name in os.environ.get(PRELOAD_ENV, "").split(",") if name]
if _NAMES:  # in the helpers' server; imported anywhere else (the doctests' collection), it does nothing
    preload(_NAMES)
    exit_without_teardown()
