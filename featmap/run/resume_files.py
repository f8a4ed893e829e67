"""The files' side of the resume check (`featmap.run.resume`): one ``stat`` per output, the fields gathered into
numpy arrays, and the closer look at a file whose fingerprint is not known or changed.

The stats of a big resume are shared with helper processes (`Sweep`): started as soon as the outputs' names are
known (in the preflight, `featmap.run.preflight`), each helper stats its part from the last file back, while this
process, once it gets to the stats, takes files from the front of each part until it meets the helper coming the
other way. Whoever is early does more; nothing waits for a fixed share.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Sequence
from itertools import compress, repeat
from operator import attrgetter
from typing import Any

import numpy as np

from featmap.io.manifest_index import Outputs, fingerprint

__all__ = ["TYPE_BITS", "Sweep", "stat_all", "verified"]

_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # a PNG's last 12 bytes: the empty IEND chunk and its CRC
TYPE_BITS = 0o170000  # a mode's file-type bits (`stat.S_IFMT`)


def stat_all(paths: list[str], processes: int = 1) -> tuple[Any, Any, Any]:
    """Each file's size, modification time (ns) and mode as numpy arrays (a missing file: mode 0): one ``stat``
    a file, shared with ``processes - 1`` helpers from `SPLIT_FROM` files on (`Sweep`)."""
    plain = ["\0" not in path for path in paths] if any("\0" in path for path in paths) else None
    if plain is None:
        return Sweep("", paths, processes).take()
    found = Sweep("", list(compress(paths, plain)), processes).take()  # a NUL: no file has that name
    where = np.flatnonzero(plain)
    columns = [np.zeros(len(paths), dtype=np.int64) for _ in range(3)]
    for column, values in zip(columns, found, strict=True):
        column[where] = values
    return columns[0], columns[1], columns[2]


class Sweep:
    """The stats of the files ``root + name`` for every name in ``texts`` (each text a group of NUL-joined names,
    such as an input's outputs), begun now: with ``processes`` of 2 or more (the batch's ``-j``) and `SPLIT_FROM`
    files or more, ``processes - 1`` helper processes (`_Helper`: a bare Python, no featmap) each take a part of
    the groups at once, from its last file back; `take` does the rest here. The stats are system calls one
    process makes one after another, so on two cores a 250,000-image resume's 10⁶ take about half the time, and
    the helpers' part of it overlaps whatever this process does before it asks. A helper that cannot start or
    fails leaves its files to this process: the answer is the same either way. ``counts``: how many names each
    text holds, where the caller knows."""

    def __init__(self, root: str, texts: Sequence[str], processes: int = 1, counts: Any = None) -> None:
        self.root, self.texts = root, list(texts)
        if counts is None:  # how many names each text holds
            counts = np.fromiter(map(str.count, self.texts, repeat("\0")), np.int64, count=len(self.texts)) + 1
        self.bounds = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(counts)])  # each group's first file
        files = int(self.bounds[-1])
        helpers = min(processes, _MOST_PARTS) - 1 if files >= SPLIT_FROM and _can_start_helpers() else 0
        cuts = [len(self.texts) * k // max(helpers, 1) for k in range(max(helpers, 1) + 1)]
        self.parts: list[tuple[int, int, _Helper | None]] = []
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            files = int(self.bounds[hi] - self.bounds[lo])
            payload = _payload(root, self.texts[lo:hi]) if helpers else None
            helper = _Helper(_HELPER, payload, files) if payload is not None else None
            self.parts.append((lo, hi, helper))

    def take(self, wanted: Sequence[bool] | None = None) -> tuple[Any, Any, Any]:
        """Each file's size, time (ns) and mode, in the order of the names: this process stats the files no helper
        got to (only the groups ``wanted``, when given: the others' files not stat'ed here read 0, 0, 0), then
        the helpers are stopped and their answers taken."""
        found = np.zeros((int(self.bounds[-1]), 3), dtype=np.int64)
        try:
            for lo, hi, helper in self.parts:
                at = lo
                while at < hi and self.bounds[at] < self.bounds[hi] - (helper.done() if helper else 0):
                    end = min(at + _GROUPS, hi)
                    self._stat_groups(found, at, end, None if wanted is None else wanted[at:end])
                    at = end
        finally:
            self.stop(found)
        return found[:, 0], found[:, 1], found[:, 2]

    def _stat_groups(self, found: Any, lo: int, hi: int, wanted: Sequence[bool] | None) -> None:
        """Stat the files of groups ``lo`` to ``hi`` (those ``wanted``) here, into their rows of ``found``."""
        first, last = int(self.bounds[lo]), int(self.bounds[hi])
        if wanted is None or all(wanted):
            found[first:last] = _stat_here(_paths(self.root, self.texts[lo:hi]))
            return
        for group in compress(range(lo, hi), wanted):
            first, last = int(self.bounds[group]), int(self.bounds[group + 1])
            found[first:last] = _stat_here(_paths(self.root, self.texts[group : group + 1]))

    def stop(self, found: Any | None = None) -> None:
        """End the helpers (an interrupted or abandoned sweep leaves none behind); with ``found``, their answers
        written into it first."""
        for _, hi, helper in self.parts:
            if helper is None:
                continue
            answered = helper.finish()
            if found is not None and len(answered):
                last = int(self.bounds[hi])
                found[last - len(answered) : last] = answered[::-1]
        self.parts = [(lo, hi, None) for lo, hi, _ in self.parts]


def _paths(root: str, texts: list[str]) -> list[str] | list[bytes]:
    """The paths of the names in ``texts`` (NUL-joined groups), in order: one join, one replace and one split; as
    the file system takes them (bytes: ``os.stat`` then encodes none of them, ~5 % of its time here), or as text
    where a name cannot be encoded (``os.stat`` refuses it as it would anyway)."""
    text = root + "\0".join(texts).replace("\0", "\0" + root)
    try:
        return os.fsencode(text).split(b"\0")
    except UnicodeEncodeError:
        return text.split("\0")


def _stat_here(paths: list[str] | list[bytes]) -> Any:
    """Stat ``paths`` in this process: each file's three fields gathered as it is stat'ed, by C loops (``map``,
    ``np.fromiter``; no stat result kept); an (n, 3) array."""
    try:
        return np.fromiter(map(_FIELDS, map(os.stat, paths)), _TRIPLE, count=len(paths))
    except (OSError, ValueError):
        return np.array([_FIELDS(_stat_or_missing(path)) for path in paths], dtype=np.int64).reshape(-1, 3)


_FIELDS = attrgetter("st_size", "st_mtime_ns", "st_mode")
_TRIPLE = np.dtype((np.int64, 3))
_GROUPS = 1 << 10  # groups (an input's outputs) stat'ed at once here, between looks at the helpers' progress


def _can_start_helpers() -> bool:
    """Whether `_Helper` can run: a POSIX system, and a Python interpreter to start (not a frozen application,
    whose executable is the application itself)."""
    return os.name == "posix" and bool(sys.executable) and not getattr(sys, "frozen", False)


SPLIT_FROM = 1 << 16  # files from which helpers pay for their start (~30 ms against ~1 µs a stat saved)
_MOST_PARTS = 8

#: The helpers' loop (`_HELPER`'s, `featmap.run.resume_early`'s): each name of ``names`` under ``root`` stat'ed from
#: the last back, 1024 at a time by C loops (`map`; a block where a file cannot be stat'ed: one file at a time), each
#: file's size, time and mode written to ``out`` as int64 (0, 0, 0 for a file that cannot be stat'ed).
STAT_LOOP = """from itertools import chain
from operator import attrgetter
fields = attrgetter("st_size", "st_mtime_ns", "st_mode")
def one(path):
    try:
        return fields(os.stat(path))
    except (OSError, ValueError):
        return (0, 0, 0)
for end in range(len(names), 0, -1024):
    block = list(map(root.__add__, reversed(names[max(end - 1024, 0) : end])))
    try:
        found = array("q", chain.from_iterable(map(fields, map(os.stat, block))))
    except (OSError, ValueError):
        found = array("q", chain.from_iterable(map(one, block)))
    out.write(found.tobytes())
    out.flush()
"""

# A helper's whole program. On stdin: the root, then the names, NUL-separated. On stdout: how many names it got,
# then each file's size, time and mode (0, 0, 0 for a file that cannot be stat'ed, as `_stat_or_missing`), from
# the last name back, a block at a time, as int64. Ctrl-C is the batch's to handle.
_HELPER = (
    """import os, signal, sys
from array import array
signal.signal(signal.SIGINT, signal.SIG_IGN)
root, _, names = sys.stdin.buffer.read().partition(b"\\0")
names = names.split(b"\\0")
out = sys.stdout.buffer
out.write(array("q", [len(names)]).tobytes())
out.flush()
"""
    + STAT_LOOP
)


def _payload(root: str, texts: list[str]) -> bytes | None:
    """What `_HELPER` reads: the root, then the names, NUL-separated, as the file system takes them; None where a
    name cannot be encoded (no file has it: this process answers for the part, as ``os.stat`` refuses it)."""
    try:
        return f"{root}\0{chr(0).join(texts)}".encode(sys.getfilesystemencoding(), "surrogateescape")
    except UnicodeEncodeError:
        return None


class _Helper:
    """Files stat'ed by another Python process (``sys.executable -I -S``: no site, no featmap) running ``program``
    (`_HELPER`, a part of a `Sweep`'s files), started at once; a thread here hands it ``payload`` and gathers its
    answers as they come (its pipe never fills, whatever this process is doing). The answers count when the first
    of the ``head`` numbers the helper sends first (`header`) is ``files`` (None: any count, which ``header`` then
    holds; -1: none)."""

    def __init__(self, program: str, payload: bytes, files: int | None, head: int = 1) -> None:
        import subprocess

        self._files, self._received, self._valid = files, 0, False
        self.header: tuple[int, ...] = ()
        self._chunks: list[bytes] = []
        self._process: Any = None
        self._thread: threading.Thread | None = None
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", program],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except (OSError, ValueError):  # no interpreter to start: this process does the part
            self._process = None
            return
        self._thread = threading.Thread(
            target=self._talk, args=(payload, 8 * head), name="featmap-stat-helper", daemon=True
        )
        self._thread.start()

    def _talk(self, payload: bytes, head: int) -> None:
        """The thread: the names in, the answers out (kept while the header says the helper got every name)."""
        process = self._process
        try:
            process.stdin.write(payload)
            process.stdin.close()
            fd = process.stdout.fileno()
            header = b""
            while len(header) < head:
                more = os.read(fd, head - len(header))
                if not more:
                    return
                header += more
            self.header = tuple(np.frombuffer(header, dtype=np.int64).tolist())
            if self.header[0] < 0 or self._files not in (None, self.header[0]):  # a name held a NUL
                return
            self._files = self.header[0]
            self._valid = True
            while data := os.read(fd, 1 << 20):
                self._chunks.append(data)
                self._received += len(data)
        except (OSError, ValueError):  # it died, or was stopped
            return

    def done(self) -> int:
        """How many files (from the last back) the helper has answered for so far."""
        return min(self._received // 24, self._files or 0) if self._valid else 0

    def finish(self) -> Any:
        """Stop the helper and reap it; the answers it gave, last file first, as an (n, 3) array."""
        process, self._process = self._process, None
        if process is None:
            return np.zeros((0, 3), dtype=np.int64)
        if process.poll() is None:
            process.kill()
        if self._thread is not None:
            self._thread.join()
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        process.wait()
        count = self.done()
        data = b"".join(self._chunks)[: 24 * count]
        return np.frombuffer(data, dtype=np.int64).reshape(count, 3)


class _Missing:
    """What `_stat_here` takes for a file that is not there: mode 0, not a regular file."""

    st_size = st_mtime_ns = st_mode = 0


def _stat_or_missing(path: str | bytes) -> Any:
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
