"""`Model`: a network as the layer language holds it (its layers, input, description, weights file, class names
and input transform), whichever file it came from: a spec, a preset, an ONNX graph or a Keras model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featmap.frozen import frozen_dataclass
from featmap.net.layers import LayerSpec

__all__ = ["STAND_IN_HW", "Model"]

Shape = tuple[int, ...]
#: The height and width a model with open input sizes is mapped and shown at when no size is given.
STAND_IN_HW = (224, 224)


@frozen_dataclass
class Model:
    """A parsed spec file: its layers, default input shape and description; a trained model also names its
    weights file (beside the spec) and its class labels."""

    name: str
    layers: tuple[LayerSpec, ...]
    input_shape: Shape | None = None
    description: str = ""
    source: str = ""
    weights: Path | None = None
    labels: tuple[str, ...] = ()
    #: The input transform the network was trained with (`featmap.net.preprocess`): a name or a mapping.
    preprocess: Any = None
    #: The input as the file declares it when some of its sizes are open (an ONNX ``N×3×H×W``, a Keras
    #: ``(None, None, 3)``), as ``(H, W, C)`` with names for the open sizes: ``("H", "W", 3)``. ``input_shape`` is
    #: then None and each image runs at its own size, the layers planned for it.
    input_dims: tuple[int | str, ...] = ()

    @property
    def channels(self) -> int | None:
        """The input's channels: the last of ``input_shape``, else of ``input_dims`` when that one is fixed."""
        if self.input_shape is not None:
            return self.input_shape[-1]
        last = self.input_dims[-1] if self.input_dims else None
        return last if isinstance(last, int) else None
