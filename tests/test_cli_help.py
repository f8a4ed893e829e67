"""Help for a narrow terminal (issue 23 item 7): every command's help fits 80 columns and shows examples;
command listings carry whole one-line descriptions (no "..."); messages point at the right fix."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from featmap.cli import cli

COMMANDS = [
    [],
    ["apply"],
    ["shape"],
    ["explain"],
    ["kernels"],
    ["kernels", "list"],
    ["kernels", "show"],
    ["weights"],
    ["weights", "check"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "featmap")
def test_help_fits_80_columns_and_has_examples(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0
    long = [line for line in result.stdout.splitlines() if len(line) > 80]
    assert long == []
    assert "Examples:" in result.stdout
    assert "..." not in result.stdout.split("Commands:")[-1] if "Commands:" in result.stdout else True
    examples = result.stdout.split("Examples:")[1]
    assert f"featmap {' '.join(command)}".strip() in examples


def test_command_listings_have_whole_descriptions() -> None:
    for group in ([], ["kernels"]):
        text = CliRunner().invoke(cli, [*group, "--help"], terminal_width=80).stdout
        listing = text.split("Commands:")[1].strip().splitlines()
        assert listing and all(not line.rstrip().endswith("...") for line in listing), listing


def test_a_2d_input_to_a_conv_suggests_the_channel_not_a_flatten() -> None:
    result = CliRunner().invoke(cli, ["shape", "--input", "32x32", "conv:6@5x5"])
    assert result.exit_code == 1
    assert "flatten" not in result.stderr and "32x32x1" in result.stderr


def test_a_flat_input_to_a_conv_still_suggests_removing_the_flatten() -> None:
    result = CliRunner().invoke(cli, ["shape", "--input", "8x8x1", "flatten", "conv:6@3x3"])
    assert result.exit_code == 1 and "flatten/dense" in result.stderr


def test_a_network_without_weights_names_init(tmp_path: object) -> None:
    result = CliRunner().invoke(cli, ["apply", "samples/camera.png", "--model", "alexnet", "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert "--init kaiming or glorot" in result.stderr and "weights file" in result.stderr


def _option_help(command: list[str], option: str) -> str:
    """The help text of ``option`` of ``command``, on one line."""
    context = cli.make_context("featmap", [*command, "--help"], resilient_parsing=True)
    for name in command:
        group = context.command
        context = group.get_command(context, name).make_context(name, [], parent=context, resilient_parsing=True)
    (param,) = [p for p in context.command.params if option in getattr(p, "opts", ())]
    return " ".join(str(param.help).split())


@pytest.mark.parametrize("command", [["apply"], ["weights", "check"]], ids=" ".join)
def test_weights_and_spec_help_name_every_file_kind_they_read(command: list[str]) -> None:
    """``--weights`` reads .safetensors, .npz, PyTorch, Keras and ONNX files and ``--spec`` YAML/JSON, ONNX and
    .keras files (`featmap.net.networks`); the help said ".npz or .safetensors" and "a YAML/JSON layer-spec file"."""
    weights = _option_help(command, "--weights")
    for kind in (".safetensors", ".npz", ".pt", "Keras", "ONNX"):
        assert kind in weights, (kind, weights)
    spec = _option_help(command, "--spec")
    for kind in ("YAML", "ONNX", ".keras"):
        assert kind in spec, (kind, spec)
