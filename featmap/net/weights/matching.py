"""Matching a weights file to a network: every tensor the network needs, found, missing or mis-shaped, and every
tensor of the file no layer takes, all at once (`check_tensors`), as ``featmap weights check`` prints them and
as the one error a run stops with (`match_weights`).

Names are looked up as the network keys them (`featmap.net.plan`: PyTorch's ``state_dict`` names), with what a
PyTorch file may add: a ``module.`` (``nn.DataParallel``) or ``_orig_mod.`` (``torch.compile``) prefix on every
name is read without it, a layer's one tensor may be the bare parameter (ConvNeXt's ``features.1.0.layer_scale``
for ``….layer_scale.weight``), and a per-channel tensor may carry trailing 1s (``(C, 1, 1)`` for ``(C,)``). In
the Keras layout the Keras names and layouts are looked up and converted (`featmap.net.weights.layouts`).

Examples
--------
>>> found = {"fc.weight": np.zeros((10, 4)), "fc.bias": np.zeros(10), "head.weight": np.zeros(3)}
>>> check = check_tensors({"fc.weight": (2, 4), "fc.bias": (2,), "0.weight": (3,)}, found)
>>> [(row.key, row.status) for row in check.rows]
[('fc.weight', 'shape'), ('fc.bias', 'shape'), ('0.weight', 'missing'), ('head.weight', 'unused')]
>>> check.summary()
'3 tensors: 0 found, 1 missing, 2 mis-shaped; 1 in the file not used'
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import FeatmapError, ShapeError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.net.weights._common import Weights, shape_text, split_key
from featmap.net.weights.layouts import _file_names, to_torch_layout

if TYPE_CHECKING:
    from featmap.net.plan import PlanNode

__all__ = ["MAX_LINES", "STATUSES", "NetworkTensors", "TensorRow", "WeightsCheck", "check_tensors", "match_weights"]

#: What a row says of a tensor: the network's and found with its shape, not in the file, in the file with another
#: shape, in the file and taken by no layer.
STATUSES = ("ok", "missing", "shape", "unused")
#: Lines an error lists under its one line (the rest are counted; ``featmap weights check`` shows every tensor).
MAX_LINES = 20
#: Prefixes a wrapper puts on every name: ``nn.DataParallel`` / ``DistributedDataParallel``, ``torch.compile``.
_PREFIXES = ("module.", "_orig_mod.")
_RANK_KINDS = {4: "conv", 3: "conv1d", 2: "dense"}
_SKIPPED = "num_batches_tracked"  # batch norm's counter: nothing to run
_NEAR = 3  # nearest names shown for a missing tensor
_NEAR_ROWS = 500  # missing tensors that get them


Shape = tuple[int, ...]


@frozen_dataclass
class TensorRow:
    """One tensor: the ``key`` the network asks for (for ``unused``, the file's name), its ``status``, the shape
    the network needs (``expected``, PyTorch layout) and the file's (``found``, as stored), the layer taking it,
    the file's name where it differs from the key, the file's nearest names for a missing one, and a note."""

    key: str
    status: str
    expected: Shape | None = None
    found: Shape | None = None
    layer: str = ""
    name: str = ""
    near: tuple[str, ...] = ()
    note: str = ""

    def line(self) -> str:
        """The row as one line of an error's list."""
        where = f" (layer {self.layer})" if self.layer else ""
        if self.status == "missing":
            near = f"; nearest in the file: {', '.join(self.near)}" if self.near else ""
            return f"missing: {self.key} {_shape(self.expected)}{where}{near}"
        if self.status == "shape":
            named = f" (`{self.name}`)" if self.name and self.name != self.key else ""
            note = f"; {self.note}" if self.note else ""
            return (
                f"mis-shaped: {self.key}{named}: the network needs {_shape(self.expected)}, the file has "
                f"{_shape(self.found)}{where}{note}"
            )
        if self.status == "unused":
            return f"not used: {self.key} {_shape(self.found)}"
        return f"ok: {self.key} {_shape(self.expected)}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "layer": self.layer,
            "tensor": self.key,
            "file_name": self.name or (self.key if self.status != "missing" else None),
            "expected": None if self.expected is None else list(self.expected),
            "found": None if self.found is None else list(self.found),
            "status": self.status,
            "nearest": list(self.near),
            "note": self.note,
        }


@frozen_dataclass
class WeightsCheck:
    """Every tensor of a network against a weights file (``source``): rows in the network's order, then the file's
    tensors no layer takes; ``notes`` say how names were read (a stripped prefix)."""

    source: str
    rows: tuple[TensorRow, ...]
    notes: tuple[str, ...] = ()
    layout: str = "torch"

    def count(self, status: str) -> int:
        """How many rows have ``status``."""
        return sum(1 for row in self.rows if row.status == status)

    @property
    def ok(self) -> bool:
        """Whether every tensor the network needs is in the file with its shape (unused ones do not count)."""
        return not any(row.status in ("missing", "shape") for row in self.rows)

    def summary(self) -> str:
        """``102 tensors: 99 found, 2 missing, 1 mis-shaped; 3 in the file not used``."""
        needed = sum(1 for row in self.rows if row.status != "unused")
        text = (
            f"{needed} tensor{'s' if needed != 1 else ''}: {self.count('ok')} found, {self.count('missing')} "
            f"missing, {self.count('shape')} mis-shaped"
        )
        unused = self.count("unused")
        return f"{text}; {unused} in the file not used" if unused else text

    def error(self) -> FeatmapError | None:
        """The one error a run stops with (None when every tensor fits): the counts on one line, then at most
        `MAX_LINES` lines, missing and mis-shaped tensors first."""
        if self.ok:
            return None
        order = {"missing": 0, "shape": 1, "unused": 2}
        rows = sorted((r for r in self.rows if r.status != "ok"), key=lambda r: order[r.status])
        lines = [row.line() for row in rows[:MAX_LINES]]
        if len(rows) > MAX_LINES:
            lines.append(f"… and {len(rows) - MAX_LINES} more")
        lines += list(self.notes)
        missing = self.count("missing")
        fix = "`featmap weights check` lists every tensor; see README, 'Weights files'"
        if not missing and any("Keras layout" in row.note for row in rows):
            fix = "they look like Keras layout; declare the Keras layout (--layout keras)"
        cls = SpecError if missing else ShapeError
        first = f"{rows[0].key} {'missing' if rows[0].status == 'missing' else 'mis-shaped'}"
        return cls(self.source, f"does not fit the network: {self.summary()} (first: {first})", fix, details=lines)

    def warnings(self) -> list[str]:
        """Tensors no layer takes, and how names were read, for a run that goes on."""
        extra = [row.key for row in self.rows if row.status == "unused"]
        out = [f"{self.source}: {note}" for note in self.notes]
        if extra:
            shown = ", ".join(extra[:8]) + (f", … ({len(extra) - 8} more)" if len(extra) > 8 else "")
            out.append(
                f"{self.source}: {len(extra)} tensor{'s' if len(extra) > 1 else ''} not used by the network: {shown}"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the source, the counts, every row and the notes."""
        return {
            "source": self.source,
            "layout": self.layout,
            "ok": self.ok,
            "counts": {status: self.count(status) for status in STATUSES},
            "tensors": [row.as_dict() for row in self.rows],
            "notes": list(self.notes),
        }


@frozen_dataclass
class NetworkTensors:
    """What a planned network needs from a weights file: tensor key → PyTorch-layout shape in run order, each
    layer's kind (`featmap.net.weights.KINDS`) and label (``5.1.1 conv1``)."""

    expected: dict[str, Shape] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def of(nodes: Sequence[PlanNode]) -> NetworkTensors:
        """The tensors of every layer of ``nodes`` that takes weights from a file (not one whose kernels the spec
        names)."""
        from featmap.net.layers import Conv2d
        from featmap.net.plan import iter_leaves

        wanted = NetworkTensors()
        for node in iter_leaves(nodes):
            if not node.plan.weights or (isinstance(node.layer, Conv2d) and node.layer.bank is not None):
                continue
            wanted.kinds[node.key] = _KINDS.get(node.plan.kind, "conv")
            wanted.labels[node.key] = f"{node.path} {node.plan.name}"
            for name, shape in node.plan.weights:
                wanted.expected[f"{node.key}.{name}"] = shape
        return wanted


# How a layer's tensors are laid out and initialised: a layer norm's scale and shift and a layer scale's factors
# start as batch norm's (ones and zeros).
_KINDS = {
    "Dense": "dense",
    "BatchNorm": "bn",
    "Conv1d": "conv1d",
    "DepthwiseConv2d": "depthwise",
    "LayerNorm": "bn",
    "LayerScale": "bn",
}


def _shape(shape: Shape | None) -> str:
    return "?" if shape is None else shape_text(shape)


def _strip_prefix(expected: Mapping[str, Shape], found: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    """``found`` without a wrapper's prefix on every name, when the network's names have none."""
    names = [n for n in found if not n.endswith(_SKIPPED)]
    for prefix in _PREFIXES:
        if names and all(n.startswith(prefix) for n in names) and not any(k.startswith(prefix) for k in expected):
            kept = {n[len(prefix) :]: a for n, a in found.items() if n.startswith(prefix)}
            return kept, f"every name starts with `{prefix}` (a wrapped model's state_dict): read without it"
    return found, None


def _fit(array: NDArray[Any], shape: Shape) -> tuple[NDArray[Any] | None, str]:
    """``array`` as ``shape`` where only trailing 1s differ (a per-channel ``(C, 1, 1)`` for ``(C,)``)."""
    if array.shape == shape:
        return array, ""
    if len(shape) == 1 and array.ndim > 1 and array.shape[0] == shape[0] and all(n == 1 for n in array.shape[1:]):
        return array.reshape(shape), f"{shape_text(array.shape)} read as {shape_text(shape)}"
    return None, ""


def _resolve(
    expected: Mapping[str, Shape],
    found: Mapping[str, NDArray[Any]],
    layout: str,
    kinds: Mapping[str, str],
    labels: Mapping[str, str],
    source: str,
) -> tuple[WeightsCheck, Weights]:
    if layout not in ("torch", "keras"):
        raise SpecError("`layout`", f"must be torch or keras; got {layout!r}")
    found, note = _strip_prefix(expected, found)
    bn_layers = {split_key(k)[0] for k in expected if split_key(k)[1] == "running_mean"}
    per_layer: dict[str, int] = {}
    for key in expected:
        per_layer[split_key(key)[0]] = per_layer.get(split_key(key)[0], 0) + 1
    rows: list[TensorRow] = []
    out: Weights = {}
    used: set[str] = set()
    for key, shape in expected.items():
        shape = tuple(int(n) for n in shape)
        layer, suffix = split_key(key)
        kind = kinds.get(layer) or (
            "bn" if layer in bn_layers else {4: "conv", 3: "conv1d", 2: "dense"}.get(len(shape))
        )
        label = labels.get(layer, "")
        if layout == "keras":
            names = _file_names(key, len(shape), kind, layer in bn_layers)
        else:
            names = [key] + ([layer] if layer and suffix == "weight" and per_layer[layer] == 1 else [])
        name = next((n for n in names if n in found), None)
        if name is None:
            rows.append(TensorRow(key, "missing", shape, None, label))
            continue
        used.add(name)
        array = np.asarray(found[name])
        converted = (
            to_torch_layout(array, kind, "keras")
            if layout == "keras" and kind and kind != "bn" and array.ndim == len(shape)
            else array
        )
        fitted, fit_note = _fit(converted, shape)
        if fitted is None:
            hint = ""
            if (
                layout == "torch"
                and kind in ("conv", "dense", "conv1d")
                and array.ndim == len(shape)
                and to_torch_layout(array, kind, "keras").shape == shape
            ):
                hint = "Keras layout?"
            elif layout == "keras":
                hint = "PyTorch layout after conversion"
            rows.append(
                TensorRow(key, "shape", shape, tuple(array.shape), label, name if name != key else "", (), hint)
            )
            continue
        out[key] = fitted
        rows.append(TensorRow(key, "ok", shape, tuple(array.shape), label, name if name != key else "", (), fit_note))
    pool = [n for n in found if n not in used and not n.endswith(_SKIPPED)]
    taken = [n for n in found if n in used]
    looked = 0
    for i, row in enumerate(rows):
        if row.status == "missing" and looked < _NEAR_ROWS:  # difflib is quadratic: enough rows for anyone to read
            looked += 1
            # the file's unused names first (a renamed tensor), then names other layers took
            near = difflib.get_close_matches(row.key, pool, n=_NEAR, cutoff=0.6)
            if len(near) < _NEAR:
                near += difflib.get_close_matches(row.key, taken, n=_NEAR - len(near), cutoff=0.6)
            rows[i] = TensorRow(row.key, row.status, row.expected, None, row.layer, "", tuple(near))
    rows += [TensorRow(n, "unused", None, tuple(np.shape(found[n]))) for n in pool]
    check = WeightsCheck(source, tuple(rows), () if note is None else (note,), layout)
    return check, out


def check_tensors(
    expected: Mapping[str, Shape],
    found: Mapping[str, NDArray[Any]],
    *,
    layout: str = "torch",
    kinds: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    source: str = "weights",
) -> WeightsCheck:
    """Every tensor of ``expected`` (key → PyTorch-layout shape, the network's order) looked up in ``found`` (what
    `featmap.net.weights.load_weights` read from ``source``), and every tensor of ``found`` no key takes.

    ``kinds`` maps layer keys to `featmap.net.weights.KINDS` (the rank decides where absent), ``labels`` layer keys
    to what the rows call the layer. Raises nothing for a tensor that does not fit: its row says so.
    """
    return _resolve(expected, found, layout, kinds or {}, labels or {}, source)[0]


def match_weights(
    expected: Mapping[str, Shape],
    found: Mapping[str, NDArray[Any]],
    *,
    layout: str = "torch",
    kinds: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    source: str = "weights",
) -> tuple[Weights, list[str]]:
    """The tensors a network needs, in ``expected`` order and PyTorch layout, and warnings.

    ``expected`` maps tensor names (`featmap.net.plan`'s keys) to PyTorch-layout shapes; ``found`` is what
    `load_weights` read from ``source``. With ``layout="keras"`` the Keras names and layouts are looked up and
    converted (``kinds`` maps layer keys to `KINDS`; the rank decides when it is absent).

    Raises one error listing every missing and mis-shaped tensor (`SpecError` when one is missing, else
    `ShapeError`; its ``details`` are the list: the counts, then at most `MAX_LINES` lines, a missing tensor with
    the file's nearest names, a mis-shaped one with both shapes). The warnings name tensors the network does
    not use.

    Examples
    --------
    >>> w, warn = match_weights({"0.weight": (2, 3)}, {"0.weight": np.ones((2, 3)), "9.bias": np.ones(2)})
    >>> w["0.weight"].shape, warn
    ((2, 3), ['weights: 1 tensor not used by the network: 9.bias'])
    """
    check, out = _resolve(expected, found, layout, kinds or {}, labels or {}, source)
    error = check.error()
    if error is not None:
        raise error
    return out, check.warnings()
