"""A network's tensors matched to its layers once per planned network and set of tensors (`bound_weights`), not on
every run: `featmap.run.executor.WeightSource.bind` calls it before each run, and matching resnet18's 122 tensors
(`featmap.net.weights.match_weights`, with the tensor list of the plan) took ~0.55 ms of a ~60 ms final-output
run.

A match is reused while the run's planned nodes are the same objects (a plan is immutable) and every tensor the
caller gave is the same array object, under the same name, of the same shape and dtype, as when it was matched,
with the same layout and source name: matching reads nothing else, so it would give the same tensors (the caller's
arrays, or views of them) and the same warnings. Only PyTorch-layout matches are kept (a Keras layout's are
converted copies, which would not follow a change of the caller's values). The arrays are held by weak references
and a match as each tensor's name (and the shape it is read as), so a memo keeps no caller's weights alive; a
failed match raises each time. At most `_ENTRIES` matches are kept (the oldest goes).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from featmap.net.plan import PlanNode

__all__ = ["bound_weights"]

_ENTRIES = 8

_Signature = tuple[tuple[str, Any, tuple[int, ...], np.dtype], ...]
_Recipe = dict[str, tuple[str, tuple[int, ...] | None]]
_MATCHED: OrderedDict[tuple[int, int, str, str], tuple[tuple[PlanNode, ...], _Signature, _Recipe, list[str]]]
_MATCHED = OrderedDict()


def _same(signature: _Signature, tensors: Mapping[str, Any]) -> bool:
    """Whether ``tensors`` holds the same arrays (objects, shapes, dtypes) under the same names as ``signature``."""
    if len(signature) != len(tensors):
        return False
    for (name, ref, shape, dtype), (key, array) in zip(signature, tensors.items(), strict=True):
        if name != key or ref() is not array or array.shape != shape or array.dtype != dtype:
            return False
    return True


def _signature(tensors: Mapping[str, Any]) -> _Signature | None:
    """``tensors``' names, weak references, shapes and dtypes; None where one is not an array (not remembered)."""
    if not all(isinstance(a, np.ndarray) for a in tensors.values()):
        return None
    return tuple((name, weakref.ref(a), a.shape, a.dtype) for name, a in tensors.items())


def bound_weights(
    nodes: Sequence[PlanNode], tensors: Mapping[str, Any], layout: str, source: str
) -> tuple[dict[str, Any], list[str]]:
    """`featmap.net.weights.match_weights` of every layer of ``nodes`` against ``tensors`` (the tensors by key, and
    the warnings), remembered for the same nodes and the same arrays (see the module's notes)."""
    key = (id(nodes), id(tensors), layout, source)
    hit = _MATCHED.get(key)
    if hit is not None:
        planned, signature, recipe, warnings = hit
        if len(planned) == len(nodes) and all(a is b for a, b in zip(planned, nodes, strict=True)):
            if _same(signature, tensors):
                _MATCHED.move_to_end(key)
                return _made(recipe, tensors), list(warnings)
    from featmap.net.weights.matching import NetworkTensors, match_weights

    wanted = NetworkTensors.of(nodes)
    found, warnings = match_weights(
        wanted.expected, tensors, layout=layout, kinds=wanted.kinds, labels=wanted.labels, source=source
    )
    matched = dict(found)
    remembered = _signature(tensors) if layout == "torch" else None  # (Keras layouts are converted: copies)
    made = None if remembered is None else _recipe(matched, tensors)
    if remembered is not None and made is not None:
        _MATCHED[key] = (tuple(nodes), remembered, made, list(warnings))
        while len(_MATCHED) > _ENTRIES:
            _MATCHED.popitem(last=False)
    return matched, list(warnings)


def _recipe(matched: Mapping[str, Any], tensors: Mapping[str, Any]) -> _Recipe | None:
    """Where each matched tensor comes from: the caller's name for it, and the shape it is read as where that is
    not its own (a view); None where one is neither a given array nor a view of one."""
    names = {id(a): name for name, a in tensors.items()}
    recipe = {}
    for key, array in matched.items():
        source = array if id(array) in names else array.base
        if id(source) not in names or not isinstance(array, np.ndarray):
            return None
        recipe[key] = (names[id(source)], None if array is source else array.shape)
    return recipe


def _made(recipe: _Recipe, tensors: Mapping[str, Any]) -> dict[str, Any]:
    """The matched tensors again from the caller's arrays (the memo holds none of them)."""
    return {
        key: tensors[name] if shape is None else tensors[name].reshape(shape) for key, (name, shape) in recipe.items()
    }
