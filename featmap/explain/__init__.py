"""Step records of a convolution and a pooling on a small matrix: what `featmap explain` shows.

Pure: numpy only, no files, no printing. The records come from the engine's own pieces: the geometry
from `featmap.core.geometry.conv_geometry` / `pool_geometry` (padding per side, output size, rows a stride
leaves unused), the padding from `featmap.core.ops.pad`, the windows from `featmap.core.engine.window_taps` (the
one slice formula) and the activation from `featmap.core.ops.activate`; the tests check that every output
equals `featmap.conv2d` / `featmap.pool2d`. The geometry of a layer comes from its own plan
(`featmap.net.layers.Conv2d.plan`, `Pool2d.plan`) in `explain`.

Modules: `limits` (sizes, the input check), `arithmetic` (the size formula per axis, window cells),
`conv` and `pool` (the traces), `explanation` (the layers' plans → traces), `text` (numbers as
shown), `examples` (the shipped textbook cases). Rendering lives in `featmap.render.explain`, the
animation in `featmap.io.writers.gif`.

Examples
--------
>>> t = trace_conv([[1, 2, 0], [0, 1, 2], [2, 0, 1]], [[1, 0], [0, 1]])
>>> t.output.tolist()
[[2.0, 4.0], [0.0, 2.0]]
>>> t.step(0, 1).products.ravel().tolist()
[2.0, 0.0, 0.0, 2.0]
>>> t.axes[0].worked
'(3 − 2 + 2·0) / 1 + 1 = 1 / 1 + 1 = 2'
"""

from __future__ import annotations

from featmap.explain.arithmetic import AxisArithmetic
from featmap.explain.conv import ConvStep, ConvTrace, trace_conv
from featmap.explain.explanation import Explanation, explain, pick_positions
from featmap.explain.limits import MAX_CHANNELS, MAX_SIDE, check_matrix
from featmap.explain.pool import PoolStep, PoolTrace, trace_pool
from featmap.explain.text import format_number, terms_text

__all__ = [
    "MAX_CHANNELS",
    "MAX_SIDE",
    "AxisArithmetic",
    "ConvStep",
    "ConvTrace",
    "Explanation",
    "PoolStep",
    "PoolTrace",
    "check_matrix",
    "explain",
    "format_number",
    "pick_positions",
    "terms_text",
    "trace_conv",
    "trace_pool",
]
