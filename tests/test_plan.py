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
    # layer1 → its first block (named after the block) → the residual → main branch → first conv
    assert keys[2] == "layer1.basic.residual.main.0"
    assert "layer2.basic_down.residual.shortcut.0" in keys
    assert len(keys) == len(set(keys))


def test_repeated_sibling_names_fall_back_to_indices():
    model = load_model("vgg11")
    nodes = plan_layers(model.layers, (32, 32, 3))
    # three siblings: a block named conv3, an unnamed max pool, a second block named conv3
    assert [c.key for c in nodes[0].children[:3]] == ["features.0", "features.1", "features.2"]


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
