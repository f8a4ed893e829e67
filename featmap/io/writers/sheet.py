"""The contact sheet: rows of panels (kernel weights beside the map they make) drawn into one RGB picture.

A sheet is generic: a title, then `SheetRow`\\s, each a label and `Panel`\\s; a panel is an optional
weight grid, a map (any size: it is shrunk by block means or enlarged by whole pixels to the panel's
side), the map's colour scale and caption lines. `featmap apply --sheet` gives an input row and one row
for the kernel bank; a network run can give one row per layer. Rows wrap at `SHEET_MAX_WIDTH`; more than
`MAX_SHEET_PANELS` panels is an error, checked before drawing.

Every map carries a colour bar with the values at its ends and the mapping method, and every caption its
name, shape and value range. Weight grids are coloured on a diverging scale centred at 0, with the values
printed when the kernel is 7×7 or smaller. Text uses Pillow's bundled font (`ImageFont.load_default`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.core.cvfilter import opencv
from featmap.errors import SpecError
from featmap.frozen import frozen_dataclass
from featmap.io.colormaps import DIVERGING_DEFAULT, Colormap, get_colormap
from featmap.io.display import DisplayRange

__all__ = [
    "MAX_PRINTED_KERNEL",
    "MAX_SHEET_PANELS",
    "SHEET_MAX_WIDTH",
    "Box",
    "Panel",
    "Sheet",
    "SheetRow",
    "build_sheet",
    "map_side_for",
    "shrink",
]

#: The most panels one sheet holds (a 256-kernel bank still fits: it wraps into rows of small maps).
MAX_SHEET_PANELS = 256
#: Sheets wrap their rows to stay within this width by default (a full-HD slide); ``width`` sets another.
SHEET_MAX_WIDTH = 1920
#: Weight values are printed in the grid up to this kernel size.
MAX_PRINTED_KERNEL = 7

_MARGIN, _GAP, _ROW_GAP = 24, 10, 22
_BAR_HEIGHT = 12
#: Text sizes in pixels (Pillow's bundled font): legible when a 1920 px sheet is projected.
_TEXT, _SMALL, _TITLE = 20, 18, 28
_BACKGROUND = (255, 255, 255)
_INK = (20, 20, 20)
_FAINT = (110, 110, 110)
_FRAME = (190, 190, 190)


@frozen_dataclass
class Panel:
    """One picture of a sheet: a map (float ``(H, W)`` / ``(H, W, C)``), how its values are drawn, and text.

    ``shown`` gives the values at the two ends of the scale; ``colormap`` None draws gray (or RGB for a
    three-channel map). ``weights`` ``(kh, kw)`` or ``(C, kh, kw)`` is drawn beside the map.
    """

    values: NDArray[np.floating]
    shown: DisplayRange
    caption: tuple[str, ...]
    colormap: Colormap | None = None
    weights: NDArray[np.floating] | None = None
    colour_bar: bool = True
    side: int | None = None  # the square the map is fitted in; default: the sheet's


@frozen_dataclass
class SheetRow:
    """A label (a layer, or "input") and its panels."""

    label: str
    panels: tuple[Panel, ...]


@frozen_dataclass
class Box:
    """Where a panel's map was drawn: row and panel index, top-left corner, size, and the scale used
    (sheet pixels per map pixel: an integer ≥ 1 when enlarged, else 1 / the block size)."""

    row: int
    index: int
    x: int
    y: int
    width: int
    height: int
    scale: float


@frozen_dataclass
class Sheet:
    """The drawn sheet: uint8 RGB pixels and where each map went."""

    pixels: NDArray[np.uint8]
    boxes: tuple[Box, ...] = field(default=())


def map_side_for(panels: int) -> int:
    """The side of a map's square in a sheet of ``panels`` maps: smaller as there are more, so rows stay
    readable and a 256-map sheet stays one PNG of a few megapixels."""
    return 256 if panels <= 16 else 192 if panels <= 64 else 128


def shrink(values: NDArray[np.floating], max_side: int) -> NDArray[np.float32]:
    """Block means so that neither side exceeds ``max_side`` (the last partial block is dropped); ``(H, W, C)``."""
    arr = values if values.ndim == 3 else values[:, :, np.newaxis]
    factor = max(1, -(-max(arr.shape[0], arr.shape[1]) // max_side))
    if factor == 1:
        return np.asarray(arr, dtype=np.float32)
    h, w = max(1, arr.shape[0] // factor), max(1, arr.shape[1] // factor)
    fh, fw = min(factor, arr.shape[0]), min(factor, arr.shape[1])
    cropped = np.ascontiguousarray(arr[: h * fh, : w * fw], dtype=np.float32)
    cv2 = opencv()
    if cv2 is not None and arr.shape[2] <= 4:  # area resampling by a whole factor is the block mean, 20x numpy's
        small: NDArray[np.float32] = cv2.resize(cropped, (w, h), interpolation=cv2.INTER_AREA)
        return small.reshape(h, w, arr.shape[2])
    means: NDArray[np.float32] = cropped.reshape(h, fh, w, fw, arr.shape[2]).mean(axis=(1, 3), dtype=np.float32)
    return means


@cache
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


#: Characters the bundled font lacks, spelled with ones it has.
_PLAIN = str.maketrans({"×": "x", "→": "->", "−": "-", "…": "...", "–": "-", "²": "^2"})


def _plain(text: str) -> str:
    return text.translate(_PLAIN)


def _text_width(text: str, size: int) -> int:
    return int(np.ceil(_font(size).getlength(_plain(text))))


#: Thin maps (a dense layer's 1×N strip) are drawn at least this tall.
_MIN_HEIGHT = 16


def _fitted_hw(values: NDArray[np.floating], side: int) -> tuple[int, int]:
    h, w = values.shape[0], values.shape[1]
    longest = max(h, w)
    if longest > side:
        h, w = max(1, round(h * side / longest)), max(1, round(w * side / longest))
    else:
        scale = max(1, side // longest)
        h, w = h * scale, w * scale
    return h * -(-_MIN_HEIGHT // h), w


def _fit(values: NDArray[np.floating], side: int) -> tuple[NDArray[np.float32], float]:
    """The map fitted in a ``side`` square: shrunk by area averaging, or enlarged by whole pixels; and the
    scale used (sheet pixels per map pixel)."""
    arr = values if values.ndim == 3 else values[:, :, np.newaxis]
    fitted, scale = _fit_plain(arr, side)
    stretch = -(-_MIN_HEIGHT // fitted.shape[0])
    return (np.repeat(fitted, stretch, axis=0) if stretch > 1 else fitted), scale


def _fit_plain(arr: NDArray[np.floating], side: int) -> tuple[NDArray[np.float32], float]:
    longest = max(arr.shape[0], arr.shape[1])
    h, w = (max(1, round(arr.shape[0] * side / longest)), max(1, round(arr.shape[1] * side / longest)))
    if longest > side:
        cv2 = opencv()
        if cv2 is None or arr.shape[2] > 4:
            small = shrink(arr, side)
        else:
            small = cv2.resize(np.ascontiguousarray(arr, np.float32), (w, h), interpolation=cv2.INTER_AREA)
            small = small.reshape(h, w, arr.shape[2])
        return small, small.shape[0] / arr.shape[0]
    scale = max(1, side // longest)
    return np.repeat(np.repeat(np.asarray(arr, np.float32), scale, axis=0), scale, axis=1), float(scale)


def _colour(values: NDArray[np.floating], shown: DisplayRange, colormap: Colormap | None) -> NDArray[np.uint8]:
    from featmap.io.writers.png import quantize

    positions = shown.positions(values)
    if colormap is not None:
        return colormap.colours8(positions[:, :, 0])
    levels = quantize(positions, 8)
    return np.repeat(levels, 3, axis=2) if levels.shape[2] == 1 else levels[:, :, :3]


def _cell_size(kernel_side: int) -> int:
    return 38 if kernel_side <= MAX_PRINTED_KERNEL else max(3, min(12, 150 // kernel_side))


def _weights_size(weights: NDArray[np.floating] | None) -> tuple[int, int]:
    if weights is None:
        return 0, 0
    w = weights if weights.ndim == 3 else weights[np.newaxis]
    cell = _cell_size(max(w.shape[1], w.shape[2]))
    return w.shape[2] * cell, w.shape[0] * (w.shape[1] * cell + 4) - 4


def _draw_weights(canvas: Any, draw: Any, weights: NDArray[np.floating], x: int, y: int) -> None:
    from PIL import Image

    w = np.asarray(weights, dtype=np.float64)
    w = w if w.ndim == 3 else w[np.newaxis]
    cell = _cell_size(max(w.shape[1], w.shape[2]))
    peak = float(np.abs(w).max()) or 1.0
    scale = DisplayRange(-peak, peak, "weights", centred=True)
    colours = get_colormap(DIVERGING_DEFAULT).colours8(scale.positions(w.astype(np.float32)))
    for c in range(w.shape[0]):
        top = y + c * (w.shape[1] * cell + 4)
        block = np.repeat(np.repeat(colours[c], cell, axis=0), cell, axis=1)
        canvas.paste(Image.fromarray(np.ascontiguousarray(block)), (x, top))
        draw.rectangle((x - 1, top - 1, x + w.shape[2] * cell, top + w.shape[1] * cell), outline=_FRAME)
        if cell < 38:
            continue
        for (i, j), value in np.ndenumerate(w[c]):
            text = f"{value:.2g}" if value != 0 else "0"
            if len(text) > 5:
                text = f"{value:.1g}"
            r, g, b = (int(v) for v in colours[c, i, j])
            ink = _INK if 0.299 * r + 0.587 * g + 0.114 * b > 120 else (255, 255, 255)
            cx, cy = x + j * cell + cell // 2, top + i * cell + cell // 2
            draw.text((cx, cy), _plain(text), fill=ink, font=_font(14), anchor="mm")


def _draw_bar(canvas: Any, draw: Any, panel: Panel, x: int, y: int, width: int) -> None:
    from PIL import Image

    ramp = np.linspace(panel.shown.low, panel.shown.high, width, dtype=np.float64)
    if panel.shown.absolute:
        ramp = np.abs(ramp)
    strip = ramp.astype(np.float32).reshape(1, width, 1)
    channels = panel.values.shape[2] if panel.values.ndim == 3 else 1
    if channels > 1 and panel.colormap is None:
        strip = np.repeat(strip, channels, axis=2)
    colours = _colour(strip, panel.shown, panel.colormap)
    canvas.paste(Image.fromarray(np.ascontiguousarray(np.repeat(colours, _BAR_HEIGHT, axis=0))), (x, y))
    draw.rectangle((x - 1, y - 1, x + width, y + _BAR_HEIGHT), outline=_FRAME)
    low, high = f"{panel.shown.low:.3g}", f"{panel.shown.high:.3g}"
    draw.text((x, y + _BAR_HEIGHT + 2), _plain(low), fill=_FAINT, font=_font(_SMALL))
    draw.text((x + width, y + _BAR_HEIGHT + 2), _plain(high), fill=_FAINT, font=_font(_SMALL), anchor="ra")
    if panel.shown.centred and width > 60:
        draw.text((x + width // 2, y + _BAR_HEIGHT + 2), _plain("0"), fill=_FAINT, font=_font(_SMALL), anchor="ma")


def _panel_size(panel: Panel, side: int) -> tuple[int, int]:
    ww, wh = _weights_size(panel.weights)
    text_width = max((_text_width(line, _TEXT) for line in panel.caption), default=0)
    pic_h, pic_w = _fitted_hw(panel.values, side)
    width = (ww + _GAP if ww else 0) + max(pic_w, text_width, 150 if panel.colour_bar else 0)
    below = (_BAR_HEIGHT + _SMALL + 6 if panel.colour_bar else 0) + len(panel.caption) * (_TEXT + 3) + 4
    return width, max(wh, pic_h + 6 + below)


def build_sheet(
    title: Sequence[str], rows: Sequence[SheetRow], *, map_side: int | None = None, width: int = SHEET_MAX_WIDTH
) -> Sheet:
    """Draw ``rows`` under the ``title`` lines, ``width`` pixels wide; a row's panels sit in columns of one
    width (its widest panel) and wrap to stay within ``width``.

    ``map_side`` (default `map_side_for` the panel count, at most what fits ``width``) is the square each
    map is fitted in. Raises `SpecError` for more than `MAX_SHEET_PANELS` panels.
    """
    from PIL import Image, ImageDraw

    count = sum(len(row.panels) for row in rows)
    if count > MAX_SHEET_PANELS:
        raise SpecError(
            "`sheet`",
            f"{count} maps exceed the limit of {MAX_SHEET_PANELS} per sheet",
            "use fewer kernels, or drop `sheet` and look at the PNGs or the report",
        )
    inner = width - 2 * _MARGIN
    side = map_side or min(map_side_for(count), inner - 40)
    title_height = len(title) * (_TITLE + 6)
    # lay out: rows of wrapped lines of panels
    placements: list[tuple[int, int, int, int]] = []  # (row, index, x, y) of each panel's top-left
    label_at: list[int] = []
    y = _MARGIN + title_height + (8 if title else 0)
    width_used = 0
    for r, row in enumerate(rows):
        label_at.append(y)
        y += _TEXT + 8
        x, line_height = _MARGIN, 0
        sizes = [_panel_size(panel, panel.side or side) for panel in row.panels]
        column = min(inner, max((pw for pw, _ in sizes), default=0))  # aligned columns
        for i, (_, ph) in enumerate(sizes):
            pw = column
            if x > _MARGIN and x - _MARGIN + pw > inner:
                x, y = _MARGIN, y + line_height + _GAP
                line_height = 0
            placements.append((r, i, x, y))
            x += pw + 2 * _GAP
            width_used = max(width_used, x - 2 * _GAP + _MARGIN)
            line_height = max(line_height, ph)
        y += line_height + _ROW_GAP
    title_width = max((_text_width(line, _TITLE) for line in title), default=0) + 2 * _MARGIN
    label_width = max((_text_width(row.label, _TEXT) for row in rows), default=0) + 2 * _MARGIN
    del width_used, title_width, label_width  # the sheet is exactly `width` wide (a slide, or --sheet-width)
    canvas = Image.new("RGB", (width, y - _ROW_GAP + _MARGIN), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for n, line in enumerate(title):
        size = _TITLE if n == 0 else _TEXT
        draw.text(
            (_MARGIN, _MARGIN + n * (_TITLE + 6)), _plain(line), fill=_INK if n == 0 else _FAINT, font=_font(size)
        )
    for r, row in enumerate(rows):
        draw.text((_MARGIN, label_at[r]), _plain(row.label), fill=_FAINT, font=_font(_TEXT))
    boxes = []
    for r, i, x, y in placements:
        panel = rows[r].panels[i]
        ww, _ = _weights_size(panel.weights)
        if panel.weights is not None:
            _draw_weights(canvas, draw, panel.weights, x, y)
        mx = x + (ww + _GAP if ww else 0)
        fitted, scale = _fit(panel.values, panel.side or side)
        picture = _colour(fitted, panel.shown, panel.colormap)
        canvas.paste(Image.fromarray(np.ascontiguousarray(picture)), (mx, y))
        ph, pw = picture.shape[:2]
        draw.rectangle((mx - 1, y - 1, mx + pw, y + ph), outline=_FRAME)
        boxes.append(Box(r, i, mx, y, pw, ph, scale))
        ty = y + ph + 6
        if panel.colour_bar:
            _draw_bar(canvas, draw, panel, mx, ty, max(pw, 150))
            ty += _BAR_HEIGHT + _SMALL + 6
        for n, line in enumerate(panel.caption):
            draw.text((mx, ty + n * (_TEXT + 3)), _plain(line), fill=_INK if n == 0 else _FAINT, font=_font(_TEXT))
    return Sheet(np.asarray(canvas), tuple(boxes))
