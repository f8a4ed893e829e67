"""The command line's shared option types (integer lists, padding modes) and option groups (kernels,
convolution, outputs), as decorators so that commands stay consistent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from featmap.cli._scale import OutLocation
from featmap.enums import Activation, Combine, Normalize, PaddingMode, PoolKind
from featmap.errors import FeatmapError, SpecError

F = TypeVar("F", bound=Callable[..., Any])


# ----------------------------------------------------------------------------- option types


class IntsType(click.ParamType):  # type: ignore[type-arg]  # generic only in newer Click
    """``N``, ``N,M`` or ``NxM`` (and ``a,b,c,d`` where four are allowed) → int or tuple of ints."""

    name = "ints"

    def __init__(self, counts: Sequence[int] = (1, 2), minimum: int = 1, words: Sequence[str] = ()) -> None:
        self.counts = tuple(counts)
        self.minimum = minimum
        self.words = tuple(words)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text in self.words:
            return text
        if text.isascii() and text.isdigit():  # one number (every default): parsed before numpy is loaded
            numbers: tuple[int, ...] = (int(text),)
        else:
            from featmap.net.spec.tokens import (
                _ints,  # the layer language's integer lists: N, NxM, N,M (lazy: keeps --help fast)
            )

            try:
                numbers = _ints(text, self.name)
            except SpecError:
                self.fail(f"{value!r} is not {self._describe()}", param, ctx)
        if len(numbers) not in self.counts or any(n < self.minimum for n in numbers):
            self.fail(f"{value!r} is not {self._describe()}", param, ctx)
        return numbers[0] if len(numbers) == 1 else numbers

    def _describe(self) -> str:
        forms = {1: "N", 2: "N,M", 4: "T,B,L,R"}
        text = " or ".join([*self.words, *(forms[c] for c in self.counts)])
        return f"{text} (whole numbers >= {self.minimum})"


def _choice(enum: type[Any], extra: Sequence[str] = ()) -> click.Choice[str]:
    return click.Choice([m.value for m in enum] + list(extra), case_sensitive=False)


class PadModeType(click.ParamType):  # type: ignore[type-arg]  # generic only in newer Click
    """A padding mode, canonical name or an unambiguous alias."""

    name = "mode"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from featmap.enums import parse_enum

        try:
            return parse_enum(PaddingMode, value, "--pad-mode")
        except FeatmapError as exc:
            self.fail(f"{exc.problem}; {exc.fix}", param, ctx)


# ----------------------------------------------------------------------------- shared options


def kernel_options(func: F) -> F:
    """``-k`` and ``--kernel-dir``."""
    func = click.option(
        "--kernel-dir",
        "kernel_dirs",
        multiple=True,
        type=click.Path(exists=True, path_type=Path),
        help="Extra folder (or file) of YAML/JSON kernels, searched before the built-ins. Repeatable; "
        "FEATMAP_KERNEL_PATH works too.",
    )(func)
    return func


def conv_options(func: F) -> F:
    """Convolution, activation, pooling and combination flags (shared by every command that runs kernels)."""
    options = [
        click.option("--stride", type=IntsType(), default="1", show_default=True, help="N or ROWS,COLS."),
        click.option(
            "--padding",
            type=IntsType((1, 2, 4), 0, ("valid", "same", "full")),
            default="valid",
            show_default=True,
            help="valid, same (Keras/TF, any stride), full, N, ROWS,COLS or TOP,BOTTOM,LEFT,RIGHT.",
        ),
        click.option(
            "--pad-mode",
            type=PadModeType(),
            default="zeros",
            show_default=True,
            help="zeros, reflect, symmetric, replicate, circular (or an alias, see README).",
        ),
        click.option("--pad-value", type=float, default=0.0, show_default=True, help="Fill value for zeros padding."),
        click.option("--dilation", type=IntsType(), default="1", show_default=True, help="N or ROWS,COLS."),
        click.option(
            "--flip",
            is_flag=True,
            help="True convolution (kernel rotated 180°) instead of cross-correlation.",
        ),
        click.option(
            "--activation",
            type=_choice(Activation),
            default="none",
            show_default=True,
            metavar="NAME",
            help=", ".join(a.value for a in Activation) + ".",
        ),
        click.option("--slope", type=float, default=0.01, show_default=True, help="Negative slope of leaky_relu."),
        click.option(
            "--pool",
            type=_choice(PoolKind, ("global-avg", "global-max", "global-min", "none")),
            default="none",
            show_default=True,
            help="Pooling after the activation.",
        ),
        click.option("--pool-size", type=IntsType(), default=None, help="Window, N or ROWS,COLS (default 2)."),
        click.option("--pool-stride", type=IntsType(), default=None, help="Defaults to the window size."),
        click.option("--pool-padding", type=click.Choice(["valid", "same"]), default="valid", show_default=True),
        click.option(
            "--combine",
            type=_choice(Combine),
            default=None,
            help="Also write one map merging all kernels: magnitude (sqrt of sum of squares) or max.",
        ),
        click.option("--strict", is_flag=True, help="Refuse a stride that leaves input rows or columns unused."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def output_options(func: F) -> F:
    """Where and how maps are written."""
    options = [
        click.option(
            "-o",
            "--out",
            "out_dir",
            type=OutLocation(),  # a folder or an fsspec URL (featmap.cli._scale)
            default=Path("featmap-out"),
            show_default=True,
            help="Output folder, or an fsspec URL (s3://bucket/maps/).",
        ),
        click.option(
            "--name",
            "name_pattern",
            default="{stem}/{kernel}.png",
            show_default=True,
            help="Output path pattern inside the folder: {stem}, {ext}, {kernel}.",
        ),
        click.option(
            "--normalize",
            type=_choice(Normalize),
            default="minmax",
            show_default=True,
            help="Float map to pixels: minmax, percentile (clip to --percentiles), clip (to 0..1), abs, "
            "symmetric (0 at mid-gray).",
        ),
        click.option(
            "--percentiles",
            default="1,99",
            show_default=True,
            help="LOW,HIGH: the percentiles --normalize percentile maps to the ends of the scale.",
        ),
        click.option(
            "--colormap",
            default=None,
            metavar="NAME|auto",
            help="Colour maps as 8-bit RGB PNGs: viridis, magma, gray, RdBu_r, coolwarm… (any cmap name); "
            "auto: a diverging map centred at 0 for signed maps, viridis otherwise. Default: gray levels.",
        ),
        click.option("--sheet", is_flag=True, help="Also write {stem}/sheet.png: the input, each kernel and its map."),
        click.option(
            "--scale",
            type=click.Choice(["per-layer", "per-channel"]),
            default="per-layer",
            show_default=True,
            help="Sheet and report colours: one colormap and range per layer, or one range per channel.",
        ),
        click.option(
            "--sheet-width",
            type=click.IntRange(640, 8000),
            default=1920,
            show_default=True,
            help="The sheet's width in pixels (1920: a full-HD slide).",
        ),
        click.option(
            "--channels",
            type=click.IntRange(1, 256),
            default=None,
            metavar="K",
            help="A network sheet shows each layer's K channels of highest mean activation  "
            "[default: all; 8 past 256 maps].",
        ),
        click.option(
            "--report",
            is_flag=True,
            help="Also write report.html (one self-contained page; a batch gets an index linking each image's).",
        ),
        click.option("--bit-depth", type=click.Choice(["8", "16"]), default="8", show_default=True),
        click.option(
            "--raw",
            type=click.Choice(["npy", "tiff"]),
            default=None,
            help="Also write the float32 map (.npy, or float TIFF for ImageJ/Fiji).",
        ),
        click.option(
            "--png-compress",
            type=click.IntRange(0, 9),
            default=1,
            show_default=True,
            help="PNG deflate: 1 = fast (ISA-L, ~15x Pillow's level 6, files ~10% larger), 2-9 = zlib, 0 = store.",
        ),
        click.option("--overwrite", is_flag=True, help="Replace outputs made by a different run."),
    ]
    for option in reversed(options):
        func = option(func)
    return func
