"""featmap.net.onnx: small graphs built with onnx.helper (hand-checked shapes and parameters), the unsupported-operator
report, the CLI, and (where torch and torchvision are installed) torchvision exports against the presets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from featmap.cli import cli
from featmap.errors import SpecError
from featmap.net.layers import Act, Parallel
from featmap.net.spec import load_model
from featmap.net.summary import summarize

onnx = pytest.importorskip("onnx")

from featmap.net.onnx import load_onnx  # noqa: E402
from featmap.net.onnx._wire import read_without_payloads  # noqa: E402

from .onnx_graphs import Graph  # noqa: E402
from .onnx_zoo import cached_export, import_torchvision  # noqa: E402


def summary_of(path: Path):
    model = load_onnx(path)
    assert model.input_shape is not None
    return model, summarize(model.layers, model.input_shape)


def test_classifier_chain_hand_checked(tmp_path: Path) -> None:
    g = Graph()
    x = g.add("Conv", ["x"], weights=((8, 3, 3, 3), (8,)), pads=[1, 1, 1, 1])
    x = g.add("BatchNormalization", [x], weights=((8,), (8,), (8,), (8,)), epsilon=1e-3)
    x = g.add("Relu", [x])
    x = g.add("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    x = g.add("GlobalAveragePool", [x])
    x = g.add("Flatten", [x], axis=1)
    x = g.add("Gemm", [x], weights=((10, 8), (10,)), transB=1)
    model, s = summary_of(g.save(tmp_path / "net.onnx", x))
    assert model.input_shape == (16, 16, 3)
    assert [r.out_shape for r in s.layers] == [(16, 16, 8), (16, 16, 8), (16, 16, 8), (8, 8, 8), (1, 1, 8), (8,), (10,)]
    assert s.totals.trainable == (27 * 8 + 8) + 16 + (80 + 10)  # conv, bn scale/shift, dense
    assert s.totals.non_trainable == 16  # running mean and variance
    assert s.totals.macs == 27 * 8 * 256 + 80
    assert model.layers[1].eps == 1e-3
    assert s.layers[3].detail == "ceil"  # 16 → ceil((16 - 3) / 2) + 1 = 8 (floor would give 7)


def test_conv_padding_forms_groups_dilation(tmp_path: Path) -> None:
    g = Graph((1, 4, 15, 15))
    a = g.add("Conv", ["x"], weights=((4, 1, 3, 3),), group=4, strides=[2, 2], auto_pad="SAME_UPPER")
    b = g.add("Conv", [a], weights=((6, 4, 2, 2),), auto_pad="SAME_LOWER")
    c = g.add("Conv", [b], weights=((6, 3, 3, 3),), group=2, dilations=[2, 2], pads=[0, 1, 2, 3])
    d = g.add("AveragePool", [c], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)
    model, s = summary_of(g.save(tmp_path / "pads.onnx", d))
    rows = s.layers
    assert rows[0].out_shape == (8, 8, 4) and rows[0].params == 4 * 9  # depthwise, no bias
    assert rows[0].padding == (1, 1, 1, 1)  # SAME: total 2·7 + 3 - 15 = 2 → 1 and 1
    assert rows[1].padding == (1, 0, 1, 0)  # SAME_LOWER: the extra row on top
    assert rows[2].padding == (0, 2, 1, 3)  # ONNX pads are [top, left, bottom, right]
    assert rows[2].out_shape == (8 + 2 - 4, 8 + 4 - 4, 6) and rows[2].params == 6 * 3 * 9
    assert model.layers[3].count_include_pad is True and rows[3].out_shape == rows[2].out_shape


def test_residual_gate_and_silu(tmp_path: Path) -> None:
    g = Graph((1, 8, 10, 10))
    x = g.add("Conv", ["x"], weights=((8, 8, 3, 3),), pads=[1] * 4)
    s_ = g.add("Sigmoid", [x])
    x = g.add("Mul", [x, s_])  # SiLU as PyTorch exports it
    pooled = g.add("GlobalAveragePool", [x])
    squeezed = g.add("Relu", [g.add("Conv", [pooled], weights=((2, 8, 1, 1), (2,)))])
    gate = g.add("HardSigmoid", [g.add("Conv", [squeezed], weights=((8, 2, 1, 1), (8,)))], alpha=1 / 6, beta=0.5)
    y = g.add("Mul", [x, gate])
    out = g.add("Add", ["x", y])
    model, s = summary_of(g.save(tmp_path / "se.onnx", out))
    (block,) = model.layers
    assert isinstance(block, Parallel) and block.merge_mode == "add"
    main = [b for b in block.branches if b.layers][0].layers
    assert isinstance(main[1], Act) and main[1].kind.value == "silu"
    assert isinstance(main[2], Parallel) and main[2].merge_mode == "mul"
    assert s.totals.trainable == 8 * 8 * 9 + (16 + 2) + (16 + 8)
    assert s.layers[0].out_shape == (10, 10, 8)


def test_split_concat_and_channel_shuffle(tmp_path: Path) -> None:
    g = Graph((1, 8, 6, 6))
    left, right = g.add("Split", ["x"], outputs=2, axis=1)  # opset 11: equal halves
    right = g.add("Relu", [g.add("Conv", [right], weights=((4, 4, 1, 1),))])
    cat = g.add("Concat", [left, right], axis=1)
    shape = g.weight((5,), np.array([1, 2, 4, 6, 6], np.int64))
    r = g.add("Reshape", [cat, shape])
    t = g.add("Transpose", [r], perm=[0, 2, 1, 3, 4])
    back = g.add("Reshape", [t, g.weight((4,), np.array([1, 8, 6, 6], np.int64))])
    model, s = summary_of(g.save(tmp_path / "shuffle.onnx", back, opset=11))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Parallel", "ChannelShuffle"]
    first, second = model.layers[0].branches
    assert first.layers[0].bounds(8) == (0, 4) and second.layers[0].bounds(8) == (4, 8)
    assert s.totals.trainable == 16 and s.layers[-1].out_shape == (6, 6, 8)


def test_unsupported_operators_listed_one_a_line(tmp_path: Path) -> None:
    g = Graph()
    x = g.add("Conv", ["x"], weights=((4, 3, 3, 3),))
    x = g.add("Erf", [x])
    x = g.add("Erf", [x])  # fed by an unsupported node: listed too
    x = g.add("Clip", [x], min=-1.0, max=1.0)
    path = g.save(tmp_path / "odd.onnx", x, opset=10)
    with pytest.raises(SpecError) as info:
        load_onnx(path)
    assert info.value.problem == "3 nodes featmap cannot map (2 Erf, 1 Clip)"
    assert info.value.details == (
        "/erf2/Erf (Erf): no featmap layer for this operator",
        "/erf3/Erf (Erf): no featmap layer for this operator",
        "/clip4/Clip (Clip): a clip to [-1.0, 1.0] (featmap maps ReLU and ReLU6)",
    )
    result = CliRunner().invoke(cli, ["shape", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"featmap: error: {path}: 3 nodes featmap cannot map (2 Erf, 1 Clip); "
        "see README, 'ONNX', for the operators featmap reads"
    )
    assert lines[1:] == [f"  {d}" for d in info.value.details]


def test_cli_positional_and_spec_print_the_same_table(tmp_path: Path) -> None:
    g = Graph()
    x = g.add("Relu", [g.add("Conv", ["x"], weights=((4, 3, 5, 5), (4,)))])
    path = g.save(tmp_path / "tiny.onnx", x)
    runner = CliRunner()
    by_argument = runner.invoke(cli, ["shape", str(path)])
    by_spec = runner.invoke(cli, ["shape", "--spec", str(path)])
    assert by_argument.exit_code == by_spec.exit_code == 0
    assert by_argument.stdout == by_spec.stdout
    assert "12×12×4" in by_argument.stdout and "params: 304" in by_argument.stdout
    other = runner.invoke(cli, ["shape", str(path), "--input", "32x32x3"])
    assert "28×28×4" in other.stdout


def test_missing_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = Graph().save(tmp_path / "m.onnx", "x")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(SpecError, match=r"pip install 'featmap\[onnx\]'"):
        load_onnx(path)


def test_not_onnx_and_empty(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xff\xff\xff not protobuf")
    with pytest.raises(SpecError, match="is not an ONNX model"):
        load_onnx(junk)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(SpecError, match="empty"):
        load_onnx(empty)


def test_weights_are_not_read(tmp_path: Path) -> None:
    g = Graph((1, 64, 8, 8))
    x = g.add("Conv", ["x"], weights=((256, 64, 3, 3),))  # 147,456 floats = 590 KB
    path = g.save(tmp_path / "big.onnx", x)
    stripped = read_without_payloads(path)
    assert path.stat().st_size > 580_000 and len(stripped) < 2_000
    model = onnx.ModelProto.FromString(stripped)
    assert list(model.graph.initializer[0].dims) == [256, 64, 3, 3]
    assert summary_of(path)[1].totals.trainable == 256 * 64 * 9


@pytest.mark.filterwarnings("ignore")  # the legacy exporter's deprecation and tracer warnings
@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x1_0", "convnext_tiny"])
def test_torchvision_export_equals_preset(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    """Exported without constant folding (batch norm kept), each model is its preset: the same parameters,
    statistics and multiply-adds (the exports are the ones tests/test_onnx_runtime.py runs)."""
    try:
        import_torchvision()
    except ImportError as exc:
        pytest.skip(str(exc))
    path = cached_export(tmp_path_factory.mktemp("onnx_zoo"), name, opset=17, fold=False)
    model, ours = summary_of(path)
    preset = load_model(name)
    assert model.input_shape is not None
    expected = summarize(preset.layers, model.input_shape)
    assert ours.totals.trainable == expected.totals.trainable
    assert ours.totals.non_trainable == expected.totals.non_trainable
    assert ours.totals.macs == expected.totals.macs
    assert ours.layers[-1].out_shape == expected.layers[-1].out_shape == (1000,)
