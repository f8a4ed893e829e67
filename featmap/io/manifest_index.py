"""Read a manifest fast: the few fields a re-run and a resume need, from a million lines in a second or two.

Every manifest line is written by ``json.dumps(record, sort_keys=True)``, so an output's record holds
``"input": "…"``, then ``"options": "…"``, then ``"png": "…"`` in that order. Those are cut out with string
searches. A line where that is not safe (an escaped character anywhere, or a line that does not end as a
whole record does) goes through `json.loads` instead, and a line `json.loads` rejects (cut short by a crash)
is skipped. Measured on 10⁶ generated lines with bench/manifest_bench.py (see docs/scaling.md): about 2.5×
faster than `json.loads` on every line, and a tuple per output instead of a dict.

>>> lines = ['{"input": "/p/a.png", "kernel": "k", "options": "ab12", "png": "a/k.png", "status": "ok"}\\n',
...          '{"input": "/p/b.png", "options": "ab12", "png": "b/k.png", "st']
>>> index_lines(lines)
{'a/k.png': ('/p/a.png', 'ab12')}

**The index beside the manifest.** A resume of a 10⁶-line manifest should not read 500 MB of JSON. `Outputs`
is what a re-run needs of the manifest (each output's latest maker, as a small integer into a table of
distinct ``(input, options)`` pairs), and `read_outputs` keeps it in ``.featmap-manifest.index`` beside the
manifest: a header naming how many bytes of the manifest it covers and a BLAKE2b hash of the last 64 KiB of
them, the makers' numbers as one numpy ``int32`` array, each output file's fingerprint (`fingerprint` of its
size and modification time, as a batch saw it right after writing it or when a resume verified it; 0: not
known) as one ``uint64`` array, and the names as NUL-separated text. The manifest is only ever appended to,
so an index whose covered bytes still end with the same hash is valid and only the lines after them are
read; anything else (a manifest rewritten, cut short, replaced) means a full read and a new index. The
JSON-lines manifest stays the record people read; the index can be deleted at any time (the fingerprints go
with it: a resume then checks those files as it checks files it has none for).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from featmap.io.bulk import bulk_objects
from featmap.io.manifest_outputs import Outputs, fingerprint, fingerprints

__all__ = [
    "INDEX_MIN_BYTES",
    "INDEX_NAME",
    "Outputs",
    "fingerprint",
    "fingerprints",
    "index_layout",
    "index_lines",
    "read_outputs",
    "records",
]

#: The index's file name, beside ``manifest.jsonl``.
INDEX_NAME = ".featmap-manifest.index"
#: An index is written once this many bytes of the manifest are not in one (about 8,000 lines): below that,
#: reading the lines costs less than reading an index.
INDEX_MIN_BYTES = 4 << 20
_MAGIC = b"featmap manifest index 2\n"
_MAGIC_1 = b"featmap manifest index 1\n"  # the same without fingerprints: still read
_TAIL = 1 << 16  # the manifest bytes whose hash validates an index: the last 64 KiB it covers
_READ = 16 << 20  # the manifest is read in blocks of this many bytes (never whole: it may be 500 MB)


def index_lines(lines: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``png`` → ``(input, options)`` for every complete output record; a later record replaces an earlier."""
    return {
        rec["png"]: (str(rec.get("input")), str(rec.get("options")))
        for rec in records(lines)
        if isinstance(rec, dict) and isinstance(rec.get("png"), str)
    }


def records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Each complete record of a manifest, as `json.loads` would give it, but for an output's record only the
    fields a re-run reads (``input``, ``options``, ``png``, ``status``), cut out as in `index_lines`."""
    for line in lines:
        if "\\" not in line and line[-2:] == "}\n":
            i = line.find('"input": "')
            if i >= 0:
                i += 10
                j = line.find('"', i)
                k = line.find('"options": "', j)
                if k >= 0:
                    k += 12
                    m = line.find('"', k)
                    p = line.find('"png": "', m)
                    if p >= 0:
                        p += 8
                        q = line.find('"', p)
                        t = line.find('"status": "', q)
                        if t >= 0:
                            t += 11
                            status = line[t : line.find('"', t)]
                            yield {"input": line[i:j], "options": line[k:m], "png": line[p:q], "status": status}
                            continue
        try:
            yield json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue  # a line cut short by a crash (or nested past the parser's depth) says nothing of the outputs


def read_outputs(manifest: Path, *, save: bool = True) -> tuple[Outputs, int, int]:
    """The outputs a manifest records, through its index where that is valid; returns them, the manifest
    bytes read (complete lines) and the bytes the index on disk covers. With ``save``, an index is written
    when `INDEX_MIN_BYTES` or more were read from the lines (a failure to write one is harmless). What `lend`
    handed over is taken instead of reading, when the manifest and the index are the files it was read from."""
    with bulk_objects():  # a table of every maker (10⁵ pairs), alive while the manifest is
        return _read_outputs(manifest, save=save)


def _read_outputs(manifest: Path, *, save: bool) -> tuple[Outputs, int, int]:
    """`read_outputs`."""
    key = _files_key(manifest)
    if key is None:
        return Outputs(), 0, 0
    if _LENT and _LENT[0] == key:
        lent: tuple[Outputs, int, int] = _LENT[1]
        _LENT.clear()
        return lent
    _LENT.clear()
    loaded = _load(manifest.with_name(INDEX_NAME), manifest, key[0][2])
    outputs, covered = loaded if loaded is not None else (Outputs(), 0)
    end = _read_tail(manifest, covered, outputs)
    if save and end - covered >= INDEX_MIN_BYTES and save_index(outputs, manifest, end):
        covered = end
        now = _files_key(manifest)  # the index is new; the manifest must be the one read
        key = now if now is not None and now[0] == key[0] else None
    outputs.read_from = key
    return outputs, end, covered


def lend(outputs: Outputs, end: int, covered: int) -> None:
    """Hand what `read_outputs` returned to its next call in this process (the batch's preflight reads the
    manifest, then the batch itself: at 10⁶ lines that is read once): taken only while the manifest and its index
    are still the files ``outputs`` came from, and only once."""
    _LENT.clear()
    if outputs.read_from is not None:
        _LENT.extend([outputs.read_from, (outputs, end, covered)])


_LENT: list[Any] = []  # [the files' key, (outputs, end, covered)]: what `lend` handed over, at most one


def _files_key(manifest: Path) -> tuple[tuple[int, ...], tuple[int, ...] | None] | None:
    """The manifest's and its index's identity now (device, inode, size, modification time), or None when
    there is no manifest."""
    try:
        st = os.stat(manifest)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        ix = os.stat(manifest.with_name(INDEX_NAME))
        index: tuple[int, ...] | None = (ix.st_dev, ix.st_ino, ix.st_size, ix.st_mtime_ns)
    except OSError:
        index = None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), index


def _tail_hash(manifest: Path, size: int) -> str | None:
    """BLAKE2b of the last `_TAIL` bytes of the first ``size`` bytes of ``manifest``."""
    from featmap.digests import blake2b  # here: a helper never reads the index

    try:
        with open(manifest, "rb") as fh:
            fh.seek(max(0, size - _TAIL))
            data = fh.read(min(size, _TAIL))
    except OSError:
        return None
    return blake2b(data, digest_size=16).hexdigest() if len(data) == min(size, _TAIL) else None


def save_index(outputs: Outputs, manifest: Path, size: int) -> bool:
    """Write the index of ``outputs``, which the first ``size`` bytes of ``manifest`` recorded; False when it
    cannot be written (a name holding a NUL, a read-only folder)."""
    from featmap.io.images import atomic_write

    count = len(outputs)
    names = outputs.names_blob()
    texts = ["\0".join(m[0] for m in outputs.makers), "\0".join(m[1] for m in outputs.makers)]
    if names.count(b"\0") != max(count - 1, 0) or any(t.count("\0") != max(len(outputs.makers) - 1, 0) for t in texts):
        return False  # a NUL inside a name (an escaped one in the JSON): this manifest goes without an index
    tail = _tail_hash(manifest, size)
    if tail is None:
        return False
    blobs = [names] + [text.encode("utf-8", "surrogatepass") for text in texts]
    numbers, prints = (_little(a) for a in outputs.arrays())
    header = {"size": size, "tail": tail, "outputs": count, "makers": len(outputs.makers)}
    header["bytes"] = [len(blob) for blob in blobs]
    head = _MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n"

    def write(handle: Any) -> None:
        handle.write(head)
        handle.write(numbers)
        handle.write(prints)
        for blob in blobs:
            handle.write(blob)

    try:
        atomic_write(manifest.with_name(INDEX_NAME), write)
    except OSError:
        return False
    outputs.changed = False
    return True


def _load(path: Path, manifest: Path, size: int) -> tuple[Outputs, int] | None:
    """The index at ``path`` and the manifest bytes it covers, or None when it is missing, damaged or does
    not belong to the first bytes of ``manifest`` (``size`` bytes long now)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    version = 2 if data.startswith(_MAGIC) else 1 if data.startswith(_MAGIC_1) else 0
    if not version:
        return None
    start = data.find(b"\n", len(_MAGIC)) + 1
    try:
        header = json.loads(data[len(_MAGIC) : start])
        covered, count, makers = int(header["size"]), int(header["outputs"]), int(header["makers"])
        lengths = [int(n) for n in header["bytes"]]
        tail = str(header["tail"])
    except (ValueError, KeyError, TypeError):
        return None
    width = 4 if version == 1 else 12  # each output's maker (int32), then its file's fingerprint (uint64)
    if not 0 < covered <= size or len(lengths) != 3 or len(data) != start + width * count + sum(lengths):
        return None
    if _tail_hash(manifest, covered) != tail:
        return None  # the manifest was rewritten or cut: not the lines this index was made from
    numbers = np.frombuffer(data, dtype="<i4", count=count, offset=start)
    if count and not -1 <= numbers.min() <= numbers.max() < makers:
        return None
    prints = None if version == 1 else _native(data[start + 4 * count : start + 12 * count], "<u8")
    at = start + width * count
    pngs = data[at : at + lengths[0]]
    at += lengths[0]
    texts = []
    try:  # the names stay bytes; text that is not UTF-8 (a damaged index) is read again from the manifest
        if not pngs.isascii():
            pngs.decode("utf-8", "surrogatepass")
        for length in lengths[1:]:
            texts.append(data[at : at + length].decode("utf-8", "surrogatepass"))
            at += length
    except UnicodeDecodeError:
        return None
    sources, options = (text.split("\0") if text or makers else [] for text in texts)
    if pngs.count(b"\0") != max(count - 1, 0) or len(sources) != makers or len(options) != makers:
        return None
    found = Outputs.from_index(
        pngs, _native(numbers.tobytes(), "<i4"), prints, list(zip(sources, options, strict=True))
    )
    return found, covered


def index_layout() -> dict[bytes, int]:
    """Each index version's first line and the bytes it keeps per output before the names (a maker's number, and
    from version 2 a fingerprint): what a reader of the names alone needs (`featmap.run.resume_early`)."""
    return {_MAGIC: 12, _MAGIC_1: 4}


def _native(data: bytes, dtype: str) -> bytes:
    """Little-endian ``dtype`` values (the index's order) in this machine's order."""
    return data if sys.byteorder == "little" else np.frombuffer(data, dtype=dtype).byteswap().tobytes()


def _little(values: Any) -> bytes:
    """A numpy array's values in little-endian order (the index's)."""
    return bytes(values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes())


def _read_tail(manifest: Path, start: int, outputs: Outputs) -> int:
    """Add each record of ``manifest`` from byte ``start`` on to ``outputs``; return the byte just past the
    last complete line (a last line with no newline, cut short by a crash, is read as `records` reads it but
    not counted, so the next read starts at it again)."""
    end = start
    try:
        with open(manifest, "rb") as fh:
            fh.seek(start)
            rest = b""
            while block := fh.read(_READ):
                block = rest + block
                cut = block.rfind(b"\n") + 1
                rest = block[cut:]
                lines = block[:cut].decode("utf-8", "replace").split("\n")
                lines.pop()  # the empty string after the last newline
                end += cut
                for rec in records(line + "\n" for line in lines):
                    outputs.add(rec)
            for rec in records([rest.decode("utf-8", "replace")] if rest else []):
                outputs.add(rec)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        pass
    return end
