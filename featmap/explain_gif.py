"""An animated GIF of an explanation: the window slides over the (padded) input, the output fills in.

One frame per output position of each stage (a convolution, then its pooling when there is one),
a first frame with the empty output and a last frame, held longer, with the whole output. Text is
drawn with Pillow's bundled font (`PIL.ImageFont.load_default`), without anti-aliasing so the frames
keep a handful of exact colours. The file is written atomically (`featmap.images.atomic_write`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import ShapeError
from .explain import ConvTrace, Explanation, PoolTrace, format_number
from .images import atomic_write

__all__ = [
    "COLORS",
    "MAX_FRAMES",
    "MAX_PIXELS_SIDE",
    "GifLayout",
    "frame_colors",
    "gif_frames",
    "gif_layout",
    "write_gif",
]

#: Most frames a GIF gets (one per output position): beyond that an animation teaches nothing.
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
_FONT_SIZE = 14
_GAP = 28
_MARGIN = 16
_TITLE = 24

Box = tuple[int, int, int, int]
Stage = ConvTrace | PoolTrace


@dataclass(frozen=True)
class _Panel:
    """One matrix on the picture: its top-left corner and its cell size."""

    x: int
    y: int
    rows: int
    cols: int
    cell: int

    def box(self, r: int, c: int) -> Box:
        x0, y0 = self.x + c * self.cell, self.y + _TITLE + r * self.cell
        return (x0, y0, x0 + self.cell, y0 + self.cell)

    @property
    def width(self) -> int:
        return self.cols * self.cell

    @property
    def height(self) -> int:
        return _TITLE + self.rows * self.cell


@dataclass(frozen=True)
class GifLayout:
    """Where each stage's input channels and output sit; ``size`` is the picture's ``(width, height)``."""

    stages: tuple[Stage, ...]
    inputs: tuple[tuple[_Panel, ...], ...]
    outputs: tuple[_Panel, ...]
    size: tuple[int, int]
    cell: int

    def output_box(self, stage: int, r: int, c: int) -> Box:
        """Pixel box ``(x0, y0, x1, y1)`` of output cell ``(r, c)`` of stage ``stage``."""
        return self.outputs[stage].box(r, c)


def _stages(e: Explanation) -> tuple[Stage, ...]:
    return tuple(s for s in (e.conv, e.pool) if s is not None)


def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=_FONT_SIZE)


def _values(stage: Stage) -> Iterator[float]:
    yield from (float(v) for v in stage.padded.ravel())
    yield from (float(v) for v in stage.output.ravel())


def gif_layout(e: Explanation) -> GifLayout:
    """Place the panels: per stage, a row of input channels then the output; the stages one under another."""
    stages = _stages(e)
    frames = sum(len(s.positions) for s in stages) + 2
    if frames > MAX_FRAMES:
        raise ShapeError(
            "gif",
            f"would need {frames} frames (one per output position), over the limit of {MAX_FRAMES}",
            "animate a smaller input, or a larger stride",
        )
    font = _font()
    widest = max(font.getbbox(format_number(v))[2] for s in stages for v in _values(s))
    cell = max(26, int(widest) + 12)
    inputs, outputs = [], []
    y, width = _MARGIN, 0
    for stage in stages:
        x = _MARGIN
        row = []
        hp, wp = stage.padded.shape[:2]
        for _ in range(stage.padded.shape[2]):
            row.append(_Panel(x, y, hp, wp, cell))
            x += wp * cell + _GAP
        out = _Panel(x + _GAP, y, int(stage.output.shape[0]), int(stage.output.shape[1]), cell)
        inputs.append(tuple(row))
        outputs.append(out)
        width = max(width, out.x + out.width + _MARGIN)
        y += max(out.height, row[0].height) + _GAP + _TITLE
    height = y + _MARGIN
    if max(width, height) > MAX_PIXELS_SIDE:
        raise ShapeError(
            "gif",
            f"the picture would be {width}×{height} pixels, over the limit of {MAX_PIXELS_SIDE}",
            "animate a smaller input",
        )
    return GifLayout(stages, tuple(inputs), tuple(outputs), (width, height), cell)


def _cell(draw: ImageDraw.ImageDraw, box: Box, text: str, fill: str, text_fill: str = "text") -> None:
    draw.rectangle(box, fill=COLORS[fill], outline=COLORS["grid"])
    font = _font()
    left, top, right, bottom = font.getbbox(text)
    x = (box[0] + box[2] - (right - left)) / 2 - left
    y = (box[1] + box[3] - (bottom - top)) / 2 - top
    draw.text((x, y), text, fill=COLORS[text_fill], font=font)


def _title(stage: Stage, index: int) -> tuple[str, str]:
    if isinstance(stage, ConvTrace):
        kh, kw = stage.geometry.kernel_hw
        kind = "convolution" if stage.flip else "cross-correlation"
        return f"input (padded) · {kh}×{kw} {kind}, stride {stage.geometry.stride[0]}", "feature map"
    kh, kw = stage.geometry.kernel_hw
    return f"{'feature map' if index else 'input'} · {stage.kind.value} pool {kh}×{kw}", "pooled"


def _base(layout: GifLayout) -> Image.Image:
    """The picture with every input cell and empty output cells."""
    image = Image.new("RGB", layout.size, COLORS["background"])
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"
    font = _font()
    for index, stage in enumerate(layout.stages):
        in_title, out_title = _title(stage, index)
        unused_r = stage.padded.shape[0] - stage.geometry.dropped_hw[0]
        unused_c = stage.padded.shape[1] - stage.geometry.dropped_hw[1]
        for ch, panel in enumerate(layout.inputs[index]):
            label = in_title if ch == 0 else f"channel {ch}"
            draw.text((panel.x, panel.y + 2), label, fill=COLORS["text"], font=font)
            for r in range(panel.rows):
                for c in range(panel.cols):
                    padding = bool(stage.pad_mask[r, c])
                    fill = "unused" if r >= unused_r or c >= unused_c else "padding" if padding else "background"
                    text = format_number(float(stage.padded[r, c, ch]))
                    _cell(draw, panel.box(r, c), text, fill, "padding_text" if padding else "text")
        out = layout.outputs[index]
        draw.text((out.x, out.y + 2), out_title, fill=COLORS["text"], font=font)
        for r in range(out.rows):
            for c in range(out.cols):
                draw.rectangle(out.box(r, c), fill=COLORS["background"], outline=COLORS["grid"])
    return image


def _outline(draw: ImageDraw.ImageDraw, boxes: list[Box], color: str) -> None:
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[2] for b in boxes)
    y1 = max(b[3] for b in boxes)
    draw.rectangle((x0, y0, x1, y1), outline=COLORS[color], width=3)


def gif_frames(e: Explanation) -> list[Image.Image]:
    """Every frame, RGB: empty output, one frame per output position of each stage, the full output."""
    layout = gif_layout(e)
    progress = _base(layout)
    frames = [progress.copy()]
    for index, stage in enumerate(layout.stages):
        out = layout.outputs[index]
        for r, c in stage.positions:
            value = format_number(float(stage.output[r, c]))
            rows, cols = stage.cells(r, c)
            frame = progress.copy()
            draw = ImageDraw.Draw(frame)
            draw.fontmode = "1"
            winner = stage.step(r, c).winner if isinstance(stage, PoolTrace) else None
            for ch, panel in enumerate(layout.inputs[index]):
                boxes = []
                for i in rows:
                    for j in cols:
                        text = format_number(float(stage.padded[i, j, ch]))
                        pad = "padding_text" if stage.pad_mask[i, j] else "text"
                        _cell(draw, panel.box(i, j), text, "window", pad)
                        boxes.append(panel.box(i, j))
                _outline(draw, boxes, "window_edge")
                if winner is not None:
                    draw.rectangle(panel.box(*winner), outline=COLORS["winner"], width=3)
            _cell(draw, out.box(r, c), value, "current")
            frames.append(frame)
            _cell(ImageDraw.Draw(progress), out.box(r, c), value, "done")
    frames.append(progress)
    return frames


def write_gif(
    path: str | os.PathLike[str], e: Explanation, *, frame_ms: int = 700, hold_ms: int = 2500
) -> tuple[Path, int]:
    """Write the animation to ``path`` atomically; returns the path and the number of frames."""
    frames = gif_frames(e)
    durations = [hold_ms // 2] + [frame_ms] * (len(frames) - 2) + [hold_ms]
    palette = [f.convert("P", palette=Image.Palette.ADAPTIVE, colors=64) for f in frames]
    target = atomic_write(
        path,
        lambda fh: palette[0].save(
            fh, format="GIF", save_all=True, append_images=palette[1:], duration=durations, loop=0, optimize=False
        ),
    )
    return target, len(frames)


def frame_colors(path: str | os.PathLike[str], index: int) -> np.ndarray:
    """The RGB pixels of frame ``index`` of a GIF (for checks and tests)."""
    with Image.open(path) as im:
        im.seek(index)
        return np.asarray(im.convert("RGB"))
