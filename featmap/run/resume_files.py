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


def stat_all(paths: list[str], processes: int = 1) -> tuple[Any, Any, Any]:
    """Each file's size, modification time (ns) and mode as numpy arrays (a missing file: mode 0): one ``stat``
    a file. With ``processes`` of 2 or more (the batch's ``-j``) and `SPLIT_FROM` files or more, ``processes - 1``
    helper processes (`_Helper`: a bare Python, no featmap) each stat a share of them while this process stats
    the first: the stats are system calls one process makes one after another, so on two cores the 10⁶ of a
    250,000-image resume take half the time. A helper that cannot start or fails leaves its share to this process;
    the answer is the same either way."""
    parts = min(processes, _MOST_PARTS) if len(paths) >= SPLIT_FROM and _can_start_helpers() else 1
    bounds = [len(paths) * k // parts for k in range(parts + 1)]
    shares = list(zip(bounds[1:-1], bounds[2:], strict=True))
    helpers: list[_Helper] = []
    try:
        for lo, hi in shares:
            helpers.append(_Helper())
            helpers[-1].send(paths[lo:hi])
        found = [_stat_here(paths[: bounds[1]])]
        for (lo, hi), helper in zip(shares, helpers, strict=True):
            theirs = helper.result(hi - lo)
            found.append(theirs if theirs is not None else _stat_here(paths[lo:hi]))
    finally:
        for helper in helpers:
            helper.stop()
    if len(found) == 1:
        return found[0]
    sizes, times, modes = (np.concatenate(column) for column in zip(*found, strict=True))
    return sizes, times, modes


def _stat_here(paths: list[str]) -> tuple[Any, Any, Any]:
    """`stat_all` in this process: in blocks, each file's three fields gathered as it is stat'ed, by C loops
    (``map``, ``np.fromiter``; no stat result kept)."""
    found = np.zeros((len(paths), 3), dtype=np.int64)
    for at in range(0, len(paths), _BLOCK):
        block = paths[at : at + _BLOCK]
        try:
            found[at : at + len(block)] = np.fromiter(map(_FIELDS, map(os.stat, block)), _TRIPLE, count=len(block))
        except (OSError, ValueError):
            found[at : at + len(block)] = [_FIELDS(_stat_or_missing(path)) for path in block]
    return found[:, 0], found[:, 1], found[:, 2]


_FIELDS = attrgetter("st_size", "st_mtime_ns", "st_mode")
_TRIPLE = np.dtype((np.int64, 3))
_BLOCK = 1 << 14  # files stat'ed at once


def _can_start_helpers() -> bool:
    """Whether `_Helper` can run: a POSIX system, and a Python interpreter to start (not a frozen application,
    whose executable is the application itself)."""
    import sys

    return os.name == "posix" and bool(sys.executable) and not getattr(sys, "frozen", False)


SPLIT_FROM = 1 << 16  # files from which helpers pay for their start (~30 ms against ~1 µs a stat saved)
_MOST_PARTS = 8

# A helper's whole program: the paths, NUL-separated, on stdin; each file's size, time and mode as int64 triples on
# stdout (0, 0, 0 for a file that cannot be stat'ed, as `_stat_or_missing`). Ctrl-C is this process's to handle.
_HELPER = """import os, signal, sys
from array import array
signal.signal(signal.SIGINT, signal.SIG_IGN)
found = array("q")
add = found.extend
for path in sys.stdin.buffer.read().split(b"\\0"):
    try:
        st = os.stat(path)
        add((st.st_size, st.st_mtime_ns, st.st_mode))
    except (OSError, ValueError):
        add((0, 0, 0))
sys.stdout.buffer.write(found.tobytes())
"""


class _Helper:
    """A share of `stat_all`'s files stat'ed by another Python process (``sys.executable -I -S``: no site, no
    featmap), started at once; `result` waits for its answer."""

    def __init__(self) -> None:
        import subprocess
        import sys

        self._process: Any = None
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except (OSError, ValueError):  # no interpreter to start: this process does the share
            self._process = None

    def send(self, paths: list[str]) -> None:
        """Hand the helper its files (``os.fsencode`` of each, at once)."""
        import sys

        if self._process is None:
            return
        try:
            self._process.stdin.write("\0".join(paths).encode(sys.getfilesystemencoding(), "surrogateescape"))
            self._process.stdin.close()
        except (OSError, ValueError):  # it died at once
            self.stop()

    def result(self, count: int) -> tuple[Any, Any, Any] | None:
        """The share's sizes, times and modes, or None when the helper failed (or answered for other than ``count``
        files)."""
        if self._process is None:
            return None
        try:
            data = self._process.stdout.read()
            failed = self._process.wait() != 0
        except (OSError, ValueError):
            return None
        if failed or len(data) != 24 * count:
            return None
        values = np.frombuffer(data, dtype=np.int64).reshape(count, 3).T
        return values[0].copy(), values[1].copy(), values[2].copy()

    def stop(self) -> None:
        """End the helper if it still runs, and reap it (an interrupted check leaves none behind)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        process.wait()


class _Missing:
    """What `_stat_here` takes for a file that is not there: mode 0, not a regular file."""

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
