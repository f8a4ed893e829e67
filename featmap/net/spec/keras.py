"""A Keras 3 ``.keras`` file as a featmap `Model`: the layers from its ``config.json``, named as the Keras layers,
and its weights from its ``model.weights.h5`` (`featmap.net.weights.keras`), so ``--spec model.keras`` and
``featmap shape model.keras`` need no hand-written spec.

A ``Sequential`` model, or a ``Functional`` one whose branches meet at ``Add``, ``Concatenate`` (channels) or
``Multiply`` (`featmap.net.spec.keras_graph`), nested models included as named blocks, of these layers:
``InputLayer``, ``Conv2D`` (``channels_last``), ``DepthwiseConv2D`` (multiplier 1), ``MaxPooling2D``,
``AveragePooling2D``, ``GlobalAveragePooling2D`` / ``GlobalMaxPooling2D``, ``Flatten``, ``Dense``,
``BatchNormalization`` (its epsilon), ``Dropout`` / ``SpatialDropout2D``, ``Activation``, ``ReLU`` (with
``max_value`` 6), ``LeakyReLU``, ``Softmax``, ``Identity``, and ``ZeroPadding2D`` right before a conv with valid
padding (it becomes that conv's padding, per side). A layer's ``activation`` becomes a layer of its own after it.
Every other layer is listed, one a line, in one refusal.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from featmap.documents import check_depth
from featmap.enums import Activation, PoolKind
from featmap.errors import ModelMappingError, SpecError
from featmap.limits import DEPTH
from featmap.net.layers import (
    Act,
    BatchNorm,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GlobalPool2d,
    LayerSpec,
    Pool2d,
    Sequential,
    Softmax,
)
from featmap.net.spec.model import Model

__all__ = ["KERAS_FIX", "is_keras_model", "load_keras_model"]

KERAS_FIX = "featmap reads Sequential and Functional models of Conv2D, pooling, Dense, BatchNormalization, activations"
_CONFIG_BYTES = 16 << 20
#: Keras activation names → featmap's (the ones featmap computes exactly as Keras does).
_ACTIVATIONS = {
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "swish": "silu",
    "silu": "silu",
    "hard_sigmoid": "hardsigmoid",
    "hard_silu": "hardswish",
    "hard_swish": "hardswish",
    "gelu": "gelu",
}


def is_keras_model(path: str | Path) -> bool:
    """True for a ``.keras`` file (a zip holding ``config.json`` and ``model.weights.h5``), judged by content."""
    if not Path(path).is_file():  # a zip reader would read a device (/dev/zero) to its never-coming end
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return {"config.json", "model.weights.h5"} <= names


def is_keras_path(text: str | Path) -> bool:
    """Whether ``text`` names a ``.keras`` file."""
    return str(text).lower().endswith(".keras")


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of the ``.keras`` file at ``path`` (refused over 16 MiB, before it is read)."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            size = zf.getinfo("config.json").file_size
            if size > _CONFIG_BYTES:
                raise SpecError(f"{p}: config.json", f"is {size:,} bytes, over 16 MiB", "is this a Keras model file?")
            config = json.loads(zf.read("config.json"))
    except RecursionError:  # brackets nested past the interpreter's stack: over the depth limit, said as such
        DEPTH.check(DEPTH.value() + 1, f"{p}: config.json: nesting")
        raise  # not reached: the check above raises
    except FileNotFoundError:
        raise SpecError(str(p), "no such file", "check the path") from None
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = f"is not a Keras model file ({str(exc)[:80]})"
        raise SpecError(str(p), problem, "save it in Keras 3 with model.save('model.keras')") from None
    if not isinstance(config, dict):
        raise SpecError(f"{p}: config.json", f"holds a {type(config).__name__}, not a model", KERAS_FIX)
    check_depth(config, f"{p}: config.json")  # the layer walk recurses into nested models
    return config


def load_keras_model(path: str | Path) -> Model:
    """The layers, input shape and weights of a ``.keras`` file (see the module's text for what is read).

    Raises `SpecError` naming the file when it is not a Keras model, and `ModelMappingError` (exit 2) naming the
    layer a model cannot be expressed by, or listing every layer featmap has no kind for, one a line.
    """
    from featmap.net.spec.keras_graph import functional

    p = Path(path)
    config = read_config(p)
    kind, conf = config.get("class_name"), config.get("config")
    if kind not in ("Sequential", "Functional") or not isinstance(conf, dict):
        raise ModelMappingError(
            str(p),
            f"holds a {kind} model: a subclassed model keeps no layer graph in its config",
            "rebuild it as a Sequential or Functional model, or write the spec by hand",
        )
    reader = KerasLayers(str(p))
    layers = reader.sequential(conf) if kind == "Sequential" else functional(conf, reader)
    if reader.refused:
        raise ModelMappingError(
            str(p),
            f"{len(reader.refused)} layer(s) have no featmap layer",
            f"{KERAS_FIX}; write the spec by hand for others",
            details=tuple(reader.refused),
        )
    name = str(conf.get("name") or p.stem)
    dims = reader.dims
    shape = tuple(d for d in dims if isinstance(d, int)) if dims and all(isinstance(d, int) for d in dims) else None
    return Model(
        name,
        layers,
        shape,
        f"Keras model {name} ({p.name})",
        str(p),
        weights=p.resolve(),
        input_dims=() if shape is not None else dims,
    )


def _ints(value: Any, count: int = 2) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),) * count


def _pads(value: Any) -> tuple[int, int, int, int]:
    """``ZeroPadding2D``'s ``padding`` (an int, ``[h, w]`` or ``[[top, bottom], [left, right]]``) per side."""
    if isinstance(value, int):
        return (value,) * 4
    rows, cols = value
    top, bottom = (rows, rows) if isinstance(rows, int) else rows
    left, right = (cols, cols) if isinstance(cols, int) else cols
    return (int(top), int(bottom), int(left), int(right))


class KerasLayers:
    """Keras layer configs → featmap layers, noting what has no featmap kind in ``refused``."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.refused: list[str] = []
        #: The outermost input as (H, W, C), ``"H"``/``"W"`` for open sizes; () until an input is seen.
        self.dims: tuple[int | str, ...] = ()
        #: A ``ZeroPadding2D`` waiting for the conv it is folded into: its name and (top, bottom, left, right).
        self.pad: tuple[str, tuple[int, int, int, int]] | None = None

    def input_dims(self, dims: Any) -> None:
        """Note the model's input from a ``batch_shape`` (the first seen is the outermost model's)."""
        if self.dims or not isinstance(dims, list) or len(dims) != 4:
            return
        self.dims = tuple(d if isinstance(d, int) else n for d, n in zip(dims[1:], ("H", "W", "C"), strict=True))

    def sequential(self, conf: dict[str, Any]) -> tuple[LayerSpec, ...]:
        """The layers of a ``Sequential`` model's config, in order."""
        out: list[LayerSpec] = []
        for item in conf.get("layers", []):
            if not isinstance(item, dict):
                continue
            cls, lc = str(item.get("class_name")), item.get("config", {})
            if cls == "InputLayer":
                self.input_dims(lc.get("batch_shape") or lc.get("batch_input_shape"))
                continue
            build = item.get("build_config") or {}
            self.input_dims(build.get("input_shape"))
            out += self.layer(cls, lc, build)
        self.flush()
        return tuple(out)

    def flush(self) -> None:
        """Refuse a ``ZeroPadding2D`` that no conv follows (the end of a model or branch, a fork)."""
        if self.pad is not None:
            self.refuse(self.pad[0], "ZeroPadding2D", "no Conv2D with valid padding right after it to fold it into")
            self.pad = None

    def layer(self, cls: str, lc: dict[str, Any], build: dict[str, Any]) -> list[LayerSpec]:
        """The featmap layers of one Keras layer (none, noted in ``refused``, when there is no such kind)."""
        from featmap.net.spec.keras_graph import functional

        name = str(lc.get("name"))
        if lc.get("data_format", "channels_last") != "channels_last":
            return self.refuse(name, cls, f"data_format {lc.get('data_format')} (featmap is channels_last)")
        pending, self.pad = self.pad, None
        if cls == "ZeroPadding2D":  # folded into the valid conv after it: the conv's own padding, per side
            self.pad = pending  # two in a row: the first is refused below when the second finds no conv
            self.flush()
            self.pad = (name, _pads(lc.get("padding", 1)))
            return []
        if pending is not None:
            if cls in ("Conv2D", "DepthwiseConv2D") and lc.get("padding", "valid") == "valid":
                return self.conv(cls, {**lc, "padding": pending[1]}, name)
            self.pad = pending
            self.flush()
        if cls == "Sequential":
            return [Sequential(self.sequential(lc), name)]
        if cls == "Functional":
            return [Sequential(functional(lc, self), name)]
        if cls in ("Conv2D", "DepthwiseConv2D"):
            return self.conv(cls, lc, name)
        if cls in ("MaxPooling2D", "AveragePooling2D"):
            kind = PoolKind.MAX if cls.startswith("Max") else PoolKind.AVG
            size = _ints(lc.get("pool_size", 2))
            stride = _ints(lc.get("strides") or size)
            return [Pool2d(kind, size, stride, str(lc.get("padding", "valid")), name=name)]  # type: ignore[arg-type]
        if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            kind = PoolKind.AVG if "Average" in cls else PoolKind.MAX
            return [GlobalPool2d(kind, name), *([] if lc.get("keepdims") else [Flatten()])]
        if cls == "Flatten":
            return [Flatten(name)]
        if cls == "Dense":
            spatial = isinstance(build.get("input_shape"), list) and len(build["input_shape"]) > 2
            dense = Dense(int(lc["units"]), bool(lc.get("use_bias", True)), name, pointwise=spatial)
            return [dense, *self.activation(lc, name, cls)]
        if cls == "BatchNormalization":
            if lc.get("axis", -1) not in (-1, 3, [-1], [3]):
                return self.refuse(name, cls, f"axis {lc.get('axis')} (featmap normalises the channels)")
            if lc.get("renorm"):
                return self.refuse(name, cls, "batch renormalisation")
            return [BatchNorm(name, float(lc.get("epsilon", 1e-3)))]
        if cls in ("Dropout", "SpatialDropout2D"):
            return [Dropout(float(lc.get("rate", 0.5)), name)]
        if cls == "Identity":
            return []
        if cls == "Activation":
            return self.activation(lc, name, cls, named=True)
        return self.simple(cls, lc, name)

    def simple(self, cls: str, lc: dict[str, Any], name: str) -> list[LayerSpec]:
        """The activation layers (``ReLU``, ``LeakyReLU``, ``Softmax``); a refusal for anything else."""
        if cls == "ReLU":
            top, slope, threshold = lc.get("max_value"), lc.get("negative_slope") or 0.0, lc.get("threshold") or 0.0
            if threshold or (slope and top is not None):
                return self.refuse(name, cls, "a threshold, or a slope with a maximum")
            if top is None and slope:
                return [Act(Activation.LEAKY_RELU, (("slope", float(slope)),), name)]
            if top is None:
                return [Act(Activation.RELU, name=name)]
            if float(top) == 6.0:
                return [Act(Activation.RELU6, name=name)]
            return self.refuse(name, cls, f"max_value {top} (featmap has ReLU6)")
        if cls == "LeakyReLU":
            slope = float(lc.get("negative_slope", lc.get("alpha", 0.3)))
            return [Act(Activation.LEAKY_RELU, (("slope", slope),), name)]
        if cls == "Softmax":
            if lc.get("axis", -1) not in (-1, [-1]):
                return self.refuse(name, cls, f"axis {lc.get('axis')} (featmap's softmax is over the channels)")
            return [Softmax(name)]
        return self.refuse(name, cls, "no featmap layer for this Keras layer")

    def conv(self, cls: str, lc: dict[str, Any], name: str) -> list[LayerSpec]:
        depthwise = cls == "DepthwiseConv2D"
        if depthwise and lc.get("depth_multiplier", 1) != 1:
            return self.refuse(name, cls, f"depth_multiplier {lc.get('depth_multiplier')} (featmap: 1)")
        conv = Conv2d(
            filters=None if depthwise else int(lc["filters"]),
            kernel=_ints(lc["kernel_size"]),  # type: ignore[arg-type]
            stride=_ints(lc.get("strides", 1)),  # type: ignore[arg-type]
            padding=lc["padding"] if isinstance(lc.get("padding"), tuple) else str(lc.get("padding", "valid")),
            dilation=_ints(lc.get("dilation_rate", 1)),  # type: ignore[arg-type]
            groups=int(lc.get("groups", 1)),
            bias=bool(lc.get("use_bias", True)),
            name=name,
            depthwise=depthwise,
        )
        return [conv, *self.activation(lc, name, cls)]

    def activation(self, lc: dict[str, Any], name: str, cls: str, *, named: bool = False) -> list[LayerSpec]:
        """A layer's ``activation`` as a layer after it (named after the layer for an ``Activation`` layer)."""
        act = lc.get("activation", "linear")
        if isinstance(act, dict):
            act = act.get("config", {}).get("name", act.get("class_name"))
        own = name if named else None
        if act in (None, "linear"):
            return []
        if act == "softmax":
            return [Softmax(own)]
        if act == "leaky_relu":  # keras.activations.leaky_relu: slope 0.2
            return [Act(Activation.LEAKY_RELU, (("slope", 0.2),), own)]
        if act not in _ACTIVATIONS:
            known = ", ".join(sorted({*_ACTIVATIONS, "softmax", "leaky_relu"}))
            return self.refuse(name, cls, f"activation {act!r} (featmap has {known})")
        return [Act(Activation(_ACTIVATIONS[str(act)]), name=own)]

    def refuse(self, name: str, cls: str, reason: str) -> list[LayerSpec]:
        self.refused.append(f"{name} ({cls}): {reason}")
        return []
