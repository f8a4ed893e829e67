"""featmap weights check: a weights file against a network, tensor by tensor, without running anything."""

from __future__ import annotations

import json
from pathlib import Path

import click

from featmap.cli._common import ExitCode, FeatmapGroup, _console
from featmap.errors import OptionError


@click.group(cls=FeatmapGroup)
def weights() -> None:
    """Check weights files against networks.

    \b
    Examples:
      featmap weights check --model resnet18 --weights resnet18.pth
      featmap weights check --spec net.yaml --weights net.keras
    """


@weights.command("check", short_help="Every tensor a network needs against a weights file.")
@click.option("--model", default=None, help="A built-in preset (see featmap shape --list-models).")
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A YAML/JSON layer-spec file, an ONNX or a .keras model.",
)
@click.option(
    "--weights",
    "weights_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="A .safetensors, .npz, .pt/.pth, Keras .weights.h5/.keras or ONNX file.",
)
@click.option("--input", "input_text", default=None, help="Input shape HxWxC (default: the network's own).")
@click.option(
    "--layout",
    type=click.Choice(["torch", "keras"]),
    default=None,
    help="Names and layout of the file (default: torch; a Keras file is recognised by its content).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.pass_context
def weights_check(
    ctx: click.Context,
    model: str | None,
    spec_file: Path | None,
    weights_file: Path,
    input_text: str | None,
    layout: str | None,
    as_json: bool,
) -> None:
    """Every tensor a network needs against a weights file: layer, tensor, the network's shape, the file's,
    and whether it is found, missing (with the file's nearest names) or mis-shaped; then the file's tensors no
    layer takes. Nothing runs. Exit 0 when the network can run on the file, 1 when it cannot.

    \b
    Examples:
      featmap weights check --model resnet18 --weights resnet18.pth
      featmap weights check --spec my_net.yaml --weights my_net.safetensors --json
    """
    from featmap.api import check_weights
    from featmap.render import weights_dict, weights_view

    if (model is None) == (spec_file is None):
        raise OptionError("`model`", "give a preset (--model) or a spec file (--spec), one of them")
    network = model if model is not None else str(spec_file)
    check = check_weights(network, weights_file, input=input_text, layout=layout)
    if as_json:
        click.echo(json.dumps(weights_dict(check, network), indent=1, allow_nan=False))
    else:
        _console().print(weights_view(check, network))
    if not check.ok:
        ctx.exit(ExitCode.ERROR)
