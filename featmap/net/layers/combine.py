"""`CombineMaps`: several maps of one shape merged into one (``--combine``), with its plan and its forward pass.

The input holds ``maps`` maps of C channels each, map after map on the channel axis (``(H, W, maps·C)``);
the output is one map of C channels: ``magnitude`` is ``sqrt(sum of squares)`` (a Sobel pair's gradient
magnitude), ``max`` the largest response (over a compass set). The forward pass is spelled as a running merge
(`CombineMaps.add`, then `CombineMaps.finish`), so that a caller which makes the maps one at a time (a kernel
bank run one channel group at a time) merges them without holding them all.

Examples
--------
>>> import numpy as np
>>> layer = CombineMaps("magnitude", 2)
>>> x = np.array([[[3.0, 4.0]]], np.float32)
>>> plan = layer.plan(x.shape)
>>> plan.out_shape, plan.kind
((1, 1, 1), 'Combine')
>>> layer.forward(x, plan, {}).tolist()
[[[5.0]]]
"""

from __future__ import annotations

import numpy as np

from featmap.core.ops import row_bands
from featmap.enums import Combine, parse_enum
from featmap.errors import ShapeError
from featmap.frozen import frozen_dataclass
from featmap.net.layers.base import DEFAULT_CONTEXT, Array, LayerPlan, RunContext, Shape, Weights, need_spatial
from featmap.net.layers.conv import positive

__all__ = ["CombineMaps"]


@frozen_dataclass
class CombineMaps:
    """``maps`` maps of equal shape, side by side on the channel axis, merged into one by ``mode``."""

    mode: Combine = Combine.MAGNITUDE
    maps: int = 2
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", parse_enum(Combine, self.mode, "combine"))
        positive(self.maps, "maps")

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """``(H, W, maps·C)`` → ``(H, W, C)``; no parameters."""
        need_spatial(in_shape, "combine")
        if in_shape[-1] % self.maps:
            raise ShapeError(
                "",
                f"combine of {self.maps} maps needs channels in multiples of {self.maps}; got {in_shape[-1]}",
                "combine the outputs of one conv layer, whose filters are the maps",
            )
        channels = in_shape[-1] // self.maps
        formula = "sqrt(Σ m²)" if self.mode is Combine.MAGNITUDE else "max over m"
        return LayerPlan(
            "Combine",
            self.name or self.mode.value,
            in_shape,
            (*in_shape[:-1], channels),
            detail=f"{self.mode.value} of {self.maps}",
            explain=(f"{self.mode.value}: {formula} over {self.maps} maps of {channels} channel(s)",),
        )

    def add(self, merged: Array | None, part: Array) -> Array:
        """Merge one more map into the running result ``merged`` (None before the first), in place where it can."""
        if merged is None:
            return np.square(part) if self.mode is Combine.MAGNITUDE else part.copy()
        if self.mode is Combine.MAGNITUDE:
            for rows in row_bands(merged):  # no full-size temporary for the square
                merged[rows] += np.square(part[rows])
        else:
            np.maximum(merged, part, out=merged)
        return merged

    def finish(self, merged: Array) -> Array:
        """The merged map from the running result (the square root of a magnitude, taken in place)."""
        return np.sqrt(merged, out=merged) if self.mode is Combine.MAGNITUDE else merged

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Merge the ``maps`` maps of ``x``, first to last."""
        channels = plan.out_shape[-1]
        merged: Array | None = None
        for m in range(self.maps):
            merged = self.add(merged, x[..., m * channels : (m + 1) * channels])
        assert merged is not None  # maps >= 1
        return self.finish(merged)
