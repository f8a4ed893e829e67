"""Plan a layer stack once: walk the layers (into blocks and branches) and work out every layer's `LayerPlan`
on the shape it receives. The shape calculator (`featmap.net.summary`) and the executor (`featmap.run.executor`) both
read the resulting tree; neither works geometry out again.

Each `PlanNode` has two names: ``path``, the 1-based position the table prints (``3.1.2``), and ``key``, the
name its weights go by, derived as PyTorch derives ``state_dict`` names from module attributes: the path of the
names the spec gives, dotted. A layer or block adds its ``name`` where the spec gives one that no sibling shares,
else its 0-based index in its list (``torch.nn.Sequential``'s ``0.weight``). A merge (residual, parallel, gate,
aux) and its branches are wiring, not modules: they add nothing unless named, so a named layer in a residual's
branch is keyed beside the residual (``layer1.0.conv1``). An unnamed layer in an unnamed branch goes by the merge's
position, the branch's label and its own position (``0.main.2``), there being no module to hold it.

Examples
--------
>>> from featmap.net.spec import parse_tokens
>>> nodes = plan_layers(parse_tokens(["conv:6@5x5", "relu", "maxpool:2"]), (32, 32, 1))
>>> [(n.path, n.key, n.plan.out_shape) for n in nodes]
[('1', '0', (28, 28, 6)), ('2', '1', (28, 28, 6)), ('3', '2', (14, 14, 6))]
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from featmap.errors import FeatmapError, ShapeError
from featmap.frozen import frozen_dataclass
from featmap.net.layers import LayerPlan, Parallel, Sequential

if TYPE_CHECKING:  # `LayerSpec` (every kind) is made on first use: a kernel bank's run never needs it
    from featmap.net.layers import LayerSpec

__all__ = ["PlanNode", "iter_leaves", "layers_fingerprint", "output_nodes", "plan_layers", "stop_after"]

Shape = tuple[int, ...]


@frozen_dataclass
class PlanNode:
    """One layer (or container) of a planned stack.

    ``role`` is ``layer`` for a kind that runs on an array, ``block`` for a `Sequential`, ``merge`` for a
    `Parallel` and ``branch`` for one of its branches; ``children`` are what a container holds, in order.
    """

    path: str
    key: str
    depth: int
    layer: LayerSpec
    plan: LayerPlan
    children: tuple[PlanNode, ...] = ()
    role: str = "layer"


def _label(layer: object, path: str) -> str:
    shown = getattr(layer, "name", None) or getattr(layer, "label", None) or type(layer).__name__.lower()
    return f"layer {path} ({shown})"


@frozen_dataclass
class _Scope:
    """Where the keys of a list's layers start: ``named`` before a layer's own name, ``indexed`` before an unnamed
    layer's position (they differ inside a branch that has no name: ``block.`` and ``block.0.main.``)."""

    named: str = ""
    indexed: str = ""

    @staticmethod
    def of(key: str) -> _Scope:
        return _Scope(f"{key}.", f"{key}.")


class _Planner:
    def __init__(self, batch: int) -> None:
        self.batch = batch

    def sequence(
        self, layers: Sequence[LayerSpec], shape: Shape, depth: int, path: str, scope: _Scope
    ) -> tuple[tuple[PlanNode, ...], Shape]:
        nodes: list[PlanNode] = []
        names = [getattr(layer, "name", None) for layer in layers]
        for index, layer in enumerate(layers):
            name = names[index]
            # a repeated name cannot be a key: the layers that share it go by their positions
            key = f"{scope.named}{name}" if name and names.count(name) == 1 else f"{scope.indexed}{index}"
            node = self.layer(layer, shape, depth, f"{path}{index + 1}", key, scope)
            nodes.append(node)
            shape = node.plan.out_shape
        return tuple(nodes), shape

    def layer(self, layer: LayerSpec, shape: Shape, depth: int, path: str, key: str, scope: _Scope) -> PlanNode:
        try:
            return self._layer(layer, shape, depth, path, key, scope)
        except FeatmapError as exc:
            if exc.what.startswith("layer "):
                raise
            problem = f"{exc.what.strip('`')}: {exc.problem}" if exc.what else exc.problem
            raise ShapeError(_label(layer, path), problem, exc.fix) from None

    def _layer(self, layer: LayerSpec, shape: Shape, depth: int, path: str, key: str, scope: _Scope) -> PlanNode:
        if isinstance(layer, Sequential):
            children, out = self.sequence(layer.layers, shape, depth + 1, f"{path}.", _Scope.of(key))
            plan = LayerPlan("Sequential", layer.name or layer.label or "block", shape, out)
            return PlanNode(path, key, depth, layer, plan, children, "block")
        if isinstance(layer, Parallel):
            return self.parallel(layer, shape, depth, path, key, scope)
        return PlanNode(path, key, depth, layer, layer.plan(shape, self.batch))

    def parallel(self, layer: Parallel, shape: Shape, depth: int, path: str, key: str, scope: _Scope) -> PlanNode:
        """A merge is wiring, not a module: unnamed, it adds nothing to the keys of its branches' named layers
        (they share the enclosing list's names), and an unnamed branch adds nothing either. An unnamed layer in an
        unnamed branch goes by the merge's key, the branch's label and its position (``0.main.1``)."""
        branches: list[PlanNode] = []
        names = [branch.name for branch in layer.branches]
        named = _Scope.of(key) if layer.name else scope
        for b, branch in enumerate(layer.branches, start=1):
            label = branch.label or str(b - 1)
            if branch.name and names.count(branch.name) == 1:
                branch_key = f"{named.named}{branch.name}"
                inner = _Scope.of(branch_key)
            else:
                branch_key = f"{key}.{label}"
                inner = _Scope(named.named, f"{branch_key}.")
            branch_path = f"{path}.{b}"
            children, out = self.sequence(branch.layers, shape, depth + 2, f"{branch_path}.", inner)
            kind = "Branch" if branch.layers else "Identity"
            plan = LayerPlan(kind, branch.name or branch.label or f"branch{b}", shape, out)
            branches.append(PlanNode(branch_path, branch_key, depth + 1, branch, plan, children, "branch"))
        shapes = [b.plan.out_shape for b in branches]
        out = layer.merge_shape(shapes)
        plan = LayerPlan(
            layer.kind,
            layer.name or layer.label or layer.kind.lower(),
            shape,
            out,
            detail=f"{len(layer.branches)} branches",
            explain=layer.merge_explain(shapes),
        )
        return PlanNode(path, key, depth, layer, plan, tuple(branches), "merge")


def plan_layers(layers: Sequence[LayerSpec], input_shape: Sequence[int], *, batch: int = 1) -> tuple[PlanNode, ...]:
    """Plan every layer of ``layers`` on ``input_shape`` (``(H, W, C)``, ``(L, C)`` or ``(N,)``).

    Raises `ShapeError` naming the layer (index path and name) when a shape cannot work.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ShapeError("`batch`", f"must be >= 1; got {batch}")
    nodes, _ = _Planner(batch).sequence(layers, tuple(input_shape), 0, "", _Scope())
    return nodes


def iter_leaves(nodes: Sequence[PlanNode]) -> Iterator[PlanNode]:
    """Every layer that runs on an array, in order, inside blocks and branches."""
    for node in nodes:
        if node.role == "layer":
            yield node
        else:
            yield from iter_leaves(node.children)


def layers_fingerprint(layers: Sequence[LayerSpec]) -> str:
    """A digest of the layers, kernel weights included in full (``repr`` abbreviates large arrays)."""
    import hashlib  # here: a helper never fingerprints, so its server does not load OpenSSL

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest() + str(value.shape)
        return str(value)

    text = json.dumps([{"type": type(layer).__name__, **asdict(layer)} for layer in layers], default=plain)
    return hashlib.sha256(text.encode()).hexdigest()


def output_nodes(nodes: Sequence[PlanNode]) -> list[PlanNode]:
    """The nodes whose outputs a run (`featmap.run.executor.iter_network`) yields: leaf layers and merges, in
    order."""
    found: list[PlanNode] = []
    for node in nodes:
        if node.role == "layer":
            found.append(node)
        elif node.role == "block":
            found += output_nodes(node.children)
        else:
            for branch in node.children:
                found += output_nodes(branch.children)
            found.append(node)
    return found


def stop_after(nodes: Sequence[PlanNode], name: str) -> str | None:
    """The path of the output a run stops after when told to stop at ``name`` (a path, key or layer name,
    any row ``featmap shape`` prints): a layer or merge itself, a block or branch its last output, an empty
    branch (an identity shortcut) its merge; None when no row is called ``name``."""
    stack: list[tuple[PlanNode, PlanNode | None]] = [(node, None) for node in reversed(nodes)]
    while stack:  # rows in the order featmap shape prints them
        node, merge = stack.pop()
        if name in (node.path, node.key, node.plan.name):
            if node.role in ("layer", "merge"):
                return node.path
            inside = output_nodes(node.children)
            if inside:
                return inside[-1].path
            return None if merge is None else merge.path
        stack.extend((child, node if node.role == "merge" else merge) for child in reversed(node.children))
    return None
