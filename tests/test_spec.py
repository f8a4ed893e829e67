"""featmap.net.spec: the token grammar and spec files, including their error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featmap.errors import SpecError
from featmap.net.layers import (
    Act,
    AdaptiveAvgPool2d,
    BatchNorm,
    CombineMaps,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GlobalPool2d,
    Parallel,
    Pool2d,
    Sequential,
)
from featmap.net.spec import load_model, parse_file, parse_shape, parse_token, parse_tokens
from featmap.net.summary import summarize


@pytest.mark.parametrize(
    ("token", "expect"),
    [
        ("conv:6@5x5", Conv2d(6, 5)),
        ("conv:64@3x3/s2/same", Conv2d(64, 3, stride=2, padding="same")),
        (
            "conv:8@3x5/s2x1/p1,2/d2/g2/nobias",
            Conv2d(8, (3, 5), stride=(2, 1), padding=(1, 2), dilation=2, groups=2, bias=False),
        ),
        ("conv:8@3x3/p0,1,2,3", Conv2d(8, 3, padding=(0, 1, 2, 3))),
        ("dwconv:3x3/s2/p1", Conv2d(None, 3, stride=2, padding=1, depthwise=True)),
        ("conv1d:16@5/s2/same", Conv1d(16, 5, stride=2, padding="same")),
        ("maxpool:3/s2/p1/ceil", Pool2d("max", 3, 2, 1, ceil_mode=True)),
        ("avgpool:2", Pool2d("avg", 2)),
        ("minpool:2x3", Pool2d("min", (2, 3))),
        ("gap", GlobalPool2d("avg")),
        ("globalmaxpool", GlobalPool2d("max")),
        ("adaptiveavgpool:7", AdaptiveAvgPool2d(7)),
        ("flatten", Flatten()),
        ("dense:10", Dense(10)),
        ("fc:10/nobias", Dense(10, bias=False)),
        ("bn", BatchNorm()),
        ("relu", Act("relu")),
        ("act:leaky_relu,slope=0.2", Act("leaky_relu", (("slope", 0.2),))),
        ("dropout:0.3", Dropout(0.3)),
        ("dropout", Dropout(0.5)),
        ("combine:magnitude", CombineMaps("magnitude", 2)),
        ("combine:MAX/8", CombineMaps("max", 8)),
    ],
)
def test_tokens(token: str, expect: object) -> None:
    assert parse_token(token) == expect


@pytest.mark.parametrize(
    ("token", "match"),
    [
        ("conv:6", r"layer 2 \('conv:6'\): a conv is FILTERS@KxK; e.g. conv:64@3x3/s2/same"),
        ("cnv:6@3x3", r"layer 2 \('cnv:6@3x3'\): unknown layer type 'cnv'"),
        ("conv:6@3x3/q1", r"unknown option 'q1'"),
        ("conv:6@3x3/p1,2,3", r"takes 1, 2 or 4 numbers"),
        ("maxpool", r"a pool needs a window size"),
        ("maxpool:2/g2", r"a pool takes no groups"),
        ("dense:ten", r"a dense layer is dense:UNITS"),
        ("relu:2", r"relu takes no arguments"),
        ("flatten:2", r"flatten takes no arguments"),
        ("dropout:1.5", r"rate must be in \[0, 1\)"),
        ("conv1d:4@3/s2x2", r"a 1-D stride is one number"),
        ("combine:sum", r"combine mode 'sum' is not one of magnitude, max"),
        ("combine:max/two", r"takes one option, the number of maps"),
        ("combine:max/0", r"combine of 0 maps; give 1 or more"),
    ],
)
def test_bad_tokens_name_the_layer_and_the_fix(token: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse_tokens(["relu", token])


@pytest.mark.parametrize(("text", "expect"), [("224x224x3", (224, 224, 3)), ("100x16", (100, 16)), ("784", (784,))])
def test_shapes(text: str, expect: tuple[int, ...]) -> None:
    assert parse_shape(text) == expect


@pytest.mark.parametrize("text", ["0x3x3", "axb", "1x2x3x4", ""])
def test_bad_shapes(text: str) -> None:
    with pytest.raises(SpecError, match="`input`"):
        parse_shape(text)


def write(tmp_path: Path, text: str, name: str = "net.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_file_with_blocks_repeat_residual_and_concat(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: tiny_resnet
input: 16x16x3
blocks:
  unit:
    params: [c, s]
    layers:
      - residual:
          main: ["conv:$c@3x3/s$s/p1/nobias", bn, relu, "conv:$c@3x3/p1/nobias", bn]
          shortcut: ["conv:$c@1x1/s$s/nobias", bn]
      - relu
layers:
  - {conv: {filters: 8, kernel: 3, padding: 1}, name: stem}
  - {block: unit, args: {c: 16, s: 2}, name: down}
  - {repeat: 2, block: unit, args: {c: 16, s: 1}}
  - parallel:
      merge: concat
      branches: [["conv:4@1x1"], ["maxpool:3/s1/p1", "conv:2@1x1"]]
  - gap
  - flatten
  - dense: 10
""",
    )
    model = parse_file(path)
    assert model.name == "tiny_resnet" and model.input_shape == (16, 16, 3)
    stem, down, rep0, rep1, merge, *_ = model.layers
    assert stem == Conv2d(8, 3, padding=1, name="stem")
    assert isinstance(down, Sequential) and down.name == "down"
    assert isinstance(rep0, Sequential) and (rep0.label, rep1.label) == ("unit.0", "unit.1")  # type: ignore[union-attr]
    residual = down.layers[0]
    assert isinstance(residual, Parallel) and residual.merge_mode == "add"
    assert residual.branches[0].layers[0] == Conv2d(16, 3, stride=2, padding=1, bias=False)
    assert isinstance(merge, Parallel) and merge.merge_mode == "concat"
    s = summarize(model.layers, (16, 16, 3))
    top = {r.name: r.out_shape for r in s.layers if r.depth == 0}
    assert top["down"] == (8, 8, 16) and top["parallel"] == (8, 8, 6) and top["dense"] == (10,)


def test_identity_shortcut_and_mismatch(tmp_path: Path) -> None:
    ok = write(tmp_path, "layers:\n  - residual: {main: ['conv:3@3x3/p1']}\n")
    assert summarize(parse_file(ok).layers, (8, 8, 3)).layers[0].out_shape == (8, 8, 3)
    bad = write(tmp_path, "layers:\n  - residual: {main: ['conv:3@3x3/s2/p1']}\n", "bad.yaml")
    from featmap.errors import ShapeError

    with pytest.raises(
        ShapeError, match=r"layer 1 \(residual\): cannot add branches of shapes 4×4×3, 8×8×3; .*projection"
    ):
        summarize(parse_file(bad).layers, (8, 8, 3))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("layers:\n  - 'conv:6'\n", r"net.yaml: layers\[0\]: 'conv:6': a conv is FILTERS@KxK"),
        ("layers:\n  - {conv: {filters: 6, kernal: 3}}\n", r"layers\[0\].conv: unknown option 'kernal'"),
        ("layers:\n  - {block: nope}\n", r"layers\[0\].block: unknown block 'nope'"),
        (
            "blocks: {b: {params: [c], layers: ['conv:$c@3x3']}}\nlayers:\n  - {block: b}\n",
            r"block 'b' takes \['c'\]; got \[\]",
        ),
        (
            "blocks: {b: {params: [c], layers: ['conv:$d@3x3']}}\nlayers:\n  - {block: b, args: {c: 1}}\n",
            r"uses \$d",
        ),
        ("layers:\n  - {repeat: 0, layers: [relu]}\n", r"repeat: must be a whole number >= 1"),
        ("layers:\n  - parallel: {merge: max, branches: [[relu], [relu]]}\n", r"must be one of add, concat, mul, aux"),
        ("layers: relu\n", r"layers: must be a list of layers"),
        ("just text\n", r"is not a layer list"),
        ("layers: [relu]\nwidth: 3\n", r"`width`: is not a spec key"),
        ("layers: [relu\n", r"invalid YAML at line"),
        ("input: 3x\nlayers: [relu]\n", r"net.yaml: input"),
    ],
)
def test_file_errors_name_the_yaml_path(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(SpecError, match=match) as info:
        parse_file(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_unknown_model() -> None:
    from featmap.errors import OptionError

    with pytest.raises(OptionError, match="no preset named 'vgg99'; did you mean vgg19"):
        load_model("vgg99")
    with pytest.raises(OptionError, match="no preset named 'zzz'; `featmap shape --list-models` lists them all"):
        load_model("zzz")


def test_json_spec(tmp_path: Path) -> None:
    path = write(tmp_path, '{"input": "8x8x1", "layers": ["conv:2@3x3", {"dense": {"units": 3}}]}', "net.json")
    assert parse_file(path).layers == (Conv2d(2, 3), Dense(3))


def test_a_mistyped_layer_type_gets_close_matches() -> None:
    with pytest.raises(SpecError, match="did you mean avgpool"):
        parse_token("avgpoo:2")
    with pytest.raises(SpecError, match="did you mean relu"):
        parse_token("rleu")


def test_combine_token_runs_as_the_hypot_and_max_of_the_conv_maps() -> None:
    """``combine:magnitude`` after a conv of 2 filters is sqrt(a² + b²) of its two maps; ``combine:max/4`` of 4
    filters the largest of them (the same weights: one seed, the conv first in both networks)."""
    from featmap.run.executor import WeightSource, run_network

    rng = np.random.default_rng(4)
    image = rng.random((9, 11, 1)).astype(np.float32)
    for conv, combine, merge in (("conv:2@3x3", "combine:magnitude", "hypot"), ("conv:4@3x3", "combine:max/4", "max")):
        maps = run_network(parse_tokens([conv]), image, WeightSource(init="kaiming", seed=3)).logits
        merged = run_network(parse_tokens([conv, combine]), image, WeightSource(init="kaiming", seed=3)).logits
        assert merged.shape == (7, 9, 1)
        expect = np.hypot(maps[..., 0], maps[..., 1]) if merge == "hypot" else maps.max(axis=-1)
        np.testing.assert_allclose(merged[..., 0], expect, rtol=1e-6, atol=1e-7)
