"""Layers that hold layers: `Sequential` (a block, a repeat, a branch) and `Parallel` (residual add,
Inception concat, a channel gate's multiply, an auxiliary head).
The walk over what they hold lives in `featmap.net.plan`; the merge of the branches lives here.

Examples
--------
>>> import numpy as np
>>> p = Parallel((Sequential(), Sequential()), "concat")
>>> p.merge_shape([(4, 4, 2), (4, 4, 3)])
(4, 4, 5)
>>> p.merge([np.zeros((1, 1, 2)), np.ones((1, 1, 1))]).tolist()
[[[0.0, 0.0, 1.0]]]
>>> gate = Parallel((Sequential(), Sequential()), "mul")
>>> gate.merge_shape([(4, 4, 2), (1, 1, 2)])
(4, 4, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from featmap.core.gemm import result_array
from featmap.errors import ShapeError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.net.layers.base import Array, Shape

if TYPE_CHECKING:
    from featmap.net.layers import LayerSpec

__all__ = ["MERGE_MODES", "Parallel", "Sequential", "without_aux"]

#: How a `Parallel` combines its branches.
MERGE_MODES = ("add", "concat", "mul", "aux")


def _shapes_text(shapes: Sequence[Shape]) -> str:
    return ", ".join("×".join(map(str, s)) for s in shapes)


@frozen_dataclass
class Sequential:
    """Layers applied one after another (a named block, a repeated block, a residual branch).

    ``name`` is the name the spec gives (a segment of its layers' weight keys, `featmap.net.plan`); ``label``
    is what the table shows when there is none (the block's definition, ``main``, ``shortcut``, ``branch2``).
    """

    layers: tuple[LayerSpec, ...] = ()
    name: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))


@frozen_dataclass
class Parallel:
    """Branches fed the same input, merged by ``add`` (residual), ``concat`` (Inception, on channels), ``mul``
    (a channel gate: squeeze-and-excitation, broadcast over H×W) or ``aux`` (the first branch goes on; the
    others are auxiliary heads whose outputs feed nothing, as Inception's training-time classifiers).

    An empty branch is the identity (a plain residual shortcut, the main path of a gate). ``name`` is the name
    the spec gives (a merge without one adds nothing to its layers' weight keys); ``label`` is what the table
    shows when there is none (``residual``, ``gate``, ``parallel``).
    """

    branches: tuple[Sequential, ...]
    merge_mode: str = "add"
    name: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", tuple(self.branches))
        if self.merge_mode not in MERGE_MODES:
            raise SpecError("`merge`", f"must be one of {', '.join(MERGE_MODES)}; got {self.merge_mode!r}")
        if len(self.branches) < 2:
            raise SpecError("`branches`", f"a merge needs two or more branches; got {len(self.branches)}")

    @property
    def kind(self) -> str:
        """``Add``, ``Concat``, ``Multiply`` or ``Aux``."""
        return {"add": "Add", "concat": "Concat", "mul": "Multiply", "aux": "Aux"}[self.merge_mode]

    def merge_shape(self, shapes: Sequence[Shape]) -> Shape:
        """The merged output shape of branches that output ``shapes``, or a `ShapeError`."""
        if self.merge_mode == "aux":
            return shapes[0]
        if self.merge_mode == "mul":
            if any(len(s) != len(shapes[0]) for s in shapes):
                raise ShapeError("", f"cannot multiply branches of shapes {_shapes_text(shapes)}")
            try:
                out = tuple(int(v) for v in np.broadcast_shapes(*shapes))
            except ValueError:
                raise ShapeError(
                    "",
                    f"cannot multiply branches of shapes {_shapes_text(shapes)}",
                    "a gate ends with as many channels as its input, at 1×1 or full size",
                ) from None
            return out
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
        """The channel sum of a concat, the broadcast of a gate, with the numbers put in."""
        if self.merge_mode == "mul":
            text = " × ".join("×".join(map(str, s)) for s in shapes)
            return (f"element-wise product, broadcast: {text}",)
        if self.merge_mode == "aux":
            return ("the first branch goes on; the others are auxiliary heads (training only)",)
        if self.merge_mode != "concat":
            return ()
        return (f"channels: {' + '.join(str(s[-1]) for s in shapes)} = {self.merge_shape(shapes)[-1]}",)

    def merge(self, outputs: Sequence[Array]) -> Array:
        """Add, concatenate on channels, multiply (broadcast), or keep the first branch's output."""
        if self.merge_mode == "concat":
            return np.concatenate(outputs, axis=-1)
        if self.merge_mode == "aux":
            return outputs[0]
        shape = self.merge_shape([o.shape for o in outputs])
        total = result_array(shape, np.asarray(outputs[0]).dtype)  # memory of an earlier merge no array uses
        combine = np.multiply if self.merge_mode == "mul" else np.add
        first, rest = outputs[0], list(outputs[1:])
        if rest:  # the first two in one pass: the same value as a copy of the first and an in-place op
            combine(first, rest.pop(0), out=total)
        else:
            total[...] = np.broadcast_to(first, shape)
        for out in rest:
            combine(total, out, out=total)
        return total


def without_aux(layers: Sequence[LayerSpec]) -> tuple[LayerSpec, ...]:
    """``layers`` with every auxiliary head dropped (each ``aux`` merge replaced by its first branch).

    Examples
    --------
    >>> from featmap.net.layers import Dense, Flatten
    >>> net = (Parallel((Sequential(), Sequential((Flatten(), Dense(10)))), "aux"), Flatten())
    >>> without_aux(net)
    (Sequential(layers=(), name=None, label=None), Flatten(name=None))
    """
    out: list[LayerSpec] = []
    for layer in layers:
        if isinstance(layer, Parallel):
            branches = tuple(Sequential(without_aux(b.layers), b.name, b.label) for b in layer.branches)
            if layer.merge_mode == "aux":
                keep = branches[0].layers
                out.append(Sequential(keep, layer.name if keep else None, layer.label if keep else None))
            else:
                out.append(Parallel(branches, layer.merge_mode, layer.name, layer.label))
        elif isinstance(layer, Sequential):
            out.append(Sequential(without_aux(layer.layers), layer.name, layer.label))
        else:
            out.append(layer)
    return tuple(out)
