"""A network run's mistakes that are knowable before any image is read (README, "Networks on images": "A layer with
none is an error naming it, before any work"): said once, before the first image, with the flags' names; not once per
image of a batch (exit 3 with every image failed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli

SPEC = "input: 8x8x1\nlayers:\n  - {conv: '2@3x3', name: c1}\n  - relu\n"


def _folder(tmp_path: Path, count: int = 3) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(count):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_spec_without_weights_is_refused_once_before_any_image(tmp_path: Path, jobs: str) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    args = ["apply", str(_folder(tmp_path)), "--spec", str(spec), "-o", str(out), "-j", jobs, "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "error: net: layer 1 (c1): has no weights (`c1.weight`, shape (2, 1, 3, 3))" in lines[0]
    assert "--init kaiming or glorot" in lines[0]
    assert json.loads(result.stdout)["exit_code"] == 1
    assert not out.exists() or not any(out.rglob("*.png"))


def test_a_spec_whose_kernels_are_named_needs_no_weights(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 8x8x1\nlayers:\n  - {conv: {kernels: [sobel_x, sobel_y]}, name: c1}\n  - relu\n")
    result = CliRunner().invoke(cli, ["apply", str(_folder(tmp_path)), "--spec", str(spec), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.stderr


def test_weights_and_init_together_are_a_usage_error(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC)
    weights = tmp_path / "w.npz"
    np.savez(weights, **{"c1.weight": np.zeros((2, 1, 3, 3), np.float32), "c1.bias": np.zeros(2, np.float32)})
    args = ["apply", str(_folder(tmp_path, 1)), "--spec", str(spec), "--weights", str(weights), "--init", "kaiming"]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "o")])
    assert result.exit_code == 2, result.stderr
    assert "--init: was given with a weights file" in result.stderr and "`" not in result.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_transform_for_other_channels_is_refused_once_before_any_image(tmp_path: Path, jobs: str) -> None:
    """ImageNet's three means on LeNet-5's one channel failed every image of a batch with the same line (exit 3)."""
    out = tmp_path / "out"
    args = ["apply", str(_folder(tmp_path)), "--model", "lenet5-digits", "--preprocess", "imagenet", "-o", str(out)]
    result = CliRunner().invoke(cli, [*args, "-j", jobs])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("featmap: error: --preprocess imagenet: has 3 means"), lines
    assert not out.exists() or not any(out.rglob("*.png"))


@pytest.mark.parametrize("upto", ["0", "13", "99"])
def test_an_upto_number_past_the_end_says_how_many_layers_there_are(tmp_path: Path, upto: str) -> None:
    """``--upto 99`` on LeNet-5's 12 layers said "no layer is called '99'"."""
    args = ["apply", str(_folder(tmp_path, 1)), "--model", "lenet5-digits", "--upto", upto, "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert f"--upto: there is no layer {upto}: the network's layers are numbered 1 … 12" in result.stderr


def test_a_declared_input_over_the_limits_is_refused_before_any_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ONNX file or spec declaring a 100000×100000×3 input had every image resized to it first (120 GB of floats:
    the OOM killer, rc 137) and the network's limits checked after; they are checked when the job is made."""
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 300x300x3\nlayers: [relu]\n")
    monkeypatch.setenv("FEATMAP_MAX_OUTPUT_PIXELS", "100000")  # 300·300·3 = 270,000 values
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["apply", str(_folder(tmp_path)), "--spec", str(spec), "-o", str(out), "-j", "1"])
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "layer 1 (relu): output 300×300×3: 270,000 exceeds the output size limit" in lines[0]
    assert not out.exists() or not any(out.rglob("*.png"))


@pytest.mark.parametrize("upto", ["12", "output"])
def test_upto_the_last_layer_is_the_whole_run_with_its_prediction(tmp_path: Path, upto: str) -> None:
    """``--upto`` naming LeNet-5's last layer ran every layer but printed no prediction (and wrote none), as if the
    run had stopped early; it is the whole run."""
    image = _folder(tmp_path, 1) / "0.png"
    whole = CliRunner().invoke(cli, ["apply", str(image), "--model", "lenet5-digits", "-o", str(tmp_path / "a")])
    args = ["apply", str(image), "--model", "lenet5-digits", "--upto", upto, "-o", str(tmp_path / "b")]
    stopped = CliRunner().invoke(cli, args)
    assert stopped.exit_code == 0 and "prediction:" in stopped.stdout, stopped.stderr
    assert stopped.stdout.replace(str(tmp_path / "b"), "OUT") == whole.stdout.replace(str(tmp_path / "a"), "OUT")
