"""Fitting an image to a network's input (`featmap.net.preprocess`): the shorter side resized then a centre crop
(torchvision's ``Resize(int)`` + ``CenterCrop``), a stretch, or a fit padded with black; Pillow's bilinear filter on
float32 planes, antialiased when shrinking."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

__all__ = ["WHOLE_RESIZE_PIXELS", "fit_image", "resample"]


def resample(
    pixels: NDArray[np.float32], size_hw: tuple[int, int], box: tuple[float, float, float, float] | None = None
) -> NDArray[np.float32]:
    """``(H, W, C)`` float32 resized to ``size_hw`` with Pillow's bilinear filter on float planes (mode ``F``),
    antialiased when shrinking: torchvision's ``Resize`` on a PIL image, without its rounding to 8 bits. ``box``
    (left, top, right, bottom in source pixels) resizes that region alone, its filter reading the pixels around it."""
    from PIL import Image

    h, w = size_hw
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(pixels[:, :, c]), mode="F").resize(
                (w, h), Image.Resampling.BILINEAR, box=box
            )
        )
        for c in range(pixels.shape[2])
    ]
    return np.stack(planes, axis=2).astype(np.float32)


#: Above this many pixels the crop transform's resized image is not made whole, only its centre crop's region: a
#: photo never gets there (256 on the shorter side would need a side 65,536 long), a strip of a few rows does.
WHOLE_RESIZE_PIXELS = 1 << 24


def fit_image(
    x: NDArray[np.float32],
    size: tuple[int, int],
    mode: str,
    shorter: int | None,
    resize: Callable[..., NDArray[np.float32]] = resample,
) -> tuple[NDArray[np.float32], str]:
    """``x`` (``(H, W, C)`` float32) fitted to ``size`` (H, W) by ``mode`` (``crop``: the shorter side to ``shorter``,
    else to the input's, then the centre crop; ``stretch``; ``pad``), and the note that says how (empty when it is
    already that size)."""
    h, w = x.shape[:2]
    want_h, want_w = size
    if (h, w) == (want_h, want_w) and (mode != "crop" or shorter is None):
        return x, ""
    if mode == "stretch":
        return resize(x, (want_h, want_w)), f"resized {w}×{h} to the network's input {want_w}×{want_h}"
    if mode == "pad":
        scale = min(want_h / h, want_w / w)
        new_h, new_w = max(1, min(want_h, round(h * scale))), max(1, min(want_w, round(w * scale)))
        inner = resize(x, (new_h, new_w)) if (new_h, new_w) != (h, w) else x
        out = np.zeros((want_h, want_w, x.shape[2]), np.float32)
        top, left = (want_h - new_h) // 2, (want_w - new_w) // 2
        out[top : top + new_h, left : left + new_w] = inner
        return out, f"resized {w}×{h} to {new_w}×{new_h} and padded with black to the network's input {want_w}×{want_h}"
    short = shorter if shorter is not None else min(want_h, want_w)
    if h <= w:  # torchvision's Resize(int): the shorter side to `short`, the longer int(short · long / short side)
        new_h, new_w = short, int(short * w / h)
    else:
        new_h, new_w = int(short * h / w), short
    note = f"resized {w}×{h} (shorter side to {short}) and centre-cropped to the network's input {want_w}×{want_h}"
    if new_h * new_w > WHOLE_RESIZE_PIXELS and new_h >= want_h and new_w >= want_w:
        # a strip (5000×3 → 426,666×256: 1.3 GB of floats, 4 GB at its peak): the crop's region alone, at the very
        # scale of the whole resize, its filter reading the pixels around the region as the whole resize does
        top, left = int(round((new_h - want_h) / 2.0)), int(round((new_w - want_w) / 2.0))
        sy, sx = h / new_h, w / new_w
        box = (left * sx, top * sy, (left + want_w) * sx, (top + want_h) * sy)
        return resize(x, (want_h, want_w), box), note
    resized = resize(x, (new_h, new_w)) if (new_h, new_w) != (h, w) else x
    if new_h < want_h or new_w < want_w:  # torchvision pads a too-small crop with zeros; featmap says so
        pad = np.zeros((max(new_h, want_h), max(new_w, want_w), x.shape[2]), np.float32)
        pad[(pad.shape[0] - new_h) // 2 :][:new_h, (pad.shape[1] - new_w) // 2 :][:, :new_w] = resized
        resized, new_h, new_w = pad, pad.shape[0], pad.shape[1]
    top, left = int(round((new_h - want_h) / 2.0)), int(round((new_w - want_w) / 2.0))
    return resized[top : top + want_h, left : left + want_w], note
