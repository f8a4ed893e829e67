"""featmap explain: a convolution or a pooling worked out step by step on a small matrix."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from featmap.cli._common import FeatmapCommand, IntsType, _console, _err, conv_options, kernel_options
from featmap.errors import SpecError

#: Options that shape the convolution; refused in pool mode and with --example.
_CONV_ONLY = ("stride", "padding", "pad_mode", "pad_value", "dilation", "flip", "activation", "slope", "bias")
_POOL_OPTIONS = ("pool", "pool_size", "pool_stride", "pool_padding")
_LAYER_OPTIONS = (
    "stride",
    "padding",
    "pad_mode",
    "pad_value",
    "dilation",
    "flip",
    "activation",
    "slope",
    "pool_size",
    "pool_stride",
    "pool_padding",
)
_INPUT_OPTIONS = ("input_value", "image", "crop", "color", "value_range", "kernel_spec")


def _given(ctx: click.Context, names: tuple[str, ...]) -> list[str]:
    """The flags (as typed: ``--values``, ``--kernel``) among ``names`` that the command line set."""
    sources = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    flags = {p.name: max(p.opts, key=len) for p in ctx.command.params}
    return [flags[n] for n in names if ctx.get_parameter_source(n) in sources]


def _dumps(document: Any) -> str:
    """Indented JSON with each innermost list of numbers on one line (a matrix row reads as a row)."""
    text = json.dumps(document, indent=2, allow_nan=False)
    return re.sub(
        r"\[\s*([^\[\]{}\"]*?)\s*\]", lambda m: "[" + ", ".join(v.strip() for v in m[1].split(",")) + "]", text
    )


@click.command(cls=FeatmapCommand, short_help="Work out a convolution or pooling step by step on small numbers.")
@click.argument("mode", required=False, type=click.Choice(["conv", "pool"], case_sensitive=False))
@click.option(
    "--input",
    "input_value",
    metavar="MATRIX|FILE",
    help='Inline matrix "1 2 3; 4 5 6" (rows by ;, values by spaces or commas, channels by |), '
    "or a .csv/.txt/.npy file.",
)
@click.option("--image", type=click.Path(dir_okay=False, path_type=Path), help="An image to take a crop of.")
@click.option("--crop", type=IntsType((4,), 0), help="X,Y,W,H of the piece of --image (left column, top row).")
@click.option("--color", is_flag=True, help="Keep the crop's RGB channels (a kernel then needs 3 slices).")
@click.option(
    "--values",
    "value_range",
    type=click.Choice(["0-255", "0-1"]),
    default="0-255",
    show_default=True,
    help="Show image pixels as 8-bit levels or as featmap's 0-1 floats.",
)
@click.option(
    "-k",
    "--kernel",
    "kernel_spec",
    help='One kernel: NAME, FILE.yaml:NAME, gaussian:size=3 (anything -k takes) or inline "1 0 -1; 2 0 -2; 1 0 -1".',
)
@kernel_options
@conv_options
@click.option("--bias", type=float, default=None, help="Added after the sum  [default: the kernel's, else 0].")
@click.option("--at", type=IntsType((2,), 0), default=None, help="Explain this output position ROW,COL.")
@click.option(
    "--steps", type=IntsType((1,), 1, ("all",)), default="3", show_default=True, help="Positions worked out: N or all."
)
@click.option("--example", default=None, help="A shipped textbook case (see --list-examples).")
@click.option("--list-examples", is_flag=True, help="List the shipped examples.")
@click.option("--gif", type=click.Path(dir_okay=False, path_type=Path), help="Also write an animated GIF.")
@click.option(
    "--gif-scale",
    type=click.IntRange(1, 4),
    default=1,
    show_default=True,
    help="Enlarge the GIF's frames this many times (whole pixels, sharp on a projector).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the text view.")
@click.pass_context
def explain(ctx: click.Context, /, mode: str | None, kernel_dirs: tuple[Path, ...], as_json: bool, **opts: Any) -> None:
    """Work out a convolution or a pooling step by step on a small matrix (at most 64×64).

    \b
    Examples:
      featmap explain --example zero-padding
      featmap explain --input "1 2 0; 0 1 2; 2 0 1" -k "1 0; 0 1" --at 1,1
      featmap explain pool --input "1 1 2 4; 5 6 7 8; 3 2 1 0; 1 2 3 4" --pool max
      featmap explain --image samples/camera.png --crop 200,200,6,6 -k sobel_x \\
          --gif sobel.gif
    """
    from featmap.explain.examples import EXAMPLES, explain_example
    from featmap.render import examples_dict, examples_view, explain_dict, explain_view

    if opts["list_examples"]:
        if as_json:
            click.echo(json.dumps(examples_dict(EXAMPLES.values()), indent=2))
        else:
            _console().print(examples_view(EXAMPLES.values()))
        return
    if opts["example"] is not None:
        clash = _given(ctx, (*_INPUT_OPTIONS, *_CONV_ONLY, *_POOL_OPTIONS))
        if clash or mode:
            raise click.UsageError(f"--example fixes its input, kernel and options; drop {', '.join(clash) or mode}")
        explanation = explain_example(opts["example"])
    else:
        explanation = _explain_input(ctx, mode, kernel_dirs, opts)
    at = opts["at"]
    steps = None if opts["steps"] == "all" else int(opts["steps"])
    document = explain_dict(explanation, at=at, steps=steps) if as_json else None  # refuses a bad --at first
    if opts["gif"] is not None:
        from featmap.io.writers.gif import write_gif

        path, frames = write_gif(opts["gif"], explanation, scale=opts["gif_scale"])
        _err("note", f"wrote {path} ({frames} frames)")
    elif ctx.get_parameter_source("gif_scale") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--gif-scale goes with --gif FILE")
    if document is not None:
        click.echo(_dumps(document))
    else:
        _console().print(explain_view(explanation, at=at, steps=steps))


explain.params = [p for p in explain.params if p.name != "combine"]  # one kernel: nothing to combine


def _explain_input(ctx: click.Context, mode: str | None, kernel_dirs: tuple[Path, ...], opts: dict[str, Any]) -> Any:
    """Read the input, the kernel and the layers from the options, and explain them."""
    from featmap.batch_api import apply_layers
    from featmap.explain import explain as explain_matrix

    if (opts["input_value"] is None) == (opts["image"] is None):
        raise click.UsageError('give one input: --input "1 2; 3 4", --input FILE.csv, or --image FILE --crop X,Y,W,H')
    image_only = _given(ctx, ("crop", "color", "value_range"))
    if opts["image"] is None and image_only:
        raise click.UsageError(f"{', '.join(image_only)} {'go' if len(image_only) > 1 else 'goes'} with --image")
    pool_word = opts["pool"].lower()
    if mode is None:
        mode = "conv" if opts["kernel_spec"] is not None or pool_word == "none" else "pool"
    if mode == "pool":
        clash = _given(ctx, (*_CONV_ONLY, "kernel_spec"))
        if clash:
            raise click.UsageError(
                f"pool mode takes no {', '.join(clash)}; use --pool, --pool-size, --pool-stride, --pool-padding"
            )
        pool_word = "max" if pool_word == "none" else pool_word
    elif opts["kernel_spec"] is None:
        raise click.UsageError('conv mode needs a kernel: -k NAME or -k "1 0 -1; 2 0 -2; 1 0 -1" (or: explain pool)')
    x, source = _read_input(opts)
    weights, name, kernel_bias = (None, "", None) if mode == "pool" else _read_kernel(opts["kernel_spec"], kernel_dirs)
    conv, act, pool = apply_layers(  # the layers featmap apply builds from the same options
        pool=pool_word, **{key: opts[key] for key in _LAYER_OPTIONS}
    )
    bias = opts["bias"] if opts["bias"] is not None else kernel_bias or 0.0
    return explain_matrix(
        x, weights, conv=conv, bias=bias, act=act, pool=pool, strict=opts["strict"], source=source, kernel_name=name
    )


def _read_input(opts: dict[str, Any]) -> tuple[Any, str]:
    from featmap.explain.matrices import MATRIX_SUFFIXES, crop_image, parse_matrix, read_matrix

    text, image = opts["input_value"], opts["image"]
    if image is not None:
        scale = 255.0 if opts["value_range"] == "0-255" else 1.0
        x = crop_image(image, opts["crop"], color=opts["color"], scale=scale)
        crop = "" if opts["crop"] is None else f" crop {','.join(map(str, opts['crop']))}"
        channels = "RGB" if opts["color"] else "gray"
        return x, f"{image}{crop} ({channels}, values {opts['value_range']})"
    if text.strip().lower().endswith(MATRIX_SUFFIXES):
        return read_matrix(text), f"file {text}"
    return parse_matrix(text), "inline matrix"


def _read_kernel(spec: str, kernel_dirs: tuple[Path, ...]) -> tuple[Any, str, float | None]:
    """``(weights, name, bias)`` of one ``-k`` value or inline matrix."""
    import numpy as np

    from featmap.explain.matrices import looks_like_matrix, parse_matrix
    from featmap.kernels import KernelLibrary

    if looks_like_matrix(spec):
        weights = parse_matrix(spec, "-k")
        return (weights if weights.ndim == 2 else np.moveaxis(weights, -1, 0)), "", None
    bank = KernelLibrary(kernel_dirs).bank([spec])
    if len(bank) != 1:
        raise SpecError(
            "-k",
            f"{spec!r} selects {len(bank)} kernels ({', '.join(bank.names[:6])}{'…' if len(bank) > 6 else ''})",
            "explain shows one kernel: pick one of them by name",
        )
    kernel = bank.kernels[0]
    return np.asarray(kernel.weights, dtype=np.float64), kernel.name, kernel.bias
