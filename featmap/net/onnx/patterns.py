"""Operator patterns that exporters spell out in several nodes, rewritten as the one operator they compute before
the graph is mapped.

GELU below opset 20 (``Gelu`` is an operator from opset 20): ``x · ½ · (1 + erf(x / √2))``, written by PyTorch's
legacy exporter as ``Div(x, √2) → Erf → Add 1 → Mul x → Mul ½`` and by its dynamo exporter as ``… → Add 1 →
Mul ½ → Mul x``; any order of the two products, the ½ on either side, ``Mul(x, 1/√2)`` for the division, and
``x · ½`` computed first are recognised. The nodes become one ``Gelu`` node named after the last of them (whose
output it is), so that its layer folder and ``--upto`` name are that node's.

Examples
--------
>>> values = {"r2": np.array(2**0.5, np.float32), "one": np.array(1.0), "half": np.array(0.5)}
>>> nodes = [Node("Div", "div", ["x", "r2"], ["d"]), Node("Erf", "erf", ["d"], ["e"]),
...          Node("Add", "add", ["e", "one"], ["a"]), Node("Mul", "mul", ["x", "a"], ["m"]),
...          Node("Mul", "mul_1", ["m", "half"], ["y"])]
>>> [(n.op_type, n.name, n.input, n.output) for n in fuse_patterns(nodes, values, {"y"})]
[('Gelu', 'mul_1', ['x'], ['y'])]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featmap.enums import Activation
from featmap.net.layers import Act, LayerSpec, Parallel
from featmap.net.onnx.operators import attrs

__all__ = ["Node", "chain_concats", "fuse_patterns", "simplified_gate", "unique_names"]


@dataclass
class Node:
    """A node made by a rewrite, read as an ``onnx.NodeProto`` is (op type, name, inputs, outputs)."""

    op_type: str
    name: str
    input: list[str]
    output: list[str]
    domain: str = ""
    attribute: list[Any] = field(default_factory=list)


def _scalar(values: Mapping[str, np.ndarray], name: str) -> float | None:
    value = values.get(name)
    if value is None or value.size != 1 or value.dtype.kind not in "fiu":
        return None
    return float(value.reshape(-1)[0])


def _close(value: float | None, target: float) -> bool:
    return value is not None and math.isclose(value, target, rel_tol=1e-5)


class _Graph:
    def __init__(
        self,
        nodes: list[Any],
        values: Mapping[str, np.ndarray],
        outputs: set[str],
        constants: AbstractSet[str] = frozenset(),
    ) -> None:
        self.nodes = nodes
        self.values = values
        self.constants = constants  # every stored tensor (initializer or Constant), small or not
        self.outputs = outputs
        self.producer = {out: i for i, node in enumerate(nodes) for out in node.output}
        self.consumers: dict[str, list[int]] = {}
        for i, node in enumerate(nodes):
            for name in node.input:
                self.consumers.setdefault(name, []).append(i)

    def only_consumer(self, tensor: str) -> Any:
        """The one node reading ``tensor`` (an intermediate, not a graph output), or None."""
        found = self.consumers.get(tensor, [])
        if len(found) != 1 or tensor in self.outputs:
            return None
        return self.nodes[found[0]]

    def producer_of(self, tensor: str) -> Any:
        index = self.producer.get(tensor)
        return None if index is None else self.nodes[index]

    def other(self, node: Any, name: str) -> str | None:
        """The input of a two-input ``node`` that is not ``name``."""
        if len(node.input) != 2 or name not in node.input:
            return None
        return str(node.input[1] if node.input[0] == name else node.input[0])

    def scaled(self, tensor: str) -> tuple[str, float] | None:
        """``(x, c)`` when ``tensor`` is ``x · c`` or ``x / (1/c)`` for a constant scalar."""
        node = self.producer_of(tensor)
        if node is None or node.op_type not in ("Mul", "Div") or len(node.input) != 2:
            return None
        if node.op_type == "Div":
            divisor = _scalar(self.values, node.input[1])
            return (node.input[0], 1 / divisor) if divisor else None
        for data, constant in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
            factor = _scalar(self.values, constant)
            if factor is not None and _scalar(self.values, data) is None:
                return data, factor
        return None

    def axes(self, node: Any) -> list[int] | None:
        """A ReduceMean's axes (an attribute below opset 18, an input from it)."""
        for attribute in node.attribute:
            if attribute.name == "axes":
                return list(attribute.ints)
        value = self.values.get(node.input[1]) if len(node.input) > 1 else None
        return None if value is None else [int(v) for v in value.reshape(-1)]

    def follow(self, tensor: str, op: str) -> Any:
        """The one consumer of ``tensor`` when it is an ``op`` node, else None."""
        node = self.only_consumer(tensor)
        return node if node is not None and node.op_type == op else None

    def layernorm(self, mean: Any) -> tuple[Any, list[Any]] | None:
        """``(LayerNormalization node, nodes)`` when ``mean`` starts a layer norm over the last axis spelled out
        (PyTorch's export below opset 17): ``d = x - mean(x)``, ``d / sqrt(mean(d²) + eps) · weight + bias``."""
        if self.axes(mean) != [-1]:
            return None
        x = mean.input[0]
        sub = self.follow(mean.output[0], "Sub")
        if sub is None or list(sub.input) != [x, mean.output[0]]:
            return None
        d = sub.output[0]
        readers = [self.nodes[i] for i in self.consumers.get(d, [])]
        power: Any = next(
            (n for n in readers if n.op_type == "Pow" and _close(_scalar(self.values, n.input[1]), 2)), None
        )
        var: Any = None if power is None else self.follow(power.output[0], "ReduceMean")
        add: Any = None if var is None or self.axes(var) != [-1] else self.follow(var.output[0], "Add")
        eps = None if add is None else _scalar(self.values, self.other(add, var.output[0]) or "")
        root: Any = None if eps is None else self.follow(add.output[0], "Sqrt")
        div: Any = None if root is None else self.follow(root.output[0], "Div")
        if div is None or list(div.input) != [d, root.output[0]] or len(readers) != 2 or d in self.outputs:
            return None
        scale: Any = self.follow(div.output[0], "Mul")
        weight = None if scale is None else self.other(scale, div.output[0])
        shift: Any = None if weight is None or weight not in self.constants else self.follow(scale.output[0], "Add")
        bias: Any = None if shift is None else self.other(shift, scale.output[0])
        if bias is None or bias not in self.constants:
            return None
        from onnx import helper

        attributes = [helper.make_attribute("axis", -1), helper.make_attribute("epsilon", eps)]
        fused = Node("LayerNormalization", shift.name, [x, str(weight), bias], [shift.output[0]], attribute=attributes)
        return fused, [mean, sub, power, var, add, root, div, scale, shift]

    def gelu(self, erf: Any) -> tuple[Any, list[Any]] | None:
        """``(Gelu node, nodes)`` when ``erf`` is the heart of an erf-spelled GELU: the nodes it is made of."""
        found = self.scaled(erf.input[0])
        if found is None or not _close(found[1], 1 / math.sqrt(2)):
            return None
        x, _ = found
        scale = self.producer_of(erf.input[0])
        add = self.only_consumer(erf.output[0])
        if self.only_consumer(erf.input[0]) is not erf or add is None or add.op_type != "Add":
            return None
        if not _close(_scalar(self.values, self.other(add, erf.output[0]) or ""), 1.0):
            return None
        used = [scale, erf, add]
        tensor, factor, has_x = add.output[0], 1.0, False
        for _ in range(2):
            mul = self.only_consumer(tensor)
            other = None if mul is None or mul.op_type != "Mul" else self.other(mul, tensor)
            if other is None:
                return None
            if other == x and not has_x:
                has_x = True
            elif _scalar(self.values, other) is not None:
                factor *= _scalar(self.values, other) or 0.0
            else:
                half = self.scaled(other)
                inner = self.producer_of(other)
                if half is None or half[0] != x or has_x or self.only_consumer(other) is not mul:
                    return None
                has_x, factor = True, factor * half[1]
                used.append(inner)
            used.append(mul)
            tensor = mul.output[0]
            if has_x and _close(factor, 0.5):
                return Node("Gelu", mul.name, [x], [mul.output[0]]), used
        return None


def fuse_patterns(
    nodes: list[Any], values: Mapping[str, np.ndarray], outputs: set[str], constants: AbstractSet[str] = frozenset()
) -> list[Any]:
    """``nodes`` with each erf-spelled GELU replaced by one ``Gelu`` node and each spelled-out layer norm by one
    ``LayerNormalization`` node (each in the place of its last node); ``values`` are the graph's small constants
    and ``outputs`` its output names (never fused away); ``constants`` names every stored tensor."""
    if not any(node.op_type in ("Erf", "ReduceMean") for node in nodes):
        return nodes
    graph = _Graph(nodes, values, outputs, constants)
    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    for node in nodes:
        found = graph.gelu(node) if node.op_type == "Erf" else None
        found = graph.layernorm(node) if node.op_type == "ReduceMean" else found
        if found is None:
            continue
        fused, used = found
        indices = [graph.producer[n.output[0]] for n in used]
        if dropped.intersection(indices):
            continue
        replaced[indices[-1]] = fused
        dropped.update(indices)
    return [replaced.get(i, node) for i, node in enumerate(nodes) if i not in dropped or i in replaced]


def unique_names(nodes: Sequence[Any]) -> list[str]:
    """Each node's name (its first output's where it has none), made unique with ``#2``, ``#3``… where repeated:
    the names of the featmap layers mapped from them (layer folders, ``--upto``)."""
    names: list[str] = []
    seen: set[str] = set()
    for index, node in enumerate(nodes):
        base = node.name or (node.output[0] if node.output else "") or f"{node.op_type}_{index}"
        name, k = base, 1
        while name in seen:
            k += 1
            name = f"{base}#{k}"
        seen.add(name)
        names.append(name)
    return names


def chain_concats(nodes: list[Any], producer: Mapping[str, int]) -> None:
    """``Concat(a, b, c)`` where ``Concat(a, b)`` exists becomes ``Concat(that, c)``, in place (DenseNet's layers
    each concatenate every earlier output: as a chain, each layer is a concat of its input and its new maps)."""
    by_inputs: dict[tuple[str, ...], str] = {}
    for node in nodes:
        if node.op_type != "Concat":
            continue
        inputs = tuple(node.input)
        prefix = by_inputs.get(inputs[:-1]) if len(inputs) > 2 else None
        by_inputs.setdefault(inputs, node.output[0])
        if prefix is not None and attrs(node).get("axis") == attrs(nodes[producer[prefix]]).get("axis"):
            del node.input[:]
            node.input.extend([prefix, inputs[-1]])


def simplified_gate(merged: LayerSpec) -> LayerSpec:
    """``x · sigmoid(x)`` is SiLU, ``x · hardsigmoid(x)`` is hardswish: one activation instead of a gate."""
    if not isinstance(merged, Parallel) or merged.merge_mode != "mul" or len(merged.branches) != 2:
        return merged
    first, second = (b.layers for b in merged.branches)
    for identity, gate in ((first, second), (second, first)):
        if not identity and len(gate) == 1 and isinstance(gate[0], Act):
            kind = {"sigmoid": "silu", "hardsigmoid": "hardswish"}.get(gate[0].kind.value)
            if kind:
                return Act(Activation(kind), name=merged.name)
    return merged
