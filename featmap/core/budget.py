"""The memory a kernel bank's plan on one image needs, and the memory loading the image needs, checked against the
limits before any work.

`featmap.limits` holds the limits and the arithmetic of one conv's arrays; this module adds the geometry
(`featmap.core.geometry`) that turns an image size and a bank's kernel sizes into those arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from featmap.core.geometry import conv_geometry, pool_geometry
from featmap.errors import FeatmapError, LimitError
from featmap.limits import check_conv, conv_memory

__all__ = [
    "RGB_SAMPLE_MODES",
    "RunMemory",
    "check_image_plan",
    "check_load_memory",
    "load_bytes",
    "loaded_as",
    "loaded_channels",
]

#: The most bytes a run holds on a loaded image of ``(height, width)`` and ``channels``, loaded as 8-bit samples
#: (True) or as float32 (False): the image as the run keeps it and the largest plan's arrays.
RunMemory = Callable[[tuple[int, int], int, bool], int]


def check_image_plan(
    in_hw: tuple[int, int],
    channels: int,
    kernel_sizes: Iterable[tuple[int, int]],
    *,
    stride: int | tuple[int, int] = 1,
    padding: Any = "valid",
    dilation: int | tuple[int, int] = 1,
    pool: tuple[Any, Any, Any] | None = None,
    what: str = "image",
    bands: bool = False,
) -> int:
    """Work out the geometry of every kernel on an ``in_hw`` image and check the largest plan's memory.

    ``pool`` is ``(size, stride, padding)`` of a window pooling, or None; ``bands``: every map is made band by
    band (`featmap.limits.conv_memory`: no padded input, no conv map beside the pooled one). Geometry errors (a kernel
    larger than the padded input) are left to the caller's own checks: only the sizes are checked here.
    Returns the estimated bytes of the largest plan.

    Examples
    --------
    >>> check_image_plan((512, 512), 1, [(3, 3)], padding=20000)
    Traceback (most recent call last):
    ...
    featmap.errors.LimitError: image: padding: 20,000 exceeds the padding limit of 4,096 (pixels per side); ...
    >>> check_image_plan((512, 512), 1, [(3, 3)], padding=1) == (514 * 514 + 512 * 512) * 4
    True
    >>> check_image_plan((20000, 20000), 1, [(3, 3)], padding=1)
    Traceback (most recent call last):
    ...
    featmap.errors.LimitError: image: padded input 20002×20002×1: 400,080,004 exceeds the output size limit ...
    """
    sizes = list(kernel_sizes)
    try:
        check_conv(
            sizes,
            stride=stride,
            padding=padding,
            dilation=dilation,
            pool_size=None if pool is None else pool[0],
            pool_stride=None if pool is None else pool[1],
        )
    except LimitError as exc:
        if what:
            raise LimitError(f"{what}: {exc.what}", exc.problem, exc.fix) from None
        raise
    worst = 0
    for size in dict.fromkeys(sizes):
        try:
            geometry = conv_geometry(in_hw, size, stride=stride, padding=padding, dilation=dilation)
        except FeatmapError:
            continue  # a kernel that does not fit: the convolution's own check names it
        top, bottom, left, right = geometry.padding
        padded = (in_hw[0] + top + bottom, in_hw[1] + left + right)
        pooled = None
        if pool is not None:
            try:
                pooled = pool_geometry(geometry.out_hw, pool[0], stride=pool[1], padding=pool[2]).out_hw
            except FeatmapError:
                pooled = None
        held = conv_memory(padded, geometry.out_hw, channels, len(sizes), pooled=pooled, what=what, bands=bands)
        worst = max(worst, held)
    return worst


#: Pillow modes an 8-bit RGB image is read from (converted to RGB first where not RGB): kept as colour, their 8-bit
#: samples are what a run holds (`featmap.core.samples.ScaledSamples`), not float32.
RGB_SAMPLE_MODES = frozenset({"RGB", "CMYK", "YCbCr", "LAB", "HSV"})


def load_bytes(width: int, height: int, mode: str, color: bool) -> int:
    """The most memory `featmap.io.images.load_image` holds at once for a ``width`` × ``height`` image of Pillow
    ``mode``: the decoded image (Pillow keeps 4 bytes a pixel for every multi-band mode, 1 for 8-bit gray and
    palettes, 2 for 16-bit gray, 4 for 32-bit) and the result (`loaded_as`: 8-bit gray and, with ``color``, 8-bit
    RGB kept as their samples; anything else float32, 3 channels with ``color``, else 1).

    Examples
    --------
    >>> load_bytes(6000, 4000, "RGB", color=True) // 1_000_000, load_bytes(6000, 4000, "L", color=False) // 1_000_000
    (168, 48)
    >>> load_bytes(6000, 4000, "RGBA", color=True) // 1_000_000
    384
    """
    decoded = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    return width * height * (decoded + loaded_as(mode, color)[0])


def loaded_as(mode: str, color: bool) -> tuple[int, str]:
    """Bytes a pixel of the loaded image and what it is, for an image of Pillow ``mode`` loaded in colour or gray.

    Examples
    --------
    >>> loaded_as("RGB", True), loaded_as("RGB", False), loaded_as("L", True), loaded_as("RGBA", True)
    ((3, '8-bit RGB'), (4, 'float32 gray'), (1, '8-bit gray'), (12, 'float32 RGB'))
    """
    if mode in ("1", "L"):
        return 1, "8-bit gray"
    if color and mode in RGB_SAMPLE_MODES:
        return 3, "8-bit RGB"
    return (12, "float32 RGB") if color else (4, "float32 gray")


def loaded_channels(mode: str, color: bool) -> int:
    """The channels `featmap.io.images.load_image` returns for an image of Pillow ``mode``: 3 for colour kept as
    colour, else 1 (gray, gray with alpha, 16-bit and float images have one channel whatever ``color`` says).

    Examples
    --------
    >>> loaded_channels("RGB", True), loaded_channels("RGB", False), loaded_channels("LA", True)
    (3, 1, 1)
    """
    if not color or mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith(("I;16", "F;")):
        return 1
    return 3


def check_load_memory(
    where: str, width: int, height: int, mode: str, color: bool, run: RunMemory | None = None
) -> None:
    """Refuse, before decoding, an image whose loading, or the run on it, exceeds the memory limit
    (`featmap.limits.MEMORY`): what the load holds (`load_bytes`), then what ``run`` says the run holds on the loaded
    image (either way up: EXIF orientation is applied after this check; Pillow's image is let go before the run).

    Examples
    --------
    >>> check_load_memory("big.png", 6000, 4000, "RGB", color=True)  # 160 MiB: within the default 8 GiB
    >>> check_load_memory("big.png", 6000, 4000, "RGB", True, run=lambda hw, c, samples: 9 << 30)
    Traceback (most recent call last):
    ...
    featmap.errors.LimitError: big.png: running on 6000×4000 RGB loaded as 8-bit RGB: 9 GiB exceeds the memory \
limit of 8 GiB; set FEATMAP_MAX_MEMORY=9216M (or more) to allow it
    """
    from featmap.limits import MEMORY

    kind = loaded_as(mode, color)[1]
    MEMORY.check(load_bytes(width, height, mode, color), f"{where}: loading {width}×{height} {mode} as {kind}")
    if run is not None:
        channels, samples = loaded_channels(mode, color), kind.startswith("8-bit")
        held = max(run((height, width), channels, samples), run((width, height), channels, samples))
        MEMORY.check(held, f"{where}: running on {width}×{height} {mode} loaded as {kind}")
