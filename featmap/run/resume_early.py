"""A resume's stats begun as the command starts (``featmap apply DIR --skip-existing -j N``): before the inputs are
found, a helper process stats every output the manifest's index names, from the last back.

The resume check (`featmap.run.resume`) needs one ``stat`` per output, and at ``-j N`` it shares them with helper
processes (`featmap.run.resume_files.Sweep`); a `Sweep` can begin only once the outputs' names are known, after
the inputs are found and named (~1 s into a 250,000-image resume). The index beside the manifest
(`featmap.io.manifest_index`) already names every output a finished batch made, in the order they were recorded:
a helper given the index's path (`EarlySweep`) reads the names itself and stats them from the last back as soon
as the command starts. When the check gets to its stats (`EarlySweep.take`), this process stats the files it
needs from the lowest position in the index up until it meets the helper, then stops it and takes its answers
for the positions it got to. Its answers count only for the very index the check read (the same file: device,
inode, size and time) and for names that are the same bytes either way (an index of ASCII names); any file
neither got to is stat'ed here. The answer is the check's own either way: one ``stat`` of each file, taken during
the check.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

import numpy as np

from featmap.io.manifest_index import INDEX_NAME, index_layout
from featmap.run.resume_files import SPLIT_FROM, STAT_LOOP, _can_start_helpers, _Helper, _paths, _stat_here

__all__ = ["EarlySweep", "begin_early", "began_early", "stop_early", "taken_early"]

_GROUPS = 1 << 10  # inputs stat'ed at once here, between looks at the helper's progress

# The helper's program: `featmap.run.resume_files`'s, reading its names from the index. On stdin: the output
# folder (ending in "/"), a NUL, the index's path. On stdout: how many names the index holds (-1: no index it
# can read) and the index's device, inode, size and time, then each file's size, time and mode from the last back.
_PROGRAM = (
    """import json, os, signal, sys
from array import array
signal.signal(signal.SIGINT, signal.SIG_IGN)
root, _, index = sys.stdin.buffer.read().partition(b"\\0")
out = sys.stdout.buffer
try:
    with open(index, "rb") as fh:
        st = os.fstat(fh.fileno())
        magic, line = fh.readline(), fh.readline()
        header = json.loads(line)
        count, size = int(header["outputs"]), int(header["bytes"][0])
        fh.seek(len(magic) + len(line) + {LAYOUTS}[magic] * count)
        names = fh.read(size)
    names = names.split(b"\\0") if count and len(names) == size else []
    if len(names) != count:
        raise ValueError(count)
except Exception:
    out.write(array("q", [-1, 0, 0, 0, 0]).tobytes())
    sys.exit(0)
out.write(array("q", [count, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]).tobytes())
out.flush()
"""
    + STAT_LOOP
)


class EarlySweep:
    """The stats of every output the index at ``index`` names (the output folder ``root``, ending in ``/``), begun
    now by a helper process from the last name back (see the module's docstring)."""

    def __init__(self, root: str, index: str) -> None:
        self.root = root
        layouts = ", ".join(f"{magic!r}: {width}" for magic, width in index_layout().items())
        program = _PROGRAM.replace("{LAYOUTS}", "{" + layouts + "}")
        payload = os.fsencode(root) + b"\0" + os.fsencode(index)
        self._helper = _Helper(program, payload, None, head=5)

    def take(self, outputs: Any, root: str, joined: list[str], bounds: Any, places: Any) -> tuple[Any, Any, Any]:
        """The size, time and mode of each file of the groups ``joined`` (NUL-joined names under ``root``; group
        ``g``'s files are rows ``bounds[g]`` to ``bounds[g + 1]``), whose positions in ``outputs`` (the manifest's
        outputs the check read) are ``places``: stat'ed here from the lowest position up until this process meets
        the helper, the helper's answers taken for the rest where they are for these files, the others stat'ed
        here. The helper is stopped."""
        found = np.zeros((int(bounds[-1]), 3), dtype=np.int64)
        have = np.zeros(len(found), dtype=bool)
        starts = places[bounds[:-1]]
        order = np.argsort(starts, kind="stable")
        base, helper = outputs.base, self._helper
        try:
            for at in range(0, len(order), _GROUPS):
                groups = order[at : at + _GROUPS]
                if starts[groups[0]] >= base - helper.done():
                    break  # the helper has stat'ed from here on
                self._stat_groups(found, have, root, joined, bounds, groups)
        finally:
            answered = helper.finish()
        if len(answered) and self._same_files(outputs, root):
            reached = ~have & (places >= base - len(answered)) & (places < base)
            found[reached] = answered[base - 1 - places[reached]]
            have |= reached
        missed = np.flatnonzero(~np.logical_and.reduceat(have, bounds[:-1]))
        for at in range(0, len(missed), _GROUPS):
            self._stat_groups(found, have, root, joined, bounds, missed[at : at + _GROUPS])
        return found[:, 0], found[:, 1], found[:, 2]

    @staticmethod
    def _stat_groups(found: Any, have: Any, root: str, joined: list[str], bounds: Any, groups: Any) -> None:
        """Stat every file of ``groups`` here, into their rows of ``found``."""
        counts = bounds[groups + 1] - bounds[groups]
        rows = np.repeat(bounds[groups] - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        found[rows] = _stat_here(_paths(root, [joined[g] for g in groups.tolist()]))
        have[rows] = True

    def _same_files(self, outputs: Any, root: str) -> bool:
        """Whether the helper's answers are for the check's files: the same folder, the very index ``outputs``
        was read from, and names whose bytes are the same however they are encoded."""
        header = self._helper.header
        read_from = getattr(outputs, "read_from", None)
        index = read_from[1] if read_from is not None else None
        return (
            root == self.root
            and len(header) == 5
            and header[0] == outputs.base
            and index is not None
            and tuple(index) == header[1:]
            and outputs.blob.isascii()
        )

    def stop(self) -> None:
        """End the helper (nobody will ask for its answers)."""
        self._helper.finish()


_EARLY: list[EarlySweep] = []


def begin_early(out_dir: Any, processes: int | None) -> None:
    """Begin a resume's stats (`EarlySweep`) of the outputs the index in ``out_dir`` names, for a batch on
    ``processes`` (``-j``; None: every core) when there are 2 or more and the index names `SPLIT_FROM` outputs or
    more (roughly: by its size). Stopped at exit if nobody takes it (`taken_early`)."""
    count = processes or os.cpu_count() or 1
    if count < 2 or not isinstance(out_dir, Path) or not _can_start_helpers():
        return
    index = out_dir / INDEX_NAME
    try:
        if os.stat(index).st_size < 12 * SPLIT_FROM:
            return
    except OSError:
        return
    stop_early()
    _EARLY.append(EarlySweep(f"{out_dir}/", str(index)))
    atexit.register(stop_early)


def began_early() -> bool:
    """Whether `begin_early` began a sweep that nobody has taken yet."""
    return bool(_EARLY)


def taken_early() -> EarlySweep | None:
    """The sweep `begin_early` began, handed over once (its taker takes or stops it), or None."""
    return _EARLY.pop() if _EARLY else None


def stop_early() -> None:
    """Stop the sweep `begin_early` began, if nobody took it."""
    while _EARLY:
        _EARLY.pop().stop()
