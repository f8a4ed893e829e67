"""Resource limits in one place, like ImageMagick's ``policy.xml``.

Every size, count, depth and allocation a user controls is checked against one of these before any
work starts. Each limit has a default that no honest use reaches and an environment variable that
raises it (a few also have a command-line option); the error names the limit, the value and how to
raise it::

    featmap: error: gaussian `size`: 100,000,000 exceeds the kernel size limit of 2,048 (rows or columns);
    set FEATMAP_MAX_KERNEL_SIZE=100000000 (or more) to allow it

README's limits table is generated from `LIMITS` (``tests/test_limits.py`` keeps the two in step).

Examples
--------
>>> KERNEL_SIZE.check(5, "gaussian `size`")
>>> KERNEL_SIZE.check(10**8, "gaussian `size`")
Traceback (most recent call last):
...
featmap.errors.LimitError: gaussian `size`: 100,000,000 exceeds the kernel size limit of 2,048 (rows or columns); \
set FEATMAP_MAX_KERNEL_SIZE=100000000 (or more) to allow it
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from featmap.errors import LimitError
from featmap.frozen import frozen_dataclass

__all__ = [
    "DEPTH",
    "DILATION",
    "FILE_SIZE",
    "KERNEL_SIZE",
    "LAYERS",
    "LIMITS",
    "MEMORY",
    "OUTPUT_PIXELS",
    "PADDING",
    "REPEAT",
    "REPORT_SIZE",
    "STRIDE",
    "YAML_ALIAS_NODES",
    "Limit",
    "check_conv",
    "check_environment",
    "conv_memory",
    "format_bytes",
]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_NUMBER = re.compile(r"^\s*(\d[\d_,]*)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def format_bytes(count: int) -> str:
    """``count`` bytes in the largest binary unit that keeps it readable.

    Examples
    --------
    >>> format_bytes(8 << 30), format_bytes(1536), format_bytes(12)
    ('8 GiB', '1.5 KiB', '12 B')
    """
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} B"


@frozen_dataclass
class Limit:
    """One resource limit: its name, default, environment variable and what it bounds.

    Attributes
    ----------
    name : str
        How the error and README call it (``kernel size``).
    env : str
        The environment variable that sets it (``FEATMAP_MAX_KERNEL_SIZE``); byte limits also take
        ``K``/``M``/``G`` suffixes (binary: ``8G`` is 8 GiB).
    default : int
    unit : str
        What is counted, shown after the number (``rows or columns``, ``bytes``).
    bounds : str
        What the limit applies to, for README.
    option : str
        A command-line option that also sets it, or ``""``.
    """

    name: str
    env: str
    default: int
    unit: str
    bounds: str
    option: str = ""

    @property
    def is_bytes(self) -> bool:
        """True for limits counted in bytes (shown as KiB/MiB/GiB)."""
        return self.unit == "bytes"

    def value(self) -> int:
        """The limit in force: the environment variable when set, else the default.

        Raises `LimitError` when the variable is not a whole number >= 1.
        """
        text = os.environ.get(self.env, "").strip()
        if not text:
            return self.default
        match = _NUMBER.match(text)
        if match is None or (match.group(2) and not self.is_bytes):
            example = "8G" if self.is_bytes else str(self.default * 4)
            raise LimitError(self.env, f"must be a whole number >= 1; got {text[:40]!r}", f"e.g. {self.env}={example}")
        number = int(match.group(1).replace("_", "").replace(",", "")) * _UNITS[match.group(2).lower()]
        if number < 1:
            raise LimitError(self.env, f"must be >= 1; got {text[:40]!r}", f"unset it for the default {self.default}")
        return number

    def show(self, number: int) -> str:
        """``number`` as this limit counts it (bytes in binary units, others with thousands separators)."""
        return format_bytes(number) if self.is_bytes else f"{number:,}"

    def check(self, number: int | float, what: str) -> None:
        """Raise `LimitError` naming ``what`` when ``number`` exceeds the limit in force."""
        limit = self.value()
        if number <= limit:
            return
        shown = self.show(int(number)) if number < 1e18 else f"{number:.3g}"
        raise LimitError(
            what,
            f"{shown} exceeds the {self.name} limit of {self.show(limit)}"
            + ("" if self.is_bytes else f" ({self.unit})"),
            self.how_to_raise(number),
        )

    def how_to_raise(self, number: int | float) -> str:
        """The fix in an error: the variable (and option) to set, with a value that would allow ``number``."""
        if number >= 1e18:
            return "use a smaller value (no honest use needs one this large)"
        need = f"{-(-int(number) // (1 << 20))}M" if self.is_bytes else str(int(number))
        text = f"set {self.env}={need} (or more) to allow it"
        if self.option:
            text += f", or pass {self.option}"
        return text


KERNEL_SIZE = Limit(
    "kernel size",
    "FEATMAP_MAX_KERNEL_SIZE",
    2048,
    "rows or columns",
    "rows or columns of a kernel (file or parametric) or a pooling window",
)
PADDING = Limit("padding", "FEATMAP_MAX_PADDING", 4096, "pixels per side", "padding added on one side of the input")
DILATION = Limit("dilation", "FEATMAP_MAX_DILATION", 1024, "per axis", "dilation of a convolution")
STRIDE = Limit("stride", "FEATMAP_MAX_STRIDE", 4096, "per axis", "stride of a convolution or pooling")
OUTPUT_PIXELS = Limit(
    "output size",
    "FEATMAP_MAX_OUTPUT_PIXELS",
    1 << 28,
    "values per map",
    "values (rows × columns × channels) of one padded input or feature map",
)
MEMORY = Limit(
    "memory",
    "FEATMAP_MAX_MEMORY",
    8 << 30,
    "bytes",
    "memory one image's run may hold (the image as the run keeps it, padded input, maps, pooling), estimated "
    "before the image is decoded",
)
DEPTH = Limit(
    "nesting depth",
    "FEATMAP_MAX_DEPTH",
    64,
    "levels",
    "nesting of lists and mappings in a kernel file or spec (and of blocks in a spec)",
)
REPEAT = Limit("repeat count", "FEATMAP_MAX_REPEAT", 1000, "repeats", "`repeat:` of one block in a spec")
LAYERS = Limit("layer count", "FEATMAP_MAX_LAYERS", 10_000, "layers", "layers of a spec once repeats are expanded")
FILE_SIZE = Limit("file size", "FEATMAP_MAX_FILE_SIZE", 16 << 20, "bytes", "a kernel file or spec file (YAML or JSON)")
REPORT_SIZE = Limit(
    "report size",
    "FEATMAP_MAX_REPORT_SIZE",
    25 << 20,
    "bytes",
    "one HTML report page (thumbnails plus the exact float32 tensors it embeds), checked before it is written",
)
YAML_ALIAS_NODES = Limit(
    "YAML alias expansion",
    "FEATMAP_MAX_YAML_ALIAS_NODES",
    100_000,
    "nodes",
    "values that YAML aliases (`*name`) add when expanded (a billion-laughs file adds 10⁹)",
)
FILE_VALUES = Limit(
    "file values",
    "FEATMAP_MAX_FILE_VALUES",
    100_000,
    "values",
    "values (numbers, words) in one kernel or spec file (YAML or JSON), estimated from its commas and lines "
    "before parsing (a YAML parser reads ~40,000 a second; a 316×316 kernel is 100,000)",
)
KERNELS = Limit(
    "kernel count",
    "FEATMAP_MAX_KERNELS",
    10_000,
    "kernels",
    "kernel files in one --kernel-dir folder, and kernels in one library (folders and built-ins together)",
)

#: Every limit, in README's order.
LIMITS: tuple[Limit, ...] = (
    KERNEL_SIZE,
    PADDING,
    DILATION,
    STRIDE,
    OUTPUT_PIXELS,
    MEMORY,
    REPORT_SIZE,
    FILE_SIZE,
    DEPTH,
    YAML_ALIAS_NODES,
    FILE_VALUES,
    KERNELS,
    REPEAT,
    LAYERS,
)


def check_environment() -> None:
    """Raise `LimitError` if any ``FEATMAP_MAX_*`` variable is set to something that is not a limit."""
    for limit in LIMITS:
        limit.value()


def _pair(value: int | Iterable[int]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def check_conv(
    kernel_sizes: Iterable[tuple[int, int]],
    *,
    stride: int | Iterable[int] = 1,
    padding: int | str | Iterable[int] = 0,
    dilation: int | Iterable[int] = 1,
    pool_size: int | Iterable[int] | None = None,
    pool_stride: int | Iterable[int] | None = None,
) -> None:
    """Check a convolution's numbers against the limits, before any image is read.

    ``padding`` may be a word (``same``, ``full``, ``valid``): ``full`` is checked as the padding it
    adds, ``(k - 1) * dilation`` per side.

    Examples
    --------
    >>> check_conv([(3, 3)], padding=20000)
    Traceback (most recent call last):
    ...
    featmap.errors.LimitError: padding: 20,000 exceeds the padding limit of 4,096 (pixels per side); \
set FEATMAP_MAX_PADDING=20000 (or more) to allow it
    """
    sizes = list(kernel_sizes)
    for kh, kw in sizes:
        KERNEL_SIZE.check(max(kh, kw), "kernel size")
    for number in _pair(stride):
        STRIDE.check(number, "stride")
    dilations = _pair(dilation)
    for number in dilations:
        DILATION.check(number, "dilation")
    if isinstance(padding, str):
        if padding == "full" and sizes:
            widest = max(max(kh, kw) for kh, kw in sizes)
            PADDING.check((widest - 1) * max(dilations), "padding (`full`)")
    else:
        for number in _pair(padding):
            PADDING.check(number, "padding")
    if pool_size is not None:
        for number in _pair(pool_size):
            KERNEL_SIZE.check(number, "pool size")
    if pool_stride is not None:
        for number in _pair(pool_stride):
            STRIDE.check(number, "pool stride")


def conv_memory(
    padded: tuple[int, int],
    out: tuple[int, int],
    channels: int,
    maps: int,
    *,
    itemsize: int = 4,
    pooled: tuple[int, int] | None = None,
    what: str = "image",
    bands: bool = False,
) -> int:
    """Estimate, and check against the limits, the bytes one image's convolution allocates.

    The padded input (all channels), one conv map being made and the pooled copy of it, and, with two
    or more maps, the combined accumulator; maps are made one at a time. With ``bands`` (every map made band by
    band, `featmap.run.fused`: no padded input, no conv map whole beside the pooled one, no combined map), the
    final map alone. Each array is also checked against the output-size limit. Returns the estimate.

    Examples
    --------
    >>> conv_memory((514, 514), (512, 512), 1, 2) == (514 * 514 + 2 * 512 * 512) * 4
    True
    >>> conv_memory((514, 514), (512, 512), 1, 2, pooled=(256, 256), bands=True) == 256 * 256 * 4
    True
    """
    ph, pw = padded
    oh, ow = out
    prefix = f"{what}: " if what else ""
    OUTPUT_PIXELS.check(ph * pw * channels, f"{prefix}padded input {ph}×{pw}×{channels}")
    OUTPUT_PIXELS.check(oh * ow * channels, f"{prefix}feature map {oh}×{ow}×{channels}")
    if bands:
        arrays = (oh * ow if pooled is None else pooled[0] * pooled[1]) * channels
    else:
        arrays = ph * pw * channels + oh * ow * channels * (2 if maps > 1 else 1)
        if pooled is not None:
            arrays += pooled[0] * pooled[1] * channels
    total = arrays * itemsize
    MEMORY.check(total, f"{what}: estimated memory" if what else "estimated memory")
    return total
