"""An image kept as its 8-bit samples, standing for float32 values and converted a band of rows at a time.

A decoded 8-bit gray image is its samples over 255 in float32: a 6000×4000 photo is 24 MB of samples and 96 MB
of floats. The fused band path (`featmap.run.fused`) reads an image a band of rows at a time, so it can take
the samples and convert each band as it reads it (`ScaledSamples.rows`): the float image is never held whole.
Every other path takes `ScaledSamples.floats` (or `as_floats`), the whole image in float32, the same values
band for band: the conversion is one multiplication per sample, in float32, whatever rows it is given.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from featmap.frozen import frozen_dataclass

__all__ = ["CONVERT_WHOLE_UP_TO", "ImageData", "ScaledSamples", "as_floats"]

#: The float32 factor of 8-bit samples: a level ``v`` stands for ``v * float32(1 / 255)``, rounded to float32.
LEVEL_8BIT = np.float32(1 / 255)
#: Images of at most this many samples are converted whole, once, for a bank whose maps do not share one band loop
#: (`featmap.run.groups.run_stacks`): converting each kernel's bands anew costs more than their float image's
#: memory (1024² with 4 kernels: 0.6 ms more CPU per image, 4 MB saved). A shared loop converts each band once.
CONVERT_WHOLE_UP_TO = 1 << 21


@frozen_dataclass(eq=False)
class ScaledSamples:
    """8-bit samples ``(H, W, C)`` standing for the float32 image ``samples * scale`` (rounded to float32).

    It answers ``shape``, ``ndim`` and ``dtype`` as that float image would, so that a caller can plan on it.

    Examples
    --------
    >>> image = ScaledSamples(np.array([[[0], [51]], [[255], [102]]], dtype=np.uint8))
    >>> image.shape, image.dtype
    ((2, 2, 1), dtype('float32'))
    >>> np.rint(image.rows(1, 2)[..., 0] * 255)
    array([[255., 102.]], dtype=float32)
    """

    samples: NDArray[np.uint8]
    scale: np.float32 = LEVEL_8BIT

    @property
    def shape(self) -> tuple[int, ...]:
        """The float image's shape: the samples'."""
        return tuple(int(n) for n in self.samples.shape)

    @property
    def ndim(self) -> int:
        """The float image's number of axes."""
        return int(self.samples.ndim)

    @property
    def dtype(self) -> np.dtype[np.float32]:
        """float32: what `rows` and `floats` return."""
        return np.dtype(np.float32)

    def rows(self, start: int, stop: int, out: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
        """Rows ``start:stop`` of the float image, made now (into ``out`` if given, of their shape)."""
        return np.multiply(self.samples[start:stop], self.scale, out=out, dtype=np.float32)

    def floats(self) -> NDArray[np.float32]:
        """The whole float image, made now (a new array)."""
        return self.rows(0, self.shape[0])


#: An image as a run takes it: float values, or 8-bit samples that stand for them.
ImageData = NDArray[np.floating] | ScaledSamples


def as_floats(image: ImageData) -> NDArray[np.floating]:
    """The image's float values whole: the array itself, or the samples converted."""
    return image.floats() if isinstance(image, ScaledSamples) else image
