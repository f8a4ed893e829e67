"""featmap.net.plan: the plan tree's paths, weight keys and errors."""

from __future__ import annotations

import pytest

from featmap.errors import ShapeError
from featmap.net.layers import Conv2d, Parallel, Sequential
from featmap.net.plan import iter_leaves, plan_layers
from featmap.net.spec import load_model, parse_tokens


def test_unnamed_stack_keys_are_torch_sequential_indices():
    nodes = plan_layers(parse_tokens(["conv:6@5x5", "tanh", "avgpool:2", "flatten", "dense:10"]), (32, 32, 1))
    assert [n.key for n in nodes] == ["0", "1", "2", "3", "4"]
    assert [n.path for n in nodes] == ["1", "2", "3", "4", "5"]


def test_named_layers_and_blocks_give_dotted_keys():
    model = load_model("resnet18")
    nodes = plan_layers(model.layers, model.input_shape)
    keys = [n.key for n in iter_leaves(nodes) if n.plan.weights]
    assert keys[:2] == ["conv1", "bn1"]
    # layer1 → its first block (unnamed: its index) → the residual and its main branch add nothing → conv1
    assert keys[2:4] == ["layer1.0.conv1", "layer1.0.bn1"]
    assert "layer2.0.downsample.0" in keys and "layer2.0.downsample.1" in keys  # a named shortcut
    assert len(keys) == len(set(keys))


def test_merges_add_no_segment_unless_named(tmp_path):
    from featmap.net.spec import parse_file

    spec = tmp_path / "net.yaml"
    spec.write_text(
        """
layers:
  - "conv:4@3x3/p1"                                   # 0
  - residual:                                         # 1: unnamed, adds nothing
      main: [{conv: "4@3x3/p1", name: conv1}, relu, "conv:4@3x3/p1"]
      shortcut: [{sequential: ["conv:4@1x1", bn], name: downsample}]
  - name: mix                                         # 2: named
    parallel: {merge: concat, branches: [["conv:2@1x1"], [{conv: "2@1x1", name: side}]]}
  - {gate: [gap, {conv: "4@1x1", name: fc1}, sigmoid]}
  - {repeat: 2, layers: ["conv:4@1x1"], name: stack, names: "unit{n}"}
"""
    )
    nodes = plan_layers(parse_file(spec).layers, (8, 8, 3))
    keys = [n.key for n in iter_leaves(nodes) if n.plan.weights]
    assert keys == [
        "0",
        "conv1",  # a named layer in an unnamed branch of an unnamed merge: the enclosing list's name
        "1.main.2",  # an unnamed one: the merge's position, the branch, its own position
        "downsample.0",
        "downsample.1",
        "mix.branch1.0",
        "mix.side",
        "fc1",
        "stack.unit1.0",
        "stack.unit2.0",
    ]


def test_repeated_sibling_names_fall_back_to_indices(tmp_path):
    from featmap.net.spec import parse_file

    spec = tmp_path / "net.yaml"
    spec.write_text('layers: [{conv: "4@3x3", name: a}, {conv: "4@3x3", name: a}, {conv: "4@3x3", name: b}]\n')
    nodes = plan_layers(parse_file(spec).layers, (16, 16, 3))
    assert [n.key for n in nodes] == ["0", "1", "b"]


def test_parallel_children_are_branches_holding_layers():
    layer = Parallel((Sequential((Conv2d(4, 3, padding="same"),)), Sequential()), "add", "res")
    (node,) = plan_layers([layer], (8, 8, 4))
    assert node.role == "merge" and [b.role for b in node.children] == ["branch", "branch"]
    assert node.children[1].plan.kind == "Identity"
    assert node.children[0].children[0].path == "1.1.1"


def test_error_names_the_layer_path_and_name():
    with pytest.raises(ShapeError, match=r"layer 2 \(conv2d\): kernel"):
        plan_layers(parse_tokens(["maxpool:4", "conv:3@5x5"]), (8, 8, 1))


def test_batch_must_be_positive():
    with pytest.raises(ShapeError, match="batch"):
        plan_layers(parse_tokens(["relu"]), (4, 4, 1), batch=0)
