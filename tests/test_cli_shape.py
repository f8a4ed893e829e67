"""`featmap shape`: every output format, presets, explain, and errors with their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from featmap.cli import cli

LENET = [
    "--input",
    "32x32x1",
    "conv:6@5x5",
    "avgpool:2",
    "conv:16@5x5",
    "avgpool:2",
    "flatten",
    "dense:120",
    "dense:84",
    "dense:10",
]


def run(runner: CliRunner, *args: str) -> object:
    return runner.invoke(cli, ["shape", *args], catch_exceptions=False)


def test_inline_table(runner: CliRunner) -> None:
    result = run(runner, *LENET)
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    conv = next(line for line in lines if line.startswith("1 "))
    for cell in ("conv2d", "Conv2d", "5×5 s1 p0", "28×28×6", "156", "117,600", "5 j1"):
        assert cell in conv
    assert "params: 61,706 = 61,706 trainable + 0 non-trainable" in result.stdout
    assert "FLOPs = 2 × MACs" in result.stdout


def test_json_is_pure_and_complete(runner: CliRunner) -> None:
    data = json.loads(run(runner, *LENET, "--json").stdout)
    assert data["input"] == [32, 32, 1] and data["totals"]["trainable"] == 61_706
    assert [row["out_shape"] for row in data["layers"]][:2] == [[28, 28, 6], [14, 14, 6]]
    assert data["layers"][0]["receptive_field"] == {"size": [5, 5], "jump": [1, 1], "start": [2.0, 2.0]}
    assert "weight multiply-adds" in data["convention"] and "no bias" in data["convention"]


@pytest.mark.parametrize(
    ("model", "total"), [("vgg16", "138,357,544"), ("resnet50", "25,557,032"), ("googlenet", "6,624,904")]
)
def test_models_print_published_totals(runner: CliRunner, model: str, total: str) -> None:
    result = run(runner, "--model", model)
    assert result.exit_code == 0
    assert f"= {total} trainable" in result.stdout


def test_markdown(runner: CliRunner) -> None:
    result = run(runner, "--model", "lenet5", "--format", "markdown")
    lines = result.stdout.splitlines()
    assert lines[0] == "### lenet5"
    assert lines[2].startswith("| # | layer | type |") and lines[3].startswith("|---:|")
    assert any(line.startswith("| 1 | C1 | Conv2d | 5×5 s1 p0 | 28×28×6 | 156 |") for line in lines)
    assert "- params: 61,706 = 61,706 trainable" in result.stdout


def test_explain(runner: CliRunner) -> None:
    result = run(runner, "--model", "lenet5", "--explain")
    assert "H, W: floor((32 + 0 - 1·(5 - 1) - 1) / 1) + 1 = 28" in result.stdout
    assert "params: 5·5·1·6 + 6 = 156" in result.stdout
    assert "MACs: 5·5·1·6·28·28 = 117,600" in result.stdout


def test_spec_file_and_batch(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text("layers: ['conv:4@3x3/p1', flatten, 'dense:2']\n")
    data = json.loads(run(runner, "--spec", str(spec), "--input", "8x8x1", "--batch", "4", "--json").stdout)
    assert data["batch"] == 4 and data["layers"][0]["macs"] == 9 * 4 * 64 * 4


def test_list_models(runner: CliRunner) -> None:
    result = run(runner, "--list-models")
    for name in (
        "lenet5",
        "alexnet",
        "vgg11",
        "vgg16",
        "vgg19",
        "resnet18",
        "resnet34",
        "resnet50",
        "googlenet",
        "tinyvgg",
    ):
        assert name in result.stdout
    assert {m["name"] for m in json.loads(run(runner, "--list-models", "--json").stdout)} >= {
        "vgg16",
        "tinyvgg",
    }


def test_stride_warning_goes_to_stderr(runner: CliRunner) -> None:
    result = run(runner, "--input", "7x7x1", "conv:1@3x3/s3")
    assert result.exit_code == 0
    assert (
        result.stderr
        == "featmap: warning: layer 1 (conv2d): Conv2d: stride 3 leaves the last 1 row and 1 column unused\n"
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--input", "32x32x1", "conv:6"], 2, "featmap: error: layer 1 ('conv:6'): a conv is FILTERS@KxK"),
        (["--input", "32x32x1", "pool:2"], 2, "unknown layer type 'pool'"),
        (["conv:6@5x5"], 2, "featmap: error: --input: is needed"),
        (["--input", "32x32", "conv:6@5x5"], 1, "layer 1 (conv2d): conv2d needs a HxWxC input"),
        (["--input", "4x4x1", "conv:6@5x5"], 1, "featmap: error: layer 1 (conv2d): kernel: 5 is larger"),
        (["--model", "vgg99"], 2, "no preset named 'vgg99'"),
        ([], 2, "give layer tokens, --model NAME or --spec FILE"),
        (["--model", "vgg16", "conv:6@5x5"], 2, "exactly one"),
    ],
)
def test_errors(runner: CliRunner, args: list[str], code: int, message: str) -> None:
    result = run(runner, *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_spec_file_given_as_the_one_argument_is_read_as_spec(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``featmap shape model.onnx`` and ``model.keras`` take the file as the argument; ``featmap shape net.yaml`` said
    "unknown layer type 'net.yaml'; use one of: abs, act, …". A YAML/JSON name, or a file named with a dot or a slash,
    is now the spec; a bare word that happens to name a file in the folder is still a layer token."""
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 8x8x1\nlayers: ['conv:2@3x3', relu]\n")
    by_option = runner.invoke(cli, ["shape", "--spec", str(spec), "--json"])
    by_argument = runner.invoke(cli, ["shape", str(spec), "--json"])
    assert by_argument.exit_code == 0, by_argument.stderr
    assert json.loads(by_argument.stdout) == json.loads(by_option.stdout)
    weights = tmp_path / "w.npz"
    weights.write_bytes((tmp_path / "net.yaml").read_bytes())  # a text file with another suffix: still a spec
    assert runner.invoke(cli, ["shape", str(weights), "--json"]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gap").write_text("not a spec")
    result = runner.invoke(cli, ["shape", "--input", "4x4x2", "gap", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["layers"][0]["kind"] == "GlobalAvgPool"
