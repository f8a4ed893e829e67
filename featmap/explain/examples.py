"""The textbook cases `featmap explain --example NAME` ships, as data: input, kernel, layers.

Examples
--------
>>> sorted(EXAMPLES)[:2]
['avg-pool', 'max-pool']
>>> explain_example("max-pool").output.tolist()
[[6.0, 8.0], [3.0, 4.0]]
"""

from __future__ import annotations

import numpy as np

from featmap.enums import Activation, PoolKind
from featmap.errors import SpecError
from featmap.explain.explanation import Explanation, explain
from featmap.frozen import frozen_dataclass
from featmap.net.layers import Act, Conv2d, Pool2d

__all__ = ["EXAMPLES", "Example", "explain_example"]

Rows = tuple[tuple[float, ...], ...]


@frozen_dataclass
class Example:
    """One shipped case: ``channels`` are the input's channel planes, ``kernel`` one plane per channel."""

    name: str
    title: str
    channels: tuple[Rows, ...]
    kernel: tuple[Rows, ...] | None = None
    bias: float = 0.0
    conv: Conv2d | None = None
    act: Act | None = None
    pool: Pool2d | None = None

    def input(self) -> np.ndarray:
        """The input as ``(H, W)`` or ``(H, W, C)``."""
        planes = [np.array(p, dtype=np.float64) for p in self.channels]
        return planes[0] if len(planes) == 1 else np.stack(planes, axis=-1)

    def weights(self) -> np.ndarray | None:
        """The kernel as ``(kh, kw)`` or ``(C, kh, kw)``, or None for a pooling example."""
        if self.kernel is None:
            return None
        planes = np.array(self.kernel, dtype=np.float64)
        return planes[0] if len(planes) == 1 else planes


# The 5×5 binary image and the "X" kernel of the UFLDL convolution tutorial's figure (values re-typed).
_BINARY = ((1, 1, 1, 0, 0), (0, 1, 1, 1, 0), (0, 0, 1, 1, 1), (0, 0, 1, 1, 0), (0, 1, 1, 0, 0))
_X_KERNEL = (((1, 0, 1), (0, 1, 0), (1, 0, 1)),)
_POOL_INPUT = ((1, 1, 2, 4), (5, 6, 7, 8), (3, 2, 1, 0), (1, 2, 3, 4))

EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in (
        Example(
            "valid",
            "5×5 input ⊛ 3×3 kernel, no padding: a 3×3 feature map",
            (_BINARY,),
            _X_KERNEL,
        ),
        Example(
            "zero-padding",
            "zero padding 1: the 5×5 input becomes 7×7, so the output stays 5×5",
            (_BINARY,),
            _X_KERNEL,
            conv=Conv2d(padding=1),
        ),
        Example(
            "stride-2",
            "stride 2: a 7×7 input and a 3×3 kernel give 3×3, every other position skipped",
            (
                (
                    (3, 3, 2, 1, 0, 0, 1),
                    (0, 0, 1, 3, 1, 2, 2),
                    (3, 1, 2, 2, 3, 0, 1),
                    (2, 0, 0, 2, 2, 1, 0),
                    (2, 0, 0, 0, 1, 3, 2),
                    (1, 3, 1, 0, 2, 2, 1),
                    (0, 1, 2, 3, 0, 1, 3),
                ),
            ),
            (((0, 1, 2), (2, 2, 0), (0, 1, 2)),),
            conv=Conv2d(stride=(2, 2)),
        ),
        Example(
            "max-pool",
            "max pooling 2×2, stride 2: a 4×4 map becomes 2×2, each window keeps its largest value",
            (_POOL_INPUT,),
            pool=Pool2d(PoolKind.MAX, (2, 2)),
        ),
        Example(
            "avg-pool",
            "average pooling 2×2, stride 2: each window becomes the mean of its 4 values",
            (_POOL_INPUT,),
            pool=Pool2d(PoolKind.AVG, (2, 2)),
        ),
        Example(
            "rgb",
            "a 4×4×3 input and one 3×3×3 filter: the three channels' sums add up, plus bias 1, then ReLU",
            (
                ((1, 0, 2, 1), (0, 1, 1, 0), (2, 1, 0, 1), (1, 0, 1, 2)),
                ((0, 1, 0, 1), (1, 0, 1, 0), (0, 1, 0, 1), (1, 0, 1, 0)),
                ((2, 2, 0, 0), (2, 2, 0, 0), (0, 0, 1, 1), (0, 0, 1, 1)),
            ),
            (
                ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
                ((0, 1, 0), (1, -1, 1), (0, 1, 0)),
                ((-1, 0, 1), (-1, 0, 1), (-1, 0, 1)),
            ),
            bias=1.0,
            act=Act(Activation.RELU),
        ),
    )
}


def explain_example(name: str) -> Explanation:
    """Explain one shipped example by name (see `EXAMPLES`)."""
    example = EXAMPLES.get(name.strip().lower())
    if example is None:
        raise SpecError("example", f"unknown example {name!r}", f"use one of: {', '.join(EXAMPLES)}")
    return explain(
        example.input(),
        example.weights(),
        conv=example.conv,
        bias=example.bias,
        act=example.act,
        pool=example.pool,
        source=f"example {example.name}",
        title=example.title,
    )
