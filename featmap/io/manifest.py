"""The output folder's manifest (`Manifest`): what made each file.

The manifest, ``manifest.jsonl`` in the output folder, has one JSON line per written map (input,
kernel, files, shapes, statistics, a hash of the options, status ``ok``) and one per failed input
(status ``failed``). Before an image's maps are written, the journal ``.featmap-writing.jsonl`` names
them: after a ``kill -9`` those files are known to be that run's unfinished work, which a resume with
the same options replaces. The manifest is what lets a re-run replace its own outputs, refuses to
clobber anyone else's, and lets ``--skip-existing`` resume a stopped batch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from featmap.errors import OutputExistsError

__all__ = ["JOURNAL_NAME", "MANIFEST_NAME", "Manifest"]

MANIFEST_NAME = "manifest.jsonl"
JOURNAL_NAME = ".featmap-writing.jsonl"


class Manifest:
    """The output folder's record of what made each file; appended to, never rewritten.

    Only one process (the one running the batch, holding `OutputLock`) writes it, one complete line
    per record. Beside it, the journal (``.featmap-writing.jsonl``) names the files an image is about
    to get before they are written; a file a killed run was writing is thereby known as that run's,
    and a run with the same input and options may replace it. `settle` keeps only what is unresolved.
    """

    def __init__(self, out_dir: Path) -> None:
        from featmap.io.manifest_index import read_outputs

        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST_NAME
        self.journal = self.out_dir / JOURNAL_NAME
        # Each output's maker, through the index beside the manifest (featmap.io.manifest_index): at 10⁶ lines
        # only the lines after the index are read. _size: the manifest's bytes known here (complete lines).
        self._outputs, self._size, self._indexed = read_outputs(self.path)
        self._writing: dict[str, set[tuple[str, str]]] = {}
        self._resolved: dict[Path, tuple[str, dict[str, bool]]] = {}  # input folder → (real path, is-link by name)
        for rec in _read_lines(self.journal):
            self._expect(rec)

    def _expect(self, rec: Any) -> None:
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("input", "options")):
            return
        pngs = rec.get("png")
        for png in [pngs] if isinstance(pngs, str) else pngs if isinstance(pngs, list) else []:
            if isinstance(png, str):
                self._writing.setdefault(png, set()).add((rec["input"], rec["options"]))

    def rel(self, path: Path) -> str:
        """``path`` relative to the output folder, as recorded."""
        text, root = str(path), str(self.out_dir)
        if text.startswith(root + "/") and "/." not in text and "//" not in text:
            return text[len(root) + 1 :]  # the common case, as text (a resume asks for every output)
        return path.relative_to(self.out_dir).as_posix()

    def made_by(self, path: Path, source: Path, digest: str, *, finished: bool = False) -> bool:
        """True when the manifest says ``path`` was written from ``source`` with options ``digest``.

        A file that a run with that input and options was writing when it was killed counts too, unless
        ``finished`` (then only a completed, recorded output counts).
        """
        return self._made_by(self.rel(path), (self._real(source), digest), finished)

    def _made_by(self, rel: str, made: tuple[str, str], finished: bool) -> bool:
        """`made_by` for the output ``rel`` and the maker ``(input as recorded, options)``."""
        number = self._outputs.number(made)
        if number is not None and self._outputs.get(rel) == number:
            return True
        return not finished and made in self._writing.get(rel, set())

    def _real(self, source: Path) -> str:
        """``str(source.resolve())``, with each input folder resolved once and its files told apart from
        symlinks by one listing (a resume asks for every input of a batch: one ``realpath`` is a ``lstat`` per
        part of the path)."""
        folder, name = source.parent, source.name
        if name in ("", ".", ".."):
            return str(source.resolve())
        known = self._resolved.get(folder)
        if known is None:
            if len(self._resolved) > 64:
                self._resolved.clear()
            try:
                with os.scandir(folder) as entries:
                    links = {entry.name: entry.is_symlink() for entry in entries}
            except OSError:
                links = {}
            known = self._resolved[folder] = (str(folder.resolve()), links)
        real, links = known
        if links.get(name, True):  # a symlink, or a file the listing did not have: resolve it whole
            return str(source.resolve())
        return real + name if real.endswith("/") else f"{real}/{name}"

    def begin(self, targets: Iterable[Path], source: Path, digest: str, *, resolved: str | None = None) -> None:
        """Journal that ``targets`` are about to be written from ``source`` with options ``digest`` (one line);
        ``resolved``: ``str(source.resolve())`` where the caller knows it."""
        real = str(source.resolve()) if resolved is None else resolved
        record = {"input": real, "options": digest, "png": [self.rel(p) for p in targets]}
        _append_lines(self.journal, [record])
        self._expect(record)

    def settle(self) -> None:
        """At the end of a run: keep in the journal only files that exist and are not yet recorded as made
        by the run that was writing them (a killed run's leftovers); remove it when nothing is left."""
        keep = []
        for rel, makers in self._writing.items():
            made = self._outputs.maker(rel)
            others = [maker for maker in sorted(makers) if maker != made]  # the manifest first: no look at the file
            if others and (self.out_dir / rel).exists():
                keep += [{"input": source, "options": digest, "png": rel} for source, digest in others]
        if not keep:
            self.journal.unlink(missing_ok=True)
            return
        from featmap.io.images import atomic_write

        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep).encode()
        atomic_write(self.journal, lambda handle: handle.write(text))

    def check(
        self,
        targets: Iterable[Path],
        source: Path,
        digest: str,
        *,
        overwrite: bool,
        existing: set[Path] | None = None,
        resolved: str | None = None,
    ) -> None:
        """Raise `OutputExistsError` if writing ``targets`` would clobber the input or another run's file;
        ``existing``: which of them are there, when the caller just looked (None: each is looked at here);
        ``resolved``: ``str(source.resolve())`` where the caller knows it."""
        real: str | None = resolved
        for path in targets:
            if not (path in existing if existing is not None else path.exists()):
                continue
            real = real or str(source.resolve())
            if os.path.realpath(path) == real:
                raise OutputExistsError(str(path), "is the input image itself", "choose another -o folder or --name")
            if not overwrite and not self._made_by(self.rel(path), (real, digest), False):
                raise OutputExistsError(
                    str(path),
                    "exists and was not made from this input with these options",
                    "pass --overwrite to replace it, or choose another -o folder",
                )

    def complete(self, targets: Sequence[Path], source: Path, digest: str) -> bool:
        """True when every target exists and was made from ``source`` with these options (resume)."""
        if not targets:
            return False
        number = self._outputs.number((self._real(source), digest))  # once, not once a target
        if number is None:
            return False
        # The manifest first (no file system call), then the files.
        get = self._outputs.get
        return all(get(self.rel(p)) == number for p in targets) and all(p.is_file() for p in targets)

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Add records in one write (``O_APPEND``), so lines from one image are never split; every
        `featmap.io.manifest_index.INDEX_MIN_BYTES` appended, the index is brought up to date (a killed run's
        resume then reads only its last lines)."""
        from featmap.io.manifest_index import INDEX_MIN_BYTES, save_index

        written = _append_lines(self.path, records)
        for rec in records:
            self._outputs.add(rec)
        self._resolved.clear()
        self._size += written
        if self._size - self._indexed >= INDEX_MIN_BYTES:
            try:
                current = os.stat(self.path).st_size
            except OSError:
                return
            if current == self._size and save_index(self._outputs, self.path, self._size):  # only our lines
                self._indexed = self._size


def _read_lines(path: Path) -> Iterator[Any]:
    """The JSON records of a ``.jsonl`` file; a line cut short by a crash is skipped."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    yield json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    continue  # a line cut short by a crash says nothing about the outputs
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return


def _append_lines(path: Path, records: Sequence[dict[str, Any]]) -> int:
    """Append records as JSON lines in one ``O_APPEND`` write; returns the bytes written."""
    if not records:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)
