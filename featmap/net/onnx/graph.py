"""An ONNX graph's data path as featmap's nested structure: chains become sequences, and every fork becomes a
`Parallel` whose branches run to the fork's join (its nearest common post-dominator): an ``Add`` (residual), a
``Concat`` on channels (Inception, ShuffleNet after a ``Split``), or a ``Mul`` (a gate; ``x · sigmoid(x)`` becomes
SiLU). Shape plumbing (``Shape``, ``Gather``… feeding a ``Reshape``) is not on the data path and is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from featmap.errors import FeatmapError
from featmap.net.layers import LayerSpec, Parallel, Sequential, Split
from featmap.net.onnx.folding import FIRST_INPUT_ONLY, fold
from featmap.net.onnx.operators import MERGES, OPERATORS, Context, Unsupported, attrs, map_node
from featmap.net.onnx.patterns import chain_concats, fuse_patterns, simplified_gate, unique_names
from featmap.net.onnx.refusals import CONTROL_FLOW, Refusals
from featmap.net.onnx.tensors import TensorRef
from featmap.net.onnx.weights import weight_refs
from featmap.net.plan import plan_layers

__all__ = ["GraphStructure", "NotExpressible"]

Shape = tuple[int, ...]


class NotExpressible(Exception):
    """The graph's wiring has no featmap form (a tensor used across branches, a loop…)."""


class GraphStructure:
    """The data path of ``graph`` (an ``onnx.GraphProto``), ready to be turned into featmap layers."""

    def __init__(
        self,
        graph: Any,
        shapes: dict[str, Shape],
        values: dict[str, np.ndarray],
        model: Any = None,
        read: Callable[[str], np.ndarray | None] | None = None,
    ) -> None:
        self.graph = graph
        self.nodes = fuse_patterns(list(graph.node), values, {o.name for o in graph.output}, set(shapes))
        self.names = unique_names(self.nodes)
        #: Each weighted layer's tensors by layer name (`featmap.net.onnx.weights`).
        self.refs: dict[str, dict[str, TensorRef]] = {}
        self.constants = set(shapes)
        self.producer: dict[str, int] = {}
        for index, node in enumerate(self.nodes):
            for out in node.output:
                self.producer[out] = index
        self.values = values
        self.onnx_shapes: dict[str, Shape] = {}
        self.ctx = Context(shapes, values, self._next, self.evaluate, read or (lambda name: None))
        chain_concats(self.nodes, self.producer)
        self.refused = Refusals(model)
        for index, node in enumerate(self.nodes):
            if node.op_type in CONTROL_FLOW:
                self.refused.note(self.names[index], node.op_type, CONTROL_FLOW[node.op_type], index)
        self.skip: set[int] = set()
        self.open_forks: set[tuple[str, str]] = set()
        self._data_path()

    # ------------------------------------------------------------------ graph facts

    def evaluate(self, name: str, depth: int = 0) -> np.ndarray | None:
        """The value of a small tensor computed from shapes and constants (export-time shape plumbing)."""
        if name in self.values:
            return self.values[name]
        if depth > 64 or name not in self.producer:
            return None
        node = self.nodes[self.producer[name]]
        if node.op_type == "Shape":
            found = self.onnx_shapes.get(node.input[0])
            if found is None:
                return None
            a = attrs(node)
            value: np.ndarray | None = np.array(found[a.get("start", 0) : a.get("end", len(found))], dtype=np.int64)
        else:
            inputs = [self.evaluate(i, depth + 1) if i else None for i in node.input]
            if any(v is None for v in inputs[:1]):
                return None
            value = fold(node, inputs)
        if value is None:
            return None
        self.values[name] = value
        return value

    def data_inputs(self, node: Any) -> list[str]:
        names = node.input[:1] if node.op_type in FIRST_INPUT_ONLY else node.input
        return [n for n in names if n and n not in self.constants]

    def _data_path(self) -> None:
        """The nodes between the graph's input and its first output, their consumers and (post-)dominance."""
        output = self.graph.output[0].name
        self.data: set[int] = set()
        stack = [output]
        seen: set[str] = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor not in self.producer:
                continue
            seen.add(tensor)
            index = self.producer[tensor]
            self.data.add(index)
            stack.extend(self.data_inputs(self.nodes[index]))
        self.consumers: dict[str, list[int]] = {}
        for index in sorted(self.data):
            for name in self.data_inputs(self.nodes[index]):
                self.consumers.setdefault(name, [])
                if index not in self.consumers[name]:
                    self.consumers[name].append(index)
        self.pdom: dict[int, frozenset[int]] = {}
        self.desc: dict[int, frozenset[int]] = {}
        for index in sorted(self.data, reverse=True):
            succ = {c for out in self.nodes[index].output for c in self.consumers.get(out, [])}
            common = frozenset.intersection(*(self.pdom[s] for s in succ)) if succ else frozenset()
            self.pdom[index] = common | {index}
            self.desc[index] = frozenset({index}).union(*(self.desc[s] for s in succ))

    def _next(self, node: Any) -> Any:
        """The single data consumer of ``node``'s first output, or None."""
        found = self.consumers.get(node.output[0], [])
        return self.nodes[found[0]] if len(found) == 1 else None

    def _reaches(self, index: int, target: str) -> bool:
        return self.producer.get(target) in self.desc[index]

    # ------------------------------------------------------------------ structure

    def layers(self, start: str, input_shape: Shape) -> tuple[LayerSpec, ...]:
        """The featmap layers from the graph input ``start`` to the first output."""
        self.record(start, input_shape, "nchw")
        layers, _, _ = self.sequence(start, self.graph.output[0].name, input_shape, "nchw")
        return tuple(layers)

    def name_of(self, node: Any) -> str:
        return self.names[self.producer[node.output[0]]]

    def note(self, node: Any, reason: str) -> None:
        standard = node.domain in ("", "ai.onnx")
        op = node.op_type if standard else f"{node.domain}.{node.op_type}"
        self.refused.note(self.name_of(node), op, reason, self.producer[node.output[0]])

    def plan_shape(self, layers: Sequence[LayerSpec], shape: Shape | None, node: Any) -> Shape | None:
        if shape is None or not layers:
            return shape
        try:
            planned = plan_layers(layers, shape)
        except FeatmapError as exc:
            raise NotExpressible(f"node {self.name_of(node)!r} ({node.op_type}): {exc.problem}") from None
        return planned[-1].plan.out_shape

    def sequence(
        self, tensor: str, target: str, shape: Shape | None, layout: str
    ) -> tuple[list[LayerSpec], Shape | None, str]:
        layers: list[LayerSpec] = []
        while tensor != target:
            edges = [c for c in self.consumers.get(tensor, []) if self._reaches(c, target) and c not in self.skip]
            skipped = [c for c in self.consumers.get(tensor, []) if c in self.skip and self._reaches(c, target)]
            if not edges and skipped:
                tensor = self.nodes[skipped[0]].output[0]
                self.record(tensor, shape, layout)  # a folded node keeps featmap's shape
                continue
            if not edges:
                raise NotExpressible(f"tensor {tensor!r} does not lead to {target!r}")
            node = self.nodes[edges[0]]
            if len(edges) == 1 and node.op_type != "Split" and len(self.data_inputs(node)) == 1:
                mapped, shape, layout = self.one(node, shape, layout)
                layers += mapped
                tensor = node.output[0]
                continue
            merged, tensor, shape, layout = self.fork(tensor, edges, target, shape, layout)
            layers.append(merged)
        return layers, shape, layout

    def one(self, node: Any, shape: Shape | None, layout: str) -> tuple[list[LayerSpec], Shape | None, str]:
        """One node's layers, planned and named after it; an unmapped node is noted and mapping goes on with the
        shape ONNX infers for its output, else its input's (unknown: later nodes are noted only when their operator
        is unknown)."""
        if shape is None and (node.op_type not in OPERATORS or node.domain not in ("", "ai.onnx")):
            self.note(node, "no featmap layer for this operator")
        if shape is None:
            return [], None, layout
        try:
            mapped, layout = map_node(node, shape, layout, self.ctx)
        except Unsupported as exc:
            self.note(node, str(exc))  # then on with ONNX's shape of its output, else as if element-wise
            return [], self.refused.inferred(node.output[0], layout) or shape, layout
        follower = self._next(node)
        name = self.name_of(self._fold(node, mapped))  # a layer made of several nodes is named after the last
        mapped = [replace(layer, name=name if k == len(mapped) - 1 else f"{name}:{type(layer).__name__.lower()}")
                  for k, layer in enumerate(mapped)]  # fmt: skip
        for layer in mapped:
            refs = weight_refs(node, layer, self.ctx, follower)
            if refs:
                self.refs[str(getattr(layer, "name", ""))] = refs  # every layer kind has a name
        before = shape
        shape = self.plan_shape(mapped, shape, node)
        self._check_weights(node, mapped, before)
        self.record(node.output[0], shape, layout)
        return mapped, shape, layout

    def record(self, tensor: str, shape: Shape | None, layout: str) -> None:
        """The ONNX shape of ``tensor`` (batch 1), for ``Shape`` nodes downstream."""
        if shape is None:
            return
        if len(shape) == 3:
            h, w, c = shape
            self.onnx_shapes[tensor] = (1, c, h, w) if layout == "nchw" else (1, h, w, c)
        elif len(shape) == 2:
            self.onnx_shapes[tensor] = (1, shape[1], shape[0])
        else:
            self.onnx_shapes[tensor] = (1, *shape)

    def _fold(self, node: Any, mapped: list[LayerSpec]) -> Any:
        """Nodes a mapping took in with this one (a MatMul's bias Add, a channel shuffle's Transpose, Reshape) are
        skipped from here on; returns the last of them (``node`` itself when there are none)."""
        follower = self._next(node)
        if node.op_type == "MatMul" and getattr(mapped[0], "bias", False) and follower is not None:
            self.skip.add(self.producer[follower.output[0]])
            return follower
        if node.op_type == "Reshape" and mapped and type(mapped[0]).__name__ == "ChannelShuffle":
            assert follower is not None
            self.skip.add(self.producer[follower.output[0]])
            after = self._next(follower)
            self.skip.add(self.producer[after.output[0]])
            return after
        if node.op_type == "Reshape" and not mapped and follower is not None and follower.op_type == "Gather":
            self.skip.add(self.producer[follower.output[0]])  # `restrides`: the pair gives the tensor back
            return follower
        return node

    def _check_weights(self, node: Any, mapped: Sequence[LayerSpec], shape: Shape | None) -> None:
        """The initializers of ``node`` (and a folded bias) hold as many values as featmap's plan counts."""
        if shape is None or not mapped:
            return
        names = [n for n in node.input if n in self.ctx.shapes]
        follower = self._next(node)
        if follower is not None and self.producer[follower.output[0]] in self.skip and follower.op_type == "Add":
            names += [n for n in follower.input if n in self.ctx.shapes]
        if node.op_type not in ("Conv", "Gemm", "MatMul", "BatchNormalization", "LayerNormalization", "Mul"):
            return  # other inputs are settings (a shape, bounds, axes), not weights
        held = sum(int(np.prod(self.ctx.shapes[n])) for n in names)
        if node.op_type == "LayerNormalization" and len(names) == 1:
            held *= 2  # no bias input: featmap's shift is zeros
        plan = plan_layers(mapped, shape)[0].plan
        counted = plan.params + plan.non_trainable
        if held != counted:
            raise NotExpressible(
                f"node {self.name_of(node)!r} ({node.op_type}): its weights hold {held:,} values but a "
                f"{plan.kind} on {'×'.join(map(str, shape))} has {counted:,}"
            )

    def fork(
        self, tensor: str, edges: list[int], target: str, shape: Shape | None, layout: str
    ) -> tuple[LayerSpec, str, Shape | None, str]:
        """The branches from ``tensor`` to their join, merged; returns the layer and the join's output."""
        if (tensor, target) in self.open_forks:
            raise NotExpressible(f"the branches from {tensor!r} cross other branches before they meet")
        self.open_forks.add((tensor, target))
        try:
            return self._fork(tensor, edges, target, shape, layout)
        finally:
            self.open_forks.discard((tensor, target))

    def _fork(
        self, tensor: str, edges: list[int], target: str, shape: Shape | None, layout: str
    ) -> tuple[LayerSpec, str, Shape | None, str]:
        starts = edges
        split = None
        if len(edges) == 1 and self.nodes[edges[0]].op_type == "Split":
            split = self.nodes[edges[0]]
            starts = sorted({c for out in split.output for c in self.consumers.get(out, [])})
            if not starts:
                raise NotExpressible(f"split {split.name!r} feeds nothing")
        common = frozenset.intersection(*(self.pdom[s] for s in starts))
        if split is None and len(edges) == 1:
            common = self.pdom[edges[0]]
        join_index = min(common) if common else None
        if join_index is None:
            raise NotExpressible(f"the branches from {tensor!r} never meet again")
        join = self.nodes[join_index]
        mode = MERGES.get(join.op_type)
        if mode is None:
            return self._refused_join(tensor, join, shape, layout)
        self._check_axis(join, layout, shape)
        branches: list[Sequential] = []
        groups = self._groups(tensor, starts, self.data_inputs(join)) if split is None and mode == "concat" else None
        layout_after = layout
        for k, names in enumerate(groups or [[n] for n in self.data_inputs(join)]):
            lead: list[LayerSpec] = []
            begin = tensor
            if split is not None:
                begin, lead = self._split_part(split, names[0], shape, layout)
            start_shape = self.plan_shape(lead, shape, split) if lead else shape
            if len(names) == 1:
                body, _, layout_after = self.sequence(begin, names[0], start_shape, layout)
            else:  # an exporter flattened a nested concat: rebuild it from where its inputs part
                body, layout_after = self._nested_concat(begin, names, start_shape, layout)
            branches.append(Sequential((*lead, *body), f"branch{k + 1}"))
        merged: LayerSpec = Parallel(tuple(branches), mode, self.name_of(join))
        merged = simplified_gate(merged)
        new_shape = self.plan_shape([merged], shape, join)
        self.record(join.output[0], new_shape, layout_after)
        return merged, join.output[0], new_shape, layout_after

    def _refused_join(
        self, tensor: str, join: Any, shape: Shape | None, layout: str
    ) -> tuple[LayerSpec, str, Shape | None, str]:
        """Branches that meet at a node featmap cannot merge by: noted, and their own nodes judged, then mapping
        goes on after it."""
        self.note(join, f"branches meet at a {join.op_type} node; featmap merges by Add, Concat, Mul")
        for name in self.data_inputs(join):
            try:
                self.sequence(tensor, name, shape, layout)
            except NotExpressible:
                pass
        return Sequential((), self.name_of(join)), join.output[0], self.refused.inferred(join.output[0], layout), layout

    def _groups(self, tensor: str, starts: list[int], inputs: list[str]) -> list[list[str]]:
        """A concat's inputs in runs reached through the same first node from ``tensor`` (one branch each)."""
        groups: list[list[str]] = []
        last: frozenset[int] | None = None
        for name in inputs:
            reach = frozenset(e for e in starts if self._reaches(e, name))
            if groups and reach == last and len(reach) == 1 and name != tensor:
                groups[-1].append(name)
            else:
                groups.append([name])
            last = reach
        return groups

    def _nested_concat(
        self, tensor: str, targets: list[str], shape: Shape | None, layout: str
    ) -> tuple[list[LayerSpec], str]:
        """The shared start of several concat inputs, then a concat of their own branches."""
        layers: list[LayerSpec] = []
        while True:
            edges = [c for c in self.consumers.get(tensor, []) if any(self._reaches(c, t) for t in targets)]
            node = self.nodes[edges[0]]
            if len(edges) != 1 or node.op_type == "Split" or len(self.data_inputs(node)) != 1:
                break
            mapped, shape, layout = self.one(node, shape, layout)
            layers += mapped
            tensor = node.output[0]
        branches = []
        for k, target in enumerate(targets):
            body, _, layout = self.sequence(tensor, target, shape, layout)
            branches.append(Sequential(tuple(body), f"branch{k + 1}"))
        layers.append(Parallel(tuple(branches), "concat", "concat"))
        return layers, layout

    def _split_part(self, split: Any, target: str, shape: Shape | None, layout: str) -> tuple[str, list[LayerSpec]]:
        """Which of the split's outputs leads to ``target``, and the `Split` layer that takes that part."""
        a = attrs(split)
        axis = a.get("axis", 0)
        if not (layout == "nchw" and axis in (1, -3) or layout == "nhwc" and axis in (3, -1)):
            raise NotExpressible(f"split {split.name!r} along axis {axis} (featmap splits channels)")
        sizes = a.get("split")
        if sizes is None and len(split.input) > 1 and split.input[1]:
            sizes = self.ctx.value(split.input[1]).tolist()
        for j, out in enumerate(split.output):
            if out == target or any(self._reaches(c, target) for c in self.consumers.get(out, [])):
                name = f"{self.name_of(split)}:{j}"
                part = (
                    Split(j, sizes=tuple(int(s) for s in sizes), name=name)
                    if sizes
                    else Split(j, chunks=len(split.output), name=name)
                )
                return out, [part]
        raise NotExpressible(f"no output of split {split.name!r} leads to {target!r}")

    @staticmethod
    def _check_axis(join: Any, layout: str, shape: Shape | None) -> None:
        if join.op_type != "Concat":
            return
        axis = attrs(join).get("axis")
        rank = 4 if shape is None or len(shape) == 3 else len(shape) + 1
        channel = {1, 1 - rank} if layout == "nchw" else {rank - 1, -1}
        if axis not in channel:
            raise NotExpressible(f"concat {join.name!r} along axis {axis} (featmap concatenates channels)")
