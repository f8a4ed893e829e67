"""Compare a preset with torchvision's facts (from ``tools/torchvision_reference.py``): the trainable total, the
output shape, every stage (torchvision's module name = featmap's layer key) and every layer holding parameters,
in the order the forward pass runs them. Used by ``tests/test_models_parity.py``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from featmap.net.layers import without_aux
from featmap.net.plan import PlanNode, iter_leaves, plan_layers
from featmap.net.spec import load_model

#: Top-level torchvision modules whose children are stages themselves (``features.3``, not ``layer2.1``).
_STAGE_PARENTS = ("features", "trunk_output", "classifier")


def _nodes(nodes: Sequence[PlanNode]) -> Iterator[PlanNode]:
    for node in nodes:
        yield node
        yield from _nodes(node.children)


def _params(node: PlanNode) -> int:
    if node.role == "layer":
        return node.plan.params
    return sum(leaf.plan.params for leaf in iter_leaves(node.children))


def _aux_last(nodes: Sequence[PlanNode]) -> list[PlanNode]:
    """Leaves in run order, an auxiliary head's leaves moved to the end (torch runs the head after the model)."""
    main: list[PlanNode] = []
    heads: list[PlanNode] = []

    def walk(items: Sequence[PlanNode], into: list[PlanNode]) -> None:
        for node in items:
            if node.role == "layer":
                into.append(node)
            elif node.role == "merge" and getattr(node.layer, "merge_mode", "") == "aux":
                walk(node.children[0].children, into)
                for branch in node.children[1:]:
                    walk(branch.children, heads)
            else:
                walk(node.children, into)

    walk(nodes, main)
    return main + heads


def differences(name: str, ref: dict[str, Any], *, aux: bool = True) -> list[str]:
    """Every way the preset ``name`` differs from torchvision's ``ref`` (empty when they agree)."""
    model = load_model(name)
    assert model.input_shape is not None
    layers = model.layers if aux else without_aux(model.layers)
    nodes = plan_layers(layers, model.input_shape)
    problems: list[str] = []
    trainable = sum(leaf.plan.params for leaf in iter_leaves(nodes))
    expected_total = ref["trainable"] if aux else ref.get("trainable_without_aux", ref["trainable"])
    if trainable != expected_total:
        problems.append(f"trainable {trainable:,} != {expected_total:,}")
    if list(nodes[-1].plan.out_shape) != ref["output"]:
        problems.append(f"output {nodes[-1].plan.out_shape} != {ref['output']}")
    by_key: dict[str, PlanNode] = {}
    for node in _nodes(nodes):
        by_key.setdefault(node.key, node)
    stages = ref["stages"]
    for stage, info in stages.items():
        parent = any(other.startswith(stage + ".") for other in stages)
        second_level = "." in stage and stage.split(".")[0] not in _STAGE_PARENTS
        if parent or second_level or not info["params"] or (not aux and stage == "AuxLogits"):
            continue
        node = by_key.get(stage) or next((n for k, n in by_key.items() if k.endswith("." + stage)), None)
        if node is None:
            problems.append(f"stage {stage}: no layer with that key")
            continue
        if list(node.plan.out_shape) != info["out_shape"]:
            problems.append(f"stage {stage}: shape {node.plan.out_shape} != {info['out_shape']}")
        if _params(node) != info["params"]:
            problems.append(f"stage {stage}: params {_params(node):,} != {info['params']:,}")
    ours = [(leaf.key, tuple(leaf.plan.out_shape), leaf.plan.params) for leaf in _aux_last(nodes) if leaf.plan.params]
    theirs = [(layer["name"], tuple(layer["out_shape"]), layer["params"]) for layer in ref["layers"]]
    if not aux:
        theirs = [t for t in theirs if not t[0].startswith("AuxLogits.")]
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a[1:] != b[1:]:
            problems.append(f"layer {i}: featmap {a[0]} {a[1]} {a[2]:,} != torchvision {b[0]} {b[1]} {b[2]:,}")
            break
    if len(ours) != len(theirs):
        problems.append(f"{len(ours)} layers with parameters != torchvision's {len(theirs)}")
    return problems
