"""A weights file against a network (issue 20 item 6): every missing, mis-shaped and unused tensor at once with the
file's nearest names (`featmap.net.weights.matching`), `featmap weights check` (table, JSON, exit codes), and the
run's one error with its list under it. No torch needed: the files are numpy's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import featmap
from featmap.cli import cli
from featmap.errors import ShapeError, SpecError
from featmap.net.weights import MAX_LINES, check_tensors, match_weights

RNG = np.random.default_rng(20)
SPEC = """
input: 16x16x3
layers:
  - {conv: "8@3x3/p1", name: stem}
  - relu
  - name: block
    residual:
      main: [{conv: "8@3x3/p1", name: conv1}, {bn: , name: bn1}, relu]
  - gap
  - flatten
  - {dense: 4, name: head}
"""
SHAPES = {
    "stem.weight": (8, 3, 3, 3),
    "stem.bias": (8,),
    "block.conv1.weight": (8, 8, 3, 3),
    "block.conv1.bias": (8,),
    "block.bn1.weight": (8,),
    "block.bn1.bias": (8,),
    "block.bn1.running_mean": (8,),
    "block.bn1.running_var": (8,),
    "head.weight": (4, 8),
    "head.bias": (4,),
}


def _tensors(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    return {k: (RNG.random(s) + 0.5).astype(np.float32) for k, s in shapes.items()}


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(SPEC)
    return path


def test_a_fitting_file_checks_ok_in_the_networks_order(spec: Path, tmp_path: Path) -> None:
    found = _tensors(dict(reversed(list(SHAPES.items()))))
    found["block.bn1.num_batches_tracked"] = np.array(3.0)
    np.savez(tmp_path / "w.npz", **found)
    check = featmap.check_weights(spec, tmp_path / "w.npz")
    assert check.ok and [row.key for row in check.rows] == list(SHAPES)  # the counter is nobody's tensor
    assert {row.status for row in check.rows} == {"ok"}
    assert check.rows[2].layer == "3.1.1 conv1"  # the table's path and the layer's name
    assert check.summary() == "10 tensors: 10 found, 0 missing, 0 mis-shaped"


def test_every_problem_at_once_with_nearest_names_and_both_shapes(spec: Path) -> None:
    found = _tensors(SHAPES)
    found["block.conv_1.weight"] = found.pop("block.conv1.weight")  # renamed
    found["block.conv_1.bias"] = found.pop("block.conv1.bias")
    found["head.weight"] = found["head.weight"][:, :5]  # another width
    del found["stem.bias"]  # gone
    found["aux.weight"] = np.zeros((2, 2), np.float32)  # extra
    check = featmap.check_weights(spec, found)
    status = {row.key: row.status for row in check.rows}
    assert [k for k, s in status.items() if s == "missing"] == ["stem.bias", "block.conv1.weight", "block.conv1.bias"]
    assert [k for k, s in status.items() if s == "shape"] == ["head.weight"]
    assert [k for k, s in status.items() if s == "unused"] == ["block.conv_1.weight", "block.conv_1.bias", "aux.weight"]
    rows = {row.key: row for row in check.rows}
    assert rows["block.conv1.weight"].near[0] == "block.conv_1.weight"
    assert rows["block.conv1.bias"].near[0] == "block.conv_1.bias"
    assert (rows["head.weight"].expected, rows["head.weight"].found) == ((4, 8), (4, 5))
    with pytest.raises(SpecError) as info:  # one missing makes it a SpecError; the run never starts
        featmap.forward(np.zeros((16, 16, 3), np.float32), str(spec), weights=found)
    error = info.value
    assert str(error).startswith(
        "weights: does not fit the network: 10 tensors: 6 found, 3 missing, 1 mis-shaped; 3 in the file not used "
        "(first: stem.bias missing)"
    )
    assert [line.split("; nearest in the file: ")[0] for line in error.details] == [
        "missing: stem.bias 8 (layer 1 stem)",
        "missing: block.conv1.weight 8×8×3×3 (layer 3.1.1 conv1)",
        "missing: block.conv1.bias 8 (layer 3.1.1 conv1)",
        "mis-shaped: head.weight: the network needs 4×8, the file has 4×5 (layer 6 head)",
        "not used: block.conv_1.weight 8×8×3×3",
        "not used: block.conv_1.bias 8",
        "not used: aux.weight 2×2",
    ]
    assert "; nearest in the file: block.conv_1.weight, block.conv_1.bias" in error.details[1]  # unused names first


def test_at_most_twenty_lines_then_a_count() -> None:
    expected = {f"layer{i}.weight": (2,) for i in range(30)}
    with pytest.raises(SpecError) as info:
        match_weights(expected, {}, source="w.npz")
    assert len(info.value.details) == MAX_LINES + 1 == 21
    assert info.value.details[-1] == "… and 10 more"
    assert "30 tensors: 0 found, 30 missing, 0 mis-shaped" in str(info.value)


def test_a_file_for_another_width_names_both_shapes_as_a_shape_error() -> None:
    expected = {"fc.weight": (1000, 512), "fc.bias": (1000,)}
    with pytest.raises(ShapeError) as info:
        match_weights(expected, {"fc.weight": np.zeros((10, 512)), "fc.bias": np.zeros(10)}, source="w.npz")
    assert info.value.details == (
        "mis-shaped: fc.weight: the network needs 1000×512, the file has 10×512",
        "mis-shaped: fc.bias: the network needs 1000, the file has 10",
    )


def test_pytorch_spellings_a_bare_parameter_trailing_ones_and_a_wrapper_prefix() -> None:
    expected = {"block.0.weight": (4, 1, 7, 7), "block.layer_scale.weight": (4,), "head.weight": (2, 4)}
    scale = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(4, 1, 1)
    found = {
        "module.block.0.weight": np.ones((4, 1, 7, 7), np.float32),
        "module.block.layer_scale": scale,  # ConvNeXt's nn.Parameter: the layer's key, (C, 1, 1)
        "module.head.weight": np.ones((2, 4), np.float32),
    }
    got, warnings = match_weights(expected, found, source="w.pth")
    np.testing.assert_array_equal(got["block.layer_scale.weight"], [1, 2, 3, 4])
    assert warnings == ["w.pth: every name starts with `module.` (a wrapped model's state_dict): read without it"]
    check = check_tensors(expected, found)
    assert check.rows[1].name == "block.layer_scale" and check.rows[1].note == "4×1×1 read as 4"
    with pytest.raises(ShapeError):  # a (4, 2, 1) is not a per-channel tensor
        match_weights(expected, {**found, "module.block.layer_scale": np.ones((4, 2, 1))})


def test_cli_table_json_and_exit_codes(spec: Path, tmp_path: Path, runner: CliRunner) -> None:
    np.savez(tmp_path / "good.npz", **_tensors(SHAPES))
    bad = _tensors(SHAPES)
    bad["head.weight"] = bad["head.weight"][:3]
    np.savez(tmp_path / "bad.npz", **bad)
    ok = runner.invoke(cli, ["weights", "check", "--spec", str(spec), "--weights", str(tmp_path / "good.npz")])
    assert ok.exit_code == 0, ok.output
    assert "block.conv1.weight" in ok.stdout and "8×8×3×3" in ok.stdout
    assert "10 tensors: 10 found, 0 missing, 0 mis-shaped: every tensor the network needs is in the file" in ok.stdout
    result = runner.invoke(
        cli, ["weights", "check", "--spec", str(spec), "--weights", str(tmp_path / "bad.npz"), "--json"]
    )
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["counts"] == {"ok": 9, "missing": 0, "shape": 1, "unused": 0}
    head = next(row for row in data["tensors"] if row["tensor"] == "head.weight")
    assert head == {
        "layer": "6 head",
        "tensor": "head.weight",
        "file_name": "head.weight",
        "expected": [4, 8],
        "found": [3, 8],
        "status": "shape",
        "nearest": [],
        "note": "",
    }
    both = runner.invoke(cli, ["weights", "check", "--model", "lenet5", "--spec", str(spec), "--weights", "x.npz"])
    assert both.exit_code == 2 and "--model" in both.output
    gone = runner.invoke(cli, ["weights", "check", "--model", "lenet5", "--weights", str(tmp_path / "none.npz")])
    assert gone.exit_code == 1 and gone.stderr.startswith("featmap: error: ") and "none.npz" in gone.stderr


def test_apply_prints_the_list_under_the_one_line(spec: Path, tmp_path: Path, runner: CliRunner) -> None:
    found = _tensors(SHAPES)
    del found["head.bias"]
    np.savez(tmp_path / "w.npz", **found)
    from PIL import Image

    Image.new("RGB", (16, 16), (40, 80, 120)).save(tmp_path / "in.png")
    out = tmp_path / "out"
    args = [
        "apply",
        str(tmp_path / "in.png"),
        "--spec",
        str(spec),
        "--weights",
        str(tmp_path / "w.npz"),
        "-o",
        str(out),
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"featmap: error: {tmp_path / 'w.npz'}: does not fit the network: 10 tensors: 9 found")
    assert lines[1:] == ["  missing: head.bias 4 (layer 6 head); nearest in the file: stem.bias, head.weight"]
    assert not out.exists()  # nothing written
