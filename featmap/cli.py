"""The ``featmap`` command: thin Click commands over the library.

Each command parses its options, makes one library call and renders the result. Library errors
(`FeatmapError`) become one line on stderr, ``featmap: error: <what>: <problem>; <fix>``, and exit 1.
Heavy modules (numpy, Pillow, Rich) are imported inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .enums import Activation, Combine, Normalize, PaddingMode, PoolKind
from .errors import FeatmapError

F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(IntEnum):
    """Process exit codes."""

    OK = 0
    ERROR = 1
    USAGE = 2  # Click's own
    PARTIAL = 3  # a batch finished with some files failed
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


def _err(kind: str, message: str) -> None:
    click.echo(f"featmap: {kind}: {message}", err=True)


class FeatmapGroup(click.Group):
    """A group that turns library errors into one-line messages and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FeatmapError as exc:
            if ctx.meta.get("featmap.debug"):
                raise
            _err("error", str(exc))
            ctx.exit(ExitCode.ERROR)
        except KeyboardInterrupt:
            _err("error", "interrupted")
            ctx.exit(ExitCode.INTERRUPTED)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "160"))
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
        parts = text.replace("x", ",").replace("×", ",").split(",")
        try:
            numbers = tuple(int(p) for p in parts)
        except ValueError:
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
        from .enums import parse_enum

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
        click.option("--pool-size", type=IntsType(), default=None, help="Window, N or ROWS,COLS  [default: 2]."),
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
            type=click.Path(file_okay=False, path_type=Path),
            default=Path("featmap-out"),
            show_default=True,
            help="Output folder.",
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
            help="Float map to pixels: minmax, clip (to 0..1), abs, symmetric (0 at mid-gray).",
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
            help="zlib level: 1 is fast, 9 smallest.",
        ),
        click.option("--overwrite", is_flag=True, help="Replace outputs made by a different run."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# ----------------------------------------------------------------------------- commands


@click.group(cls=FeatmapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="featmap")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """See what a convolutional layer does to a picture."""
    ctx.meta["featmap.debug"] = debug


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "-k",
    "--kernel",
    "kernel_specs",
    multiple=True,
    required=True,
    help="NAME, TAG, FILE.yaml, FILE.yaml:NAME or gaussian:size=5,sigma=1.2. Repeatable.",
)
@kernel_options
@conv_options
@click.option("--color", is_flag=True, help="Keep RGB channels instead of converting to gray (BT.601 luma).")
@click.option("--background", default="white", show_default=True, help="Colour under transparent pixels.")
@click.option(
    "--max-pixels",
    type=click.IntRange(1),
    default=89_478_485,
    show_default=True,
    help="Refuse larger images (decompression-bomb guard).",
)
@output_options
@click.option("-r", "--recursive", is_flag=True, help="Descend into sub-folders of folder inputs.")
@click.option("-j", "--jobs", type=click.IntRange(1), default=None, help="Worker processes  [default: all cores].")
@click.option("--skip-existing", is_flag=True, help="Skip images whose outputs were made with the same options.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def apply(
    images: tuple[str, ...],
    kernel_specs: tuple[str, ...],
    kernel_dirs: tuple[Path, ...],
    as_json: bool,
    **opts: Any,
) -> None:
    """Apply kernels to IMAGES and write one feature-map PNG per kernel.

    \b
    Example:
      featmap apply samples/camera.png -k sobel_x -k sobel_y --combine magnitude \\
          --padding same --pad-mode reflect --activation relu --pool max -o out/
    """
    from .batch import ApplyJob, OutputOptions, apply_image
    from .images import parse_color
    from .kernels import KernelLibrary
    from .layers import Act, Conv2d, GlobalPool2d, Pool2d
    from .render import apply_dict, apply_view
    from .shapes import as_pair

    bank = KernelLibrary(kernel_dirs).bank(kernel_specs)
    conv = Conv2d(
        stride=opts["stride"],
        padding=opts["padding"],
        pad_mode=opts["pad_mode"],
        pad_value=opts["pad_value"],
        dilation=opts["dilation"],
        flip=opts["flip"],
    )
    act = Act(opts["activation"], (("slope", opts["slope"]),) if opts["activation"] == "leaky_relu" else ())
    pool_word = opts["pool"].lower()
    pool: Pool2d | GlobalPool2d | None = None
    if pool_word not in ("max", "avg", "min") and (opts["pool_size"] or opts["pool_stride"]):
        raise click.UsageError("--pool-size and --pool-stride need --pool max, avg or min")
    if pool_word.startswith("global-"):
        pool = GlobalPool2d(pool_word.split("-", 1)[1])
    elif pool_word != "none":
        pool = Pool2d(
            pool_word,
            as_pair(opts["pool_size"] or 2, "--pool-size"),
            opts["pool_stride"],
            opts["pool_padding"],
        )
    output = OutputOptions(
        opts["out_dir"],
        opts["name_pattern"],
        opts["normalize"],
        int(opts["bit_depth"]),
        opts["raw"],
        opts["png_compress"],
        opts["overwrite"],
    )
    job = ApplyJob(
        bank,
        conv,
        act,
        pool,
        opts["combine"],
        opts["strict"],
        opts["color"],
        parse_color(opts["background"]),
        opts["max_pixels"],
        output,
    )
    single = len(images) == 1 and Path(images[0]).is_file()
    if single and not opts["skip_existing"]:
        result = apply_image(images[0], job)
        for note in result.warnings:
            _err("warning", f"{images[0]}: {note}; pass --strict to refuse")
        if as_json:
            click.echo(json.dumps(apply_dict(result, job), indent=2))
        else:
            _console().print(apply_view(result, job))
        return
    _apply_batch(images, job, opts, as_json)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that a batch can stop cleanly."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _apply_batch(images: Sequence[str], job: Any, opts: dict[str, Any], as_json: bool) -> None:
    import signal

    from .batch import BatchInterrupted, run_batch
    from .discover import discover
    from .render import batch_dict, batch_view

    items, problems, ignored = discover(images, recursive=opts["recursive"], exclude=[opts["out_dir"]])
    if not items and problems:
        raise FeatmapError(problems[0][0], problems[0][1], "check the path or pattern")
    jobs = opts["jobs"] or os.cpu_count() or 1
    show = sys.stderr.isatty() and not opts["quiet"]
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    code = ExitCode.OK
    try:
        with _progress(show) as on_progress:
            report = run_batch(items, job, jobs=jobs, skip_existing=opts["skip_existing"], on_progress=on_progress)
    except BatchInterrupted as stop:
        report = stop.report
        code = ExitCode.TERMINATED if isinstance(stop.cause, Terminated) else ExitCode.INTERRUPTED
        _err(
            "error",
            f"interrupted after {len(report.processed)} of {report.total} images; "
            "unfinished outputs were removed; run again with --skip-existing to resume",
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    for path, reason in problems:
        _err("error", f"{path}: {reason}")
    for path, reason in report.failed:
        _err("error", f"{path}: {reason}")
    if as_json:
        click.echo(json.dumps(batch_dict(report, problems, ignored), indent=2))
    else:
        _console().print(batch_view(report, problems, ignored, opts["out_dir"]))
    if code == ExitCode.OK and (report.failed or problems):
        code = ExitCode.PARTIAL
    sys.exit(int(code))


def _progress(show: bool) -> Any:
    """A context manager yielding the batch's progress callback: a Rich bar on stderr, or nothing."""
    from contextlib import contextmanager

    @contextmanager
    def bar() -> Any:
        if not show:
            yield lambda progress: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("[bold]featmap"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
            console=_console(stderr=True),
            transient=True,
        ) as progress:
            task = progress.add_task("images", total=None, rate="", current="")
            started = time.perf_counter()

            def update(p: Any) -> None:
                elapsed = time.perf_counter() - started
                rate = f"{(p.done - p.skipped) / elapsed:.1f} img/s" if elapsed > 0 and p.done > p.skipped else ""
                name = Path(p.current).name if p.current else ""
                progress.update(task, total=p.total, completed=p.done, rate=rate, current=name)

            yield update

    return bar()


@cli.group(cls=FeatmapGroup)
def kernels() -> None:
    """List and inspect the kernel library."""


@kernels.command("list")
@kernel_options
@click.option("--tag", default=None, help="Only kernels with this tag.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def kernels_list(kernel_dirs: tuple[Path, ...], tag: str | None, as_json: bool) -> None:
    """List every kernel: name, size, tags, description and source."""
    from .kernels import KernelLibrary
    from .render import kernel_dict, kernel_list

    chosen = [k for k in KernelLibrary(kernel_dirs) if tag is None or tag in k.tags]
    if tag is not None and not chosen:
        raise FeatmapError("--tag", f"no kernel has tag {tag!r}", "see `featmap kernels list` for the tags")
    if as_json:
        click.echo(json.dumps([kernel_dict(k) for k in chosen], indent=2))
    else:
        _console().print(kernel_list(chosen))


@kernels.command("show")
@click.argument("spec")
@kernel_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def kernels_show(spec: str, kernel_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Show the weights and facts of SPEC (a name, tag, file or parametric kernel)."""
    from .kernels import KernelLibrary
    from .render import kernel_dict, kernel_show

    chosen = KernelLibrary(kernel_dirs).select(spec)
    if as_json:
        data = [kernel_dict(k) for k in chosen]
        click.echo(json.dumps(data[0] if len(data) == 1 else data, indent=2))
        return
    console = _console()
    for k in chosen:
        console.print(kernel_show(k))


@cli.command()
@click.argument("tokens", nargs=-1)
@click.option("--input", "input_text", default=None, help="Input shape: HxWxC, LxC (1-D) or N features.")
@click.option("--model", default=None, help="A built-in preset (see --list-models).")
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A YAML/JSON layer-spec file.",
)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size for MACs and memory.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--explain", is_flag=True, help="Also show each layer's formulas with the numbers put in.")
@click.option("--list-models", is_flag=True, help="List the built-in presets and exit.")
@click.pass_context
def shape(
    ctx: click.Context,
    tokens: tuple[str, ...],
    input_text: str | None,
    model: str | None,
    spec_file: Path | None,
    batch: int,
    fmt: str,
    as_json: bool,
    explain: bool,
    list_models: bool,
) -> None:
    """Shapes, parameters, multiply-adds, receptive field and memory of a CNN layer stack.

    \b
    Examples:
      featmap shape --input 32x32x1 conv:6@5x5 avgpool:2 conv:16@5x5 avgpool:2 flatten dense:120 dense:84 dense:10
      featmap shape --model vgg16
      featmap shape --spec my_net.yaml --input 224x224x3 --json
    """
    from .errors import SpecError

    try:
        _shape_command(tokens, input_text, model, spec_file, batch, "json" if as_json else fmt, explain, list_models)
    except SpecError as exc:
        if ctx.meta.get("featmap.debug"):
            raise
        _err("error", str(exc))
        ctx.exit(ExitCode.USAGE)


def _shape_command(
    tokens: tuple[str, ...],
    input_text: str | None,
    model: str | None,
    spec_file: Path | None,
    batch: int,
    fmt: str,
    explain: bool,
    list_models: bool,
) -> None:
    from .errors import SpecError
    from .render import summary_dict, summary_explain, summary_markdown, summary_view
    from .spec import list_models as presets
    from .spec import load_model, parse_file, parse_shape, parse_tokens
    from .summary import summarize

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
    name = None
    default_input = None
    if tokens:
        layers = parse_tokens(tokens)
    else:
        found = load_model(model) if model else parse_file(spec_file)  # type: ignore[arg-type]
        layers, default_input, name = found.layers, found.input_shape, found.name
    if input_text is None and default_input is None:
        raise SpecError("--input", "is needed to work out shapes", "e.g. --input 224x224x3 (HxWxC)")
    input_shape = parse_shape(input_text) if input_text is not None else default_input
    assert input_shape is not None  # for type checkers: one of the two branches above set it
    result = summarize(layers, input_shape, batch=batch)
    for note in result.warnings:
        _err("warning", note)
    if fmt == "json":
        data = summary_dict(result, name)
        if explain:
            data["explain"] = {row.path: list(row.explain) for row in result.layers if row.explain}
        click.echo(json.dumps(data, indent=2))
    elif fmt == "markdown":
        click.echo(summary_markdown(result, name), nl=False)
    else:
        console = _console()
        console.print(summary_view(result, name))
        if explain:
            console.print(summary_explain(result))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``featmap`` command."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="featmap")
