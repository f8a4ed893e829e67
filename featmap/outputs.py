"""Where maps go: output naming (`OutputOptions`) and the output folder's manifest (`Manifest`).

The manifest, ``manifest.jsonl`` in the output folder, has one JSON line per written map (input,
kernel, files, shapes, statistics, a hash of the options, status) and one per failed input. It is what
lets a re-run replace its own outputs, refuses to clobber anyone else's, and lets ``--skip-existing``
resume a stopped batch.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .enums import Normalize, parse_enum
from .errors import OutputExistsError, SpecError

__all__ = ["MANIFEST_NAME", "Manifest", "OutputOptions"]

MANIFEST_NAME = "manifest.jsonl"
_FIELDS = {"stem", "kernel", "ext"}


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
    sheet: bool = False  # {stem}/sheet.png: input, kernels, maps (featmap.writers.sheet)
    report: bool = False  # report.html (featmap.writers.report)

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
        from .display import parse_percentiles

        object.__setattr__(self, "percentiles", parse_percentiles(self.percentiles))
        if self.colormap is not None:
            if self.bit_depth != 8:
                raise SpecError("`colormap`", "writes 8-bit RGB PNGs", "drop `bit_depth` 16 or `colormap`")
            if self.colormap.strip().lower() != "auto":
                from .colormaps import get_colormap

                get_colormap(self.colormap)  # an unknown name fails before any work, listing close matches

    def extra_target(self, source: Path, filename: str, *, rel_dir: Path = Path(), stem: str | None = None) -> Path:
        """``{rel_dir}/{stem}/filename`` under the output folder (``camera/sheet.png``), whatever ``name`` is."""
        return self.out_dir / rel_dir / (source.stem if stem is None else stem) / filename

    @property
    def formats(self) -> tuple[str, ...]:
        """The writers (`featmap.writers`) each image's maps go to: ``png``, then the raw format if any."""
        formats = ("png",) if self.raw is None else ("png", self.raw)
        return formats + (("pictures",) if self.sheet or self.report else ())

    def target(self, source: Path, kernel: str, *, rel_dir: Path = Path(), stem: str | None = None) -> Path:
        """The PNG path for ``kernel``'s map of ``source``, under ``rel_dir``; never outside ``out_dir``.

        ``stem`` replaces the file's own stem (the batch gives colliding inputs distinct stems).
        """
        name = self.name.format(
            stem=source.stem if stem is None else stem, ext=source.suffix.lstrip("."), kernel=kernel
        )
        rel = (rel_dir / name).as_posix() + ".png"
        path = self.out_dir / rel
        root = self.out_dir.resolve()
        if Path(rel).is_absolute() or not path.resolve().is_relative_to(root):
            raise SpecError(
                "`name_pattern`", f"{rel!r} points outside the output folder {self.out_dir}", "use a relative pattern"
            )
        return path


class Manifest:
    """The output folder's record of what made each file; appended to, never rewritten.

    Only one process (the one running the batch) writes it, one complete line per record.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST_NAME
        self._by_png: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a crash says nothing about the outputs
                    self._remember(rec)

    def _remember(self, rec: Any) -> None:
        if isinstance(rec, dict) and isinstance(rec.get("png"), str):
            self._by_png[rec["png"]] = rec

    def rel(self, path: Path) -> str:
        """``path`` relative to the output folder, as recorded."""
        return path.relative_to(self.out_dir).as_posix()

    def made_by(self, path: Path, source: Path, digest: str) -> bool:
        """True when the manifest says ``path`` was written from ``source`` with options ``digest``."""
        rec = self._by_png.get(self.rel(path))
        return bool(rec) and rec.get("input") == str(source.resolve()) and rec.get("options") == digest  # type: ignore[union-attr]

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
        return bool(targets) and all(p.is_file() and self.made_by(p, source, digest) for p in targets)

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Add records in one write (``O_APPEND``), so lines from one image are never split."""
        if not records:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        for rec in records:
            self._remember(rec)
