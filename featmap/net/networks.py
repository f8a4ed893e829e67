"""A network file by what it holds: a YAML/JSON layer spec (`featmap.net.spec`), an ONNX model
(`featmap.net.onnx`, recognised by its extension or its first bytes, before any text is read) or a Keras 3
``.keras`` model (`featmap.net.spec.keras`: a zip holding ``config.json`` and its weights), and the tensors of
a weights file: ``.npz``, ``.safetensors`` or Keras (`featmap.net.weights`), or an ONNX model's own initializers.

The one place that tells the two kinds apart, above both readers (neither imports the other).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.net.spec import Model

__all__ = ["load_network_file", "load_network_weights"]


def load_network_file(path: str | Path, *, kernel_dirs: Sequence[str | Path] = ()) -> Model:
    """The `Model` in the file at ``path``: an ONNX or Keras model (its weights are the file itself) or a spec
    file."""
    from featmap.net.onnx import is_onnx_file
    from featmap.net.spec.keras import is_keras_model, is_keras_path

    if is_onnx_file(path):
        from featmap.net.onnx import load_onnx

        return load_onnx(path)
    if is_keras_path(path) or is_keras_model(path):
        from featmap.net.spec.keras import load_keras_model

        return load_keras_model(path)
    from featmap.net.spec import parse_file

    return parse_file(path, kernel_dirs=kernel_dirs)


def load_network_weights(path: str | Path) -> dict[str, NDArray[np.floating[Any]]]:
    """The tensors of the weights file at ``path`` by name; an ONNX model's initializers by the keys of the layers
    mapped from it. For featmap's own runs (``featmap.forward(..., weights=PATH)``, ``featmap apply --weights``):
    the arrays are read-only and own their memory (`featmap.core.memo.owned_frozen`), so that a run need not re-read
    them to see whether they changed since the last (resnet18: 47 MB, ~4.5 ms a run)."""
    from featmap.core.memo import owned_frozen
    from featmap.net.onnx import is_onnx_file

    if Path(path).is_file() and is_onnx_file(path):
        from featmap.net.onnx import onnx_weights

        tensors = dict(onnx_weights(path))
    else:
        from featmap.net.weights import load_weights

        tensors = dict(load_weights(path))
    # one tensor at a time: a copy (only where a reader's buffer holds it) replaces the reader's array
    return {name: owned_frozen(tensors.pop(name)) for name in list(tensors)}
