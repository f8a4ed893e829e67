"""Where maps go: output naming (`OutputOptions`); the output folder's manifest (`Manifest`, from
`featmap.io.manifest`) and lock are re-exported here.

`OutputLock` holds the folder for one run at a time (``.featmap.lock``, with the run's pid); taking it
clears what a killed run left: its lock and its temporary files.
"""

from __future__ import annotations

import os
import re
import string
import time
from pathlib import Path
from typing import Any

from featmap.enums import Normalize, parse_enum
from featmap.errors import SpecError, brief
from featmap.frozen import frozen_dataclass
from featmap.io.manifest import JOURNAL_NAME, MANIFEST_NAME, Manifest
from featmap.io.outputlock import LOCK_NAME, OutputLock

__all__ = ["JOURNAL_NAME", "LOCK_NAME", "MANIFEST_NAME", "Manifest", "OutputLock", "OutputOptions", "safe_stem"]

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


@frozen_dataclass
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
            if last not in ("", ".", ".."):  # ``head`` "": a folder right in the output folder
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
