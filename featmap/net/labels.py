"""Class names of a network's outputs: shipped sets (``imagenet-1k``) and label files.

A label file is one name a line (blank lines at the end ignored), or JSON: a list of names, or a mapping
from index (``"0"``, ``"1"``, …) to name covering 0 … N-1 once each. ``imagenet-1k`` is ImageNet's 1000
classes in torchvision's wording and order (``featmap/net/models/imagenet-1k.txt``, written from
torchvision's ``_IMAGENET_CATEGORIES``): 0 tench, 1 goldfish, 207 golden retriever, 281 tabby, 999 toilet
tissue.

Examples
--------
>>> names = load_labels("imagenet-1k")
>>> len(names), names[0], names[207], names[999]
(1000, 'tench', 'golden retriever', 'toilet tissue')
>>> check_labels(("cat", "dog"), 3, "labels.txt")
Traceback (most recent call last):
...
featmap.errors.OptionError: labels.txt: has 2 names but the network's output has 3 values; give one name per output
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from featmap.errors import OptionError, SpecError, brief

__all__ = ["LABEL_SETS", "MAX_LABEL_BYTES", "check_labels", "load_labels", "top_classes"]

_DIR = Path(__file__).resolve().parent / "models"
#: Label sets shipped with featmap, by name.
LABEL_SETS = {"imagenet-1k": _DIR / "imagenet-1k.txt"}
#: A label file larger than this is refused before it is read (100,000 names of 100 characters fit).
MAX_LABEL_BYTES = 16 << 20
_FIX = "one class name a line, or a JSON list of names (or {index: name})"


def load_labels(name_or_path: str | Path, *, relative_to: Path | None = None) -> tuple[str, ...]:
    """The class names of a shipped set (``imagenet-1k``) or a label file (relative to ``relative_to``)."""
    text = str(name_or_path)
    if text.lower() in LABEL_SETS:
        return _read(LABEL_SETS[text.lower()])
    path = Path(text)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if not path.is_file():
        sets = ", ".join(LABEL_SETS)
        problem = "does not exist" if not path.exists() else "is not a file"
        raise OptionError(str(path), problem, f"give a label file ({_FIX}) or a shipped set: {sets}")
    return _read(path)


def _read(path: Path) -> tuple[str, ...]:
    size = path.stat().st_size
    if size > MAX_LABEL_BYTES:
        raise OptionError(str(path), f"is {size:,} bytes, over the label-file limit of {MAX_LABEL_BYTES:,}", _FIX)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(str(path), f"cannot be read as UTF-8 text ({str(exc)[:80]})", _FIX) from None
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OptionError(str(path), f"is not valid JSON ({exc.msg}, line {exc.lineno})", _FIX) from None
        names = _from_json(doc, path)
    else:
        names = text.splitlines()
        while names and not names[-1].strip():
            names.pop()
        names = [n.strip() for n in names]
    if not names:
        raise OptionError(str(path), "holds no class names", _FIX)
    return tuple(names)


def _from_json(doc: object, path: Path) -> list[str]:
    if isinstance(doc, list) and all(isinstance(x, (str, int)) for x in doc):
        return [str(x) for x in doc]
    if isinstance(doc, dict):
        try:
            by_index = {int(k): v for k, v in doc.items()}
        except ValueError:
            by_index = {}
        if (
            by_index
            and sorted(by_index) == list(range(len(by_index)))
            and all(isinstance(v, str) for v in doc.values())
        ):
            return [by_index[i] for i in range(len(by_index))]
        raise OptionError(str(path), "is a JSON object whose keys are not the indices 0 … N-1 with names", _FIX)
    raise OptionError(str(path), f"is JSON but not a list of names ({brief(doc)})", _FIX)


def check_labels(labels: tuple[str, ...], width: int, where: str) -> None:
    """Refuse labels whose count is not the output width (an `OptionError`: exit 2, before any work)."""
    if labels and len(labels) != width:
        raise OptionError(
            where,
            f"has {len(labels)} names but the network's output has {width} values",
            "give one name per output",
        )


def spec_labels(value: object, spec: Path) -> tuple[str, ...]:
    """A spec's ``labels:``: a list of names, a shipped set's name or a file beside the spec."""
    if isinstance(value, list) and all(isinstance(x, (str, int)) for x in value):
        return tuple(str(x) for x in value)
    if isinstance(value, str) and value.strip():
        try:
            return load_labels(value.strip(), relative_to=spec.resolve().parent)
        except OptionError as exc:
            raise SpecError(f"{spec}: labels", f"{exc.what} {exc.problem}", exc.fix) from None
    raise SpecError(
        f"{spec}: labels", "must be a list of class names, a label file or imagenet-1k", "e.g. labels: [cat, dog]"
    )


def top_classes(logits: NDArray[np.floating], k: int = 5, labels: Sequence[str] = ()) -> list[tuple[int, str, float]]:
    """The ``k`` most probable classes of a 1-D output as ``(index, label, probability)``, probabilities by a
    softmax of the logits (already probabilities if they sum to 1 and are >= 0).

    Examples
    --------
    >>> [(i, round(p, 3)) for i, _, p in top_classes(np.array([0.0, 2.0, 1.0]), 2)]
    [(1, 0.665), (2, 0.245)]
    """
    values = np.asarray(logits, dtype=np.float64).ravel()
    if np.all(values >= 0) and abs(values.sum() - 1) < 1e-6:
        probs = values
    else:
        shifted = np.exp(values - values.max())
        probs = shifted / shifted.sum()
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), labels[i] if i < len(labels) else str(int(i)), float(probs[i])) for i in order]
