"""Layers that hold layers: `Sequential` (a block, a repeat, a branch) and `Parallel` (residual add,
Inception concat). The walk over what they hold lives in `featmap.plan`; the merge of the branches lives here.

Examples
--------
>>> import numpy as np
>>> p = Parallel((Sequential(), Sequential()), "concat")
>>> p.merge_shape([(4, 4, 2), (4, 4, 3)])
(4, 4, 5)
>>> p.merge([np.zeros((1, 1, 2)), np.ones((1, 1, 1))]).tolist()
[[[0.0, 0.0, 1.0]]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ShapeError, SpecError
from .base import Array, Shape

if TYPE_CHECKING:
    from . import LayerSpec

__all__ = ["Parallel", "Sequential"]


def _shapes_text(shapes: Sequence[Shape]) -> str:
    return ", ".join("×".join(map(str, s)) for s in shapes)


@dataclass(frozen=True)
class Sequential:
    """Layers applied one after another (a named block, a repeated block, a residual branch)."""

    layers: tuple[LayerSpec, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))


@dataclass(frozen=True)
class Parallel:
    """Branches fed the same input, merged by ``add`` (residual) or ``concat`` (Inception, on channels).

    An empty branch is the identity (a plain residual shortcut).
    """

    branches: tuple[Sequential, ...]
    merge_mode: str = "add"
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", tuple(self.branches))
        if self.merge_mode not in ("add", "concat"):
            raise SpecError("`merge`", f"must be add or concat; got {self.merge_mode!r}")
        if len(self.branches) < 2:
            raise SpecError("`branches`", f"a merge needs two or more branches; got {len(self.branches)}")

    @property
    def kind(self) -> str:
        """``Add`` or ``Concat``."""
        return "Add" if self.merge_mode == "add" else "Concat"

    def merge_shape(self, shapes: Sequence[Shape]) -> Shape:
        """The merged output shape of branches that output ``shapes``, or a `ShapeError`."""
        if self.merge_mode == "add":
            if len(set(shapes)) != 1:
                raise ShapeError(
                    "",
                    f"cannot add branches of shapes {_shapes_text(shapes)}",
                    "make them equal, e.g. a 1x1 conv with the same stride as a projection shortcut",
                )
            return shapes[0]
        if len({s[:-1] for s in shapes}) != 1:
            raise ShapeError(
                "",
                f"cannot concatenate branches of shapes {_shapes_text(shapes)}",
                "give every branch the same spatial size",
            )
        return (*shapes[0][:-1], sum(s[-1] for s in shapes))

    def merge_explain(self, shapes: Sequence[Shape]) -> tuple[str, ...]:
        """The channel sum of a concat, with the numbers put in."""
        if self.merge_mode != "concat":
            return ()
        return (f"channels: {' + '.join(str(s[-1]) for s in shapes)} = {self.merge_shape(shapes)[-1]}",)

    def merge(self, outputs: Sequence[Array]) -> Array:
        """Add the branch outputs, or concatenate them on the channel axis."""
        if self.merge_mode == "concat":
            return np.concatenate(outputs, axis=-1)
        total = np.array(outputs[0], copy=True)
        for out in outputs[1:]:
            total += out
        return total
