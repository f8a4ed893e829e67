"""Build many long-lived objects at once (a batch's 10⁵ inputs, a resume's look-ups) without the cyclic garbage
collector scanning them again and again as they are made.

CPython collects cycles generation by generation; while a program allocates a million objects that all stay alive,
the youngest generations are scanned every few hundred allocations and the whole heap every time it has grown by a
quarter: on a resume of 250,000 images that was ~0.9 s of 4 s of CPU. Inside `bulk_objects` the collector waits;
on the way out everything alive is moved to the oldest generation without a scan (``gc.freeze()`` then
``gc.unfreeze()``: nothing stays frozen, a cycle among them is still collected by the next full collection).
Where the program froze objects of its own (``featmap apply`` freezes its start-up's: `featmap.launch.start_up_over`),
unfreezing would hand those back to the collector: the block's objects are frozen with them instead.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["bulk_objects", "freeze_for_good"]

#: Whether the program froze its objects for good (`freeze_for_good`): then no block needs to ask
#: ``gc.get_freeze_count()``, which counts the frozen objects one by one (~40 ms for a resume's 10⁶).
_program_froze = False


def freeze_for_good() -> None:
    """``gc.freeze()`` for a program that keeps what it froze frozen (``featmap apply``'s start-up,
    `featmap.launch.start_up_over`): every `bulk_objects` block after it keeps its objects frozen too."""
    global _program_froze
    gc.freeze()
    _program_froze = True


@contextmanager
def bulk_objects() -> Iterator[None]:
    """Pause the cyclic collector for a block that makes many objects that stay alive (see the module's docstring).
    Does nothing where the collector is off already (an outer block). Where the program froze objects of its own
    (``gc.freeze``), the objects alive at the block's end stay frozen with them: unfreezing would give the program's
    back to the collector (and the command's 10⁶ would be scanned again by each full collection).

    >>> import gc
    >>> with bulk_objects():
    ...     gc.isenabled()
    False
    >>> gc.isenabled(), gc.get_freeze_count()
    (True, 0)
    """
    if not gc.isenabled():
        yield
        return
    kept_frozen = _program_froze or gc.get_freeze_count() > 0
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()  # every object alive now to the permanent generation (no scan) ...
        if not kept_frozen:
            gc.unfreeze()  # ... and back to the oldest generation
        gc.enable()
