"""Where maps go: output naming (`OutputOptions`) and the output folder's manifest (`Manifest`).

The manifest, ``manifest.jsonl`` in the output folder, has one JSON line per written map (input,
kernel, files, shapes, statistics, a hash of the options, status ``ok``) and one per failed input
(status ``failed``). Before an image's maps are written, the journal ``.featmap-writing.jsonl`` names
them: after a ``kill -9`` those files are known to be that run's unfinished work, which a resume with
the same options replaces. The manifest is what lets a re-run replace its own outputs, refuses to
clobber anyone else's, and lets ``--skip-existing`` resume a stopped batch.

`OutputLock` holds the folder for one run at a time (``.featmap.lock``, with the run's pid); taking it
clears what a killed run left: its lock and its temporary files.
"""

from __future__ import annotations

import json
import os
import re
import string
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featmap.enums import Normalize, parse_enum
from featmap.errors import OutputExistsError, SpecError, brief
from featmap.io.outputlock import LOCK_NAME, OutputLock

__all__ = ["LOCK_NAME", "MANIFEST_NAME", "Manifest", "OutputLock", "OutputOptions", "safe_stem"]

MANIFEST_NAME = "manifest.jsonl"
JOURNAL_NAME = ".featmap-writing.jsonl"
_FIELDS = {"stem", "kernel", "ext"}


def safe_stem(name: str) -> str:
    """A file's stem that is safe as a folder or file name part: never empty, ``.`` or ``..``.

    Examples
    --------
    >>> safe_stem("photo.png"), safe_stem("...png"), safe_stem(".png")
    ('photo', '___png', '_png')
    """
    stem = Path(name).stem
    if stem.strip(".") == "":
        return name.replace(".", "_")
    return "_" + stem[1:] if stem.startswith(".") else stem


# OutputOptions._inside's caches, per process (never pickled with the options): out_dir → resolved, and
# (out_dir, folder) → inside. Bounded; a batch's folders are resolved once each instead of twice per target.
_INSIDE_ROOT: dict[Path, Path] = {}
_INSIDE: dict[tuple[Path, str], bool] = {}
# The last folder found to be plain (not a symlink) and when: an image's targets share their folder, so its
# other targets, asked for within 50 ms, are not checked again (one lstat an image, not one a target).
_LAST_PLAIN: list[Any] = [None, 0.0]
# A name pattern's result with no empty, "." or ".." segment and no leading or trailing "/": joined as text.
_PLAIN_NAME = re.compile(r"(?!\.{1,2}(?:/|$))[^/]+(?:/(?!\.{1,2}(?:/|$))[^/]+)*")


@dataclass(frozen=True)
class OutputOptions:
    """Where and how maps are written.

    ``name`` is a pattern relative to ``out_dir`` with ``{stem}`` (input name without suffix),
    ``{ext}`` (input suffix without the dot) and ``{kernel}``; ``.png`` is added when absent.
    """

    out_dir: Path = Path("featmap-out")
    name: str = "{stem}/{kernel}"
    normalize: Normalize = Normalize.MINMAX
    bit_depth: int = 8
    raw: str | None = None
    png_compress: int = 1
    overwrite: bool = False
    colormap: str | None = None  # a cmap name or "auto"; None: gray PNGs
    percentiles: tuple[float, float] = (1.0, 99.0)  # for normalize="percentile"
    sheet: bool = False  # {stem}/sheet.png: input, kernels, maps (featmap.io.writers.sheet)
    report: bool = False  # report.html (featmap.io.writers.report)
    scale: str = "per-layer"  # pictures: one colormap and range per layer, or per-layer map + per-channel range
    sheet_width: int = 1920  # the sheet's width in pixels (a 1920×1080 slide)
    channels: int | None = None  # a network sheet's channels per layer (None: all, or 8 past 256 maps)
    sheet_normalize: Normalize | None = None  # the pictures' normalization; None: percentile

    def picture_key(self) -> dict[str, object]:
        """What changes the sheet's and report's pixels beyond the maps' options (for the options hash)."""
        return {
            "scale": self.scale,
            "sheet_width": self.sheet_width,
            "channels": self.channels,
            "picture_normalize": str(self.picture_normalize),
        }

    @property
    def picture_normalize(self) -> Normalize:
        """How sheets and reports map values: ``sheet_normalize``, by default ``percentile`` (min-max sheets
        were 95 % white)."""
        return self.sheet_normalize or Normalize.PERCENTILE

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "normalize", parse_enum(Normalize, self.normalize, "normalize"))
        pattern = self.name[:-4] if self.name.lower().endswith(".png") else self.name
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
        except ValueError as exc:
            raise SpecError(
                "`name_pattern`", f"bad pattern {self.name!r} ({exc})", "e.g. '{stem}_{kernel}.png'"
            ) from None
        if used - _FIELDS or "kernel" not in used:
            raise SpecError(
                "`name_pattern`",
                f"pattern {self.name!r} must use {{kernel}} and only {{stem}}, {{ext}}, {{kernel}}",
                "e.g. '{stem}_{kernel}.png'",
            )
        object.__setattr__(self, "name", pattern)
        if self.bit_depth not in (8, 16):
            raise SpecError("`bit_depth`", f"must be 8 or 16; got {self.bit_depth}")
        if self.raw not in (None, "npy", "tiff"):
            raise SpecError("`raw`", f"unknown format {self.raw!r}", "use npy or tiff")
        self._check_pictures()

    def _check_pictures(self) -> None:
        from featmap.io.display import SCALES, parse_percentiles

        object.__setattr__(self, "percentiles", parse_percentiles(self.percentiles))
        if self.sheet_normalize is not None:
            object.__setattr__(self, "sheet_normalize", parse_enum(Normalize, self.sheet_normalize, "normalize"))
        if self.scale not in SCALES:
            raise SpecError("`scale`", f"unknown scale {self.scale!r}", "use per-layer or per-channel")
        if not 640 <= self.sheet_width <= 8000:
            raise SpecError("`sheet_width`", f"{self.sheet_width} px is outside 640..8000", "e.g. 1920 for a slide")
        if self.channels is not None and not 1 <= self.channels <= 256:
            raise SpecError("`channels`", f"{self.channels} is outside 1..256", "e.g. 8")
        if self.colormap is not None:
            if self.bit_depth != 8:
                raise SpecError("`colormap`", "writes 8-bit RGB PNGs", "drop `bit_depth` 16 or `colormap`")
            if self.colormap.strip().lower() != "auto":
                from featmap.io.colormaps import get_colormap

                get_colormap(self.colormap)  # an unknown name fails before any work, listing close matches

    def extra_target(self, source: Path, filename: str, *, rel_dir: Path = Path(), stem: str | None = None) -> Path:
        """``{rel_dir}/{stem}/filename`` under the output folder (``camera/sheet.png``), whatever ``name`` is."""
        return self.out_dir / rel_dir / (source.stem if stem is None else stem) / filename

    @property
    def formats(self) -> tuple[str, ...]:
        """The writers (`featmap.io.writers`) each image's maps go to: ``png``, then the raw format if any."""
        formats = ("png",) if self.raw is None else ("png", self.raw)
        return formats + (("pictures",) if self.sheet or self.report else ())

    def target(self, source: Path, kernel: str, *, rel_dir: Path = Path(), stem: str | None = None) -> Path:
        """The PNG path for ``kernel``'s map of ``source``, under ``rel_dir``; never outside ``out_dir``.

        ``stem`` replaces the file's own stem (the batch gives colliding inputs distinct stems).
        """
        name = self.name.format(
            stem=safe_stem(source.name) if stem is None else stem, ext=source.suffix.lstrip("."), kernel=kernel
        )
        if _PLAIN_NAME.fullmatch(name):  # nothing pathlib would normalise: strings, ~5x faster (a resume)
            folder = rel_dir.as_posix()
            rel = f"{name}.png" if folder == "." else f"{folder}/{name}.png"
            inside = self._inside(rel.rpartition("/")[0])
        else:
            rel = (rel_dir / name).as_posix() + ".png"
            inside = not Path(rel).is_absolute() and self._inside(Path(rel).parent.as_posix())
            inside = inside and Path(rel).name not in ("..", ".")
        if not inside:
            raise SpecError(
                "`name_pattern`", f"{rel!r} points outside the output folder {self.out_dir}", "use a relative pattern"
            )
        if len(rel) > NAME_BYTES // 4:  # only a long path can hold a name over the file system's limit
            _check_name_lengths(rel)
        return self.out_dir / rel

    def _absolute_out_dir(self) -> Path:
        """The output folder as an absolute path, worked out once: what the inside checks are cached under (a
        relative folder is the current folder's, which may change between runs in one process)."""
        root = self.out_dir if self.out_dir.is_absolute() else Path(os.getcwd(), self.out_dir)
        object.__setattr__(self, "_absolute_out", root)  # kept on the instance: one Path per run, not per target
        return root

    def _inside(self, folder: str) -> bool:
        """True when ``out_dir/folder`` resolves inside ``out_dir``; each folder is resolved once (a resume
        checks every target of every input, and resolving is most of a target's cost)."""
        if len(_INSIDE) > 4096:
            _INSIDE.clear()
        out = self.__dict__.get("_absolute_out") or self._absolute_out_dir()
        key = (out, folder)
        if key not in _INSIDE:
            head, _, last = folder.rpartition("/")
            if head and last not in ("", ".", ".."):
                now = time.monotonic()
                if _LAST_PLAIN[0] == key and now - _LAST_PLAIN[1] < 0.05:  # an image's other targets, just now
                    return self._inside(head)
                if not os.path.islink(f"{self.out_dir}/{folder}"):
                    _LAST_PLAIN[:] = [key, now]
                    return self._inside(head)  # a plain last name: inside when its folder is (one lstat)
            root = _INSIDE_ROOT.get(out) or _INSIDE_ROOT.setdefault(out, self.out_dir.resolve())
            _INSIDE[key] = (self.out_dir / folder).resolve().is_relative_to(root)
        return _INSIDE[key]


#: The longest file or folder name featmap makes: the file system's 255 bytes less room for a temporary
#: file's ``.name.PID.tmp`` and a raw map's ``.tiff`` in place of ``.png``.
NAME_BYTES = 255 - 24


def _check_name_lengths(rel: str) -> None:
    """Refuse a target whose file or folder name the file system would refuse (over `NAME_BYTES` bytes).

    Examples
    --------
    >>> _check_name_lengths("camera/" + "x" * 300 + ".png")
    Traceback (most recent call last):
    ...
    featmap.errors.SpecError: `name_pattern`: makes a name of 304 bytes (...), over the 231 featmap allows ...
    """
    for part in rel.split("/"):
        size = len(os.fsencode(part))
        if size > NAME_BYTES:
            raise SpecError(
                "`name_pattern`",
                f"makes a name of {size} bytes ({brief(part, 30)}), over the {NAME_BYTES} featmap allows "
                "(a file system takes 255, less room for a temporary file)",
                "use a shorter pattern or shorter kernel names",
            )


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

    def begin(self, targets: Iterable[Path], source: Path, digest: str) -> None:
        """Journal that ``targets`` are about to be written from ``source`` with options ``digest`` (one line)."""
        record = {"input": str(source.resolve()), "options": digest, "png": [self.rel(p) for p in targets]}
        _append_lines(self.journal, [record])
        self._expect(record)

    def settle(self) -> None:
        """At the end of a run: keep in the journal only files that exist and are not yet recorded as made
        by the run that was writing them (a killed run's leftovers); remove it when nothing is left."""
        keep = []
        for rel, makers in self._writing.items():
            made = self._outputs.maker(rel)
            if not (self.out_dir / rel).exists():
                continue
            for source, digest in sorted(makers):
                if made != (source, digest):
                    keep.append({"input": source, "options": digest, "png": rel})
        if not keep:
            self.journal.unlink(missing_ok=True)
            return
        from featmap.io.images import atomic_write

        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep).encode()
        atomic_write(self.journal, lambda handle: handle.write(text))

    def check(self, targets: Iterable[Path], source: Path, digest: str, *, overwrite: bool) -> None:
        """Raise `OutputExistsError` if writing ``targets`` would clobber the input or another run's file."""
        for path in targets:
            if not path.exists():
                continue
            if path.resolve() == source.resolve():
                raise OutputExistsError(str(path), "is the input image itself", "choose another -o folder or --name")
            if not overwrite and not self.made_by(path, source, digest):
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
                except json.JSONDecodeError:
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
