"""The layer-spec language: inline tokens (`featmap.spec.tokens`) and YAML/JSON spec files and presets
(`featmap.spec.files`) → `featmap.layers` objects. One parser feeds ``featmap shape``, ``featmap apply --spec``
and the Python API.

Examples
--------
>>> parse_token("conv:64@3x3/s2/same")
Conv2d(filters=64, kernel=(3, 3), stride=(2, 2), padding='same', ...)
>>> parse_shape("224x224x3")
(224, 224, 3)
"""

from __future__ import annotations

from .files import MODEL_DIR, Model, list_models, load_model, parse_file
from .tokens import parse_shape, parse_token, parse_tokens

__all__ = [
    "MODEL_DIR",
    "Model",
    "list_models",
    "load_model",
    "parse_file",
    "parse_shape",
    "parse_token",
    "parse_tokens",
]
