"""featmap.net.summary: presets against published totals, golden outputs, invariants, and bad geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featmap import conv2d, pool2d
from featmap.errors import ShapeError
from featmap.net.layers import Conv2d, Pool2d
from featmap.net.spec import list_models, load_model, parse_tokens
from featmap.net.summary import LayerInfo, Summary, summarize

from .conftest import GOLDEN

# Trainable-parameter totals as torchvision (or the paper, for LeNet-5 and Tiny VGG) reports them.
PUBLISHED = {
    "lenet5": 61_706,
    "lenet5-digits": 61_706,  # lenet5 with trained weights (tools/train_lenet5_digits.py)
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "googlenet": 6_624_904,
    "tinyvgg": 19_920,
    # the model zoo (issue 11): torchvision's trainable totals
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_small": 2_542_856,
    "efficientnet_b0": 5_288_548,
    "shufflenet_v2_x1_0": 2_278_604,
    "squeezenet1_1": 1_235_496,
    "densenet121": 7_978_856,
    "resnext50_32x4d": 25_028_904,
    "wide_resnet50_2": 68_883_240,
    "vgg13_bn": 133_053_736,
    "inception_v3": 27_161_264,  # with the auxiliary head; 23,834,568 without (test_models.py)
    "regnet_y_400mf": 4_344_144,
    "convnext_tiny": 28_589_128,
}


def leaves(s: Summary) -> list[LayerInfo]:
    return [r for r in s.layers if not r.container]


def preset(name: str) -> Summary:
    model = load_model(name)
    assert model.input_shape is not None
    return summarize(model.layers, model.input_shape)


def test_every_preset_is_tested() -> None:
    assert sorted(m.name for m in list_models()) == sorted(PUBLISHED)


@pytest.mark.parametrize(("name", "total"), sorted(PUBLISHED.items()))
def test_preset_matches_published_total(name: str, total: int) -> None:
    s = preset(name)
    assert s.totals.trainable == total
    assert sum(r.params for r in leaves(s)) == s.totals.trainable
    assert s.totals.params == s.totals.trainable + s.totals.non_trainable
    assert s.totals.flops == 2 * s.totals.macs
    top = [r for r in s.layers if r.depth == 0]
    assert top[0].in_shape == s.input_shape
    for before, after in zip(top, top[1:], strict=False):
        assert before.out_shape == after.in_shape
    assert top[-1].out_shape == ((10,) if name in ("lenet5", "lenet5-digits", "tinyvgg") else (1000,))


def test_batchnorm_statistics_are_non_trainable() -> None:
    s = preset("resnet18")
    bn = [r for r in leaves(s) if r.kind == "BatchNorm"]
    assert s.totals.non_trainable == sum(r.non_trainable for r in bn) == sum(r.params for r in bn) == 9_600


@pytest.mark.parametrize(
    ("name", "layer", "shape"),
    [
        ("alexnet", "features", (6, 6, 256)),
        ("vgg16", "features", (7, 7, 512)),
        ("resnet50", "layer1", (56, 56, 256)),
        ("resnet50", "layer4", (7, 7, 2048)),
        ("googlenet", "maxpool1", (56, 56, 64)),  # ceil_mode: floor would give 55
        ("googlenet", "inception3b", (28, 28, 480)),
        ("googlenet", "inception5b", (7, 7, 1024)),
    ],
)
def test_preset_shapes_match_torchvision(name: str, layer: str, shape: tuple[int, ...]) -> None:
    rows = {r.name: r for r in preset(name).layers if r.depth == 0}
    assert rows[layer].out_shape == shape


def test_receptive_fields() -> None:
    vgg = preset("vgg16")
    pools = [r for r in vgg.layers if r.kind == "MaxPool2d"]
    assert pools[-1].receptive_field is not None
    assert pools[-1].receptive_field.size == (212, 212)
    assert pools[-1].receptive_field.jump == (32, 32)
    s = summarize(parse_tokens(["conv:1@3x3/d2", "conv:1@3x3/s2", "conv:1@3x3"]), (32, 32, 1))
    # dilation 2 -> 5; then 5 + 2 = 7, jump 2; then 7 + 2*2 = 11
    assert [r.receptive_field.size for r in s.layers] == [(5, 5), (7, 7), (11, 11)]  # type: ignore[union-attr]


def test_textbook_cases() -> None:
    s = summarize(parse_tokens(["conv:6@5x5"]), (32, 32, 3))
    assert s.layers[0].out_shape == (28, 28, 6) and s.layers[0].params == 456
    flagged = summarize(parse_tokens(["conv:1@3x3/s3"]), (7, 7, 1))
    assert flagged.layers[0].out_shape == (2, 2, 1)
    assert flagged.warnings == ("layer 1 (conv2d): Conv2d: stride 3 leaves the last 1 row and 1 column unused",)


def test_composition_and_batch() -> None:
    s = summarize(parse_tokens(["conv:8@3x3/p1", "bn", "dense:4"]), (5, 5, 3), batch=2)
    conv, bn, dense = s.layers
    assert conv.macs == 3 * 3 * 3 * 8 * 5 * 5 * 2
    assert bn.params == bn.non_trainable == 16
    assert dense.out_shape == (5, 5, 4) and dense.warnings  # dense over the last axis is flagged
    assert conv.memory == 5 * 5 * 8 * 4 * 2


@pytest.mark.parametrize(
    ("tokens", "shape", "match"),
    [
        (
            ["conv:6@5x5", "conv:6@5x5"],
            (7, 7, 1),
            r"layer 2 \(conv2d\): kernel: 5 is larger than the padded input 3",
        ),
        (["conv:6@3x3/g4"], (8, 8, 3), r"layer 1 \(conv2d\): groups=4 must divide the input channels \(3\)"),
        (
            ["flatten", "conv:6@3x3"],
            (8, 8, 3),
            r"layer 2 \(conv2d\): conv2d needs a HxWxC input but gets 192",
        ),
        (
            ["maxpool:4", "maxpool:4"],
            (8, 8, 3),
            r"layer 2 \(pool2d\): pool window: 4 is larger than the padded input 2",
        ),
    ],
)
def test_impossible_geometry_names_the_layer(tokens: list[str], shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        summarize(parse_tokens(tokens), shape)


def compact(s: Summary) -> list[list[object]]:
    return [
        [
            r.path,
            r.name,
            r.kind,
            list(r.out_shape),
            r.params,
            r.non_trainable,
            r.macs,
            None if r.receptive_field is None else list(r.receptive_field.size),
        ]
        for r in s.layers
    ]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_golden(name: str, update_golden: bool) -> None:
    s = preset(name)
    totals = {k: v for k, v in s.totals.__dict__.items() if k != "aux_params" or v}  # 0 for most: left out
    data = {"totals": totals, "layers": compact(s)}
    path = GOLDEN / f"shape_{name}.json"
    if update_golden:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")
    assert json.loads(path.read_text()) == json.loads(json.dumps(data))


@settings(max_examples=50, deadline=None)
@given(
    h=st.integers(6, 24),
    w=st.integers(6, 24),
    ops=st.lists(
        st.one_of(
            st.tuples(
                st.just("conv"),
                st.integers(1, 4),
                st.integers(1, 3),
                st.sampled_from(["valid", "same", "p1"]),
            ),
            st.tuples(st.just("pool"), st.integers(1, 3), st.integers(1, 3), st.sampled_from(["valid", "same"])),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_summary_shapes_equal_what_the_ops_produce(h: int, w: int, ops: list[tuple[str, int, int, str]]) -> None:
    tokens = []
    for kind, k, s, pad in ops:
        suffix = f"/s{s}" + ("" if pad == "valid" else f"/{pad}")
        tokens.append(f"conv:2@{k}x{k}{suffix}" if kind == "conv" else f"maxpool:{k}{suffix}")
    layers = parse_tokens(tokens)
    x = np.zeros((h, w, 1), np.float32)
    try:
        summary = summarize(layers, (h, w, 1))
    except ShapeError:
        return
    for layer, row in zip(layers, summary.layers, strict=True):
        if isinstance(layer, Conv2d):
            x = conv2d(
                x,
                np.ones((2, x.shape[2], *layer.kernel), np.float32),
                stride=layer.stride,  # type: ignore[misc]
                padding=layer.padding,
            )
        else:
            assert isinstance(layer, Pool2d)
            x = pool2d(x, layer.size, stride=layer.stride, padding=layer.padding)
        assert x.shape == row.out_shape


def test_golden_files_exist_for_presets() -> None:
    assert {p.stem for p in GOLDEN.glob("shape_*.json")} == {f"shape_{n}" for n in PUBLISHED}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_golden_columns_add_up_to_their_totals(name: str) -> None:
    """A golden file checks itself (as torchinfo's verifier does): the leaf layers' params and MACs add up to
    the stored totals, each container's to its own, and FLOPs are twice the MACs; a bad golden cannot pass."""
    data = json.loads((GOLDEN / f"shape_{name}.json").read_text())
    rows = {row[0]: row for row in data["layers"]}

    def leaves_under(path: str) -> list[list[object]]:
        return [r for p, r in rows.items() if p.startswith(path + ".") and not any(q.startswith(p + ".") for q in rows)]

    leaves = [r for p, r in rows.items() if not any(q.startswith(p + ".") for q in rows)]
    totals = data["totals"]
    assert sum(r[4] for r in leaves) == totals["trainable"]  # a row's params are its trainable ones
    assert totals["params"] == totals["trainable"] + totals["non_trainable"]
    assert sum(r[5] for r in leaves) == totals["non_trainable"]
    assert sum(r[6] for r in leaves) == totals["macs"] and totals["flops"] == 2 * totals["macs"]
    assert totals["param_bytes"] == 4 * totals["params"]
    for path, row in rows.items():
        inside = leaves_under(path)
        if inside:
            assert row[4:7] == [sum(r[4] for r in inside), sum(r[5] for r in inside), sum(r[6] for r in inside)], path
