"""A decoded image's samples as a run takes them: 8-bit gray, and 8-bit RGB kept as colour, as their samples
(`featmap.core.samples.ScaledSamples`, which the fused band path converts a band of rows at a time); anything else
in float32 ``(H, W, 1 or 3)`` in [0, 1], alpha composited onto a background, RGB turned to BT.601 luma for gray.

Whole copies are avoided where an image is large: a Pillow image's samples are copied out, or converted to float, a
band of rows at a time (`pillow_samples`, `pillow_to_float`). `featmap.io.images.load_image` is the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from featmap.core.cvfilter import mix_channels
from featmap.core.ops import row_bands
from featmap.core.samples import ScaledSamples

__all__ = ["LUMA_BT601", "decoded", "pillow_samples", "pillow_to_float", "run_data"]

#: ITU-R BT.601 luma weights for R, G, B.
LUMA_BT601 = (0.299, 0.587, 0.114)


def run_data(im: Image.Image, background: Sequence[float], gray: bool) -> NDArray[np.float32] | ScaledSamples:
    """Decode any Pillow mode to float32 (H, W, 1 or 3) in [0, 1], alpha composited onto ``background``,
    RGB turned to luma if ``gray``; 8-bit gray as its samples (`decoded`)."""
    mode = im.mode
    if mode == "1":
        im, mode = im.convert("L"), "L"
    elif mode == "P" or mode == "PA":
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        mode = im.mode
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im, mode = im.convert("RGB"), "RGB"
    elif mode == "La":
        im, mode = im.convert("LA"), "LA"
    elif mode == "RGBa":
        im, mode = im.convert("RGBA"), "RGBA"
    if mode == "L" or (mode == "RGB" and not gray):  # 8-bit gray, and 8-bit RGB kept as colour, as their samples
        return decoded(pillow_samples(im), mode, background, gray)
    return pillow_to_float(im, mode, background, gray)


#: Images of more samples than this are copied out of Pillow a band of rows at a time (`pillow_samples`).
_WHOLE_COPY_UP_TO = 1 << 22


def pillow_samples(im: Image.Image) -> NDArray[np.uint8]:
    """A decoded 8-bit Pillow image's samples as numpy: a large one copied out a band of rows at a time, since
    ``np.asarray`` of the whole goes through Pillow's ``tobytes``, whose pieces and their joined copy are both held
    (a 6000×4000 RGB PNG: 144 MB beside Pillow's own 96)."""
    width, height = im.size
    first = np.asarray(im.crop((0, 0, width, 1)))
    if first.size * height <= _WHOLE_COPY_UP_TO:
        return np.asarray(im)
    samples = np.empty((height, *first.shape[1:]), dtype=first.dtype)
    for rows in row_bands(samples):
        samples[rows] = np.asarray(im.crop((0, rows.start, width, rows.stop)))
    return samples


def pillow_to_float(im: Image.Image, mode: str, background: Sequence[float], gray: bool) -> NDArray[np.float32]:
    """A decoded Pillow image to float32 a band of rows at a time, each band's samples copied out of Pillow as it
    is converted: no whole copy of the samples beside Pillow's and the float image (a 6000×4000 RGB PNG: 72 MB)."""
    width, height = im.size
    first = np.asarray(im.crop((0, 0, width, 1)))
    shape = (height, *first.shape[1:])
    colours = (first.shape[2] if first.ndim == 3 else 1) - (1 if mode in ("LA", "RGBA") else 0)
    out = np.empty((height, width, 1 if gray else colours), dtype=np.float32)
    for rows in row_bands(np.broadcast_to(first[:1], shape)):  # the same bands as of the whole samples
        band = np.asarray(im.crop((0, rows.start, width, rows.stop)))
        out[rows] = _float_band(band if band.ndim == 3 else band[:, :, np.newaxis], mode, background, gray)
    return out


def decoded(
    arr: NDArray[Any], mode: str, background: Sequence[float], gray: bool
) -> NDArray[np.float32] | ScaledSamples:
    """Decoded samples of a Pillow ``mode`` as a run takes them: 8-bit gray, and 8-bit RGB kept as colour, as their
    samples (`ScaledSamples`, a quarter of the float image's memory: the fused band path converts them a band at a
    time, `featmap.run.fused`), anything else in float32 (`_array_to_float`)."""
    if arr.dtype == np.uint8 and mode == "L" and arr.ndim == 2:
        return ScaledSamples(np.ascontiguousarray(arr[:, :, np.newaxis]))
    if arr.dtype == np.uint8 and mode == "RGB" and not gray and arr.ndim == 3 and arr.shape[2] == 3:
        return ScaledSamples(np.ascontiguousarray(arr))
    return _array_to_float(arr, mode, background, gray)


def _array_to_float(arr: NDArray[Any], mode: str, background: Sequence[float], gray: bool) -> NDArray[np.float32]:
    """Samples of a Pillow ``mode`` to float32, a band of rows at a time: no float copy of a colour image."""
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    colours = arr.shape[2] - (1 if mode in ("LA", "RGBA") else 0)
    out = np.empty((arr.shape[0], arr.shape[1], 1 if gray else colours), dtype=np.float32)
    for rows in row_bands(arr):
        out[rows] = _float_band(arr[rows], mode, background, gray)
    return out


def _float_band(arr: NDArray[Any], mode: str, background: Sequence[float], gray: bool) -> NDArray[np.float32]:
    data: NDArray[np.float32]
    if mode.startswith("I;16") or mode == "I":
        data = np.multiply(arr, np.float32(1 / 65535), dtype=np.float32)
    elif mode == "F":
        data = arr.astype(np.float32)
    else:
        data = np.multiply(arr, np.float32(1 / 255), dtype=np.float32)
    if mode in ("LA", "RGBA"):
        colour, alpha = data[:, :, :-1], data[:, :, -1:]
        bg_rgb = np.asarray(background, dtype=np.float32)
        bg = bg_rgb if colour.shape[2] == 3 else np.float32(np.dot(bg_rgb, LUMA_BT601))
        data = colour * alpha + bg * (1.0 - alpha)
    if gray and data.shape[2] == 3:
        luma = np.asarray(LUMA_BT601, dtype=np.float32)
        mixed = mix_channels(np.ascontiguousarray(data), luma)
        if mixed is None:  # not matmul: a BLAS call here leaves OpenBLAS's threads spinning on the other core
            mixed = data[:, :, 0] * luma[0]
            mixed += data[:, :, 1] * luma[1]
            mixed += data[:, :, 2] * luma[2]
        data = mixed[:, :, np.newaxis]
    return data
