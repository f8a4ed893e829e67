"""Kernel files: YAML or JSON holding one kernel (a mapping with ``name``), a list of them, or a mapping
with a ``kernels`` list; read, validated and turned into `Kernel` records.

Every error names the file, the kernel and the key. Numbers must be finite; a matrix is bounded by
the kernel-size limit before it is built, and the file by the limits of `featmap.documents`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.documents import read_document
from featmap.errors import KernelFileError, LimitError, brief
from featmap.kernels.generators import GENERATORS, rotations
from featmap.kernels.parametric import parametric_kernel
from featmap.kernels.records import Kernel
from featmap.limits import KERNEL_SIZE

__all__ = ["KERNEL_SUFFIXES", "NAME_PATTERN", "load_kernel_file"]

KERNEL_SUFFIXES = (".yaml", ".yml", ".json")
#: A kernel's name (and a tag): letters, digits, ``_`` and ``-``, at most 64, safe in a file name.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_NAME = NAME_PATTERN
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_KEYS = {
    "name",
    "weights",
    "generate",
    "bias",
    "scale",
    "normalize",
    "description",
    "tags",
    "source",
    "rotations",
}


def _entries(doc: Any, where: str) -> list[Any]:
    if isinstance(doc, Mapping) and "kernels" in doc:
        doc = doc["kernels"]
    elif isinstance(doc, Mapping) and "name" in doc:
        doc = [doc]
    if not isinstance(doc, list):
        kind = "empty" if doc is None else f"a {type(doc).__name__}"
        raise KernelFileError(
            where,
            f"is {kind}, not a kernel list",
            "write a list of kernels, a mapping with a `kernels:` list, or one kernel with `name:`",
        )
    if not doc:
        raise KernelFileError(where, "holds no kernels", "add at least one kernel")
    return doc


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise KernelFileError(where, f"must be a number; got {brief(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float's range
        number = float("inf")
    if not abs(number) <= _FLOAT32_MAX:  # also catches nan
        raise KernelFileError(
            where, f"must be finite and within float32's range (±3.4e38); got {brief(value)}", "use a smaller number"
        )
    return number


def _finite(weights: NDArray[np.float64], where: str, fix: str) -> NDArray[np.float64]:
    """``weights`` unchanged, or an error when scaling or normalising overflowed to inf/nan."""
    if not (np.abs(weights) <= _FLOAT32_MAX).all():
        raise KernelFileError(where, "makes weights beyond float32's range (±3.4e38) or not numbers", fix)
    return weights


def _matrix(rows: Any, where: str) -> NDArray[np.float64]:
    if not isinstance(rows, list) or not rows:
        raise KernelFileError(where, "must be a non-empty list of rows", "e.g. [[0, 1, 0], [1, -4, 1], [0, 1, 0]]")
    KERNEL_SIZE.check(len(rows), f"{where}: rows")
    width = None
    out = []
    for r, row in enumerate(rows, start=1):
        if not isinstance(row, list) or not row:
            raise KernelFileError(where, f"row {r} is not a non-empty list of numbers; got {brief(row)}")
        if width is None:
            KERNEL_SIZE.check(len(row), f"{where}: columns")
            width = len(row)
        elif len(row) != width:
            raise KernelFileError(
                where,
                f"row {r} has {len(row)} values but row 1 has {width}",
                "give every row the same length",
            )
        out.append([_number(v, f"{where} row {r}") for v in row])
    return np.array(out, dtype=np.float64)


def _weights(value: Any, where: str) -> NDArray[np.float64]:
    if (
        isinstance(value, list)
        and value
        and all(isinstance(r, list) and r and all(isinstance(c, list) for c in r) for r in value)
    ):
        KERNEL_SIZE.check(len(value), f"{where}: channels")
        slices = [_matrix(m, f"{where}[{c}]") for c, m in enumerate(value)]
        if len({s.shape for s in slices}) != 1:
            raise KernelFileError(where, "per-channel matrices differ in size", "give every channel the same size")
        return np.stack(slices)
    return _matrix(value, where)


def _kernel_from_entry(entry: Any, index: int, path: str) -> list[Kernel]:
    if not isinstance(entry, Mapping):
        raise KernelFileError(
            f"{path}: kernel #{index + 1}",
            f"is a {type(entry).__name__}, not a mapping",
            "write `name:` and `weights:`",
        )
    name = entry.get("name")
    label = f"{path}: kernel #{index + 1}" if not isinstance(name, str) else f"{path}: kernel {brief(name)}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise KernelFileError(
            f"{label}: `name`",
            f"must be letters, digits, '_' or '-' (at most 64, not starting with '_' or '-'); got {brief(name)}",
            "rename the kernel",
        )
    unknown = [key for key in entry if key not in _KEYS]
    if unknown:
        raise KernelFileError(
            f"{label}: `{str(unknown[0])[:40]}`", "is not a kernel key", f"use: {', '.join(sorted(_KEYS))}"
        )
    if ("weights" in entry) == ("generate" in entry):
        raise KernelFileError(
            f"{label}: `weights`",
            "is missing" if "weights" not in entry else "and `generate` are both given",
            "give a matrix of numbers as `weights`, or `generate: gaussian:size=5,sigma=1.2`",
        )
    if "generate" in entry:
        recipe = entry["generate"]
        if not isinstance(recipe, str) or recipe.partition(":")[0].strip().lower() not in GENERATORS:
            raise KernelFileError(
                f"{label}: `generate`",
                f"must name a generator; got {brief(recipe)}",
                f"use one of: {', '.join(GENERATORS)}",
            )
        try:
            weights = parametric_kernel(recipe).weights.astype(np.float64)
        except KernelFileError as exc:
            raise KernelFileError(f"{label}: `generate`", str(exc)) from None
        except LimitError as exc:
            raise LimitError(f"{label}: `generate`: {exc.what}", exc.problem, exc.fix) from None
    else:
        weights = _weights(entry["weights"], f"{label}: `weights`")
    if "scale" in entry and entry.get("normalize"):
        raise KernelFileError(label, "has both `scale` and `normalize`", "keep one")
    if "scale" in entry:
        with np.errstate(all="ignore"):
            weights = weights * _number(entry["scale"], f"{label}: `scale`")
        weights = _finite(weights, f"{label}: `scale`", "use a smaller scale")
    normalize = entry.get("normalize", False)
    if not isinstance(normalize, bool):
        raise KernelFileError(f"{label}: `normalize`", f"must be true or false; got {brief(normalize)}")
    if normalize:
        total = weights.sum()
        if abs(total) < 1e-12:
            raise KernelFileError(
                f"{label}: `normalize`",
                "the weights sum to 0, so they cannot be divided by their sum",
                "remove `normalize` (edge kernels sum to 0 by design) or use `scale`",
            )
        with np.errstate(all="ignore"):
            weights = weights / total
        weights = _finite(weights, f"{label}: `normalize`", "use `scale` instead")
    bias = None if entry.get("bias") is None else _number(entry["bias"], f"{label}: `bias`")
    tags = entry.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) and _NAME.match(t) for t in tags):
        raise KernelFileError(f"{label}: `tags`", f"must be a list of simple words; got {brief(tags)}")
    text = {}
    for key in ("description", "source"):
        value = entry.get(key, "")
        if not isinstance(value, str):
            raise KernelFileError(f"{label}: `{key}`", f"must be text; got {brief(value)}")
        text[key] = value.strip()
    count = entry.get("rotations", 1)
    if isinstance(count, bool) or count not in (1, 2, 4, 8):
        raise KernelFileError(f"{label}: `rotations`", f"must be 1, 2, 4 or 8; got {brief(count)}")
    if count == 1:
        return [Kernel(name, weights, bias, text["description"], tuple(tags), text["source"], path)]
    try:
        turned = rotations(weights, count)
    except KernelFileError as exc:
        raise KernelFileError(f"{label}: `rotations`", exc.problem, "use rotations: 4 for non-3x3 kernels") from None
    return [
        Kernel(
            f"{name}_{angle}",
            w,
            bias,
            f"{text['description']} (turned {angle}°)".strip(),
            (*tags, name),
            text["source"],
            path,
        )
        for angle, w in turned
    ]


def load_kernel_file(path: str | os.PathLike[str]) -> list[Kernel]:
    """Read every kernel in a YAML or JSON file, validating as it goes.

    Raises `KernelFileError` naming the file, the kernel and the key on any problem.
    """
    p = Path(path)
    doc = read_document(p, KernelFileError, "check the path")
    kernels: list[Kernel] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(_entries(doc, str(p))):
        for k in _kernel_from_entry(entry, index, str(p)):
            if k.name in seen:
                raise KernelFileError(
                    f"{p}: kernel {k.name!r}",
                    f"has the same name as kernel #{seen[k.name] + 1}",
                    "rename one",
                )
            seen[k.name] = index
            kernels.append(k)
    return kernels
