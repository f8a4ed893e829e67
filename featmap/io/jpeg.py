"""JPEG decoding beside Pillow's: which JPEGs have a luma plane to read as gray (`jpeg_luma_plane`), and OpenCV's
decode straight into numpy (`opencv_jpeg`), which `featmap.io.images.load_image` takes where it can."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from featmap.core.cvfilter import opencv
from featmap.errors import DamagedImageWarning

__all__ = ["EXIF_ORIENTATION", "JPEG_FORMATS", "damage_warning", "jpeg_luma_plane", "opencv_jpeg"]

#: The EXIF tag of the orientation.
EXIF_ORIENTATION = 0x0112
#: Pillow's formats of a JPEG stream: MPO is a JPEG whose MPF segment lists more pictures after it (phones'
#: depth maps, HDR gain maps); its first picture, the one a viewer shows and featmap reads, is a plain JPEG.
JPEG_FORMATS = ("JPEG", "MPO")

_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height

_JPEG_RGB_IDS = (82, 71, 66)  # component ids "R", "G", "B": samples stored as RGB, not YCbCr


def jpeg_luma_plane(opened: Image.Image) -> bool:
    """Whether a JPEG's gray is its decoder's own luma plane: 8-bit gray samples, or three components stored as
    YCbCr, whose Y is BT.601 luma (JFIF: ``0.299 R + 0.587 G + 0.114 B`` of the encoded picture).

    Three components are YCbCr by libjpeg's rule: a JFIF marker says so; else an Adobe marker's transform (0:
    RGB, anything else YCbCr); else component ids "R", "G", "B" mean RGB. A JPEG stored as RGB, CMYK or YCCK is
    decoded to RGB and its gray computed in float as for any other format.
    """
    if opened.format not in JPEG_FORMATS or opened.mode not in ("L", "RGB"):
        return False
    if opened.mode == "L" or "jfif" in opened.info:
        return True
    if "adobe_transform" in opened.info:
        return bool(opened.info["adobe_transform"] != 0)
    ids = tuple(layer[0] for layer in getattr(opened, "layer", ())[:3])
    return ids != _JPEG_RGB_IDS


def _ends_with_eoi(opened: Image.Image, path: Path) -> bool:
    """Whether the file ends with the JPEG end-of-image marker (a truncated file does not). Read through the handle
    Pillow opened (its place in the file kept), so the file is not opened again for two bytes."""
    handle = getattr(opened, "fp", None)
    if handle is None or getattr(handle, "closed", True) or not handle.seekable():
        with open(path, "rb", buffering=0) as fh:
            return _eoi_at_end(fh)
    place = handle.tell()
    try:
        return _eoi_at_end(handle)
    finally:
        handle.seek(place)


def _eoi_at_end(fh: IO[bytes]) -> bool:
    size = fh.seek(0, os.SEEK_END)
    if size < 4:
        return False
    fh.seek(size - 2)
    return fh.read(2) == b"\xff\xd9"


def damage_warning(where: str, complaint: str) -> DamagedImageWarning:
    """What a user is told when Pillow has read a JPEG that libjpeg called damaged (``complaint``, its first).

    Examples
    --------
    >>> str(damage_warning("a.jpg", "Corrupt JPEG data: premature end of data segment"))[:75]
    'a.jpg: damaged JPEG data (libjpeg: Corrupt JPEG data: premature end of data'
    """
    return DamagedImageWarning(
        f"{where}: damaged JPEG data (libjpeg: {complaint.rstrip('.')}), read as Pillow decodes it: parts of the "
        "image may be gray fill; re-export or re-download the file"
    )


def opencv_jpeg(
    path: Path, opened: Image.Image, gray: bool, complaints: list[str] | None = None
) -> NDArray[np.uint8] | None:
    """An 8-bit gray or RGB JPEG decoded by OpenCV straight into numpy, EXIF orientation applied: its luma
    plane ``(H, W)`` when ``gray`` and `jpeg_luma_plane` (``cv2.IMREAD_GRAYSCALE``, the Y samples as libjpeg
    decodes them), else its samples (``(H, W)`` gray, ``(H, W, 3)`` RGB); None for anything else (Pillow then
    decodes it). Same pixels as Pillow's libjpeg-turbo (tested), in a quarter of the time, since Pillow's
    decode plus its copy out to numpy cost 3-4x OpenCV's on 1024² photos.

    A file that does not end with the JPEG end marker may be truncated: Pillow decodes it, and refuses it
    if it is (OpenCV would fill the missing rows with gray). So does a file whose decoding made libjpeg complain
    (``Corrupt JPEG data: …``, which it writes on the process's stderr, caught here: `decoder_messages`): damaged
    data OpenCV would fill in, which Pillow refuses or reads in its own way. libjpeg's complaints are added to
    ``complaints`` when given (the caller says them once Pillow has read the file).

    OpenCV decodes from the file into an array made here (``cv2.imread`` with ``dst``), so a decode holds the
    pixels once: ``cv2.imdecode`` of the file's bytes held those bytes, its own result, and the copy Python got
    (a 6000×4000 gray plane: 51 MB above what was held before, against 23). A path that is not ASCII (which
    OpenCV's file reading may not open on every system) is decoded from its bytes as before."""
    cv2 = opencv()
    if cv2 is None or opened.format not in JPEG_FORMATS or opened.mode not in ("L", "RGB"):
        return None
    if not _ends_with_eoi(opened, path):
        return None
    plane = opened.mode == "L" or (gray and jpeg_luma_plane(opened))
    flags = cv2.IMREAD_GRAYSCALE if plane else cv2.IMREAD_COLOR
    width, height = opened.size
    with decoder_messages() as said:
        if str(path).isascii():  # decoded as stored, then turned by its EXIF orientation (a new array if it turns)
            into = np.empty((height, width) if plane else (height, width, 3), dtype=np.uint8)
            pixels = cv2.imread(str(path), into, flags)
        else:
            pixels = cv2.imdecode(np.fromfile(path, dtype=np.uint8), flags)
    if said:
        if complaints is not None:
            complaints += said
        return None
    if opened.getexif().get(EXIF_ORIENTATION, 1) in _TURNED:
        width, height = height, width
    if pixels is None or pixels.shape[:2] != (height, width):
        return None
    # BGR to RGB in place (each pixel's samples swapped where they are): no second copy of a colour image
    decoded: NDArray[np.uint8] = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)
    return decoded  # contiguous, so fast to convert


_CAUGHT: dict[int, int] = {}  # process id -> the memory file libjpeg's messages go to (one per process: not shared)
_CATCHING = threading.Lock()


def _message_file() -> int:
    fd = _CAUGHT.get(os.getpid())
    if fd is None:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("featmap-libjpeg-messages", os.MFD_CLOEXEC)
        else:  # pragma: no cover - not Linux
            import tempfile

            fd = os.dup(tempfile.TemporaryFile().fileno())
        _CAUGHT[os.getpid()] = fd
    return fd


@contextmanager
def decoder_messages() -> Iterator[list[str]]:
    """What the native code writes on the process's stderr (file descriptor 2) while the block runs: libjpeg's
    warnings, which OpenCV lets it print, are caught in a per-process memory file instead of reaching the user;
    the list yields them, as lines, when the block is done. Anything else caught meanwhile (another thread's
    output) is written on to stderr. A thread that finds another one catching runs its block uncaught.

    Costs five system calls (no file is opened per call).

    Examples
    --------
    >>> with decoder_messages() as said:
    ...     _ = os.write(2, b"Corrupt JPEG data: 12 extraneous bytes before marker 0xd9\\n")
    >>> said
    ['Corrupt JPEG data: 12 extraneous bytes before marker 0xd9']
    """
    said: list[str] = []
    if not _CATCHING.acquire(blocking=False):
        yield said
        return
    try:
        fd = _message_file()
        try:
            sys.stderr.flush()  # Python's own pending text goes where it was going
        except (AttributeError, OSError, ValueError):
            pass
        saved = os.dup(2)
        os.dup2(fd, 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            size = os.lseek(fd, 0, os.SEEK_CUR)  # fd 2 shared this file's offset: what was written
            if size:
                text = os.pread(fd, size, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                lines = text.decode("utf-8", "replace").splitlines()
                said += [line for line in lines if not _elsewhere(line)]
                passed = [line for line in lines if _elsewhere(line)]
                if passed:
                    os.write(2, ("\n".join(passed) + "\n").encode())
    finally:
        _CATCHING.release()


def _elsewhere(line: str) -> bool:
    """Whether a caught line is someone else's (a progress bar's frame, featmap's own lines), not libjpeg's."""
    return "\x1b" in line or "\r" in line or line.startswith("featmap:")
