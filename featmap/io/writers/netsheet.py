"""A network run's contact sheet, laid out for a slide: the input, one row per layer, the prediction.

Every row has a label column (the layer's name, kind and shape, its ONE colormap and range, a colour bar)
and a grid of channel thumbnails whose columns line up from row to row. A flat layer (flatten, dense,
1×1×C) is a bar chart of its values with their indices (or the model's labels) under it, on the layer's
colour scale, from a zero line. A big layer shows its ``K`` channels of highest mean activation, strongest
first, and the sheet says so. The last row is the prediction: the softmax formula and the top classes as
labelled bars with their probabilities.

The sheet is `SHEET_WIDTH` pixels wide by default (a 1920×1080 slide); text is Pillow's bundled font
(``ImageFont.load_default(size=…)``) at `CAPTION_PX` and more. The numeric half (which channels, which
scale) is done when a layer is added; drawing happens once, in `draw_network_sheet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import SpecError
from featmap.frozen import frozen_dataclass
from featmap.io.display import DisplayRange, LayerScale
from featmap.io.writers.sheet import _colour, _fit, _font, _plain, shrink

__all__ = [
    "CAPTION_PX",
    "MAX_SHEET_PIXELS",
    "MAX_SHEET_WIDTH",
    "MIN_SHEET_WIDTH",
    "SHEET_WIDTH",
    "LayerPicture",
    "Prediction",
    "draw_network_sheet",
    "grid_columns",
    "pick_channels",
    "sheet_height",
]

#: Default width: a 1920×1080 slide.
SHEET_WIDTH = 1920
MIN_SHEET_WIDTH, MAX_SHEET_WIDTH = 640, 8000
#: The most pixels a sheet may have (checked from the plan, before any work).
MAX_SHEET_PIXELS = 40_000_000
#: Caption text size in pixels (the bundled font's size: capitals are 14 px tall); labels and titles larger.
CAPTION_PX, LABEL_PX, TITLE_PX = 20, 24, 30
_MARGIN, _GAP = 24, 12
_LABEL_COLUMN = 330
_MAX_THUMB, _MIN_CELL = 256, 112
_BAR_CHART = 150
_BAR_HEIGHT = 14
_LABEL_PX_LINES = 4  # shape, colormap and method, "top K by mean"
_BACKGROUND, _INK, _FAINT, _FRAME = (255, 255, 255), (20, 20, 20), (95, 95, 95), (190, 190, 190)
_PROB = (49, 104, 142)


@frozen_dataclass
class LayerPicture:
    """One layer as the sheet draws it: label lines, its scale, and either channel thumbnails or a flat vector."""

    title: str
    shape: tuple[int, ...]
    scale: LayerScale
    thumbs: tuple[NDArray[np.float32], ...] = ()
    indices: tuple[int, ...] = ()
    means: tuple[float, ...] = ()
    total: int = 0
    selected: bool = False
    flat: NDArray[np.float32] | None = None
    labels: tuple[str, ...] = ()


@frozen_dataclass
class Prediction:
    """The top classes ``(index, label, probability)`` and how the probabilities were made."""

    top: tuple[tuple[int, str, float], ...]
    layer: str
    classes: int
    softmax: bool = True


def pick_channels(planes: NDArray[np.floating], k: int | None) -> tuple[tuple[int, ...], NDArray[np.float64]]:
    """The channels of ``(H, W, C)`` to draw: all (in order) when ``k`` is None or ≥ C, else the ``k`` of
    highest mean activation, strongest first (ties: lower index first); and every channel's mean.

    Examples
    --------
    >>> x = np.zeros((2, 2, 4)); x[..., 1] = 3; x[..., 3] = 1; x[0, 0, 2] = 8
    >>> pick_channels(x, 2)[0]
    (1, 2)
    """
    means = planes.reshape(-1, planes.shape[2]).mean(axis=0, dtype=np.float64)
    if k is None or k >= planes.shape[2]:
        return tuple(range(planes.shape[2])), means
    order = np.argsort(-means, kind="stable")[:k]
    return tuple(int(i) for i in order), means


def grid_columns(most: int, width: int) -> tuple[int, int]:
    """``(columns, cell)`` of the thumbnail grid: as many columns as fit at `_MIN_CELL` px, balanced so the
    widest layer's lines are equally full (16 channels in 2 lines of 8, not 14 + 2), cells at most 256 px."""
    room = width - 2 * _MARGIN - _LABEL_COLUMN
    fit = max(1, room // _MIN_CELL)
    lines = -(-max(1, most) // fit)
    columns = -(-max(1, most) // lines)
    return columns, min(_MAX_THUMB + _GAP, room // columns)


def _row_height(channels: int, columns: int, cell: int, flat: bool) -> int:
    label = _LABEL_PX_LINES * (CAPTION_PX + 6) + _BAR_HEIGHT + CAPTION_PX + 16
    if flat:
        return max(label, _BAR_CHART + 2 * CAPTION_PX + 16)
    lines = -(-channels // columns)
    return max(label, lines * (cell + CAPTION_PX + 8))


def sheet_height(rows: Sequence[tuple[int, bool]], width: int, prediction: bool, title_lines: int = 3) -> int:
    """The height of a sheet of ``rows`` ``(channels drawn, flat)`` at ``width`` (input row included)."""
    columns, cell = grid_columns(max((c for c, flat in rows if not flat), default=1), width)
    height = _MARGIN + TITLE_PX + 8 + (title_lines - 1) * (CAPTION_PX + 6) + 12
    height += _row_height(1, columns, min(cell * 2, _MAX_THUMB + _GAP), False) + _GAP
    height += sum(_row_height(c, columns, cell, flat) + _GAP for c, flat in rows)
    if prediction:
        height += 2 * (CAPTION_PX + 8) + 5 * (CAPTION_PX + 10) + _GAP
    return height + _MARGIN


def check_sheet_size(rows: Sequence[tuple[int, bool]], width: int) -> None:
    """`SpecError` when a sheet of ``rows`` would exceed `MAX_SHEET_PIXELS` (said before any work)."""
    height = sheet_height(rows, width, True)
    if width * height > MAX_SHEET_PIXELS:
        raise SpecError(
            "`sheet`",
            f"would be {width}×{height} pixels, over the limit of {MAX_SHEET_PIXELS:,}",
            "show fewer channels per layer (--channels K), stop earlier (--upto), or drop --sheet",
        )


def _fill(values: NDArray[np.floating], side: int) -> NDArray[np.float32]:
    """``values`` ``(H, W[, C])`` fitted in a ``side`` square: shrunk by area averaging, enlarged by whole pixels
    when that at least quadruples it, else by nearest neighbour to fill the square (a 112-px map in a 180-px
    cell is drawn 180 px wide, not 112), so a layer's thumbnails are about one size."""
    arr = values if values.ndim == 3 else values[:, :, np.newaxis]
    longest = max(arr.shape[0], arr.shape[1])
    if longest > side or side // longest >= 4:
        return _fit(arr, side)[0][:side, :side]
    h, w = max(1, arr.shape[0] * side // longest), max(1, arr.shape[1] * side // longest)
    rows = np.arange(h) * arr.shape[0] // h
    cols = np.arange(w) * arr.shape[1] // w
    return np.ascontiguousarray(arr[rows][:, cols], dtype=np.float32)


def _text(draw: Any, xy: tuple[int, int], text: str, size: int, fill: tuple[int, int, int], **kw: Any) -> None:
    draw.text(xy, _plain(text), fill=fill, font=_font(size), **kw)


def _clip_text(text: str, size: int, room: int) -> str:
    """``text`` shortened with ``..`` to fit ``room`` pixels."""
    text = _plain(text)
    if _font(size).getlength(text) <= room:
        return text
    while text and _font(size).getlength(text + "..") > room:
        text = text[:-1]
    return text + ".."


def _colour_bar(canvas: Any, draw: Any, shown: DisplayRange, colormap: Any, x: int, y: int, width: int) -> None:
    from PIL import Image

    ramp = np.linspace(shown.low, shown.high, width, dtype=np.float64)
    strip = np.abs(ramp) if shown.absolute else ramp
    colours = _colour(strip.astype(np.float32).reshape(1, width, 1), shown, colormap)
    canvas.paste(Image.fromarray(np.ascontiguousarray(np.repeat(colours, _BAR_HEIGHT, axis=0))), (x, y))
    draw.rectangle((x - 1, y - 1, x + width, y + _BAR_HEIGHT), outline=_FRAME)
    ty = y + _BAR_HEIGHT + 3
    _text(draw, (x, ty), f"{shown.low:.3g}", CAPTION_PX, _FAINT)
    _text(draw, (x + width, ty), f"{shown.high:.3g}", CAPTION_PX, _FAINT, anchor="ra")
    if shown.centred:
        _text(draw, (x + width // 2, ty), "0", CAPTION_PX, _FAINT, anchor="ma")


def _label_column(canvas: Any, draw: Any, layer: LayerPicture, x: int, y: int) -> None:
    room = _LABEL_COLUMN - 16
    shape = "×".join(str(n) for n in layer.shape)
    _text(draw, (x, y), _clip_text(layer.title, LABEL_PX, room), LABEL_PX, _INK)
    lines = [shape + (f", {layer.total} channels" if layer.total > 1 else "")]
    shown = layer.scale.ranges[0]
    lines.append(_clip_text(f"{layer.scale.colormap.name}, {shown.method}", CAPTION_PX, room))
    if layer.selected:
        lines.append(f"top {len(layer.indices)} by mean")
    elif layer.scale.scale == "per-channel" and len(layer.scale.ranges) > 1:
        lines.append("one range per channel")
    for n, line in enumerate(lines):
        _text(draw, (x, y + LABEL_PX + 8 + n * (CAPTION_PX + 6)), line, CAPTION_PX, _FAINT)
    bar_y = y + LABEL_PX + 8 + len(lines) * (CAPTION_PX + 6) + 6
    if layer.scale.scale == "per-layer" or len(layer.scale.ranges) == 1:
        _colour_bar(canvas, draw, shown, layer.scale.colormap, x, bar_y, room - 20)


def _thumbnails(canvas: Any, draw: Any, layer: LayerPicture, x0: int, y: int, columns: int, cell: int) -> None:
    from PIL import Image

    side = cell - _GAP
    for n, (ch, thumb) in enumerate(zip(layer.indices, layer.thumbs, strict=True)):
        x = x0 + (n % columns) * cell
        top = y + (n // columns) * (cell + CAPTION_PX + 8)
        picture = _colour(_fill(thumb, side), layer.scale.range_of(ch), layer.scale.colormap)
        ox = x + (side - picture.shape[1]) // 2
        canvas.paste(Image.fromarray(np.ascontiguousarray(picture)), (ox, top))
        draw.rectangle((ox - 1, top - 1, ox + picture.shape[1], top + picture.shape[0]), outline=_FRAME)
        caption = f"{ch}" + (f"  mean {layer.means[n]:.2g}" if layer.selected else "")
        _text(draw, (x, top + side + 3), _clip_text(caption, CAPTION_PX, side), CAPTION_PX, _FAINT)


def _bar_chart(canvas: Any, draw: Any, layer: LayerPicture, x: int, y: int, width: int) -> None:
    """The flat values as bars from a zero line, coloured on the layer's scale; whole-pixel columns, so a
    vector longer than the width shows each column's lowest and highest value."""
    from PIL import Image

    assert layer.flat is not None
    values = layer.flat.astype(np.float64)
    n = values.size
    step = max(1, min(40, width // n)) if n <= width else 1
    used = n * step if n <= width else width
    if n <= width:
        highs = lows = np.repeat(values, step)
        gaps = np.tile(np.arange(step) == step - 1, n) if step >= 4 else np.zeros(used, bool)
    else:
        edges = np.linspace(0, n, used + 1).astype(np.int64)
        highs = np.maximum.reduceat(values, edges[:-1])
        lows = np.minimum.reduceat(values, edges[:-1])
        gaps = np.zeros(used, bool)
    shown = layer.scale.ranges[0]
    top_value = max(shown.high, float(values.max()), 0.0)
    bottom_value = min(shown.low, float(values.min()), 0.0)
    span = (top_value - bottom_value) or 1.0
    height = _BAR_CHART
    zero = round((top_value - 0.0) / span * (height - 1))
    row = np.arange(height)[:, np.newaxis]
    y_hi = np.round((top_value - np.maximum(highs, 0)) / span * (height - 1))
    y_lo = np.round((top_value - np.minimum(lows, 0)) / span * (height - 1))
    inside = (row >= np.minimum(y_hi, zero)) & (row <= np.maximum(y_lo, zero)) & ~gaps
    colours = _colour(
        np.where(np.abs(highs) >= np.abs(lows), highs, lows).astype(np.float32).reshape(1, -1, 1),
        shown,
        layer.scale.colormap,
    )
    picture = np.where(inside[:, :, np.newaxis], colours, np.uint8(255)).astype(np.uint8)
    picture[zero, :] = (120, 120, 120)
    canvas.paste(Image.fromarray(np.ascontiguousarray(picture)), (x, y))
    draw.rectangle((x - 1, y - 1, x + used, y + height), outline=_FRAME)
    _text(draw, (x + used + 6, y), f"{top_value:.3g}", CAPTION_PX, _FAINT)
    _text(draw, (x + used + 6, y + zero - CAPTION_PX // 2), "0", CAPTION_PX, _FAINT)
    _text(draw, (x + used + 6, y + height - CAPTION_PX), f"{bottom_value:.3g}", CAPTION_PX, _FAINT)
    _index_labels(draw, layer, x, y + height + 4, n, used)


def _index_labels(draw: Any, layer: LayerPicture, x: int, y: int, n: int, used: int) -> None:
    """Each bar's label (the model's class names, else its index) when they fit, else indices at round steps."""
    names = layer.labels if len(layer.labels) == n else tuple(str(i) for i in range(n))
    slot = used / n
    if max(_font(CAPTION_PX).getlength(_plain(s)) for s in names) + 6 <= slot:
        for i, name in enumerate(names):
            _text(draw, (round(x + (i + 0.5) * slot), y), name, CAPTION_PX, _FAINT, anchor="ma")
        return
    widest = _font(CAPTION_PX).getlength(str(n)) + 16
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10**9) if s * slot >= widest)
    for i in range(0, n, step):
        _text(draw, (round(x + (i + 0.5) * slot), y), str(i), CAPTION_PX, _FAINT, anchor="ma")
    what = "index" if len(layer.labels) != n else "class (labels too long to print: index)"
    _text(draw, (x + used, y + CAPTION_PX + 4), what, CAPTION_PX, _FAINT, anchor="ra")


def _prediction(draw: Any, prediction: Prediction, x: int, y: int, width: int) -> int:
    how = (
        f"softmax of the {prediction.classes} logits z of {prediction.layer}: p_i = exp(z_i) / sum_j exp(z_j)"
        if prediction.softmax
        else f"{prediction.layer} already gives probabilities (they sum to 1)"
    )
    _text(draw, (x, y), "prediction", LABEL_PX, _INK)
    _text(draw, (x, y + LABEL_PX + 8), how, CAPTION_PX, _FAINT)
    y += LABEL_PX + CAPTION_PX + 24
    names = [_clip_text(label, CAPTION_PX, width // 2 - 16) for _, label, _ in prediction.top]  # bars stay on it
    name_w = int(max(_font(CAPTION_PX).getlength(s) for s in names)) + 16 if names else 0
    bar_w = max(100, min(900, width - name_w - 120))
    for rank, ((_, _, p), label) in enumerate(zip(prediction.top, names, strict=True)):
        top = y + rank * (CAPTION_PX + 10)
        _text(draw, (x + name_w - 12, top), label, CAPTION_PX, _INK if rank == 0 else _FAINT, anchor="ra")
        draw.rectangle((x + name_w, top + 2, x + name_w + bar_w, top + CAPTION_PX), outline=_FRAME)
        if p > 0:
            draw.rectangle((x + name_w, top + 2, x + name_w + max(1, round(bar_w * p)), top + CAPTION_PX), fill=_PROB)
        _text(draw, (x + name_w + bar_w + 10, top), f"{p:.3f}", CAPTION_PX, _INK if rank == 0 else _FAINT)
    return y + len(prediction.top) * (CAPTION_PX + 10)


def draw_network_sheet(
    title: Sequence[str],
    input_picture: NDArray[np.floating],
    input_caption: Sequence[str],
    layers: Sequence[LayerPicture],
    prediction: Prediction | None = None,
    *,
    width: int = SHEET_WIDTH,
) -> NDArray[np.uint8]:
    """The sheet's uint8 RGB pixels, exactly ``width`` wide."""
    from PIL import Image, ImageDraw

    rows = [(len(layer.indices), layer.flat is not None) for layer in layers]
    columns, cell = grid_columns(max((c for c, flat in rows if not flat), default=1), width)
    height = sheet_height(rows, width, prediction is not None, len(title))
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    room = width - 2 * _MARGIN
    _text(draw, (_MARGIN, _MARGIN), _clip_text(title[0], TITLE_PX, room), TITLE_PX, _INK)
    y = _MARGIN + TITLE_PX + 8
    for line in title[1:]:
        _text(draw, (_MARGIN, y), _clip_text(line, CAPTION_PX, room), CAPTION_PX, _FAINT)
        y += CAPTION_PX + 6
    y += 12
    grid_x = _MARGIN + _LABEL_COLUMN
    # the input, as the network saw it, in up to two cells
    _text(draw, (_MARGIN, y), "input", LABEL_PX, _INK)
    for n, line in enumerate(input_caption):
        _text(
            draw,
            (_MARGIN, y + LABEL_PX + 8 + n * (CAPTION_PX + 6)),
            _clip_text(line, CAPTION_PX, _LABEL_COLUMN - 16),
            CAPTION_PX,
            _FAINT,
        )
    side = min(cell * 2, _MAX_THUMB + _GAP) - _GAP
    picture = _colour(_fill(shrink(input_picture, 2 * side), side), DisplayRange(0.0, 1.0, "input"), None)
    canvas.paste(Image.fromarray(np.ascontiguousarray(picture)), (grid_x, y))
    draw.rectangle((grid_x - 1, y - 1, grid_x + picture.shape[1], y + picture.shape[0]), outline=_FRAME)
    y += _row_height(1, columns, side + _GAP, False) + _GAP
    for layer, (count, flat) in zip(layers, rows, strict=True):
        draw.line((_MARGIN, y - _GAP // 2, width - _MARGIN, y - _GAP // 2), fill=(228, 228, 228))
        _label_column(canvas, draw, layer, _MARGIN, y)
        if flat:
            _bar_chart(canvas, draw, layer, grid_x, y + 4, room - _LABEL_COLUMN - 90)
        else:
            _thumbnails(canvas, draw, layer, grid_x, y, columns, cell)
        y += _row_height(count, columns, cell, flat) + _GAP
    if prediction is not None:
        draw.line((_MARGIN, y - _GAP // 2, width - _MARGIN, y - _GAP // 2), fill=(228, 228, 228))
        _prediction(draw, prediction, _MARGIN, y, room)
    return np.asarray(canvas)
