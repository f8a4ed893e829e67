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

from featmap.net.layers.base import LayerPlan, RunContext
from featmap.net.layers.channels import ChannelShuffle, DropPath, LayerNorm, LayerScale, Softmax, Split
from featmap.net.layers.combine import CombineMaps
from featmap.net.layers.containers import MERGE_MODES, Parallel, Sequential, without_aux
from featmap.net.layers.conv import Conv1d, Conv2d
from featmap.net.layers.dense import Dense, Flatten
from featmap.net.layers.elementwise import Act, BatchNorm, Dropout
from featmap.net.layers.pooling import AdaptiveAvgPool2d, GlobalPool2d, Pool2d

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
"""Any layer of the language."""

#: The kinds that run on an array (containers are walked, not run).
LEAF_KINDS = (
    Conv2d,
    Conv1d,
    Pool2d,
    GlobalPool2d,
    AdaptiveAvgPool2d,
    Act,
    Flatten,
    Dense,
    BatchNorm,
    Dropout,
    LayerNorm,
    LayerScale,
    Softmax,
    Split,
    ChannelShuffle,
    DropPath,
    CombineMaps,
)
