"""featmap shape: the layer-stack calculator."""

from __future__ import annotations

import json
from pathlib import Path

import click

from featmap.cli._common import (
    FeatmapCommand,
    _console,
    _err,
)


@click.command(cls=FeatmapCommand, short_help="Shapes, parameters, MACs, receptive field and memory of a network.")
@click.argument("tokens", nargs=-1)
@click.option("--input", "input_text", default=None, help="Input shape: HxWxC, LxC (1-D) or N features.")
@click.option("--model", default=None, help="A built-in preset (see --list-models).")
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A YAML/JSON layer-spec file, an ONNX or a .keras model.",
)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size for MACs and memory.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--explain", is_flag=True, help="Also show each layer's formulas with the numbers put in.")
@click.option("--no-aux", is_flag=True, help="Drop auxiliary heads (training-only branches, e.g. Inception's).")
@click.option("--list-models", is_flag=True, help="List the built-in presets and exit.")
def shape(
    tokens: tuple[str, ...],
    input_text: str | None,
    model: str | None,
    spec_file: Path | None,
    batch: int,
    fmt: str,
    as_json: bool,
    explain: bool,
    no_aux: bool,
    list_models: bool,
) -> None:
    """Shapes, parameters, multiply-adds, receptive field and memory of a CNN layer stack.

    \b
    Examples:
      featmap shape --input 32x32x1 conv:6@5x5 avgpool:2 conv:16@5x5 avgpool:2 \\
          flatten dense:120 dense:84 dense:10
      featmap shape --model vgg16
      featmap shape --spec my_net.yaml --input 224x224x3 --json
      featmap shape model.onnx           (needs: pip install 'featmap[onnx]')
      featmap shape model.keras
    """
    _shape_command(
        tokens, input_text, model, spec_file, batch, "json" if as_json else fmt, explain, list_models, no_aux
    )


def _onnx_argument(tokens: tuple[str, ...], spec_file: Path | None) -> Path | None:
    """The ONNX file given as ``featmap shape model.onnx`` or ``--spec model.onnx``, if any."""
    from featmap.net.onnx import is_onnx_file, is_onnx_path

    if spec_file is not None and is_onnx_file(spec_file):
        return spec_file
    if len(tokens) == 1 and is_onnx_path(tokens[0]):
        return Path(tokens[0])
    return None


def _keras_argument(tokens: tuple[str, ...], spec_file: Path | None) -> Path | None:
    """The Keras model given as ``featmap shape model.keras`` or ``--spec model.keras``, if any."""
    from featmap.net.spec.keras import is_keras_model, is_keras_path

    if spec_file is not None and (is_keras_path(spec_file) or is_keras_model(spec_file)):
        return spec_file
    return Path(tokens[0]) if len(tokens) == 1 and is_keras_path(tokens[0]) else None


def _is_spec_path(token: str) -> bool:
    """Whether a lone token names a spec file rather than a layer: a YAML/JSON name, or a file whose name has a dot
    or a slash (a layer token without options is a bare word: ``gap``, ``flatten``)."""
    if ":" in token:
        return False
    path = Path(token)
    return path.suffix.lower() in (".yaml", ".yml", ".json") or (any(c in token for c in "./") and path.is_file())


def _open_input(dims: tuple[int | str, ...], where: str) -> str:
    """The stand-in input a model with open sizes is shown at (ONNX's first mapping size), said on stderr."""
    from featmap.net.spec.model import STAND_IN_HW

    size = [d if isinstance(d, int) else p for d, p in zip(dims[:2], STAND_IN_HW, strict=False)]
    text = "x".join(map(str, (*size, dims[-1])))
    _err(
        "warning",
        f"{where}: the input is {'×'.join(map(str, dims))} (open sizes); shapes below are for {text.replace('x', '×')}"
        f"; give --input HxWxC for yours",
    )
    return text


def _shape_command(
    tokens: tuple[str, ...],
    input_text: str | None,
    model: str | None,
    spec_file: Path | None,
    batch: int,
    fmt: str,
    explain: bool,
    list_models: bool,
    no_aux: bool = False,
) -> None:
    from featmap.api import shape as summarize_layers
    from featmap.errors import SpecError
    from featmap.net.spec import Model, load_model, parse_file, parse_tokens
    from featmap.net.spec import list_models as presets
    from featmap.render import summary_dict, summary_explain, summary_markdown, summary_view

    if list_models:
        rows = presets()
        if fmt == "json":
            click.echo(
                json.dumps(
                    [
                        {
                            "name": m.name,
                            "input": list(m.input_shape or ()),
                            "description": m.description,
                            "source": m.source,
                        }
                        for m in rows
                    ],
                    indent=2,
                )
            )
            return
        from rich.table import Table

        table = Table(header_style="bold")
        for column in ("model", "input", "description"):
            table.add_column(column, overflow="fold")
        for m in rows:
            table.add_row(m.name, "×".join(map(str, m.input_shape or ())), m.description)
        _console().print(table)
        return
    sources = sum(bool(x) for x in (tokens, model, spec_file))
    if sources != 1:
        raise SpecError(
            "featmap shape",
            "give layer tokens, --model NAME or --spec FILE (exactly one)",
            "e.g. featmap shape --input 32x32x1 conv:6@5x5 avgpool:2, or --model lenet5",
        )
    if len(tokens) == 1 and _is_spec_path(tokens[0]):  # featmap shape net.yaml, as featmap shape model.onnx
        spec_file, tokens = Path(tokens[0]), tokens[1:]
    onnx_file = _onnx_argument(tokens, spec_file)
    if onnx_file is not None:
        from featmap.net.onnx import load_onnx
        from featmap.net.spec import parse_shape

        found = load_onnx(onnx_file, parse_shape(input_text) if input_text is not None else None)
    elif (keras_file := _keras_argument(tokens, spec_file)) is not None:
        from featmap.net.spec.keras import load_keras_model

        found = load_keras_model(keras_file)
    elif tokens:
        found = Model("", parse_tokens(tokens))
    else:
        found = load_model(model) if model else parse_file(spec_file)  # type: ignore[arg-type]
    if no_aux:
        from dataclasses import replace

        from featmap.net.layers import without_aux

        found = replace(found, layers=without_aux(found.layers))
    name = found.name or None
    if input_text is None and found.input_shape is None and found.input_dims:  # open sizes: shown at a stand-in
        input_text = _open_input(found.input_dims, found.source or name or "the model")
    result = summarize_layers(found, input=input_text, batch=batch)
    for note in result.warnings:
        _err("warning", note)
    if fmt == "json":
        data = summary_dict(result, name)
        if found.input_dims and found.input_shape is None:
            data["input_dims"] = list(found.input_dims)
        if explain:
            data["explain"] = {row.path: list(row.explain) for row in result.layers if row.explain}
        click.echo(json.dumps(data, indent=2, allow_nan=False))
    elif fmt == "markdown":
        click.echo(summary_markdown(result, name), nl=False)
    else:
        console = _console()
        console.print(summary_view(result, name))
        if explain:
            console.print(summary_explain(result))
