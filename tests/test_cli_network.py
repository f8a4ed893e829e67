"""`featmap apply --spec/--model`: a whole network on image files, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featmap.cli import cli

SPEC = """\
name: tiny
input: 12x12x1
layers:
  - {conv: {kernels: [sobel_x, sobel_y], padding: same}, name: edges}
  - abs
  - {maxpool: 2, name: pool}
  - conv:3@3x3
  - relu
  - flatten
  - dense:4
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def digit(tmp_path: Path) -> Path:
    pixels = np.zeros((12, 12), np.uint8)
    pixels[2:10, 5:7] = 255  # a vertical bar
    path = tmp_path / "bar.png"
    Image.fromarray(pixels).save(path)
    return path


def test_every_layer_written_and_shapes_equal_featmap_shape(runner, spec, digit, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        cli, ["apply", str(digit), "--spec", str(spec), "--init", "kaiming", "-o", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    shaped = runner.invoke(cli, ["shape", "--spec", str(spec), "--json"])
    rows = {row["path"]: row["out_shape"] for row in json.loads(shaped.stdout)["layers"]}
    assert [layer["path"] for layer in data["layers"]] == ["1", "2", "3", "4", "5", "6", "7"]
    for layer in data["layers"]:
        assert layer["shape"] == rows[layer["path"]]
    # one folder per layer, sorting in layer order; one PNG per channel; a flat output is one strip
    folders = sorted(p.name for p in (out / "bar").iterdir())
    assert folders == ["01-edges", "02-abs", "03-pool", "04-conv2d", "05-relu", "06-flatten", "07-dense"]
    assert sorted(p.name for p in (out / "bar" / "01-edges").iterdir()) == ["000.png", "001.png"]
    strip = np.asarray(Image.open(out / "bar" / "07-dense" / "000.png"))
    assert strip.shape == (1, 4)


def test_kernel_weights_give_the_edge_map_scipy_gives(runner, spec, digit, tmp_path):
    from scipy import ndimage

    out = tmp_path / "out"
    result = runner.invoke(
        cli, ["apply", str(digit), "--spec", str(spec), "--init", "glorot", "-o", str(out), "--raw", "npy", "--json"]
    )
    assert result.exit_code == 0, result.output
    edges = np.load(out / "bar" / "01-edges" / "all.npy")
    x = np.asarray(Image.open(digit), dtype=np.float64) / 255
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)
    np.testing.assert_allclose(edges[:, :, 0], ndimage.correlate(x, sobel_x, mode="constant"), atol=1e-5)


def test_a_batch_with_manifest_and_resume(runner, spec, digit, tmp_path):
    second = tmp_path / "b.png"
    Image.fromarray(np.eye(12, dtype=np.uint8) * 255).save(second)
    out = tmp_path / "out"
    args = ["apply", str(digit), str(second), "--spec", str(spec), "--init", "kaiming", "-o", str(out), "-j", "1"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 2 * (2 + 2 + 2 + 3 + 3 + 1 + 1)  # one per PNG: channels of every layer, two images
    again = runner.invoke(cli, [*args, "--skip-existing", "--json"])
    assert again.exit_code == 0, again.output
    assert len(json.loads(again.stdout)["skipped"]) == 2


def test_lenet5_digits_predicts_the_shipped_samples(runner, tmp_path):
    samples = sorted((Path(__file__).resolve().parent.parent / "samples" / "digits").glob("digit_*.png"))
    assert len(samples) == 10
    for sample in samples[:3]:
        result = runner.invoke(cli, ["apply", str(sample), "--model", "lenet5-digits", "-o", str(tmp_path), "--json"])
        assert result.exit_code == 0, result.output
        top = json.loads(result.stdout)["top"]
        assert top[0]["label"] == sample.stem.split("_")[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-k", "sobel_x"], "one of -k, --spec and --model"),
        (["--stride", "2"], "--stride applies to -k kernels"),
        (["--upto", "nope"], "no layer is called 'nope'"),
    ],
)
def test_usage_errors(runner, spec, digit, tmp_path, extra, message):
    result = runner.invoke(cli, ["apply", str(digit), "--spec", str(spec), "--init", "kaiming", *extra])
    assert result.exit_code == 2
    assert message in result.stderr


def test_missing_weights_is_one_line_naming_the_layer(runner, spec, digit, tmp_path):
    result = runner.invoke(cli, ["apply", str(digit), "--spec", str(spec), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "layer 4 (conv2d): has no weights" in result.stderr
    assert not list((tmp_path / "o").rglob("*.png"))  # nothing half-written


def test_weights_of_another_network_are_refused(runner, spec, digit, tmp_path):
    wrong = tmp_path / "w.npz"
    np.savez(wrong, **{"3.weight": np.zeros((5, 2, 3, 3), np.float32), "3.bias": np.zeros(5, np.float32)})
    result = runner.invoke(
        cli, ["apply", str(digit), "--spec", str(spec), "--weights", str(wrong), "-o", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "mis-shaped: 3.weight: the network needs 3×2×3×3, the file has 5×2×3×3" in result.stderr


def test_a_spec_without_input_runs_at_the_images_own_size(runner, tmp_path):
    """Folders and targets come from the plan on the image itself (no stand-in size)."""
    spec = tmp_path / "pool.yaml"
    spec.write_text("layers: [{conv: {kernels: [box_3, identity], padding: same}}, maxpool:150]\n")
    big = tmp_path / "big.png"
    Image.fromarray(np.full((300, 300), 128, np.uint8)).save(big)
    result = runner.invoke(cli, ["apply", str(big), "--spec", str(spec), "-o", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    assert [layer["shape"] for layer in json.loads(result.stdout)["layers"]] == [[300, 300, 2], [2, 2, 2]]


def test_raw_tiff_of_flat_outputs(runner, spec, digit, tmp_path):
    out = tmp_path / "o"
    args = ["apply", str(digit), "--spec", str(spec), "--init", "kaiming", "-o", str(out), "--raw", "tiff"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    with Image.open(out / "bar" / "07-dense" / "all.tiff") as strip:
        assert strip.size == (4, 1) and strip.mode == "F"


def test_changing_a_large_kernel_invalidates_resume(runner, tmp_path, digit):
    """The options hash covers every weight of a spec's kernels (a repr would abbreviate them)."""
    kernel = tmp_path / "k.yaml"
    weights = np.zeros((33, 33))
    weights[16, 16] = 1.0
    kernel.write_text(json.dumps({"name": "big", "weights": weights.tolist()}))
    spec = tmp_path / "s.yaml"
    spec.write_text(f"layers: [{{conv: {{kernels: ['{kernel}:big'], padding: same}}}}]\n")
    out = tmp_path / "o"
    args = ["apply", str(digit), "--spec", str(spec), "-o", str(out), "--skip-existing", "--json"]
    assert runner.invoke(cli, args).exit_code == 0
    weights[16, 15] = 0.5  # one value in the middle
    kernel.write_text(json.dumps({"name": "big", "weights": weights.tolist()}))
    again = runner.invoke(cli, args)
    assert again.exit_code != 0 or json.loads(again.stdout)["skipped"] == []


def test_bank_with_groups_is_refused(runner, tmp_path, digit):
    spec = tmp_path / "g.yaml"
    spec.write_text("input: 12x12x3\nlayers: [{conv: {kernels: [sobel_x, sobel_y, box_3], groups: 3}}]\n")
    result = runner.invoke(cli, ["apply", str(digit), "--spec", str(spec), "-o", str(tmp_path / "o")])
    assert result.exit_code in (1, 2)
    assert "takes no groups" in result.stderr and "Traceback" not in result.stderr
