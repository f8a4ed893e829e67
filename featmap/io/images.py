"""Image files in: decoding with Pillow (and OpenCV's JPEG path, `featmap.io.jpeg`), and `atomic_write` for every
output.

`load_image` returns a `LoadedImage`: float32 ``(H, W, C)`` in [0, 1] (``pixels``), an 8-bit gray image kept as
its samples (``data``, `featmap.core.samples.ScaledSamples`) until a run converts them. The writers
(`featmap.io.writers`) write through `atomic_write` (a temporary file beside the target, then a rename), so an
interrupted run never leaves half a file.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageColor, ImageOps, UnidentifiedImageError

from featmap.core.budget import RunMemory, check_load_memory
from featmap.core.samples import ScaledSamples, as_floats
from featmap.errors import ImageReadError, LimitError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.io.decoded import LUMA_BT601, decoded, run_data
from featmap.io.jpeg import EXIF_ORIENTATION, damage_warning, jpeg_luma_plane, opencv_jpeg

__all__ = [
    "GRAY_BT601",
    "GRAY_JPEG_PLANE",
    "IMAGE_SUFFIXES",
    "LUMA_BT601",
    "ImageInfo",
    "LoadedImage",
    "fetched_from",
    "atomic_write",
    "is_image",
    "load_image",
    "parse_color",
]

#: How a one-channel image's gray was made (`ImageInfo.gray`): the file's own gray samples or BT.601 luma of its
#: RGB computed in float, or a JPEG's luma plane as its decoder gives it.
GRAY_BT601 = "BT.601 luma"
GRAY_JPEG_PLANE = "JPEG luma plane"

#: Pillow's default limit against decompression bombs (about 89 megapixels).
DEFAULT_MAX_PIXELS = 89_478_485


@frozen_dataclass
class ImageInfo:
    """What was read: the file, its size, Pillow's mode and format, the channels returned and, for one channel,
    how its gray was made (``gray``: `GRAY_BT601` or `GRAY_JPEG_PLANE`)."""

    path: str
    width: int
    height: int
    mode: str
    format: str
    channels: int
    gray: str = GRAY_BT601  # how one channel of gray was made: `GRAY_BT601` or `GRAY_JPEG_PLANE`
    #: Where the file at ``path`` was fetched from (a URL input's local copy), or None for a file given as it is.
    source: str | None = None

    @property
    def shown(self) -> str:
        """What the image is called to the user: the URL it was fetched from, else its path."""
        return self.source or self.path


@frozen_dataclass
class LoadedImage:
    """A decoded image: ``pixels`` float32 ``(H, W, C)`` in [0, 1] and its `ImageInfo`.

    ``data`` is what a run reads: the pixels, or for an 8-bit gray image its samples (`ScaledSamples`), which the
    fused band path converts a band of rows at a time; ``pixels`` is made from them when first asked for (the
    same values), and kept.
    """

    data: NDArray[np.float32] | ScaledSamples
    info: ImageInfo

    @cached_property
    def pixels(self) -> NDArray[np.float32]:
        """The image as float32 ``(H, W, C)`` in [0, 1]."""
        return self.data.floats() if isinstance(self.data, ScaledSamples) else self.data

    def in_floats(self) -> LoadedImage:
        """The same image with its float pixels as ``data`` (itself when they are): holding it instead of this one
        drops the samples, for a run that reads the float image whole anyway."""
        if not isinstance(self.data, ScaledSamples):
            return self
        return LoadedImage(self.pixels, self.info)


def fetched_from(image: LoadedImage, source: str | None) -> LoadedImage:
    """``image`` named after the URL its file was fetched from (`ImageInfo.source`; the same arrays), or itself
    when ``source`` is None."""
    if source is None:
        return image
    named = LoadedImage(image.data, replace(image.info, source=source))
    if "pixels" in image.__dict__:  # already made: shared, not made again
        named.__dict__["pixels"] = image.__dict__["pixels"]
    return named


@contextmanager
def _pixel_limit(max_pixels: int | None) -> Iterator[None]:
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def load_image(
    path: str | os.PathLike[str],
    *,
    color: bool = False,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    run_memory: RunMemory | None = None,
) -> LoadedImage:
    """Read an image as float32 ``(H, W, C)`` in [0, 1].

    8-bit samples are divided by 255, 16-bit ones by 65535; the EXIF orientation is applied; alpha
    is composited onto ``background`` (RGB in [0, 1], white by default) and dropped. By default the
    result is one channel of BT.601 luma (``0.299 R + 0.587 G + 0.114 B``, computed in float);
    ``color=True`` keeps RGB. GIFs and multi-page TIFFs give their first frame.

    A JPEG stored as YCbCr or gray (`jpeg_luma_plane`: nearly every JPEG, and an MPO's first picture) is not
    decoded to RGB for its gray: its gray is the decoder's own 8-bit luma plane divided by 255, the Y that JFIF
    defines as BT.601 luma of the encoded picture (OpenCV's ``IMREAD_GRAYSCALE``, or Pillow's ``draft("L")``
    without OpenCV: the same libjpeg values; torchvision's ``decode_jpeg(mode=GRAY)`` too). It differs from
    luma of the decoded RGB by that RGB's rounding (at most half a level where no channel clips) and, next to
    saturated colour, by RGB clipped at 0 or 255 (photo crops: 0.08 levels on average, 12 at most).
    ``ImageInfo.gray`` says which gray an image got.

    The memory the load holds is checked against the limit before decoding, and with ``run_memory`` (the bytes the
    caller's run will hold on the loaded image: `featmap.core.budget.RunMemory`) that of the run too, so that a run
    too large for the limit is refused before any work (`featmap.core.budget.check_load_memory`).

    Raises `ImageReadError` with a one-line reason for a missing, unreadable, corrupt, truncated or
    too-large file, or one that is not an image; `LimitError` for one over the memory limit.
    """
    p = Path(path)
    where = str(p)
    if "\x00" in where:  # no file can have that name (the system calls refuse it)
        raise ImageReadError(where, "is not a valid path (it holds a NUL character)", "check the path")
    try:
        with _pixel_limit(max_pixels), Image.open(p) as opened:
            fmt = opened.format or "?"
            original_mode = opened.mode
            check_load_memory(where, *opened.size, opened.mode, color, run_memory)  # before decoding
            plane = not color and jpeg_luma_plane(opened)
            complaints: list[str] = []
            fast = opencv_jpeg(p, opened, gray=not color, complaints=complaints)
            if fast is not None:
                data = decoded(fast, "L" if fast.ndim == 2 else original_mode, background, gray=not color)
            else:
                if plane:
                    opened.draft("L", None)  # libjpeg's luma plane, at full size
                    plane = opened.mode == "L"
                opened.load()
                if complaints:  # Pillow read what libjpeg called damaged: said, never silent
                    warnings.warn(damage_warning(where, complaints[0]), stacklevel=1)
                turned = opened.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1)
                im = ImageOps.exif_transpose(opened) if turned else opened  # the transpose copies: only if needed
                data = run_data(im, background, gray=not color)
    except LimitError:  # loading it would exceed the memory limit: said as the limit says it
        raise
    except FileNotFoundError:
        raise ImageReadError(where, "no such file", "check the path") from None
    except (IsADirectoryError, PermissionError):  # a folder is told by its open failing (Windows: permission denied)
        if p.is_dir():
            raise ImageReadError(where, "is a folder, not an image", "give an image file") from None
        raise ImageReadError(where, "permission denied", "make the file readable") from None
    except UnidentifiedImageError:
        raise ImageReadError(
            where, "is not an image Pillow can read", "give a PNG, JPEG, BMP, TIFF, WebP or GIF file"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own message names twice the limit for an error (it warns between 1x and 2x): say ours.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = int(found[1]) if found else None
        raise ImageReadError(
            where,
            f"is too large: {'more' if count is None else f'{count:,}'} pixels, over the --max-pixels limit of "
            f"{max_pixels:,} (a decompression-bomb guard)",
            f"pass --max-pixels {count or 'N'} (or more) if you trust the file",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        raise ImageReadError(
            where, f"is corrupt or truncated ({reason})", "re-export or re-download the file"
        ) from None
    if original_mode.startswith("F") and not np.all(np.isfinite(as_floats(data))):  # only float samples can be NaN
        raise ImageReadError(where, "holds NaN or infinite samples", "give an image with finite values")
    gray = GRAY_JPEG_PLANE if plane and original_mode != "L" else GRAY_BT601
    info = ImageInfo(where, data.shape[1], data.shape[0], original_mode, fmt, data.shape[2], gray)
    if isinstance(data, ScaledSamples):
        return LoadedImage(data, info)
    return LoadedImage(np.ascontiguousarray(data, dtype=np.float32), info)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of an image file as `load_image` returns it (EXIF orientation applied), from its
    header only.

    Raises `ImageReadError` when the file cannot be opened as an image.
    """
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            turned = opened.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)  # a quarter turn swaps the sides
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(str(path), f"cannot be read ({exc})", "check the file") from None
    return (width, height) if turned else (height, width)


def resize_pixels(pixels: NDArray[np.float32], size_hw: tuple[int, int]) -> NDArray[np.float32]:
    """Resize float ``(H, W, C)`` pixels to ``size_hw`` with Pillow's bilinear filter (antialiased when
    shrinking), channel by channel in float32: what a network's fixed input size needs.

    Examples
    --------
    >>> resize_pixels(np.ones((8, 6, 1), np.float32), (4, 3)).shape
    (4, 3, 1)
    """
    h, w = size_hw
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(pixels[:, :, c], dtype=np.float32), mode="F").resize(
                (w, h), Image.Resampling.BILINEAR
            )
        )
        for c in range(pixels.shape[2])
    ]
    return np.stack(planes, axis=2).astype(np.float32)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file through ``write(handle)`` into a temporary sibling, then rename it into place.

    The temporary file is removed if ``write`` fails or is interrupted, so ``path`` either keeps its
    old content or gets the complete new one.
    """
    folder, name = os.path.split(os.fspath(path))  # text, not Path objects: a map's file is made in a few calls
    temp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with _create(temp, folder) as handle:
            write(handle)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:  # never made, or its folder could not be made (a file in the way): nothing to remove
            pass
        raise
    return Path(path)


def _create(temp: str, folder: str) -> IO[bytes]:
    """``temp`` created for writing; its ``folder`` is made only when missing (an image's maps share one), and the
    buffer size is given, so no ``isatty`` call asks the file system what a terminal would want."""
    try:
        return open(temp, "w+b", buffering=1 << 16)
    except (FileNotFoundError, NotADirectoryError):
        Path(folder).mkdir(parents=True, exist_ok=True)  # a file in the way raises FileExistsError naming it
        return open(temp, "w+b", buffering=1 << 16)


def parse_color(text: str) -> tuple[float, float, float]:
    """An RGB colour in [0, 1] from a CSS name, ``#rrggbb`` or ``r,g,b`` (0-255).

    Examples
    --------
    >>> parse_color("white")
    (1.0, 1.0, 1.0)
    >>> parse_color("0,128,255")
    (0.0, 0.50196..., 1.0)
    """
    try:
        if "," in text:
            values = tuple(int(v) for v in text.split(","))
            if len(values) != 3 or not all(0 <= v <= 255 for v in values):
                raise ValueError(text)
        else:
            values = ImageColor.getrgb(text)[:3]
    except ValueError:
        raise SpecError("`background`", f"unknown colour {text!r}", "use a name (white), #rrggbb or r,g,b") from None
    r, g, b = values[:3]
    return (r / 255.0, g / 255.0, b / 255.0)


#: Suffixes taken as images even when Pillow cannot identify the file (it is then reported as broken).
IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .bmp .dib .tif .tiff .webp .gif .ppm .pgm .pbm .pnm .tga .ico .jp2 .j2k .pcx .sgi .im .dds "
    ".psd".split()
)


def is_image(path: str | os.PathLike[str]) -> bool:
    """True when Pillow recognises the file's content (only the header is read), or its suffix says image.

    Examples
    --------
    >>> is_image(__file__)
    False
    """
    p = Path(path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(p):
                return True
    except Exception:  # noqa: BLE001 - any failure to identify means "not an image"
        return False
