"""Make the synthetic sample images in this folder (run from anywhere: ``python samples/make_samples.py``).

Each image shows something a kernel reveals: straight edges at several angles (shapes), fine strokes
(text), smooth ramps with no edges (gradient), and a periodic pattern that strides and pooling alias
(checkerboard).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
SIZE = 256


def shapes() -> Image.Image:
    """Coloured filled shapes on a mid-gray ground: edges at 0, 45 and 90 degrees and curves."""
    im = Image.new("RGB", (SIZE, SIZE), (128, 128, 128))
    draw = ImageDraw.Draw(im)
    draw.rectangle((24, 24, 104, 104), fill=(230, 60, 50))
    draw.ellipse((140, 28, 228, 116), fill=(40, 170, 80))
    draw.polygon([(64, 140), (120, 232), (8, 232)], fill=(50, 90, 220))
    draw.polygon([(188, 136), (236, 184), (188, 232), (140, 184)], fill=(250, 220, 40))
    return im


def text() -> Image.Image:
    """Black text on white: thin strokes and corners."""
    im = Image.new("L", (SIZE, SIZE), 255)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=28)
    for row, line in enumerate(("featmap", "Conv2d 3x3", "stride 2", "ReLU + pool")):
        draw.text((16, 20 + row * 56), line, fill=0, font=font)
    return im


def gradient() -> Image.Image:
    """A 16-bit horizontal ramp times a vertical cosine: smooth, no edges."""
    x = np.linspace(0.0, 1.0, SIZE)
    y = 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, SIZE))
    ramp = np.outer(0.25 + 0.75 * y, x)
    return Image.fromarray(np.rint(ramp * 65535).astype(np.uint16))


def checkerboard() -> Image.Image:
    """8-pixel black and white squares: a pattern that stride 8 or 16 aliases to a flat field."""
    rows, cols = np.indices((SIZE, SIZE)) // 8
    return Image.fromarray(((rows + cols) % 2 * 255).astype(np.uint8))


def main() -> None:
    for name, make in (
        ("shapes", shapes),
        ("text", text),
        ("gradient", gradient),
        ("checkerboard", checkerboard),
    ):
        path = HERE / f"{name}.png"
        make().save(path, optimize=True)
        print(path)


if __name__ == "__main__":
    main()
