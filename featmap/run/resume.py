"""``--skip-existing`` for a whole batch at once: which inputs' outputs are all there, made from them with the
batch's options, and still the files that were written.

A resume of 250,000 images (a 10⁶-line manifest) asks the question 10⁶ times, once per output; it used to ask
it one image at a time through `featmap.run.imagejob.targets_for` (a `Path` and a folder check per output) and
`pathlib` (a ``stat`` per output, and more per input). Here it is asked in three passes over the batch:

1. `featmap.run.resume_names.target_names`: every input's outputs as the manifest names them
   (``d0001/img/sobel_x.png``), from one template the job's own `targets` fills for a probe input.
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
import sys
from collections.abc import Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from featmap.io.bulk import bulk_objects
from featmap.io.manifest_index import Outputs, fingerprints
from featmap.run.resume_early import began_early, stop_early, taken_early
from featmap.run.resume_files import TYPE_BITS, Sweep, verified
from featmap.run.resume_names import joined_names, target_names

__all__ = [
    "Begun",
    "Recorded",
    "done_items",
    "local_processes",
    "none_done",
    "target_names",
]  # target_names: from resume_names


class Begun:
    """What the check asks first, before the manifest is read: each item's target names (`joined_names`: ``names``,
    ``counts`` of them) and, for a resume on ``processes`` of 2 or more, the stats of every file they name, begun
    now (``sweep``, `featmap.run.resume_files.Sweep`: its helpers stat while the manifest is read and asked)."""

    def __init__(self, items: Sequence[Any], job: Any, processes: int = 1) -> None:
        self.items, self.sweep = items, None
        with bulk_objects():  # a name for every input, alive until the batch has run
            self.names = joined_names(items, job)
            self.counts = _name_counts(self.names)
        if processes > 1 and not began_early():  # stats begun as the command started are the batch's
            texts: list[Any] = self.names if None not in self.names else [name or "" for name in self.names]
            self.sweep = Sweep(f"{job.output.out_dir}/", texts, processes, np.maximum(self.counts, 1))

    def let_go(self) -> None:
        """Stop the stats begun (``sweep``), if any: nobody will ask for them."""
        sweep, self.sweep = self.sweep, None
        if sweep is not None:
            sweep.stop()


class Recorded:
    """A batch as the manifest sees it: each item's target names (`target_names`, NUL-joined: ``names``),
    whether the manifest records every one of them, last, as made from the item (its URL, or its resolved path)
    with options ``digest`` (``recorded``), and where (``first``: the position in the manifest's outputs of the
    item's first name when its names are the outputs there and after it, in order, as a batch records them;
    -1 when they are elsewhere, looked up by name). ``begun``: what `Begun` asked of these ``items`` already (its
    stats are then the batch's: ``sweep``); else it is asked here, on ``processes``."""

    def __init__(
        self, items: Sequence[Any], job: Any, digest: str, manifest: Any, processes: int = 1, begun: Begun | None = None
    ) -> None:
        if begun is not None and begun.items is not items:
            begun.let_go()
            begun = None
        first = begun if begun is not None else Begun(items, job, processes)
        self.names, self.counts, self.sweep = first.names, first.counts, first.sweep
        try:
            with bulk_objects():  # look-ups for every input, alive until the batch has run
                self._ask(items, digest, manifest)
        except BaseException:
            self.let_go()
            raise

    def _ask(self, items: Sequence[Any], digest: str, manifest: Any) -> None:
        self.items, self.digest, self.outputs = items, digest, manifest._outputs
        by_source = self.outputs.numbers_for(digest)
        makers = np.fromiter(map(by_source.get, _sources(items, manifest), repeat(-1)), np.int64, count=len(items))
        makers[self.counts == 0] = -1  # no names: not done
        self.first = _runs(self.outputs, self.names, makers, self.counts)
        get = self.outputs.get
        recorded = self.first >= 0
        for i in np.flatnonzero(~recorded & (makers >= 0)).tolist():  # names elsewhere than one after another
            made = int(makers[i])
            recorded[i] = all(get(n) == made for n in str(self.names[i]).split("\0"))
        self.recorded: list[bool] = recorded.tolist()

    def let_go(self) -> None:
        """Stop the stats begun for this batch (``sweep``), if any: the batch will not ask for them."""
        sweep, self.sweep = self.sweep, None
        if sweep is not None:
            sweep.stop()

    def share(self) -> None:
        """Keep this for `shared`: the batch asks again once the preflight has (`featmap.run.preflight`)."""
        _SHARED[:] = [self]

    @staticmethod
    def shared(items: Sequence[Any], digest: str, outputs: Outputs) -> Recorded | None:
        """What `share` kept for these very ``items``, options and manifest (`outputs`), once."""
        kept = _SHARED[0] if _SHARED else None
        _SHARED.clear()
        if kept is None:
            return None
        if (
            kept.items is not items
            or len(kept.names) != len(items)
            or kept.digest != digest
            or kept.outputs is not outputs
        ):
            kept.let_go()
            return None
        return kept


_SHARED: list[Recorded] = []


def _runs(outputs: Outputs, names: Sequence[str | None], makers: Any, sizes: Any = None) -> Any:
    """For each item, the position of its first name when the outputs its maker made last are exactly its
    names, at that position and the ones after it, in order (a batch appends an image's records together); else
    -1. Asked of all makers at once (numpy), then the names compared with the index's text: the inputs whose
    outputs follow one another (every input of a batch, in whatever order its images finished) in one comparison;
    no name is looked up. ``makers``: each item's maker number (-1 or None: none), ``sizes``: `_name_counts` of
    ``names`` where known; an int64 array."""
    numbers, _ = outputs.arrays()
    if isinstance(makers, np.ndarray):
        wanted = makers
    else:
        wanted = np.array([-1 if m is None else m for m in makers], dtype=np.int64)
    sizes = _name_counts(names) if sizes is None else sizes
    first = np.full(len(names), -1, dtype=np.int64)
    if not len(numbers) or not (wanted >= 0).any():
        return first
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
        joined = "\0".join(map(str, map(names.__getitem__, members)))  # by C loops: a batch's 250,000 at once
        if _same_text(outputs, joined, int(starts[chain[0]]), int(lengths[chain].sum())):
            first[members] = starts[chain]
            continue
        for i, at, size in zip(members, starts[chain].tolist(), lengths[chain].tolist(), strict=True):
            if _same_text(outputs, str(names[i]), at, size):
                first[i] = at
    return first


def _count_names(joined: str | None) -> int:
    """How many names a NUL-joined text holds (None: none)."""
    return 0 if joined is None else joined.count("\0") + 1


def _name_counts(names: Sequence[str | None]) -> Any:
    """`_count_names` of each text, as an int64 array (by C loops where no text is None)."""
    if None in names:
        return np.fromiter(map(_count_names, names), dtype=np.int64, count=len(names))
    return np.fromiter(map(str.count, names, repeat("\0")), dtype=np.int64, count=len(names)) + 1  # type: ignore[arg-type]


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
        return map(str, listed)
    return _sources_one_by_one(items, manifest)


def _sources_one_by_one(items: Sequence[Any], manifest: Any) -> Iterator[str]:
    """`_sources` where some input was not found in a folder discovery listed."""
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
    go: it holds the manifest's outputs, and the stats it began are stopped)."""
    for kept in _SHARED:
        kept.let_go()
    _SHARED.clear()
    stop_early()
    return [False] * len(items)


def done_items(batch: Recorded, out_dir: Path, processes: int = 1) -> list[bool]:
    """For each input of ``batch``, whether its outputs are done: recorded as its own and still the files that
    were written (see the module's docstring). Files without a fingerprint that pass are fingerprinted
    (``outputs.changed``: the caller may save the index). ``processes``: the batch's on this machine (``-j``), which
    share the stats (`featmap.run.resume_files.Sweep`, begun by the preflight where it knew ``-j``)."""
    todo = [i for i, ok in enumerate(batch.recorded) if ok]
    if not todo:
        batch.let_go()
        stop_early()
        return list(batch.recorded)
    with bulk_objects():  # a stat result for every output
        return _done(batch, out_dir, todo, processes)


def _done(batch: Recorded, out_dir: Path, todo: list[int], processes: int) -> list[bool]:
    """`done_items` for the inputs ``todo`` the manifest records as done."""
    outputs = batch.outputs
    everyone = len(todo) == len(batch.names)
    joined: list[str] = list(batch.names if everyone else map(batch.names.__getitem__, todo))  # type: ignore[arg-type]
    counts = batch.counts if everyone else batch.counts[todo]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    starts = batch.first if everyone else batch.first[todo]
    places = np.repeat(starts - bounds[:-1], counts) + np.arange(bounds[-1])  # each file's position in `outputs`
    for slot in np.flatnonzero(starts < 0).tolist():  # names found elsewhere than one after another: by name
        places[bounds[slot] : bounds[slot + 1]] = [outputs.position(n) for n in joined[slot].split("\0")]
    root = f"{out_dir}/"
    early = taken_early()
    if early is not None and batch.sweep is None:  # begun as the command started (`featmap.run.resume_early`)
        sizes, times, modes = early.take(outputs, root, joined, bounds, places)
    else:
        if early is not None:
            early.stop()
        sizes, times, modes = _stats(batch, root, todo, joined, counts, processes)
    _, prints = outputs.arrays()
    known = prints[places]
    good = ((modes & TYPE_BITS) == stat.S_IFREG) & (known != 0) & (known == fingerprints(sizes, times))
    whole = np.logical_and.reduceat(good, bounds[:-1])
    done = list(batch.recorded)
    for slot in np.flatnonzero(~whole).tolist():  # a file changed, or without a fingerprint: looked at closer
        lo = int(bounds[slot])
        done[todo[slot]] = all(
            bool(good[j]) or verified(root + name, int(places[j]), outputs, int(sizes[j]), int(times[j]), int(modes[j]))
            for j, name in enumerate(joined[slot].split("\0"), lo)
        )
    return done


def _stats(
    batch: Recorded, root: str, todo: list[int], joined: list[str], counts: Any, processes: int
) -> tuple[Any, Any, Any]:
    """The size, time and mode of each file of the inputs ``todo`` (their names: ``joined``, ``counts`` of them), in
    order: from the
    stats the preflight began for the batch (`Recorded.sweep`), or begun now."""
    sweep, batch.sweep = batch.sweep, None
    if sweep is not None and sweep.root != root:  # another folder than the one asked about: not these files
        sweep.stop()
        sweep = None
    if sweep is None:
        return Sweep(root, joined, processes).take()
    sizes, times, modes = sweep.take(batch.recorded)
    if len(todo) == len(batch.names):
        return sizes, times, modes
    ends = np.cumsum(counts)
    rows = np.repeat(sweep.bounds[todo] - (ends - counts), counts) + np.arange(int(ends[-1]))
    return sizes[rows], times[rows], modes[rows]


def local_processes(backend: Any) -> int:
    """The processes a batch runs on this machine (``-j``: a local pool's), which may share the resume check's
    stats; 1 for any other back end (a pool's module not imported yet: none is one)."""
    pool = sys.modules.get("featmap.run.backends.pool")
    return int(backend.jobs) if pool is not None and isinstance(backend, pool.LocalPool) else 1
