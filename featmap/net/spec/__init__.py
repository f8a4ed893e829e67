"""The layer-spec language: inline tokens (`featmap.net.spec.tokens`) and YAML/JSON spec files and presets
(`featmap.net.spec.files`) → `featmap.net.layers` objects. One parser feeds ``featmap shape``, ``featmap apply --spec``
and the Python API.

Examples
--------
>>> parse_token("conv:64@3x3/s2/same")
Conv2d(filters=64, kernel=(3, 3), stride=(2, 2), padding='same', ...)
>>> parse_shape("224x224x3")
(224, 224, 3)
"""

from __future__ import annotations

from featmap.net.spec.files import MODEL_DIR, Model, list_models, load_model, parse_file
from featmap.net.spec.tokens import parse_shape, parse_token, parse_tokens

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
