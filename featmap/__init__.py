"""featmap: see what a convolutional layer does to a picture."""

from __future__ import annotations

from .errors import FeatmapError, ImageReadError, KernelFileError, ShapeError, SpecError
from .ops import activate, conv2d, pad
from .pool import global_pool, pool2d

__version__ = "0.1.0"

__all__ = [
    "FeatmapError",
    "ImageReadError",
    "KernelFileError",
    "ShapeError",
    "SpecError",
    "__version__",
    "activate",
    "conv2d",
    "global_pool",
    "pad",
    "pool2d",
]
