"""What a re-run and a resume need of a manifest, by position: each output's latest maker and its file's
fingerprint (`Outputs`), kept in the index beside the manifest (`featmap.io.manifest_index`).

A fingerprint is one 64-bit number for a file's size and modification time, taken right after a batch wrote
the file or when a resume verified it: a file truncated, rewritten, replaced or touched since gets another.
"""

from __future__ import annotations

from array import array
from itertools import compress, count
from typing import Any

import numpy as np

__all__ = ["Outputs", "fingerprint", "fingerprints"]


def fingerprint(size: int, mtime_ns: int) -> int:
    """One 64-bit number for a file's size and modification time (never 0, which means "not known"): a file
    truncated, rewritten or replaced since gets another one, save for a chance of about 2⁻⁶⁰ that the size and
    the time both changed by exactly matching amounts.

    >>> fingerprint(100, 5) == fingerprint(100, 5) != fingerprint(99, 5)
    True
    """
    return ((size * _MIX + mtime_ns) & _MASK) or 1


def fingerprints(sizes: Any, mtimes_ns: Any) -> Any:
    """`fingerprint` of each size and time (numpy integer arrays), as ``uint64`` (the same 64-bit wrap-around).

    >>> int(fingerprints(np.array([100]), np.array([5]))[0]) == fingerprint(100, 5)
    True
    """
    found = np.asarray(sizes).astype(np.uint64) * np.uint64(_MIX) + np.asarray(mtimes_ns).astype(np.uint64)
    found[found == 0] = 1
    return found


_MIX = 0x9E3779B97F4A7C15  # an odd 64-bit constant: each byte of the size spreads over the whole number
_MASK = (1 << 64) - 1


class Outputs:
    """Each output's latest maker and its file's fingerprint, by position: the outputs in the order they were
    first recorded (`names`), each one's maker number (``-1``: a record whose status is not ``ok``, or whose
    input or options are not text) and `fingerprint` (0: not known), and the makers ``(input, options)`` by
    number. ``changed``: fingerprints or records not yet in the index on disk.

    Read from an index, the names stay one NUL-separated ``bytes`` (``blob``, the first ``base`` outputs) until
    something asks for one by name (`get`, `add`, `seen`): a resume of 10⁶ outputs compares each input's names
    with a slice of it (`featmap.run.resume`) and builds no dictionary of them."""

    def __init__(self) -> None:
        self.makers: list[tuple[str, str]] = []
        self.blob, self.base = b"", 0
        self._names: list[str] | None = []
        self._numbers = array("i")
        self._prints = array("Q")
        self._slots: dict[str, int] | None = None  # name → position, built on first use
        self._maker_numbers: dict[tuple[str, str], int] | None = None  # built on first use
        self._offsets: Any = None  # where each name starts in `blob`, worked out on first use
        self.changed = False
        self.read_from: Any = None  # the files `read_outputs` read these from, when it read them whole

    @classmethod
    def from_index(cls, blob: bytes, numbers: bytes, prints: bytes | None, makers: list[tuple[str, str]]) -> Outputs:
        """The outputs an index holds: names NUL-separated, numbers ``int32`` and fingerprints ``uint64`` as bytes
        in this machine's order (None: none known)."""
        found = cls()
        found.makers, found.blob, found._names = makers, blob, None
        found._numbers.frombytes(numbers)
        found.base = len(found._numbers)
        found._prints.frombytes(prints if prints is not None else bytes(8 * found.base))
        return found

    def __len__(self) -> int:
        return len(self._numbers)

    @property
    def names(self) -> list[str]:
        """Every output's name, by position."""
        if self._names is None:
            self._names = self.blob.decode("utf-8", "surrogatepass").split("\0") if self.base else []
        return self._names

    def _slot_of(self) -> dict[str, int]:
        if self._slots is None:
            self._slots = dict(zip(self.names, range(len(self.names)), strict=True))
        return self._slots

    def arrays(self) -> tuple[Any, Any]:
        """Each position's maker number (``int32``) and fingerprint (``uint64``) as numpy arrays (views: valid
        until the next `add`)."""
        return np.frombuffer(self._numbers, dtype=np.int32), np.frombuffer(self._prints, dtype=np.uint64)

    def position(self, png: str) -> int | None:
        """Where ``png`` is, or None when it was never recorded."""
        return self._slot_of().get(png)

    def get(self, png: str) -> int | None:
        """The maker number of ``png`` (``-1``: recorded, not ``ok``), or None when it was never recorded."""
        at = self._slot_of().get(png)
        return None if at is None else self._numbers[at]

    @property
    def by_png(self) -> dict[str, int]:
        """``png`` → maker number, for every output (a copy)."""
        return dict(zip(self.names, self._numbers.tolist(), strict=True))

    @property
    def files(self) -> dict[str, int]:
        """``png`` → the `fingerprint` of its file when it was written or last verified (known ones; a copy)."""
        return {name: fp for name, fp in zip(self.names, self._prints.tolist(), strict=True) if fp}

    def forget_files(self) -> None:
        """Forget every file's fingerprint (a resume then checks the files by content, as without an index)."""
        self._prints = array("Q", bytes(8 * len(self._numbers)))
        self.changed = True

    def seen(self, png: str, size: int, mtime_ns: int) -> None:
        """Remember the file of ``png`` as it is now (written by this run, or verified by a resume)."""
        at = self._slot_of().get(png)
        if at is not None:
            self.seen_at(at, size, mtime_ns)

    def seen_at(self, position: int, size: int, mtime_ns: int) -> None:
        """`seen` for the output at ``position``."""
        self._prints[position] = fingerprint(size, mtime_ns)
        self.changed = True

    def numbers_for(self, options: str) -> dict[str, int]:
        """Input → maker number, for the makers with these ``options`` (`number` of ``(input, options)``, for a
        whole batch at once)."""
        sources, made_with = zip(*self.makers, strict=True) if self.makers else ((), ())
        if made_with.count(options) == len(made_with):  # one batch's options (the usual resume): by C loops
            return dict(zip(sources, range(len(sources)), strict=True))
        chosen = list(map(options.__eq__, made_with))
        return dict(zip(compress(sources, chosen), compress(count(), chosen), strict=True))

    def offsets(self) -> Any:
        """Where each of the index's names starts in ``blob`` (``int64``), and one past its end as if a NUL followed
        it (`base` + 1 values)."""
        if self._offsets is None:
            ends = np.flatnonzero(np.frombuffer(self.blob, dtype=np.uint8) == 0) + 1
            found: list[Any] = [[0], ends, [len(self.blob) + 1]] if self.base else [[0]]
            self._offsets = np.concatenate(found).astype(np.int64)
        return self._offsets

    def number(self, maker: tuple[str, str]) -> int | None:
        """The number of ``(input, options)``, or None when no output was ever made by it."""
        if self._maker_numbers is None:
            self._maker_numbers = dict(zip(self.makers, range(len(self.makers)), strict=True))
        return self._maker_numbers.get(maker)

    def add(self, rec: Any) -> None:
        """Remember a record (a later record of a png replaces an earlier one, as in `index_lines`, and forgets
        its file's fingerprint: the file is another one now)."""
        if not isinstance(rec, dict) or not isinstance(rec.get("png"), str):
            return
        png, source, options = rec["png"], rec.get("input"), rec.get("options")
        made = -1
        if rec.get("status", "ok") == "ok" and isinstance(source, str) and isinstance(options, str):
            maker = (source, options)
            known = self.number(maker)
            if known is None:
                known = len(self.makers)
                self.makers.append(maker)
                assert self._maker_numbers is not None
                self._maker_numbers[maker] = known
            made = known
        slots = self._slot_of()
        at = slots.get(png)
        if at is None:
            slots[png] = len(self._numbers)
            self.names.append(png)
            self._numbers.append(made)
            self._prints.append(0)
            return
        self._numbers[at] = made
        if self._prints[at]:
            self._prints[at] = 0
            self.changed = True

    def maker(self, png: str) -> tuple[str, str] | None:
        """``(input, options)`` of the output ``png``, or None (not recorded, or not ``ok``)."""
        found = self.get(png)
        return None if found is None or found < 0 else self.makers[found]

    def names_blob(self) -> bytes:
        """Every name, NUL-separated, in UTF-8 (the index's form)."""
        if self._names is None or (self.base and len(self._names) == self.base):
            return self.blob
        return "\0".join(self._names).encode("utf-8", "surrogatepass")
