"""Where a batch's outputs go, behind one interface: a local folder (the fast case: plain paths, ``O_APPEND``
manifest, journal, lock, atomic renames; no fsspec) or an fsspec URL (`featmap.io.storage.RemoteOutput`: the
folder listed once, the manifest kept here and written whole).

The batch loop (`featmap.run.batch`) asks a store the same questions whatever it is: which inputs' outputs are
complete (resume: `done`, for the whole batch at once, `featmap.run.resume`), may an input's targets be
written (clobber check), which of them exist already (an unfinished image must not remove those), what to
journal, where records and ``predictions.csv`` go. Targets are always
the job's local paths (`featmap.run.imagejob.targets_for`); a URL store reads them relative to the job's
output folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from featmap.errors import OutputExistsError
from featmap.io.storage import UrlImage, is_remote
from featmap.io.writers import Writer

__all__ = ["LocalStore", "Store", "UrlStore", "open_store", "shown", "source"]

_EXISTS = "exists and was not made from this input with these options"
_EXISTS_FIX = "pass --overwrite to replace it, or choose another -o folder"


def source(item: Any) -> str:
    """An input as the manifest records it: its URL, or its resolved path."""
    return item.url if isinstance(item, UrlImage) else str(Path(item.path).resolve())


def shown(item: Any) -> str:
    """An input as a report names it: its URL, or its path as given."""
    return item.url if isinstance(item, UrlImage) else str(item.path)


class Store(Protocol):
    """An output folder as the batch loop sees it (see the module's docstring)."""

    #: The URL a back end's task uploads to; None for a local folder (the writers write there themselves).
    out_url: str | None

    def open(self) -> tuple[str, ...]:
        """Take the folder for this run; returns notes for the report (what a killed run left, cleared)."""
        ...

    def close(self) -> None:
        """Give the folder back at the end of the run, whatever happened."""
        ...

    def complete(self, item: Any, targets: Sequence[Path], digest: str) -> bool:
        """True when every target exists and was made from ``item`` with options ``digest`` (resume)."""
        ...

    def done(self, items: Sequence[Any], job: Any, digest: str, processes: int = 1) -> list[bool]:
        """`complete` for every item of a batch at once (`featmap.run.resume`), on up to ``processes``."""
        ...

    def check(
        self, item: Any, targets: Sequence[Path], digest: str, *, overwrite: bool, existing: set[Path] | None = None
    ) -> None:
        """Raise `OutputExistsError` when writing ``targets`` would clobber the input or another run's file;
        ``existing``: which of them are there, as `existing` just said (None: looked at here)."""
        ...

    def existing(self, planned: Sequence[Path]) -> set[Path]:
        """The files of ``planned`` already there (one look each): what an unfinished image must not remove."""
        ...

    def begin(self, item: Any, targets: Sequence[Path], digest: str) -> None:
        """Journal that ``targets`` are about to be written (a no-op where a kill leaves nothing half-made)."""
        ...

    def append(self, records: Sequence[dict[str, Any]], now: float) -> None:
        """Record outputs and failures in the manifest."""
        ...

    def flush(self, now: float) -> None:
        """Make every record so far durable."""
        ...

    def remove(self, targets: dict[str, Path], before: set[Path]) -> None:
        """Remove what an unfinished image wrote: its planned files that were not there ``before``."""
        ...

    def recorded_tops(self, digest: str) -> Mapping[str, Sequence[dict[str, Any]]]:
        """Input → the top classes the manifest holds for options ``digest`` (a resumed network batch)."""
        ...

    def put(self, name: str, data: bytes) -> Path | str:
        """Write a file of the whole batch (``predictions.csv``) whole; returns where it went."""
        ...

    def write_index(self, inputs: Sequence[str], reports: Sequence[Path]) -> None:
        """``report.html`` linking those of ``reports`` (targets, by input) that are there."""
        ...


class LocalStore:
    """A local output folder: the manifest and its journal, the run's lock, the writers' own files."""

    out_url: str | None = None

    def __init__(self, out_dir: Path, writers: list[Writer]) -> None:
        self.out_dir = Path(out_dir)
        self.writers = writers
        self.manifest: Any = None
        self._lock: Any = None

    def open(self) -> tuple[str, ...]:
        from featmap.io.outputs import Manifest, OutputLock

        self._lock = OutputLock(self.out_dir).acquire()
        self.manifest = Manifest(self.out_dir)
        return tuple(f"cleared {what}" for what in self._lock.cleared)

    def close(self) -> None:
        if self._lock is not None:
            try:  # the run's own manifest: all it appended and journaled is in it (another would read it again)
                if self.manifest is not None:
                    self.manifest.settle()
                    self._save_prints()
            except OSError:
                pass  # trimming the journal, saving the index: a failure to is harmless
            self._lock.release()
            self._lock = None

    def _save_prints(self) -> None:
        """Keep the files' fingerprints this run took (written, or verified by a resume) in the manifest's index,
        where the manifest has one or is large enough for one (`featmap.io.manifest_index`)."""
        from featmap.io.manifest_index import INDEX_MIN_BYTES, save_index

        manifest = self.manifest
        outputs, size = manifest._outputs, manifest._size
        if not outputs.changed or not size or (not manifest._indexed and size < INDEX_MIN_BYTES):
            return
        if os.stat(manifest.path).st_size == size and save_index(outputs, manifest.path, size):  # only our lines
            manifest._indexed = size

    def complete(self, item: Any, targets: Sequence[Path], digest: str) -> bool:
        if not isinstance(item, UrlImage):
            return bool(self.manifest.complete(targets, Path(item.path), digest))
        made = (item.url, digest)  # a URL input is recorded by its URL, never resolved
        manifest = self.manifest
        return bool(targets) and all(p.is_file() and manifest._made_by(manifest.rel(p), made, True) for p in targets)

    def done(self, items: Sequence[Any], job: Any, digest: str, processes: int = 1) -> list[bool]:
        from featmap.run.resume import Recorded, done_items

        batch = Recorded.shared(items, digest, self.manifest._outputs) or Recorded(items, job, digest, self.manifest)
        return done_items(batch, self.out_dir, processes)

    def check(
        self, item: Any, targets: Sequence[Path], digest: str, *, overwrite: bool, existing: set[Path] | None = None
    ) -> None:
        there = self.existing(targets) if existing is None else existing
        if not isinstance(item, UrlImage):
            resolved = getattr(item, "resolved", None)
            self.manifest.check(
                targets, Path(item.path), digest, overwrite=overwrite, existing=there, resolved=resolved
            )
            return
        manifest = self.manifest
        for path in targets:
            if path in there and not overwrite and not manifest._made_by(manifest.rel(path), (item.url, digest), True):
                raise OutputExistsError(str(path), _EXISTS, _EXISTS_FIX)

    def existing(self, planned: Sequence[Path]) -> set[Path]:
        return {p for p in planned if _exists(p)}

    def begin(self, item: Any, targets: Sequence[Path], digest: str) -> None:
        if not isinstance(item, UrlImage):  # a URL input's files are staged whole: a kill leaves none half-made
            self.manifest.begin(targets, Path(item.path), digest, resolved=getattr(item, "resolved", None))

    def append(self, records: Sequence[dict[str, Any]], now: float) -> None:
        self.manifest.append(records)
        outputs = self.manifest._outputs
        for rec in records:  # each file as this run wrote it: a resume knows it by its fingerprint
            png = rec.get("png")
            if isinstance(png, str) and rec.get("status", "ok") == "ok":
                try:
                    st = os.stat(f"{self.out_dir}/{png}")
                except OSError:
                    continue
                outputs.seen(png, st.st_size, st.st_mtime_ns)

    def flush(self, now: float) -> None:
        pass  # every record was appended to the file as it came

    def remove(self, targets: dict[str, Path], before: set[Path]) -> None:
        from featmap.run.imagejob import _remove_partial

        _remove_partial(targets, before, self.writers)

    def recorded_tops(self, digest: str) -> Mapping[str, Sequence[dict[str, Any]]]:
        from featmap.io.writers.predictions import tops_from_manifest

        return tops_from_manifest(self.manifest.path, digest)

    def put(self, name: str, data: bytes) -> Path:
        from featmap.io.images import atomic_write

        return atomic_write(self.out_dir / name, lambda handle: handle.write(data))

    def write_index(self, inputs: Sequence[str], reports: Sequence[Path]) -> None:
        from featmap.io.writers.report import write_index

        found = [(source, report) for source, report in zip(inputs, reports, strict=True) if report.is_file()]
        if found:  # refuses to replace a report.html featmap did not write
            write_index(self.out_dir, [f[0] for f in found], [f[1] for f in found])


class UrlStore:
    """An fsspec output folder: listed once when opened; the manifest kept here and written whole."""

    def __init__(self, url: str, out_dir: Path, writers: list[Writer]) -> None:
        self.out_url: str | None = url
        self.out_dir = Path(out_dir)  # where the job's targets are worked out; nothing is written there
        self.writers = writers
        self.output: Any = None

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()

    def _made_by(self, rel: str, item: Any, digest: str) -> bool:
        return rel in self.output.existing and bool(self.output.made_by(rel, source(item), digest))

    def open(self) -> tuple[str, ...]:
        from featmap.io.storage import RemoteOutput

        self.output = RemoteOutput(str(self.out_url))
        return ()

    def close(self) -> None:
        pass  # an object store has no lock to give back; the manifest was flushed by the loop

    def complete(self, item: Any, targets: Sequence[Path], digest: str) -> bool:
        return bool(targets) and all(self._made_by(self._rel(p), item, digest) for p in targets)

    def done(self, items: Sequence[Any], job: Any, digest: str, processes: int = 1) -> list[bool]:
        from featmap.run.resume import target_names

        # the folder was listed once when opened: every question is a look-up
        pairs = zip(items, target_names(items, job), strict=True)
        return [bool(found) and all(self._made_by(n, item, digest) for n in found or ()) for item, found in pairs]

    def check(
        self, item: Any, targets: Sequence[Path], digest: str, *, overwrite: bool, existing: set[Path] | None = None
    ) -> None:
        if overwrite:  # ``existing`` is not needed: the folder's listing answers
            return
        for path in targets:
            rel = self._rel(path)
            if rel in self.output.existing and not self._made_by(rel, item, digest):
                raise OutputExistsError(rel, _EXISTS, _EXISTS_FIX)

    def existing(self, planned: Sequence[Path]) -> set[Path]:
        return {p for p in planned if self._rel(p) in self.output.existing}

    def begin(self, item: Any, targets: Sequence[Path], digest: str) -> None:
        pass  # each object is put whole: a killed run leaves no half-written one

    def append(self, records: Sequence[dict[str, Any]], now: float) -> None:
        self.output.append(records, now)

    def flush(self, now: float) -> None:
        self.output.flush(now)

    def remove(self, targets: dict[str, Path], before: set[Path]) -> None:
        from featmap.run.imagejob import _planned

        self.output.remove([self._rel(p) for p in _planned(targets, self.writers) if p not in before])

    def recorded_tops(self, digest: str) -> Mapping[str, Sequence[dict[str, Any]]]:
        from featmap.io.writers.predictions import tops_from_lines

        return tops_from_lines(self.output.manifest_lines(), digest)

    def put(self, name: str, data: bytes) -> str:
        return str(self.output.put(name, data))

    def write_index(self, inputs: Sequence[str], reports: Sequence[Path]) -> None:
        from featmap.io.writers.report import index_page

        there = self.output.existing
        found = [(source, report) for source, report in zip(inputs, reports, strict=True) if self._rel(report) in there]
        if found:
            self.put("report.html", index_page(self.out_dir, [f[0] for f in found], [f[1] for f in found]))


def _exists(path: Path) -> bool:
    """``path.exists()`` in one ``stat`` (pathlib's own goes through more Python)."""
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def open_store(out: str | Path | None, out_dir: Path, writers: list[Writer]) -> Store:
    """The store for ``out``: an fsspec URL, else the local folder ``out_dir`` (the job's output folder)."""
    if out is not None and is_remote(out):
        return UrlStore(str(out), out_dir, writers)
    return LocalStore(out_dir, writers)
