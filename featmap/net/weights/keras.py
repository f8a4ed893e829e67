"""Keras 3 weights files: ``.weights.h5`` (``model.save_weights``) and ``.keras`` (``model.save``: a zip holding
``config.json`` and ``model.weights.h5``), read with ``h5py`` (the ``keras`` extra; TensorFlow is not needed).

Keras 3 stores a layer's variables as ``layers/<path name>/vars/0, 1, …`` and the layer's own name in the
``name`` attribute of its ``vars`` group (``layers/conv2d_1/vars`` holds ``name = "c2"``). The variables come
back under Keras names, ``<layer name>.<variable>``, in Keras layout, e.g. ``c2.kernel`` (kh, kw, I, O) and
``c2.bias``; `featmap.net.weights.match_weights` with ``layout="keras"`` turns them to featmap's layout. A layer
inside a nested model is ``<outer>.<inner>.<variable>``.

Which variable is which comes from the layer's class: from ``config.json`` in a ``.keras`` file, else from the
path name Keras derives from the class (``batch_normalization_2``). Conv, dense and depthwise layers hold
``kernel`` then ``bias`` (when ``use_bias``); batch norm ``gamma`` (when ``scale``), ``beta`` (when
``center``), ``moving_mean``, ``moving_variance`` (a missing ``gamma`` is ones, a missing ``beta`` zeros, as
Keras computes them); layer norm ``gamma``, ``beta``. Other layers' variables keep their index (``name.0``).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import MissingExtraError, SpecError, install_hint
from featmap.net.weights._common import BYTES_ENV, DEFAULT_BYTES, check_size, limit

__all__ = ["HDF5_MAGIC", "is_keras_file", "read_keras"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_INSTALL = install_hint("keras", "h5py; TensorFlow is not needed")
_CORRUPT = "re-save it with model.save_weights('model.weights.h5') or model.save('model.keras')"


def is_keras_file(path: str | Path) -> bool:
    """True for an HDF5 file or a zip holding ``model.weights.h5`` (a ``.keras`` file), judged by content."""
    p = Path(path)
    if not p.is_file():  # a pipe would block here: the weights reader names it
        return False
    try:
        with p.open("rb") as fh:
            head = fh.read(8)
        if head == HDF5_MAGIC:
            return True
        if head.startswith(b"PK"):
            with zipfile.ZipFile(p) as zf:
                return "model.weights.h5" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return False


def read_keras(path: str | Path) -> dict[str, NDArray[Any]]:
    """Every variable of a Keras 3 ``.weights.h5`` or ``.keras`` file as ``{"<layer>.<variable>": array}``.

    Raises `SpecError` naming the file when ``h5py`` is missing, the file is not Keras 3's (a Keras 2 / tf.keras
    HDF5 file has ``model_weights`` or ``layer_names`` instead), is corrupt, or over the weights limits.
    """
    p = Path(path)
    try:
        import h5py
    except ImportError:
        raise MissingExtraError(str(p), "is a Keras weights file and h5py is not installed", _INSTALL) from None
    classes: dict[str, Mapping[str, Any]] = {}
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                member = zf.getinfo("model.weights.h5")
                max_bytes = limit(BYTES_ENV, DEFAULT_BYTES)
                if member.file_size > max_bytes:
                    raise SpecError(
                        f"{p}: model.weights.h5",
                        f"is {member.file_size:,} bytes, over the limit of {max_bytes:,}",
                        f"set {BYTES_ENV}={member.file_size}",
                    )
                if "config.json" in zf.namelist():
                    classes = _classes(json.loads(zf.read("config.json")))
                data: Any = io.BytesIO(zf.read(member))
        else:
            data = str(p)
        with h5py.File(data, "r") as f:
            if "model_weights" in f or "layer_names" in f.attrs:
                raise SpecError(
                    str(p),
                    "is a Keras 2 (tf.keras) HDF5 file, not Keras 3's",
                    "load it in Keras 3 and save it again with model.save_weights('model.weights.h5')",
                )
            if "layers" not in f:
                raise SpecError(str(p), "is an HDF5 file without Keras 3 `layers`", _CORRUPT)
            return _read_layers(f["layers"], "", classes, str(p))
    except SpecError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise SpecError(str(p), f"cannot be read as a Keras file ({str(exc)[:80]})", _CORRUPT) from None


def _classes(config: Any) -> dict[str, Mapping[str, Any]]:
    """Layer name → ``{"class_name": …, **config}`` for every layer in a ``config.json``, nested models too."""
    found: dict[str, Mapping[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            conf = node.get("config")
            if isinstance(node.get("class_name"), str) and isinstance(conf, dict) and isinstance(conf.get("name"), str):
                found.setdefault(conf["name"], {"class_name": node["class_name"], **conf})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("conv2_d", "conv2d").replace("conv1_d", "conv1d")


def _names(kind: str, conf: Mapping[str, Any], count: int) -> list[str] | None:
    """The variables' names of a layer of ``kind`` (a snake-case class name) holding ``count`` of them."""
    if kind in ("conv2d", "conv1d", "dense", "depthwise_conv2d", "conv2d_transpose"):
        return ["kernel", "bias"][:count]
    if kind == "batch_normalization":
        if conf:
            names = [n for n, on in (("gamma", conf.get("scale", True)), ("beta", conf.get("center", True))) if on]
            return [*names, "moving_mean", "moving_variance"]
        return {4: ["gamma", "beta", "moving_mean", "moving_variance"], 2: ["moving_mean", "moving_variance"]}.get(
            count
        )
    if kind == "layer_normalization":
        return ["gamma", "beta"][:count] if count == 2 or conf.get("scale", True) else ["beta"]
    return [str(i) for i in range(count)]


def _read_layers(group: Any, prefix: str, classes: Mapping[str, Mapping[str, Any]], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    total = 0
    for path_name, layer in _items(group):
        vars_group = layer.get("vars")
        name = str(vars_group.attrs.get("name", path_name)) if vars_group is not None else path_name
        if "layers" in layer:  # a nested model: its layers under its name
            out.update(_read_layers(layer["layers"], f"{prefix}{name}.", classes, where))
        if vars_group is None or not len(vars_group):
            continue
        conf = classes.get(name, {})
        kind = _snake(str(conf["class_name"])) if "class_name" in conf else re.sub(r"_\d+$", "", path_name)
        datasets = [vars_group[str(i)] for i in range(len(vars_group))]
        names = _names(kind, conf, len(datasets))
        if names is None or len(names) != len(datasets):
            raise SpecError(
                f"{where}: layer `{name}`",
                f"holds {len(datasets)} variables and its options cannot be told from a .weights.h5 file",
                "give the .keras file (model.save), whose config.json says which they are",
            )
        for var, data in zip(names, datasets, strict=True):
            key = f"{prefix}{name}.{var}"
            if data.dtype.kind not in "iuf":
                raise SpecError(f"{where}: tensor `{key}`", f"has non-numeric dtype {data.dtype}", _CORRUPT)
            total += int(np.prod(data.shape, dtype=np.int64)) * data.dtype.itemsize
            check_size(where, key, tuple(int(n) for n in data.shape), total)
            out[key] = np.asarray(data[()])
        if kind == "batch_normalization":  # Keras computes without a missing gamma (ones) or beta (zeros)
            channels = out[f"{prefix}{name}.moving_mean"].shape
            out.setdefault(f"{prefix}{name}.gamma", np.ones(channels, np.float32))
            out.setdefault(f"{prefix}{name}.beta", np.zeros(channels, np.float32))
    return out


def _items(group: Any) -> Iterator[tuple[str, Any]]:
    """A group's sub-groups in the order Keras wrote them (HDF5 lists them by name)."""
    for name in group:
        item = group[name]
        if hasattr(item, "keys"):
            yield name, item
