"""featmap apply: one image (a detailed table) or a batch of files, folders and globs."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import FeatmapError
from ._common import (
    ExitCode,
    _console,
    _err,
    conv_options,
    kernel_options,
    output_options,
)


@click.command()
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
    from ..batch import ApplyJob, OutputOptions, apply_image
    from ..images import parse_color
    from ..kernels import KernelLibrary
    from ..layers import Act, Conv2d, GlobalPool2d, Pool2d
    from ..render import apply_dict, apply_view
    from ..shapes import as_pair

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
        colormap=opts["colormap"],
        percentiles=opts["percentiles"],
        sheet=opts["sheet"],
        report=opts["report"],
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

    from ..batch import BatchInterrupted, run_batch
    from ..discover import discover
    from ..render import batch_dict, batch_view
    from ..workers import keep_freed_memory

    keep_freed_memory()  # this process runs image after image: reuse freed pages (see featmap.workers)

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
