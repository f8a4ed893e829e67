"""The files' side of the resume check (`featmap.run.resume`): one ``stat`` per output, the fields gathered into
numpy arrays, and the closer look at a file whose fingerprint is not known or changed.
"""

from __future__ import annotations

import os
import stat
from operator import attrgetter
from typing import Any

import numpy as np

from featmap.io.manifest_index import Outputs, fingerprint

__all__ = ["TYPE_BITS", "stat_all", "verified"]

_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # a PNG's last 12 bytes: the empty IEND chunk and its CRC
TYPE_BITS = 0o170000  # a mode's file-type bits (`stat.S_IFMT`)


def stat_all(paths: list[str]) -> tuple[Any, Any, Any]:
    """Each file's size, modification time (ns) and mode as numpy arrays (a missing file: mode 0): one ``stat``
    a file, in blocks, the fields gathered by C loops (``map``, ``np.fromiter``)."""
    count = len(paths)
    sizes, times, modes = (np.zeros(count, dtype=np.int64) for _ in range(3))
    for at in range(0, count, _BLOCK):
        block = paths[at : at + _BLOCK]
        try:
            found = list(map(os.stat, block))
        except (OSError, ValueError):
            found = [_stat_or_missing(path) for path in block]
        end = at + len(found)
        for values, field in ((sizes, _SIZE), (times, _MTIME), (modes, _MODE)):
            values[at:end] = np.fromiter(map(field, found), dtype=np.int64, count=len(found))
    return sizes, times, modes


_SIZE, _MTIME, _MODE = attrgetter("st_size"), attrgetter("st_mtime_ns"), attrgetter("st_mode")
_BLOCK = 1 << 14  # files stat'ed at once


class _Missing:
    """What `_stat_all` takes for a file that is not there: mode 0, not a regular file."""

    st_size = st_mtime_ns = st_mode = 0


def _stat_or_missing(path: str) -> Any:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return _Missing


def verified(path: str, position: int, outputs: Outputs, size: int, mtime_ns: int, mode: int) -> bool:
    """Whether the output at ``path`` (``position`` in ``outputs``; its ``stat`` gave ``size``, ``mtime_ns``,
    ``mode``) is still the file that was written (see the module's docstring)."""
    if not stat.S_ISREG(mode):
        return False
    _, prints = outputs.arrays()
    known = int(prints[position])
    if known:
        return known == fingerprint(size, mtime_ns)
    if size == 0 or (path.endswith(".png") and not _png_closed(path, size)):
        return False
    outputs.seen_at(position, size, mtime_ns)
    return True


def _png_closed(path: str, size: int) -> bool:
    """Whether the file ends as every PNG does (its IEND chunk): one read of its last 12 bytes."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(size - len(_PNG_END), 0))
            return fh.read(len(_PNG_END)) == _PNG_END
    except OSError:
        return False
