"""Small matrices for `featmap explain`: typed inline, read from CSV or NPY files, or cropped from an image.

Every reader checks the explain limits (`featmap.explain.MAX_SIDE`, `MAX_CHANNELS`) before it
allocates anything large, and names the value, the problem and the fix.

Examples
--------
>>> parse_matrix("1 2 3; 4 5 6").shape
(2, 3)
>>> parse_matrix("1,0; 0,1 | 2 2; 2 2").shape
(2, 2, 2)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from featmap.errors import ShapeError, SpecError
from featmap.explain import MAX_CHANNELS, MAX_SIDE

__all__ = [
    "MATRIX_SUFFIXES",
    "MAX_FILE_BYTES",
    "crop_image",
    "looks_like_matrix",
    "parse_matrix",
    "read_matrix",
]

#: Largest CSV/NPY file read (a 64×64×4 float64 NPY is 131 kB; a CSV of it well under this).
MAX_FILE_BYTES = 1 << 20
MATRIX_SUFFIXES = (".csv", ".tsv", ".txt", ".npy")
_NUMBERS_ONLY = re.compile(r"^[\s0-9eE+\-.,;|]+$")
_SEPARATORS = re.compile(r"[\s,]+")


def looks_like_matrix(text: str) -> bool:
    """True when ``text`` holds only numbers and matrix separators (so it is not a kernel name or file).

    Examples
    --------
    >>> looks_like_matrix("1 0 -1; 2 0 -2"), looks_like_matrix("sobel_x")
    (True, False)
    """
    return bool(_NUMBERS_ONLY.match(text)) and any(ch.isdigit() for ch in text)


def _limit(count: int, what: str, noun: str, limit: int) -> None:
    if count > limit:
        raise ShapeError(
            what,
            f"has {count} {noun}, over explain's limit of {limit}",
            "explain a smaller matrix or crop (featmap apply runs whole images)",
        )


def _parse_plane(text: str, what: str, row_split: str) -> list[list[float]]:
    lines = [line.strip() for line in re.split(row_split, text)]
    lines = [line for line in lines if line and not line.startswith("#")]
    _limit(len(lines), what, "rows", MAX_SIDE)
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        tokens = [t for t in _SEPARATORS.split(line) if t]
        _limit(len(tokens), f"{what} row {number}", "values", MAX_SIDE)
        values = []
        for token in tokens:
            try:
                value = float(token)
            except ValueError:
                raise SpecError(
                    f"{what} row {number}", f"{token!r} is not a number", "write numbers such as 3, -1 or 0.5"
                ) from None
            if not np.isfinite(value):
                raise SpecError(f"{what} row {number}", f"{token!r} is not finite", "write finite numbers")
            values.append(value)
        if rows and len(values) != len(rows[0]):
            raise SpecError(
                f"{what} row {number}",
                f"has {len(values)} values but row 1 has {len(rows[0])}",
                "give every row the same number of values",
            )
        rows.append(values)
    if not rows:
        raise SpecError(what, "is empty", 'give rows of numbers, e.g. "1 2 3; 4 5 6"')
    return rows


def parse_matrix(text: str, what: str = "`input`", *, row_split: str = r"[;\n]") -> NDArray[np.float64]:
    """Parse ``"1 2 3; 4 5 6"``: rows split by ``;`` (or new lines), values by spaces or commas.

    Channels are split by ``|``: ``"1 0; 0 1 | 2 2; 2 2"`` is a 2×2×2 input ``(H, W, C)``. Lines
    starting with ``#`` are ignored. Returns ``(H, W)`` for one channel, ``(H, W, C)`` for more.

    Examples
    --------
    >>> parse_matrix("1, 2\\n3, 4").tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    if len(text) > MAX_FILE_BYTES:
        raise ShapeError(
            what, f"is {len(text):,} characters, over explain's limit of {MAX_FILE_BYTES:,}", "explain a smaller matrix"
        )
    planes = text.split("|")
    _limit(len(planes), what, "channels", MAX_CHANNELS)
    parsed = [
        np.array(_parse_plane(p, f"{what} channel {n + 1}" if len(planes) > 1 else what, row_split))
        for n, p in enumerate(planes)
    ]
    for n, plane in enumerate(parsed[1:], start=2):
        if plane.shape != parsed[0].shape:
            raise SpecError(
                f"{what} channel {n}",
                f"is {plane.shape[0]}×{plane.shape[1]} but channel 1 is {parsed[0].shape[0]}×{parsed[0].shape[1]}",
                "give every channel the same size",
            )
    return parsed[0] if len(parsed) == 1 else np.stack(parsed, axis=-1)


def read_matrix(path: str | os.PathLike[str], what: str = "`input`") -> NDArray[np.float64]:
    """Read a matrix from a CSV/TSV/TXT file (one row a line) or an NPY array ``(H, W)`` or ``(H, W, C)``."""
    p = Path(path)
    where = f"{what} {p}"
    if not p.is_file():
        raise SpecError(where, "no such file", 'check the path, or give the matrix inline: "1 2; 3 4"')
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ShapeError(
            where, f"is {size:,} bytes, over explain's limit of {MAX_FILE_BYTES:,}", "explain a smaller matrix"
        )
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise SpecError(where, f"is not a readable NPY array ({exc})", "save it with numpy.save") from None
        if arr.dtype.kind not in "biuf":
            raise SpecError(where, f"holds {arr.dtype}, not numbers", "save a numeric array")
        if arr.ndim not in (2, 3):
            raise ShapeError(where, f"has shape {arr.shape}", "save a (H, W) or (H, W, C) array")
        _limit(arr.shape[0], where, "rows", MAX_SIDE)
        _limit(arr.shape[1], where, "columns", MAX_SIDE)
        if arr.ndim == 3:
            _limit(arr.shape[2], where, "channels", MAX_CHANNELS)
        values = np.array(arr, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise SpecError(where, "holds NaN or infinity", "give finite numbers")
        return values
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(where, "is not UTF-8 text", "save the CSV as UTF-8 (or as .npy)") from None
    return parse_matrix(text.replace("\t", " "), where, row_split=r"\n")


def crop_image(
    path: str | os.PathLike[str],
    crop: Sequence[int] | None,
    *,
    color: bool = False,
    scale: float = 255.0,
) -> NDArray[np.float64]:
    """Load an image (`featmap.io.images.load_image`) and cut ``(x, y, w, h)`` out of it, values times ``scale``.

    ``x`` is the left column and ``y`` the top row. ``scale=255`` shows 8-bit levels (0–255, rounded
    to 3 decimals so an 8-bit pixel reads as its level), ``scale=1`` featmap's own 0–1 values. Without a
    crop the whole image is taken if it fits the explain limit.
    """
    from featmap.io.images import load_image

    loaded = load_image(path, color=color)
    pixels = loaded.pixels
    height, width = pixels.shape[:2]
    where = str(path)
    if crop is None:
        if max(height, width) > MAX_SIDE:
            raise ShapeError(
                where,
                f"is {width}×{height} pixels, over explain's limit of {MAX_SIDE}×{MAX_SIDE}",
                "pick a piece with `crop` x,y,w,h (e.g. `crop` 0,0,8,8)",
            )
        x, y, w, h = 0, 0, width, height
    else:
        if len(crop) != 4:
            raise SpecError("`crop`", f"takes x,y,w,h; got {tuple(crop)}", "e.g. `crop` 10,20,6,6")
        x, y, w, h = (int(v) for v in crop)
        if w < 1 or h < 1:
            raise ShapeError("`crop`", f"{x},{y},{w},{h} has width {w} and height {h}", "give a width and height >= 1")
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise ShapeError(
                "`crop`",
                f"{x},{y},{w},{h} (columns {x}–{x + w - 1}, rows {y}–{y + h - 1}) is outside the "
                f"{width}×{height} image",
                f"keep x + w <= {width} and y + h <= {height}",
            )
        _limit(max(w, h), "`crop`", "pixels on a side", MAX_SIDE)
    piece = pixels[y : y + h, x : x + w].astype(np.float64) * scale
    if scale != 1.0:
        piece = np.round(piece, 3)
    return piece[:, :, 0] if piece.shape[2] == 1 else piece
