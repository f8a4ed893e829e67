"""An animated GIF of an explanation (`featmap explain --gif`): the window slides over the (padded) input,
the output fills in.

It writes a `featmap.explain.Explanation`, not the batch's feature maps, so it is not a `Writer` in the
registry; it lives here with the other writers that draw with Pillow and write atomically.

One frame per output position of each stage (a convolution, then its pooling when there is one),
a first frame with the empty output and a last frame, held longer, with the whole output. Each stage
is a row: a header, the input (each channel; padding grey, rows a stride leaves unused pink), the
kernel, the output, and a caption with the arithmetic of the current position. Text is drawn with
Pillow's bundled font (`PIL.ImageFont.load_default`) without anti-aliasing, so every frame holds a
handful of exact colours. The file is written atomically (`featmap.io.images.atomic_write`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from featmap.errors import ShapeError
from featmap.explain import ConvTrace, Explanation, PoolTrace, format_number, terms_text
from featmap.frozen import frozen_dataclass
from featmap.io.images import atomic_write

__all__ = [
    "COLORS",
    "MAX_FRAMES",
    "MAX_PIXELS_SIDE",
    "MAX_SCALE",
    "GifLayout",
    "frame_colors",
    "gif_frames",
    "gif_layout",
    "write_gif",
]

#: Most frames a GIF gets (one per output position, plus two): beyond that an animation teaches nothing.
MAX_FRAMES = 400
#: Widest or tallest picture drawn, in pixels.
MAX_PIXELS_SIDE = 4000

COLORS = {
    "background": (255, 255, 255),
    "grid": (150, 150, 150),
    "text": (20, 20, 20),
    "padding": (225, 225, 225),
    "padding_text": (120, 120, 120),
    "window": (255, 214, 90),
    "window_edge": (214, 110, 0),
    "done": (190, 222, 255),
    "current": (255, 160, 70),
    "winner": (220, 40, 40),
    "unused": (245, 205, 205),
}
#: Palette index of each colour: frames are drawn in palette mode with exactly these colours (no conversion).
_INK = {name: index for index, name in enumerate(COLORS)}
#: Text size in pixels (capitals 13 px tall; the old 14 gave 10-11 px); ``scale`` enlarges whole frames.
_FONT_SIZE = 18
_GAP = 28
_MARGIN = 16
_LINE = 28
#: The largest ``scale`` (whole-pixel enlargement) a GIF takes.
MAX_SCALE = 4

Box = tuple[int, int, int, int]
Stage = ConvTrace | PoolTrace


@frozen_dataclass
class _Panel:
    """One labelled matrix: ``(x, y)`` is the top-left corner of its first cell."""

    label: str
    x: int
    y: int
    rows: int
    cols: int
    cell: int

    def box(self, r: int, c: int) -> Box:
        x0, y0 = self.x + c * self.cell, self.y + r * self.cell
        return (x0, y0, x0 + self.cell, y0 + self.cell)

    @property
    def right(self) -> int:
        return self.x + self.cols * self.cell

    @property
    def bottom(self) -> int:
        return self.y + self.rows * self.cell


@frozen_dataclass
class _Row:
    """Where one stage sits: header, input channels, kernel slices (a conv), output, caption."""

    stage: Stage
    header: tuple[int, int]
    inputs: tuple[_Panel, ...]
    kernels: tuple[_Panel, ...]
    output: _Panel
    caption: tuple[int, int]


@frozen_dataclass
class GifLayout:
    """The picture's rows (one per stage), its ``(width, height)`` and cell size in pixels."""

    rows: tuple[_Row, ...]
    size: tuple[int, int]
    cell: int

    def output_box(self, stage: int, r: int, c: int) -> Box:
        """Pixel box ``(x0, y0, x1, y1)`` of output cell ``(r, c)`` of stage ``stage``."""
        return self.rows[stage].output.box(r, c)


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font (loaded once: a load per cell made a GIF take seconds)."""
    return ImageFont.load_default(size=_FONT_SIZE)


def _width(text: str) -> int:
    left, _, right, _ = _font().getbbox(text)
    return int(right - left)


def _stages(e: Explanation) -> tuple[Stage, ...]:
    return tuple(s for s in (e.conv, e.pool) if s is not None)


def _values(stage: Stage) -> Iterator[float]:
    yield from (float(v) for v in stage.padded.ravel())
    yield from (float(v) for v in stage.output.ravel())
    if isinstance(stage, ConvTrace):
        yield from (float(v) for v in stage.applied.ravel())


def _header(stage: Stage, after_conv: bool) -> str:
    g = stage.geometry
    kh, kw = g.kernel_hw
    stride = "x".join(map(str, g.stride)) if g.stride[0] != g.stride[1] else str(g.stride[0])
    pads = ",".join(map(str, g.padding)) if len(set(g.padding)) > 1 else str(g.padding[0])
    if isinstance(stage, ConvTrace):
        kind = "convolution (kernel turned 180°)" if stage.flip else "cross-correlation"
        extra = f", bias {format_number(stage.bias)}" if stage.bias else ""
        extra += f", {stage.activation.value}" if stage.activation.value != "none" else ""
        return f"{kind} {kh}x{kw}, stride {stride}, padding {pads}{extra}"
    what = "feature map" if after_conv else "input"
    return f"{stage.kind.value} pooling {kh}x{kw} of the {what}, stride {stride}, padding {pads}"


def _caption(stage: Stage, r: int, c: int) -> str:
    """The arithmetic of output ``(r, c)`` in one line."""
    if isinstance(stage, ConvTrace):
        step = stage.step(r, c)
        if len(step.channel_sums) == 1:
            text = f"({r}, {c}): sum {terms_text(step.products.ravel(), 12)} = {format_number(step.total)}"
        else:  # name each number: a channel's sum, then the bias
            sums = " + ".join(f"{format_number(v)} (ch {ch})" for ch, v in enumerate(step.channel_sums))
            text = f"({r}, {c}): channel sums {sums.replace('+ -', '- ')} = {format_number(step.total)}"
        if step.bias:
            text += f"; + bias {format_number(step.bias)} = {format_number(step.pre_activation)}"
        if stage.activation.value != "none":
            text += f"; {stage.activation.value} -> {format_number(step.value)}"
        return text
    p = stage.step(r, c)
    real = ", ".join(format_number(float(v)) for v in p.window[p.real])
    if stage.kind.value == "avg":
        return f"({r}, {c}): ({terms_text(p.window[p.real], 12)}) / {p.count} = {format_number(p.value)}"
    return f"({r}, {c}): {stage.kind.value}({real}) = {format_number(p.value)}"


def gif_layout(e: Explanation) -> GifLayout:
    """Place every panel; refuse an animation over `MAX_FRAMES` frames or `MAX_PIXELS_SIDE` pixels."""
    stages = _stages(e)
    frames = sum(len(s.positions) for s in stages) + 2
    if frames > MAX_FRAMES:
        raise ShapeError(
            "gif",
            f"would need {frames} frames (one per output position), over the limit of {MAX_FRAMES}",
            "animate a smaller input, or use a larger stride",
        )
    cell = max(26, max(_width(format_number(v)) for s in stages for v in _values(s)) + 12)
    rows, y, width = [], _MARGIN, 0
    for index, stage in enumerate(stages):
        header = (_MARGIN, y)
        top = y + 2 * _LINE
        x = _MARGIN
        hp, wp, channels = stage.padded.shape
        inputs = []
        for ch in range(channels):
            name = "feature map" if index and isinstance(stage, PoolTrace) else "input"
            label = name if channels == 1 else f"{name} ch {ch}"
            inputs.append(_Panel(label, x, top, hp, wp, cell))
            x += max(wp * cell, _width(label)) + _GAP  # a label never runs into the next panel
        kernels = []
        if isinstance(stage, ConvTrace):
            x += _GAP
            _, kh, kw = stage.applied.shape
            for ch in range(channels):
                name = "kernel" if channels == 1 else f"kernel ch {ch}"
                kernels.append(_Panel(name, x, top, kh, kw, cell))
                x += max(kw * cell, _width(name)) + _GAP
        label = "pooled" if isinstance(stage, PoolTrace) else "output"
        output = _Panel(label, x + _GAP, top, int(stage.output.shape[0]), int(stage.output.shape[1]), cell)
        bottom = max(p.bottom for p in (*inputs, *kernels, output))
        caption = (_MARGIN, bottom + 8)
        longest = max(_width(_caption(stage, r, c)) for r, c in stage.positions)
        labels = max(p.x + _width(p.label) for p in (*inputs, *kernels, output))
        header_width = _MARGIN + _width(_header(stage, index > 0)) + _MARGIN
        width = max(width, output.right + _MARGIN, labels + _MARGIN, _MARGIN + longest + _MARGIN, header_width)
        rows.append(_Row(stage, header, tuple(inputs), tuple(kernels), output, caption))
        y = caption[1] + _LINE + _GAP
    height = y + _MARGIN - _GAP
    if max(width, height) > MAX_PIXELS_SIDE:
        raise ShapeError(
            "gif",
            f"the picture would be {width}×{height} pixels, over the limit of {MAX_PIXELS_SIDE}",
            "animate a smaller input",
        )
    return GifLayout(tuple(rows), (width, height), cell)


def _draw(image: Image.Image) -> ImageDraw.ImageDraw:
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # no anti-aliasing: a few exact colours per frame
    return draw


def _cell(draw: ImageDraw.ImageDraw, box: Box, text: str, fill: str, text_fill: str = "text") -> None:
    draw.rectangle(box, fill=_INK[fill], outline=_INK["grid"])
    font = _font()
    left, top, right, bottom = font.getbbox(text)
    x = (box[0] + box[2] - (right - left)) / 2 - left
    y = (box[1] + box[3] - (bottom - top)) / 2 - top
    draw.text((x, y), text, fill=_INK[text_fill], font=font)


def _label(draw: ImageDraw.ImageDraw, panel: _Panel) -> None:
    draw.text((panel.x, panel.y - _LINE), panel.label, fill=_INK["text"], font=_font())


def _base(layout: GifLayout) -> Image.Image:
    """The picture with every input and kernel cell and the output still empty."""
    image = Image.new("P", layout.size, _INK["background"])
    image.putpalette([channel for color in COLORS.values() for channel in color])
    draw = _draw(image)
    for index, row in enumerate(layout.rows):
        stage = row.stage
        draw.text(row.header, _header(stage, index > 0), fill=_INK["text"], font=_font())
        reach_r = stage.padded.shape[0] - stage.geometry.dropped_hw[0]
        reach_c = stage.padded.shape[1] - stage.geometry.dropped_hw[1]
        for ch, panel in enumerate(row.inputs):
            _label(draw, panel)
            for r in range(panel.rows):
                for c in range(panel.cols):
                    padding = bool(stage.pad_mask[r, c])
                    fill = "unused" if r >= reach_r or c >= reach_c else "padding" if padding else "background"
                    text = format_number(float(stage.padded[r, c, ch]))
                    _cell(draw, panel.box(r, c), text, fill, "padding_text" if padding else "text")
        if isinstance(stage, ConvTrace):
            for ch, panel in enumerate(row.kernels):
                _label(draw, panel)
                for r in range(panel.rows):
                    for c in range(panel.cols):
                        _cell(draw, panel.box(r, c), format_number(float(stage.applied[ch, r, c])), "background")
        _label(draw, row.output)
        for r in range(row.output.rows):
            for c in range(row.output.cols):
                draw.rectangle(row.output.box(r, c), fill=_INK["background"], outline=_INK["grid"])
    return image


def _outline(draw: ImageDraw.ImageDraw, boxes: list[Box], color: str) -> None:
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    draw.rectangle((x0, y0, x1, y1), outline=_INK[color], width=3)


def gif_frames(e: Explanation) -> list[Image.Image]:
    """Every frame, palette images of `COLORS`: the empty output, one per output position, the full output."""
    layout = gif_layout(e)
    progress = _base(layout)
    frames = [progress.copy()]
    for row in layout.rows:
        stage = row.stage
        for r, c in stage.positions:
            value = format_number(float(stage.output[r, c]))
            rows, cols = stage.cells(r, c)
            frame = progress.copy()
            draw = _draw(frame)
            winner = stage.step(r, c).winner if isinstance(stage, PoolTrace) else None
            for ch, panel in enumerate(row.inputs):
                for i in rows:
                    for j in cols:
                        text = format_number(float(stage.padded[i, j, ch]))
                        _cell(draw, panel.box(i, j), text, "window", "padding_text" if stage.pad_mask[i, j] else "text")
                _outline(draw, [panel.box(i, j) for i in rows for j in cols], "window_edge")
                if winner is not None:
                    draw.rectangle(panel.box(*winner), outline=_INK["winner"], width=3)
            _cell(draw, row.output.box(r, c), value, "current")
            draw.text(row.caption, _caption(stage, r, c), fill=_INK["text"], font=_font())
            frames.append(frame)
            _cell(_draw(progress), row.output.box(r, c), value, "done")
    frames.append(progress)
    return frames


def write_gif(
    path: str | os.PathLike[str], e: Explanation, *, frame_ms: int = 700, hold_ms: int = 2500, scale: int = 1
) -> tuple[Path, int]:
    """Write the animation to ``path`` atomically, each frame enlarged ``scale`` times by whole pixels (1 to
    `MAX_SCALE`: text and cells stay sharp on a projector); returns the path and the number of frames."""
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
        raise ShapeError("gif", f"scale {scale!r} is not a whole number from 1 to {MAX_SCALE}", "e.g. 2")
    frames = gif_frames(e)
    if scale > 1:
        width, height = frames[0].size
        if max(width, height) * scale > MAX_PIXELS_SIDE:
            raise ShapeError(
                "gif",
                f"scale {scale} makes the picture {width * scale}×{height * scale} pixels, over {MAX_PIXELS_SIDE}",
                "use a smaller scale",
            )
        frames = [f.resize((width * scale, height * scale), Image.Resampling.NEAREST) for f in frames]
    durations = [hold_ms // 2] + [frame_ms] * (len(frames) - 2) + [hold_ms]
    target = atomic_write(
        path,
        lambda fh: frames[0].save(
            fh, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0
        ),
    )
    return target, len(frames)


def frame_colors(path: str | os.PathLike[str], index: int) -> np.ndarray:
    """The RGB pixels ``(height, width, 3)`` of frame ``index`` of a GIF (for checks and tests)."""
    with Image.open(path) as im:
        im.seek(index)
        return np.asarray(im.convert("RGB"))
