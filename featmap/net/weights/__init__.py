"""Weights of conv, dense and batch-norm layers: read from ``.npz``/``.safetensors``, matched, or seeded.

Naming convention
-----------------
A parameterised layer's *key* is derived as PyTorch derives ``state_dict`` names from module attributes
(`featmap.net.plan`): the dotted path of the names the spec gives, a layer or block without a name being its
0-based index in its list (``torch.nn.Sequential(...).state_dict()``'s ``0.weight``, ``3.bias``; a named stack
``nn.Sequential(OrderedDict(C1=...))`` gives ``C1.weight``), and merges and their branches adding nothing unless
named (``layer1.0.conv1.weight``). Files: `load_weights` (``.npz``, ``.safetensors``, PyTorch ``.pt``/``.pth``,
Keras); `check_tensors` and `match_weights` (`featmap.net.weights.matching`) match them to a network, every
missing, mis-shaped and unused tensor at once. Tensors, in PyTorch layout:

=============  =============================================  ============================
layer          tensors (featmap / PyTorch)                    shapes
=============  =============================================  ============================
conv           ``KEY.weight``, ``KEY.bias``                   (O, I/groups, kh, kw), (O,)
conv1d         ``KEY.weight``, ``KEY.bias``                   (O, I/groups, k), (O,)
dense          ``KEY.weight``, ``KEY.bias``                   (out, in), (out,)
batch norm     ``KEY.weight``, ``KEY.bias``,                  (C,) each
               ``KEY.running_mean``, ``KEY.running_var``
=============  =============================================  ============================

``KEY.num_batches_tracked`` (PyTorch's batch-norm counter) is ignored. Where the Keras layout is declared
(``layout="keras"``) a conv weight is ``KEY.kernel`` (kh, kw, I/groups, O) (a depthwise one
``KEY.depthwise_kernel`` (kh, kw, I, multiplier)), a dense weight ``KEY.kernel`` (in, out), batch norm
``KEY.gamma``, ``KEY.beta``, ``KEY.moving_mean``, ``KEY.moving_variance``; `to_torch_layout` converts them.
A Keras 3 ``.weights.h5``/``.keras`` file (`featmap.net.weights.keras`, the ``keras`` extra) is read in
Keras names and layout, and a run with it uses the Keras layout. ``flatten`` orders an H×W×C map as the
weights' framework does (`featmap.net.layers.RunContext`): (C, H, W) for PyTorch-layout weights, so a
``state_dict``'s dense weights apply unchanged, and (H, W, C) for Keras.
`reorder_flatten_columns` converts a PyTorch dense weight for a row-major flatten, for use outside featmap.

Limits
------
A file larger than ``FEATMAP_MAX_WEIGHTS_BYTES`` (default 2 GiB; ``K``/``M``/``G`` suffixes allowed),
tensors whose decoded data together pass the same limit, or one tensor of more than
``FEATMAP_MAX_WEIGHTS_ELEMENTS`` elements (default 500,000,000) are refused before any data is read,
from the file size and the tensors' headers; `init_weights` applies the same two limits.

Examples
--------
>>> w = init_weights({"C1.weight": (6, 1, 5, 5), "C1.bias": (6,)}, {"C1": "conv"}, seed=0)
>>> float(abs(w["C1.weight"]).max()) <= 1 / 5  # kaiming: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 25
True
>>> to_torch_layout(np.zeros((5, 5, 1, 6)), "conv", "keras").shape
(6, 1, 5, 5)
"""

from __future__ import annotations

import numpy as np  # noqa: F401 (the Examples above use it)

from featmap.net.weights._common import BYTES_ENV, ELEMENTS_ENV, KINDS
from featmap.net.weights.files import load_weights
from featmap.net.weights.initial import init_weights
from featmap.net.weights.keras import is_keras_file
from featmap.net.weights.layouts import reorder_flatten_columns, to_torch_layout
from featmap.net.weights.matching import MAX_LINES, NetworkTensors, WeightsCheck, check_tensors, match_weights

__all__ = [
    "BYTES_ENV",
    "ELEMENTS_ENV",
    "KINDS",
    "MAX_LINES",
    "NetworkTensors",
    "WeightsCheck",
    "check_tensors",
    "init_weights",
    "is_keras_file",
    "load_weights",
    "match_weights",
    "reorder_flatten_columns",
    "to_torch_layout",
]
