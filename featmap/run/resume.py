"""``--skip-existing`` for a whole batch at once: which inputs' outputs are all there, made from them with the
batch's options, and still the files that were written.

A resume of 250,000 images (a 10⁶-line manifest) asks the question 10⁶ times, once per output; it used to ask
it one image at a time through `featmap.run.imagejob.targets_for` (a `Path` and a folder check per output) and
`pathlib` (a ``stat`` per output, and more per input). Here it is asked in three passes over the batch:

1. `target_names`: every input's outputs as the manifest names them (``d0001/img/sobel_x.png``). A kernel job's
   names differ from input to input only in the input's folder, stem and suffix, so the job's own
   `targets` is asked once, for a probe input whose stem and suffix are markers, and each input's names are
   that template filled in (checked against the job's own answer on the batch's first input; an input the
   template cannot stand for, or a network's, whose outputs follow the image's size, is asked one at a time).
2. The manifest's answer (`featmap.io.manifest_index.Outputs`): every output recorded, last, as made from this
   input with these options. Dictionary look-ups, no file system call.
3. The files, for the inputs the manifest says are done: one ``stat`` per output (a listing per folder would
   cost as much: a batch's outputs are one folder per input), compared with the fingerprint (size and
   modification time) the index holds for that file, taken right after this batch or an earlier one wrote it.

**What is safe, and why.** Skipping writes nothing, so a wrong skip can only lose an output, never clobber
one; the question is only which files count as done. An output counts when the manifest's last record of it
is from this input with these options, and the file is a regular file with the size and time it had when it
was written. A file deleted, truncated, rewritten or replaced since (another size or time) makes its input
run again, and that run may replace it: the manifest says it is this input's output, exactly the rule that
lets a re-run replace its own files (`featmap.run.stores.Store.check`); files the manifest gives to another
input or other options are still refused. Where no fingerprint is known (a manifest written before there
were any, a small manifest with no index beside it, the lines after the index), the file must be non-empty
and, for a PNG, end with the PNG's closing ``IEND`` chunk (what a cut-short copy lacks); it is then
fingerprinted as it is, and checked against that from the next resume on (`Outputs.seen`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from itertools import repeat
from operator import attrgetter
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from featmap.errors import FeatmapError
from featmap.io.bulk import bulk_objects
from featmap.io.discover import InputImage
from featmap.io.manifest_index import Outputs, fingerprint, fingerprints

__all__ = ["Recorded", "done_items", "none_done", "target_names"]

# Markers for a probe input's stem and suffix: characters no file name in a batch holds.
_STEM, _EXT = "\x1fstem\x1f", "\x1fext\x1f"
_UNSEEN = "\0"  # a folder not seen yet (no prefix holds a NUL)
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # a PNG's last 12 bytes: the empty IEND chunk and its CRC


def target_names(items: Sequence[Any], job: Any) -> list[list[str] | None]:
    """Each item's targets (`featmap.run.imagejob.targets_for`, in order) as names relative to the job's output
    folder, as the manifest records them; None for an item whose targets cannot be worked out (its name cannot
    be an output: processing it says why)."""
    return [None if names is None else names.split("\0") for names in _joined_names(items, job)]


def _joined_names(items: Sequence[Any], job: Any) -> list[str | None]:
    """`target_names`, each item's names NUL-joined in one string (a batch of 250,000 keeps 250,000 strings,
    not a million: the check splits them as it goes)."""
    out_dir = Path(job.output.out_dir)
    template = _template(job, out_dir)
    if template is not None and items and _names_by_template(items[0], template) != _names_of(items[0], job, out_dir):
        template = None  # the job names its outputs in a way the template does not follow: ask it for each
    if template is not None and not template[1]:
        found = _all_by_template(items, template[0])
        if found is not None:
            return found
    names: list[str | None] = []
    prefixes: dict[int, str | None] = {}
    for item in items:
        found_one = None
        if template is not None:
            found_one = _names_by_template(item, template, prefixes)
        names.append(found_one if found_one is not None else _names_of(item, job, out_dir))
    return names


def _all_by_template(items: Sequence[Any], text: str) -> list[str | None] | None:
    """`_names_by_template` of every item at once, for a template without the suffix, when every stem is a plain
    name and every folder a plain relative one (the usual batch); None otherwise (asked one at a time)."""
    stems = list(map(_STEM_OF, items))
    joined = "".join(stems)
    if "/" in joined or "\0" in joined or not _ODD_STEMS.isdisjoint(stems):
        return None
    folders = list(map(_REL_DIR_OF, items))
    keys = list(map(id, folders))
    found = {key: _prefix(folder) for key, folder in dict(zip(keys, folders, strict=True)).items()}
    prefixes = {key: prefix for key, prefix in found.items() if prefix is not None}
    if len(prefixes) != len(found):
        return None
    if "\1" in text or "\2" in text:
        return list(map(text.format, map(prefixes.__getitem__, keys), stems, repeat("")))
    marked = text.format("\1", "\2", "")  # `str.replace` fills in a name: twice as fast as `str.format`
    if marked.count("\1\2") == marked.count("\1") == marked.count("\2"):  # the stem right after the folder
        places = list(map(str.__add__, map(prefixes.__getitem__, keys), stems))
        return list(map(marked.replace("\1\2", "\1").replace, repeat("\1"), places))
    return [marked.replace("\1", prefixes[key]).replace("\2", stem) for key, stem in zip(keys, stems, strict=True)]


_STEM_OF, _REL_DIR_OF = attrgetter("stem"), attrgetter("rel_dir")
_ODD_STEMS = frozenset(("", ".", ".."))  # stems the template cannot stand for


def _template(job: Any, out_dir: Path) -> tuple[str, bool] | None:
    """The job's names of a probe input, NUL-joined, with ``{1}`` for the stem and ``{2}`` for the suffix (a
    `str.format` template), and whether the suffix is used; None for a job whose names depend on more (a
    network's layers follow the image's size)."""
    from featmap.run.jobs import ApplyJob

    if not isinstance(job, ApplyJob):
        return None
    probe = InputImage(Path(f"probe.{_EXT}"), Path(), _STEM)
    try:
        names = [_relative(p, out_dir) for p in job.targets(probe).values()]
    except (FeatmapError, ValueError):
        return None
    if any(n is None or "\0" in n for n in names):
        return None
    text = "\0".join("{0}" + str(n).replace("{", "{{").replace("}", "}}") for n in names)
    return text.replace(_STEM, "{1}").replace(_EXT, "{2}"), _EXT in text


def _names_by_template(
    item: Any, template: tuple[str, bool], prefixes: dict[int, str | None] | None = None
) -> str | None:
    """``item``'s names from the job's template, or None where the template cannot stand for the job (a stem
    that is not a plain name, an empty suffix where the pattern uses it, an unusual folder)."""
    text, uses_ext = template
    stem = item.stem
    if not stem or stem in (".", "..") or "/" in stem or "\0" in stem:
        return None
    ext = _suffix(item) if uses_ext else ""
    if uses_ext and (not ext or "/" in ext or "\0" in ext):
        return None
    rel_dir = item.rel_dir
    prefix = prefixes.get(id(rel_dir), _UNSEEN) if prefixes is not None else _UNSEEN  # a batch's folders are shared
    if prefix is _UNSEEN:
        prefix = _prefix(rel_dir)
        if prefixes is not None:
            prefixes[id(rel_dir)] = prefix
    if prefix is None:
        return None
    return text.format(prefix, stem, ext)


def _suffix(item: Any) -> str:
    """``item.path.suffix`` without its dot, from the resolved path's text where discovery kept it (the same last
    name for a plain file)."""
    resolved = getattr(item, "resolved", None)
    if resolved is None:
        return str(item.path.suffix).lstrip(".")
    name = resolved[resolved.rfind("/") + 1 :]
    dot = name.rfind(".")
    return name[dot + 1 :] if 0 < dot < len(name) - 1 else ""


def _prefix(rel_dir: Any) -> str | None:
    """``rel_dir`` as the start of a name under the output folder (``""`` or ``"a/b/"``), or None for a folder
    that is not a plain relative one."""
    rel = PurePosixPath(Path(rel_dir).as_posix())
    if rel.is_absolute() or any(part in ("..", "") or "\0" in part for part in rel.parts):
        return None
    return "" if rel.parts == () else rel.as_posix() + "/"


def _names_of(item: Any, job: Any, out_dir: Path) -> str | None:
    """``item``'s names from the job itself (`featmap.run.imagejob.targets_for`), NUL-joined."""
    from featmap.run.imagejob import targets_for

    try:
        targets = targets_for(InputImage(item.path, item.rel_dir, item.stem), job)
    except FeatmapError:
        return None
    names = [_relative(p, out_dir) for p in targets.values()]
    if not names or any(n is None or "\0" in n for n in names):
        return None
    return "\0".join(str(n) for n in names)


def _relative(path: Path, out_dir: Path) -> str | None:
    """``path`` relative to ``out_dir`` as the manifest writes it, or None when it is not inside."""
    text, root = str(path), str(out_dir)
    if text.startswith(root + "/") and "/." not in text and "//" not in text:
        return text[len(root) + 1 :]
    try:
        return path.relative_to(out_dir).as_posix()
    except ValueError:
        return None


class Recorded:
    """A batch as the manifest sees it: each item's target names (`target_names`, NUL-joined: ``names``),
    whether the manifest records every one of them, last, as made from the item (its URL, or its resolved path)
    with options ``digest`` (``recorded``), and where (``first``: the position in the manifest's outputs of the
    item's first name when its names are the outputs there and after it, in order, as a batch records them;
    -1 when they are elsewhere, looked up by name)."""

    def __init__(self, items: Sequence[Any], job: Any, digest: str, manifest: Any) -> None:
        with bulk_objects():  # names and look-ups for every input, alive until the batch has run
            self._ask(items, job, digest, manifest)

    def _ask(self, items: Sequence[Any], job: Any, digest: str, manifest: Any) -> None:
        self.items, self.digest, self.outputs = items, digest, manifest._outputs
        self.names = _joined_names(items, job)
        by_source = self.outputs.numbers_for(digest)
        makers: list[int | None] = list(map(by_source.get, _sources(items, manifest)))
        for i in [i for i, found in enumerate(self.names) if found is None]:
            makers[i] = None
        self.first = _runs(self.outputs, self.names, makers)
        get = self.outputs.get
        self.recorded = [first >= 0 for first in self.first]
        for i in [i for i, first in enumerate(self.first) if first < 0 and makers[i] is not None]:
            made = makers[i]
            self.recorded[i] = all(get(n) == made for n in str(self.names[i]).split("\0"))

    def share(self) -> None:
        """Keep this for `shared`: the batch asks again once the preflight has (`featmap.run.preflight`)."""
        _SHARED[:] = [self]

    @staticmethod
    def shared(items: Sequence[Any], digest: str, outputs: Outputs) -> Recorded | None:
        """What `share` kept for these very ``items``, options and manifest (`outputs`), once."""
        kept = _SHARED[0] if _SHARED else None
        _SHARED.clear()
        if kept is None or kept.items is not items or len(kept.names) != len(items):
            return None
        return kept if kept.digest == digest and kept.outputs is outputs else None


_SHARED: list[Recorded] = []


def _runs(outputs: Outputs, names: Sequence[str | None], makers: Sequence[int | None]) -> list[int]:
    """For each item, the position of its first name when the outputs its maker made last are exactly its
    names, at that position and the ones after it, in order (a batch appends an image's records together); else
    -1. Asked of all makers at once (numpy), then the names compared with the index's text: the inputs whose
    outputs follow one another (every input of a batch, in whatever order its images finished) in one comparison;
    no name is looked up."""
    numbers, _ = outputs.arrays()
    wanted = np.array([-1 if m is None else m for m in makers], dtype=np.int64)
    sizes = np.fromiter(map(_count_names, names), dtype=np.int64, count=len(names))
    first = np.full(len(names), -1, dtype=np.int64)
    if not len(numbers) or not (wanted >= 0).any():
        return first.tolist()
    order = np.argsort(numbers, kind="stable")  # each maker's outputs together, by position
    counts = np.bincount(numbers[numbers >= 0], minlength=len(outputs.makers))
    begins = np.cumsum(counts) - counts + np.count_nonzero(numbers < 0)
    made = np.maximum(wanted, 0)
    count = counts[made]
    low = order[np.minimum(begins[made], len(order) - 1)]
    high = order[np.minimum(begins[made] + np.maximum(count, 1) - 1, len(order) - 1)]
    run = (wanted >= 0) & (count == sizes) & (high - low == sizes - 1)
    candidates = np.flatnonzero(run)
    candidates = candidates[np.argsort(low[candidates], kind="stable")]  # by position
    starts, lengths = low[candidates], sizes[candidates]
    for chain in _chains(starts, lengths, outputs.base):
        members = candidates[chain].tolist()
        joined = "\0".join(str(names[i]) for i in members)
        if _same_text(outputs, joined, int(starts[chain[0]]), int(lengths[chain].sum())):
            first[members] = starts[chain]
            continue
        for i, at, size in zip(members, starts[chain].tolist(), lengths[chain].tolist(), strict=True):
            if _same_text(outputs, str(names[i]), at, size):
                first[i] = at
    return first.tolist()


def _count_names(joined: str | None) -> int:
    """How many names a NUL-joined text holds (None: none)."""
    return 0 if joined is None else joined.count("\0") + 1


def _chains(starts: Any, lengths: Any, base: int) -> list[Any]:
    """``starts`` (sorted) cut where one run does not start right where the one before it ends, or where runs
    leave the first ``base`` outputs (the index's text): lists of indices into ``starts``."""
    if not len(starts):
        return []
    ends = starts + lengths
    cut = (starts[1:] != ends[:-1]) | ((ends[:-1] <= base) != (ends[1:] <= base))
    return np.split(np.arange(len(starts)), np.flatnonzero(cut) + 1)


def _same_text(outputs: Outputs, joined: str, at: int, size: int) -> bool:
    """Whether the ``size`` names at position ``at`` on, NUL-joined, are ``joined``: a slice of the index's text where
    they are all in it, else the names read after it."""
    if at + size <= outputs.base:
        offsets = outputs.offsets()
        return outputs.blob[offsets[at] : offsets[at + size] - 1] == joined.encode("utf-8", "surrogatepass")
    return "\0".join(outputs.names[at : at + size]) == joined


def _sources(items: Sequence[Any], manifest: Any) -> Iterator[str]:
    """Each item as the manifest records inputs: discovery's resolved path, its URL, or
    ``str(Path(item.path).resolve())`` worked out as `featmap.io.outputs.Manifest._real` does (each folder
    resolved and listed once), from text."""
    listed: list[str | None] = list(map(getattr, items, repeat("resolved"), repeat(None)))
    if None not in listed:  # every input found in a folder discovery listed (the usual batch)
        yield from map(str, listed)
        return
    folders: dict[str, tuple[str, dict[str, bool]]] = {}
    for item in items:
        resolved = getattr(item, "resolved", None)
        if resolved is not None:
            yield resolved
            continue
        url = getattr(item, "url", None)
        if url:
            yield url
            continue
        text = str(item.path)
        folder, _, name = text.rpartition("/")
        known = folders.get(folder)
        if known is None:
            if name in ("", ".", "..") or not folder or folder.endswith("/") or len(folders) > 4096:
                yield manifest._real(Path(text))  # the root, a bare name, an odd path: as it says
                continue
            known = folders[folder] = _listed(Path(folder))
        real, links = known
        yield f"{real}/{name}" if not links.get(name, True) else str(Path(text).resolve())


def _listed(folder: Path) -> tuple[str, dict[str, bool]]:
    """``folder`` resolved, and which of its entries are symlinks (a missing folder: none known)."""
    try:
        with os.scandir(folder) as entries:
            links = {entry.name: entry.is_symlink() for entry in entries}
    except OSError:
        links = {}
    return str(folder.resolve()), links


def none_done(items: Sequence[Any]) -> list[bool]:
    """A batch that does not resume: nothing is done (and what the preflight kept for `Recorded.shared` is let
    go: it holds the manifest's outputs)."""
    _SHARED.clear()
    return [False] * len(items)


def done_items(batch: Recorded, out_dir: Path) -> list[bool]:
    """For each input of ``batch``, whether its outputs are done: recorded as its own and still the files that
    were written (see the module's docstring). Files without a fingerprint that pass are fingerprinted
    (``outputs.changed``: the caller may save the index)."""
    todo = [i for i, ok in enumerate(batch.recorded) if ok]
    if not todo:
        return list(batch.recorded)
    with bulk_objects():  # a stat result for every output
        return _done(batch, out_dir, todo)


def _done(batch: Recorded, out_dir: Path, todo: list[int]) -> list[bool]:
    """`done_items` for the inputs ``todo`` the manifest records as done."""
    outputs = batch.outputs
    joined = [batch.names[i] or "" for i in todo]
    counts = np.fromiter(map(_count_names, joined), dtype=np.int64, count=len(joined))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    starts = np.array([batch.first[i] for i in todo], dtype=np.int64)
    places = np.repeat(starts - bounds[:-1], counts) + np.arange(bounds[-1])  # each file's position in `outputs`
    for slot in np.flatnonzero(starts < 0).tolist():  # names found elsewhere than one after another: by name
        places[bounds[slot] : bounds[slot + 1]] = [outputs.position(n) for n in joined[slot].split("\0")]
    root = f"{out_dir}/"
    paths = [root + name for text in joined for name in text.split("\0")]
    sizes, times, modes = _stat_all(paths)
    _, prints = outputs.arrays()
    known = prints[places]
    good = ((modes & _TYPE) == stat.S_IFREG) & (known != 0) & (known == fingerprints(sizes, times))
    whole = np.logical_and.reduceat(good, bounds[:-1])
    done = list(batch.recorded)
    for slot in np.flatnonzero(~whole).tolist():  # a file changed, or without a fingerprint: looked at closer
        lo, hi = int(bounds[slot]), int(bounds[slot + 1])
        done[todo[slot]] = all(
            bool(good[j]) or _verified(paths[j], int(places[j]), outputs, int(sizes[j]), int(times[j]), int(modes[j]))
            for j in range(lo, hi)
        )
    return done


def _stat_all(paths: list[str]) -> tuple[Any, Any, Any]:
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
_TYPE = 0o170000  # a mode's file-type bits (`stat.S_IFMT`)


class _Missing:
    """What `_stat_all` takes for a file that is not there: mode 0, not a regular file."""

    st_size = st_mtime_ns = st_mode = 0


def _stat_or_missing(path: str) -> Any:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return _Missing


def _verified(path: str, position: int, outputs: Outputs, size: int, mtime_ns: int, mode: int) -> bool:
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
