"""Shared pieces of the command line: exit codes, the error-handling group, option types and groups."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

import click

from featmap.cli._scale import OutLocation
from featmap.enums import Activation, Combine, Normalize, PaddingMode, PoolKind
from featmap.errors import FeatmapError, MissingExtraError, OptionError, SpecError, brief

F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(IntEnum):
    """Process exit codes (README lists them)."""

    OK = 0
    ERROR = 1  # a featmap error: one line on stderr
    USAGE = 2  # Click's own
    PARTIAL = 3  # a batch finished with some files failed
    NOTHING_TO_DO = 4  # no input image found (an empty folder, every file ignored)
    BUSY = 5  # another featmap run holds the output folder (its lock file names the process)
    BUG = 70  # an unexpected exception: a bug in featmap (EX_SOFTWARE); --debug shows the traceback
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


def _one_line(text: str, width: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _err(kind: str, message: str) -> None:
    click.echo(f"featmap: {kind}: {message}", err=True)


# ----------------------------------------------------------------------------- library errors -> the command line

#: Library parameter names (as errors write them, in backticks) -> the flags that set them. Only names whose
#: flag the messages have always shown are mapped, so every message reads as it did.
PARAM_FLAGS = {
    "pool_size": "--pool-size",
    "pool_stride": "--pool-stride",
    "pool": "--pool",
    "combine": "--combine",
    "input": "--input",
    "model": "--model",
    "background": "--background",
    "name_pattern": "--name",
    "bit_depth": "--bit-depth",
    "raw": "--raw",
    "kernels": "-k",
    "colormap": "--colormap",
    "percentiles": "--percentiles",
    "sheet": "--sheet",
    "scale": "--scale",
    "sheet_width": "--sheet-width",
    "channels": "--channels",
    "color": "--color",
    "crop": "--crop",
    "strict": "--strict",
    "upto": "--upto",
}


def flag_words(text: str) -> str:
    """A library message with its parameter names put as the command line's flags.

    Examples
    --------
    >>> flag_words("`pool_size` and `pool_stride` need `pool` max, avg or min; `sigma` must be > 0")
    '--pool-size and --pool-stride need --pool max, avg or min; `sigma` must be > 0'
    """
    for name, flag in PARAM_FLAGS.items():
        text = text.replace(f"`{name}`", flag)
    return text


def exit_code_for(exc: FeatmapError, command: str) -> ExitCode:
    """The one rule from library errors to exit codes: options that cannot go together (`OptionError`) and,
    for ``featmap shape``, a malformed token, file or shape (`SpecError`) are usage errors (2); a missing
    optional package (`MissingExtraError`) and the rest, an impossible geometry included, are failures (1);
    a class may carry its own (4 nothing to do, 5 output folder busy)."""
    if isinstance(exc, MissingExtraError):
        return ExitCode.ERROR
    if isinstance(exc, OptionError) or (command == "shape" and isinstance(exc, SpecError)):
        return ExitCode.USAGE
    return ExitCode(exc.exit_code)  # 1, or the class's own: 4 nothing to do, 5 output folder busy


class FeatmapCommand(click.Command):
    """A command whose library errors become one line on stderr (or Click's usage message) and an exit code:
    the one place where errors meet the command line (`flag_words`, `exit_code_for`).

    Running out of memory is one line too (exit 1); any other exception is a bug: one short line asking
    for ``--debug`` (exit 70). ``featmap --debug`` lets every error through with its traceback. Python
    warnings raised meanwhile (Pillow's, numpy's) are said once each, as ``featmap: warning:`` lines after
    the command's output, never in the middle of a progress bar.
    """

    def invoke(self, ctx: click.Context) -> Any:
        import warnings

        debug = bool(ctx.meta.get("featmap.debug"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                return super().invoke(ctx)
            except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
                raise
            except FeatmapError as exc:
                if debug:
                    raise
                if isinstance(exc, OptionError):
                    raise click.UsageError(flag_words(str(exc)), ctx) from None
                _err("error", _one_line(flag_words(str(exc))))
                ctx.exit(exit_code_for(exc, self.name or ""))
            except OSError as exc:  # the file system refused (a name too long, a full disk, no permission)
                if debug:
                    raise
                _err("error", _one_line(_os_line(exc)))
                ctx.exit(ExitCode.ERROR)
            except MemoryError:
                if debug:
                    raise
                _err("error", "out of memory; use a smaller image, fewer kernels or fewer --jobs")
                ctx.exit(ExitCode.ERROR)
            except Exception as exc:
                if debug:
                    raise
                _err("error", _bug_line(exc))
                ctx.exit(ExitCode.BUG)
            finally:
                said: set[str] = set()
                for warning in caught:
                    text = _one_line(f"{warning.category.__name__}: {warning.message}")
                    if text not in said:
                        said.add(text)
                        _err("warning", text)


def _os_line(exc: OSError) -> str:
    """An operating-system error as ``<file>: <problem>; <fix>``.

    Examples
    --------
    >>> import errno
    >>> _os_line(OSError(errno.ENOSPC, "No space left on device", "out/a.png"))
    "'out/a.png': No space left on device; check the path, its permissions and the free space"
    """
    where = brief(exc.filename, 80) + ": " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; check the path, its permissions and the free space"


def _bug_line(exc: BaseException) -> str:
    """``internal error (Type: message at file.py:line); this is a bug…``: where it was raised, no traceback."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return (
        _one_line(f"internal error ({type(exc).__name__}: {exc}{where})", 200)
        + "; this is a bug in featmap: rerun with `featmap --debug ...` for the traceback and report it"
    )


class FeatmapGroup(click.Group):
    """A group whose commands are `FeatmapCommand`s, and which turns Ctrl-C into one line and exit code 130,
    and a usage error (a bad flag or value, options that cannot go together) into one line and exit code 2:
    ``featmap: error: <problem>; see 'featmap apply --help'``."""

    command_class = FeatmapCommand

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare `featmap`: the help, as Click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "featmap"
            message = " ".join(exc.format_message().split()).rstrip(".")
            _err("error", f"{message}; see '{where} --help'")
            sys.exit(ExitCode.USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            _err("error", "interrupted")
            sys.exit(ExitCode.INTERRUPTED)
        sys.exit(code if isinstance(code, int) else ExitCode.OK)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _err("error", "interrupted")
            ctx.exit(ExitCode.INTERRUPTED)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "160"))
    if os.environ.get("NO_COLOR"):  # https://no-color.org: Rich drops colour but keeps bold; drop all styling
        return Console(file=stream, width=width, soft_wrap=False, color_system=None)
    return Console(file=stream, width=width, soft_wrap=False)


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
        click.option("--activation", type=_choice(Activation), default="none", show_default=True),
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
