"""The layer language's kinds: validated, frozen layer objects that both the shape calculator
(`featmap.net.summary`) and the executor (`featmap.run.executor`) read.
`featmap.net.spec` parses text and files into them.

Each kind is one class stating, side by side, its geometry and cost (``plan(in_shape)`` → `LayerPlan`) and its
forward pass (``forward(x, plan, weights)``); containers (`Sequential`, `Parallel`) are walked by
`featmap.net.plan`.

Examples
--------
>>> Conv2d(stride=2, padding="same").stride
(2, 2)
>>> Pool2d("max", 2).stride
(2, 2)
>>> Pool2d("max", 3, 2, 1).plan((112, 112, 64)).out_shape
(56, 56, 64)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featmap.net.layers.base import LayerPlan, RunContext
from featmap.net.layers.combine import CombineMaps
from featmap.net.layers.containers import MERGE_MODES, Parallel, Sequential, without_aux
from featmap.net.layers.conv import Conv1d, Conv2d
from featmap.net.layers.elementwise import Act, BatchNorm, Dropout
from featmap.net.layers.pooling import AdaptiveAvgPool2d, GlobalPool2d, Pool2d

if TYPE_CHECKING:  # imported on first use (`__getattr__`): a kernel bank's layers are a conv, an activation, a pool
    from featmap.net.layers.channels import ChannelShuffle, DropPath, LayerNorm, LayerScale, Softmax, Split
    from featmap.net.layers.dense import Dense, Flatten

__all__ = [
    "Act",
    "AdaptiveAvgPool2d",
    "BatchNorm",
    "ChannelShuffle",
    "CombineMaps",
    "DropPath",
    "LayerNorm",
    "LayerScale",
    "MERGE_MODES",
    "Softmax",
    "Split",
    "Conv1d",
    "Conv2d",
    "Dense",
    "Dropout",
    "Flatten",
    "LEAF_KINDS",
    "GlobalPool2d",
    "LayerPlan",
    "LayerSpec",
    "Parallel",
    "Pool2d",
    "RunContext",
    "Sequential",
    "without_aux",
]

#: The kinds defined in modules imported on first use: a kernel bank's batch (conv, activation, pool) never loads
#: them; a network's spec or file does, by naming one.
_ON_FIRST_USE = {
    **dict.fromkeys(("ChannelShuffle", "DropPath", "LayerNorm", "LayerScale", "Softmax", "Split"), "channels"),
    **dict.fromkeys(("Dense", "Flatten"), "dense"),
}
#: The kinds that run on an array (containers are walked, not run), in `LEAF_KINDS`' order.
_LEAVES = (
    "Conv2d Conv1d Pool2d GlobalPool2d AdaptiveAvgPool2d Act Flatten Dense BatchNorm Dropout LayerNorm LayerScale "
    "Softmax Split ChannelShuffle DropPath CombineMaps"
).split()

if TYPE_CHECKING:
    LayerSpec = (
        Conv2d
        | Conv1d
        | Pool2d
        | GlobalPool2d
        | AdaptiveAvgPool2d
        | Act
        | Flatten
        | Dense
        | BatchNorm
        | Dropout
        | LayerNorm
        | LayerScale
        | Softmax
        | Split
        | ChannelShuffle
        | DropPath
        | CombineMaps
        | Sequential
        | Parallel
    )
    """Any layer of the language (at run time: made on first use, with every kind loaded)."""
    #: The kinds that run on an array (containers are walked, not run).
    LEAF_KINDS: tuple[type[Any], ...]


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        from importlib import import_module

        kind = globals()[name] = getattr(import_module(f".{_ON_FIRST_USE[name]}", __name__), name)
        return kind
    if name in ("LayerSpec", "LEAF_KINDS"):
        from functools import reduce
        from operator import or_

        leaves = tuple(globals()[kind] if kind in globals() else __getattr__(kind) for kind in _LEAVES)
        globals().update(LEAF_KINDS=leaves, LayerSpec=reduce(or_, (*leaves, Sequential, Parallel)))
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The package's names, the ones imported on first use included."""
    return sorted({*globals(), *_ON_FIRST_USE, "LayerSpec", "LEAF_KINDS"})
