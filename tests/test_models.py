"""The model-zoo presets (issue 11): stage shapes under torchvision's module names, Inception's auxiliary head,
the spec features they use (${name}, gate, aux), and, where torch and torchvision are installed, every preset
against the real model (trainable total, output, every stage, every layer holding parameters); the presets
running torchvision's weights by their names: tests/test_torch_checkpoints.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from featmap.cli import cli
from featmap.net.layers import without_aux
from featmap.net.plan import PlanNode, plan_layers
from featmap.net.spec import load_model, parse_file
from featmap.net.summary import summarize

from .conftest import REPO
from .torchvision_models import torch_and_torchvision

ZOO = [
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "densenet121",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "vgg13_bn",
    "inception_v3",
    "regnet_y_400mf",
    "convnext_tiny",
]


def keyed(name: str) -> dict[str, PlanNode]:
    model = load_model(name)
    assert model.input_shape is not None
    found: dict[str, PlanNode] = {}

    def walk(nodes: tuple[PlanNode, ...]) -> None:
        for node in nodes:
            found.setdefault(node.key, node)
            walk(node.children)

    walk(plan_layers(model.layers, model.input_shape))
    return found


# Stage outputs as torchvision prints them (tools/torchvision_reference.py), channels last.
@pytest.mark.parametrize(
    ("name", "stage", "shape"),
    [
        ("mobilenet_v2", "features.3", (56, 56, 24)),
        ("mobilenet_v2", "features.18", (7, 7, 1280)),
        ("mobilenet_v3_small", "features.4", (14, 14, 40)),
        ("efficientnet_b0", "features.5", (14, 14, 112)),
        ("shufflenet_v2_x1_0", "stage3", (14, 14, 232)),
        ("squeezenet1_1", "features.2", (55, 55, 64)),  # ceil_mode: floor would give 55 from 111 as well
        ("squeezenet1_1", "features.12", (13, 13, 512)),
        ("densenet121", "features.denseblock2", (28, 28, 512)),
        ("densenet121", "features.transition3", (7, 7, 512)),
        ("resnext50_32x4d", "layer3", (14, 14, 1024)),
        ("wide_resnet50_2", "layer1", (56, 56, 256)),
        ("vgg13_bn", "features.27", (14, 14, 512)),
        ("inception_v3", "maxpool2", (35, 35, 192)),
        ("inception_v3", "Mixed_6e", (17, 17, 768)),
        ("inception_v3", "Mixed_7c", (8, 8, 2048)),
        ("regnet_y_400mf", "trunk_output.block3", (14, 14, 208)),
        ("convnext_tiny", "features.5", (14, 14, 384)),
        ("convnext_tiny", "features.6", (7, 7, 768)),
    ],
)
def test_stage_shapes_under_torchvision_names(name: str, stage: str, shape: tuple[int, ...]) -> None:
    assert keyed(name)[stage].plan.out_shape == shape


def test_inception_with_and_without_its_auxiliary_head() -> None:
    model = load_model("inception_v3")
    assert model.input_shape == (299, 299, 3)
    s = summarize(model.layers, model.input_shape)
    assert s.totals.trainable == 27_161_264
    assert s.totals.trainable - s.totals.aux_params == 23_834_568
    stripped = summarize(without_aux(model.layers), model.input_shape)
    assert stripped.totals.trainable == 23_834_568 and stripped.totals.aux_params == 0
    head = next(r for r in s.layers if r.name == "AuxLogits")
    assert head.out_shape == (1000,) and head.params == 3_326_696


def test_cli_no_aux() -> None:
    runner = CliRunner()
    full = runner.invoke(cli, ["shape", "--model", "inception_v3"])
    assert full.exit_code == 0, full.output
    assert "27,161,264 trainable" in full.stdout
    assert "auxiliary heads: 3,326,696 trainable (training only); 23,834,568 trainable without them" in full.stdout
    stripped = runner.invoke(cli, ["shape", "--model", "inception_v3", "--no-aux"])
    assert stripped.exit_code == 0 and "23,834,568 trainable" in stripped.stdout
    assert "AuxLogits" not in stripped.stdout


def test_braced_parameters_and_gate_in_files(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(
        """
blocks:
  se_conv:
    params: [c, k, q]
    layers:
      - "conv:$c@${k}x${k}/p1"
      - gate: [gap, "conv:$q@1x1", relu, "conv:$c@1x1", hardsigmoid]
layers:
  - {block: se_conv, args: {c: 16, k: 3, q: 4}, name: stem}
  - aux: [gap, flatten, "dense:5"]
    name: head
  - "droppath:0.1"
"""
    )
    model = parse_file(spec)
    s = summarize(model.layers, (8, 8, 3))
    assert s.layers[-1].out_shape == (8, 8, 16)
    assert s.totals.trainable == (27 * 16 + 16) + (16 * 4 + 4) + (4 * 16 + 16) + (16 * 5 + 5)
    assert s.totals.aux_params == 85
    assert [r.kind for r in s.layers if r.container][:2] == ["Sequential", "Multiply"]


def test_missing_braced_parameter_is_named(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text('blocks: {b: {params: [c], layers: ["conv:$c@${k}x${k}"]}}\nlayers: [{block: b, args: {c: 4}}]\n')
    with pytest.raises(Exception, match=r"uses \$k"):
        parse_file(spec)


@pytest.mark.parametrize("name", ZOO)
def test_parity_with_torchvision(name: str) -> None:
    torch_and_torchvision()
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from torchvision_reference import reference
    finally:
        sys.path.remove(str(REPO / "tools"))
    from .zoo_reference import differences

    try:
        ref = reference(name, device="meta")  # shapes without weights or arithmetic
    except NotImplementedError:  # regnet works its widths out on real tensors
        ref = reference(name)
    assert differences(name, ref) == []
    if name == "inception_v3":
        assert differences(name, ref, aux=False) == []
