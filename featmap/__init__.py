"""featmap: see what a convolutional layer does to a picture.

The Python API: `apply` (kernels over an image: arrays and the table's facts), `forward` (a whole layer
stack on an image), `shape` (the layer calculator), `check_weights` (a weights file against a network),
`kernel` (one kernel), and the numeric functions
`conv2d`, `pool2d`, `activate`, ...
They are imported on first use, so that ``featmap --help`` does not load numpy.

Examples
--------
>>> import featmap
>>> featmap.conv2d([[1.0, 2.0], [3.0, 4.0]], [[1.0]]).shape
(2, 2, 1)
>>> featmap.shape(["conv:6@5x5"], input="32x32x1").totals.params
156
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featmap.errors import FeatmapError, ImageReadError, KernelFileError, OptionError, ShapeError, SpecError

if TYPE_CHECKING:
    from featmap.api import apply, check_weights, forward, kernel, shape
    from featmap.core.ops import activate, conv2d, pad
    from featmap.core.pool import global_pool, pool2d
    from featmap.explain import trace_conv, trace_pool

__version__ = "0.1.0"

__all__ = [
    "FeatmapError",
    "ImageReadError",
    "KernelFileError",
    "OptionError",
    "ShapeError",
    "SpecError",
    "__version__",
    "activate",
    "apply",
    "check_weights",
    "conv2d",
    "global_pool",
    "forward",
    "kernel",
    "pad",
    "pool2d",
    "shape",
    "trace_conv",
    "trace_pool",
]

_LAZY = {
    "apply": "api",
    "kernel": "api",
    "check_weights": "api",
    "forward": "api",
    "shape": "api",
    "activate": "core.ops",
    "conv2d": "core.ops",
    "pad": "core.ops",
    "global_pool": "core.pool",
    "pool2d": "core.pool",
    "trace_conv": "explain",
    "trace_pool": "explain",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'featmap' has no attribute {name!r}")
