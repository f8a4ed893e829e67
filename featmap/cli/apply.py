"""featmap apply: one image (a detailed table) or a batch of files, folders and globs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from featmap.cli._common import (
    ExitCode,
    FeatmapCommand,
    Terminated,
    _console,
    _err,
    conv_options,
    kernel_options,
    output_options,
    raise_terminated,
)
from featmap.cli._scale import scale_options
from featmap.errors import FeatmapError
from featmap.launch import start_command_helpers, start_up_over


@click.command(cls=FeatmapCommand, short_help="Run kernels or a network on images and write the feature maps.")
@click.argument("images", nargs=-1, required=True)
@click.option(
    "-k",
    "--kernel",
    "kernel_specs",
    multiple=True,
    help="NAME, TAG, FILE.yaml, FILE.yaml:NAME or gaussian:size=5,sigma=1.2. Repeatable.",
)
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Run a whole network: a YAML/JSON layer-spec file, an ONNX or a .keras model (instead of -k).",
)
@click.option("--model", default=None, help="Run a built-in network preset (featmap shape --list-models).")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Network weights: .safetensors, .npz or .pt/.pth named as PyTorch's state_dict, Keras .weights.h5/.keras, "
    "or an ONNX file's initializers (see README).",
)
@click.option("--init", type=click.Choice(["kaiming", "glorot"]), default=None, help="Seeded random weights.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of --init.")
@click.option(
    "--layout",
    type=click.Choice(["torch", "keras"]),
    default="torch",
    show_default=True,
    help="Layout and names of --weights tensors.",
)
@click.option("--upto", default=None, help="Stop after this layer (number, key or name, as featmap shape shows).")
@click.option(
    "--preprocess",
    default=None,
    help="Input transform over the model's own: imagenet, imagenet-299, white-on-black or none.",
)
@click.option(
    "--resize",
    type=click.Choice(["crop", "stretch", "pad"]),
    default=None,
    help="Fit images to the network's input: shorter side + centre crop, stretch, or fit + black pad.",
)
@click.option(
    "--labels",
    default=None,
    help="Class names: a file (one a line, or JSON list/dict) or imagenet-1k; one per output.",
)
@kernel_options
@conv_options
@click.option(
    "--color",
    is_flag=True,
    help="Keep RGB channels instead of converting to gray (BT.601 luma; a JPEG's own luma plane).",
)
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
@scale_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def apply(
    images: tuple[str, ...],
    kernel_specs: tuple[str, ...],
    kernel_dirs: tuple[Path, ...],
    as_json: bool,
    **opts: Any,
) -> None:
    """Apply kernels (-k) or a whole network (--spec, --model) to IMAGES (files, folders, globs) and write the
    feature maps: one PNG per kernel, or a folder per layer with one PNG per channel.

    \b
    Examples:
      featmap apply samples/digits/digit_7.png --model lenet5-digits -o out/
      featmap apply samples/camera.png -k sobel_x -k sobel_y --combine magnitude \\
          --padding same --pad-mode reflect --activation relu --pool max -o out/
    """
    import signal
    import threading

    here = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, raise_terminated) if here else None  # SIGTERM stops as Ctrl-C does
    try:
        _apply(images, kernel_specs, kernel_dirs, as_json, opts)
    finally:
        if here:
            signal.signal(signal.SIGTERM, previous)


def _apply(
    images: tuple[str, ...], kernel_specs: tuple[str, ...], kernel_dirs: tuple[Path, ...], as_json: bool, opts: Any
) -> None:
    """`apply` once SIGTERM is `Terminated`: the job, then one image or a batch."""
    import featmap

    if (len(images) > 1 or not Path(images[0]).is_file()) and not opts["scheduler"]:
        # a batch: the helpers' server imports its kind's path while this process builds the job
        start_command_helpers(opts["jobs"], network=bool(opts["spec_file"] or opts["model"]))
    if opts["skip_existing"] and not opts["scheduler"] and isinstance(opts["out_dir"], Path):
        featmap.begin_resume(opts["out_dir"], opts["jobs"])  # a resume's stats begun before the job and the inputs

    # sheets and reports default to percentile normalization; a --normalize on the command line applies to them too
    opts["sheet_normalize"] = (
        opts["normalize"] if _from_command_line(click.get_current_context(), "normalize") else None
    )
    network = _check_sources(kernel_specs, opts)
    options = featmap.ApplyOptions(**{f.name: opts[f.name] for f in fields(featmap.ApplyOptions)})
    if network:
        job: Any = featmap.build_job(
            model=opts["model"], spec=opts["spec_file"], kernel_dirs=kernel_dirs, options=options
        )
        hint = ""
    else:
        job = featmap.build_job(kernel_specs, kernel_dirs=kernel_dirs, options=options)
        hint = "; pass --strict to refuse"
    start_up_over()  # the collector runs again before any image
    single = len(images) == 1 and Path(images[0]).is_file() and isinstance(opts["out_dir"], Path)
    if single and not opts["skip_existing"]:
        try:
            result = featmap.apply_file(images[0], job)
        except FeatmapError as exc:
            raise naming(exc, images[0]) from None
        for note in result.warnings:
            _err("warning", f"{images[0]}: {note}{hint}")
        as_dict, view = _views(network)
        if as_json:
            click.echo(json.dumps(as_dict(result, job), indent=2, allow_nan=False))
        else:
            _console().print(view(result, job))
        return
    _apply_batch(images, job, opts, as_json, network)


def _views(network: bool) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """One image's result as a dict (``--json``) and as a table, for a network's job or a kernel bank's: each kind
    imports only its own view, and only once its images are done (the render modules load Rich, ~15 ms)."""
    if network:
        from featmap.render import network_dict, network_view

        return network_dict, network_view
    from featmap.render import apply_dict, apply_view

    return apply_dict, apply_view


def naming(exc: FeatmapError, source: str) -> FeatmapError:
    """One image's error with the image named first, as a batch names each failed image; an error that names a
    file already (the image, a weights file, an output) is left as it is.

    Examples
    --------
    >>> from featmap.errors import ShapeError
    >>> print(naming(ShapeError("kernel", "3 is larger than the padded input 1"), "a.png"))
    a.png: kernel: 3 is larger than the padded input 1
    >>> print(naming(ShapeError("./a.png", "is too large"), "./a.png"))
    ./a.png: is too large
    """
    if source in exc.line or str(Path(source)) in exc.line or _names_a_file(exc.what):
        return exc
    problem = f"{exc.what}: {exc.problem}" if exc.what else exc.problem
    return type(exc)(source, problem, exc.fix, details=exc.details)


def _names_a_file(what: str) -> bool:
    try:
        return "/" in what or (bool(what) and Path(what).exists())
    except OSError:  # not a name the file system takes
        return False


_NETWORK_OPTIONS = ("weights", "init", "layout", "upto", "preprocess", "resize", "labels")
# -k's layer options: a network's layers carry their own.
_KERNEL_ONLY = (
    "stride padding pad_mode pad_value dilation flip activation slope pool pool_size pool_stride pool_padding "
    "combine strict color"
).split()


def _check_sources(kernel_specs: tuple[str, ...], opts: dict[str, Any]) -> bool:
    """True for ``--spec``/``--model`` (a network), False for ``-k``; refuses mixing the two and options of the
    other kind given on the command line."""
    ctx = click.get_current_context()
    given = [name for name in ("spec_file", "model") if opts[name]]
    if not given:
        if not kernel_specs:
            raise click.UsageError("give kernels (-k NAME) or a network (--spec FILE or --model NAME)")
        stray = [name for name in (*_NETWORK_OPTIONS, "seed", "channels") if _from_command_line(ctx, name)]
        if stray:
            raise click.UsageError(f"--{stray[0]} goes with --spec or --model, not -k")
        return False
    if kernel_specs or len(given) > 1:
        raise click.UsageError("give one of -k, --spec and --model")
    stray = [name for name in _KERNEL_ONLY if _from_command_line(ctx, name)]
    if stray:
        flag = stray[0].replace("_", "-")
        raise click.UsageError(f"--{flag} applies to -k kernels; a network's layers carry their own options")
    return True


def _from_command_line(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


def _apply_batch(images: Sequence[str], job: Any, opts: dict[str, Any], as_json: bool, network: bool) -> None:
    """A batch (files, folders, globs, URLs) of a network's job or a kernel bank's (``network``)."""
    import featmap

    found = featmap.find_images(images, recursive=opts["recursive"], out=opts["out_dir"])
    problems, ignored = found.problems, found.ignored
    show = sys.stderr.isatty() and not opts["quiet"]
    code = ExitCode.OK
    try:
        with _progress(show) as on_progress:
            report = featmap.apply_batch(
                found.items,
                job,
                out=opts["out_dir"],
                jobs=opts["jobs"],
                scheduler=opts["scheduler"] or None,
                chunk=opts["chunk"],
                skip_existing=opts["skip_existing"],
                on_progress=on_progress,
            )
    except featmap.BatchInterrupted as stop:
        report = stop.report
        code = ExitCode.TERMINATED if isinstance(stop.cause, Terminated) else ExitCode.INTERRUPTED
        _err(
            "error",
            f"interrupted after {len(report.processed)} of {report.total} images; "
            "unfinished outputs were removed; run again with --skip-existing to resume",
        )
    from featmap.render import batch_dict, batch_view  # the table's modules (Rich) once the images are done

    for note in report.notes:
        _err("note", note)
    said: dict[str, int] = {}
    for result in report.processed:  # once each, after the progress bar
        for warning in result.warnings:
            said[warning] = said.get(warning, 0) + 1
    for warning, count in said.items():
        _err("warning", f"{warning} ({count} image{'' if count == 1 else 's'})")
    for path, reason in problems:
        _err("error", f"{path}: {reason}")
    for path, reason in report.failed:
        _err("error", f"{path}: {reason}")
    one = len(images) == 1 and report.total == 1 and len(report.processed) == 1 and not problems
    if one and not isinstance(opts["out_dir"], Path):  # one image to a URL: its own summary, as for a folder
        _single_url_summary(report.processed[0], job, str(opts["out_dir"]), as_json, _views(network))
    elif as_json:
        click.echo(json.dumps(batch_dict(report, problems, ignored), indent=2, allow_nan=False))
    else:
        _console().print(batch_view(report, problems, ignored, opts["out_dir"]))
    if code == ExitCode.OK and (report.failed or problems):
        code = ExitCode.PARTIAL
    sys.exit(int(code))


def _single_url_summary(result: Any, job: Any, url: str, as_json: bool, single: tuple[Any, Any]) -> None:
    """One image's table (or JSON) for a URL output, its paths shown under the URL."""
    from featmap.cli._scale import local_out_dir

    as_dict, view = single
    placeholder, base = str(local_out_dir(url)), url.rstrip("/")
    if as_json:
        text = json.dumps(as_dict(result, job), indent=2, allow_nan=False)
        click.echo(text.replace(placeholder, base))
        return
    console = _console()
    with console.capture() as captured:
        console.print(view(result, job))
    click.echo(captured.get().replace(placeholder, base), nl=False)


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
