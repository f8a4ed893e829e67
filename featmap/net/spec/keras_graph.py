"""A Keras ``Functional`` model's layer graph as featmap's nested structure: chains become sequences, and every
fork becomes a `Parallel` whose branches run to the fork's join (its nearest common post-dominator), an ``Add``
(residual), a ``Concatenate`` on channels or a ``Multiply`` (a gate). A graph with another shape (two inputs or
outputs, a shared layer, branches meeting at another layer or crossing each other) is refused in one line that
names the layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featmap.errors import ModelMappingError
from featmap.net.layers import LayerSpec, Parallel, Sequential

if TYPE_CHECKING:
    from featmap.net.spec.keras import KerasLayers

__all__ = ["functional"]

_MERGES = {"Add": "add", "Concatenate": "concat", "Multiply": "mul"}
_FIX = "write the layers as a spec and give this file as its weights (README, 'From Keras')"


def functional(conf: dict[str, Any], reader: KerasLayers) -> tuple[LayerSpec, ...]:
    """The layers of a ``Functional`` model's config (``reader`` maps each Keras layer and notes refusals)."""
    graph = _Graph(conf, reader)
    return tuple(graph.sequence(graph.start, graph.end))


def _history(value: Any, found: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The ``(layer, tensor index)`` of every Keras tensor in a call's arguments, in order."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = value.get("config", {}).get("keras_history") or []
            if len(history) == 3:
                found.append((str(history[0]), int(history[2])))
        else:
            for item in value.values():
                _history(item, found)
    elif isinstance(value, list):
        for item in value:
            _history(item, found)
    return found


def _ends(value: Any) -> list[str]:
    """The layer names of ``input_layers``/``output_layers`` (``["x", 0, 0]`` or a list of them)."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return [value[0]]
    return [str(v[0]) for v in value or [] if isinstance(v, list) and v]


class _Graph:
    def __init__(self, conf: dict[str, Any], reader: KerasLayers) -> None:
        self.reader = reader
        self.where = reader.where
        self.items: dict[str, dict[str, Any]] = {}
        self.inputs: dict[str, list[str]] = {}
        self.order: dict[str, int] = {}
        for item in conf.get("layers", []):
            name = str(item.get("name") or item.get("config", {}).get("name"))
            self.items[name] = item
            self.order[name] = len(self.order)
            nodes = item.get("inbound_nodes") or []
            if len(nodes) > 1:
                self.refuse(name, f"is called {len(nodes)} times (a shared layer); featmap runs each layer once")
            found = _history(nodes[0], []) if nodes else []
            if any(index != 0 for _, index in found):
                self.refuse(name, "takes a second output of a layer; featmap's layers have one")
            self.inputs[name] = [layer for layer, _ in found]
        starts, ends = _ends(conf.get("input_layers")), _ends(conf.get("output_layers"))
        if len(starts) != 1 or len(ends) != 1:
            what = f"has {len(starts)} inputs and {len(ends)} outputs"
            raise ModelMappingError(self.where, f"{what}; featmap runs one input to one output", _FIX)
        self.start, self.end = starts[0], ends[0]
        item = self.items.get(self.start, {})
        if item.get("class_name") == "InputLayer":
            config = item.get("config", {})
            reader.input_dims(config.get("batch_shape") or config.get("batch_input_shape"))
        self._reach()

    def refuse(self, layer: str, problem: str) -> None:
        cls = self.items.get(layer, {}).get("class_name", "layer")
        raise ModelMappingError(self.where, f"layer {layer!r} ({cls}) {problem}", _FIX)

    def _reach(self) -> None:
        """Consumers, descendants and post-dominators of every layer on the way to the output."""
        self.consumers: dict[str, list[str]] = {name: [] for name in self.items}
        for name in sorted(self.items, key=self.order.__getitem__):
            for source in self.inputs[name]:
                if source not in self.items:
                    self.refuse(name, f"takes the output of {source!r}, which the model does not hold")
                if name not in self.consumers[source]:
                    self.consumers[source].append(name)
        self.desc: dict[str, frozenset[str]] = {}
        self.pdom: dict[str, frozenset[str]] = {}
        for name in sorted(self.items, key=self.order.__getitem__, reverse=True):
            succ = [c for c in self.consumers[name] if self.end in self.desc.get(c, ())]
            self.desc[name] = frozenset({name}).union(*(self.desc[s] for s in self.consumers[name]))
            common = frozenset.intersection(*(self.pdom[s] for s in succ)) if succ else frozenset()
            self.pdom[name] = common | {name}

    def layers_of(self, name: str) -> list[LayerSpec]:
        item = self.items[name]
        return self.reader.layer(str(item.get("class_name")), item.get("config", {}), item.get("build_config") or {})

    def sequence(self, tensor: str, target: str, depth: int = 0) -> list[LayerSpec]:
        """The layers from the output of ``tensor`` to the output of ``target``."""
        if depth > 64:
            self.refuse(tensor, "starts branches nested over 64 deep")
        layers: list[LayerSpec] = []
        while tensor != target:
            edges = [c for c in self.consumers[tensor] if target in self.desc[c]]
            if not edges:
                self.refuse(tensor, f"does not lead to {target!r}: branches that cross other branches")
            if len(edges) == 1 and len(self.inputs[edges[0]]) == 1:
                tensor = edges[0]
                layers += self.layers_of(tensor)
                continue
            self.reader.flush()  # a ZeroPadding2D right before a fork has no one conv to fold into
            merged, tensor = self.fork(tensor, edges, target, depth)
            layers.append(merged)
        self.reader.flush()
        return layers

    def fork(self, tensor: str, edges: list[str], target: str, depth: int) -> tuple[LayerSpec, str]:
        """The branches from ``tensor`` to their join, merged as it merges them; returns the layer and the join."""
        common = frozenset.intersection(*(self.pdom[e] for e in edges))
        if not common:
            self.refuse(tensor, "starts branches that never meet again")
        join = min(common, key=self.order.__getitem__)
        if target not in self.desc[join]:
            self.refuse(join, f"joins branches that start before {tensor!r}'s and cross them")
        cls = str(self.items[join].get("class_name"))
        mode = _MERGES.get(cls)
        if mode is None:
            self.refuse(join, "joins branches (featmap's merges are Add, Concatenate and Multiply)")
        if mode == "concat" and self.items[join].get("config", {}).get("axis", -1) not in (-1, 3):
            self.refuse(join, "concatenates along an axis other than the channels")
        branches = []
        for k, source in enumerate(self.inputs[join]):
            if source != tensor and tensor not in self._ancestors(source):
                self.refuse(join, f"joins {source!r}, which does not come from {tensor!r}")
            branches.append(Sequential(tuple(self.sequence(tensor, source, depth + 1)), label=f"branch{k + 1}"))
        if len(branches) < 2:
            self.refuse(join, "joins fewer than two branches")
        return Parallel(tuple(branches), mode or "add", label=join), join

    def _ancestors(self, name: str) -> frozenset[str]:
        return frozenset(n for n, d in self.desc.items() if name in d)
