"""The Python API of files and batches: `ApplyOptions`, `build_job`, `apply_file`, `find_images`, `apply_batch`
and `apply_layers`, re-exported as ``featmap.build_job`` and so on.

``featmap apply`` is these calls: the command parses its flags into an `ApplyOptions`, builds the job, then
runs one file (`apply_file`) or finds the images (`find_images`) and runs the batch (`apply_batch`), and
renders what comes back. Options carry the library's names (``pool_size``), as errors do.

Examples
--------
>>> import featmap
>>> job = featmap.build_job(["sobel_x", "sobel_y"], options=featmap.ApplyOptions(stride=2, out_dir="maps"))
>>> job.conv.stride, job.bank.names, str(job.output.out_dir)
((2, 2), ('sobel_x', 'sobel_y'), 'maps')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from featmap.errors import FeatmapError, NothingToDoError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.io.images import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from featmap.net.layers import Act, Conv2d, GlobalPool2d, Pool2d
    from featmap.run.batch import BatchInterrupted, BatchReport, ImageResult, Progress
    from featmap.run.jobs import ApplyJob
    from featmap.run.netjob import NetworkJob

__all__ = [
    "ApplyOptions",  # BatchInterrupted: `featmap.run.batch`'s, raised by `apply_batch`
    "BatchInterrupted",
    "FoundImages",
    "apply_batch",
    "apply_file",
    "apply_layers",
    "build_job",
    "find_images",
]

Pair = int | Sequence[int]


def __getattr__(name: str) -> Any:
    """`BatchInterrupted`, from `featmap.run.batch` on first use: one file (`apply_file`) does not load the batch
    loop."""
    if name == "BatchInterrupted":
        from featmap.run.batch import BatchInterrupted

        return BatchInterrupted
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, `BatchInterrupted` included."""
    return sorted({*globals(), "BatchInterrupted"})


@frozen_dataclass
class ApplyOptions:
    """Every option of a ``featmap apply`` job besides the kernels or the network, by the library's names.

    The layer options (``stride`` to ``strict``, ``color``) go with kernels; the network options (``weights`` to
    ``labels``) with a network (`build_job`); the rest with both. See `featmap.run.jobs.make_job` and
    `featmap.run.netjob.make_network_job` for each option's meaning. ``out_dir`` may be an fsspec URL
    (``s3://bucket/maps/``): the job then works its paths out under a placeholder and `apply_batch` uploads.
    """

    # the layers of a -k bank
    stride: Pair = 1
    padding: str | Pair = "valid"
    pad_mode: str = "zeros"
    pad_value: float = 0.0
    dilation: Pair = 1
    flip: bool = False
    activation: str = "none"
    slope: float = 0.01
    pool: str | None = None
    pool_size: Pair | None = None
    pool_stride: Pair | None = None
    pool_padding: str = "valid"
    combine: str | None = None
    strict: bool = False
    color: bool = False
    # how an image is read
    background: str | tuple[float, float, float] = "white"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    # where and how outputs are written
    out_dir: str | os.PathLike[str] = "featmap-out"
    name_pattern: str = "{stem}/{kernel}.png"
    normalize: str = "minmax"
    bit_depth: int | str = 8
    raw: str | None = None
    png_compress: int = 1
    overwrite: bool = False
    colormap: str | None = None
    percentiles: str | tuple[float, float] = (1.0, 99.0)
    sheet: bool = False
    report: bool = False
    scale: str = "per-layer"
    sheet_width: int = 1920
    channels: int | None = None
    sheet_normalize: str | None = None
    # a network's weights, input and labels
    weights: str | os.PathLike[str] | None = None
    init: str | None = None
    seed: int = 0
    layout: str = "torch"
    upto: str | None = None
    preprocess: str | None = None
    resize: str | None = None
    labels: str | os.PathLike[str] | None = None


def build_job(
    kernels: Any = None,
    *,
    model: str | None = None,
    spec: str | os.PathLike[str] | None = None,
    kernel_dirs: Iterable[str | os.PathLike[str]] = (),
    options: ApplyOptions | None = None,
) -> ApplyJob | NetworkJob:
    """The job ``featmap apply`` runs on each image: ``kernels`` (as `featmap.apply` takes them) or a network
    (``model``, a preset's name, or ``spec``, a YAML/JSON/ONNX file), with ``options``.

    Returns
    -------
    ApplyJob or NetworkJob
        Ready for `apply_file` and `apply_batch`; every option was checked (errors name the option).
    """
    from featmap.io.storage import local_out_dir
    from featmap.run.jobs import taken_by

    values = asdict(options or ApplyOptions())
    values["out_dir"] = local_out_dir(values["out_dir"])
    if model is None and spec is None:
        from featmap.run.jobs import make_job

        if kernels is None:
            raise SpecError("`kernels`", "no kernel given", "give kernels, a `model` or a `spec`")
        return make_job(kernels, kernel_dirs=kernel_dirs, **taken_by(make_job, values))
    if kernels is not None or (model is not None and spec is not None):
        raise SpecError("`kernels`", "kernels, a `model` and a `spec` were given together", "give one of them")
    from featmap.io.images import parse_color
    from featmap.net.networks import load_network_file
    from featmap.net.spec import load_model
    from featmap.run.jobs import make_output
    from featmap.run.netjob import make_network_job

    dirs = [Path(d) for d in kernel_dirs]
    network = load_model(model) if model is not None else load_network_file(Path(str(spec)), kernel_dirs=dirs)
    background = values.pop("background")
    values.update(
        output=make_output(**taken_by(make_output, values)),
        background=parse_color(background) if isinstance(background, str) else background,
    )
    return make_network_job(network, **taken_by(make_network_job, values))


def apply_layers(*, pool: str | None = None, **layer_options: Any) -> tuple[Conv2d, Act, Pool2d | GlobalPool2d | None]:
    """The conv, activation and pooling layers that `ApplyOptions`' layer options describe (``featmap explain``
    builds the layers it traces with these, as ``featmap apply`` does)."""
    from featmap.run.jobs import make_layers

    return make_layers(pool=pool, **layer_options)


def apply_file(image: str | os.PathLike[str], job: ApplyJob | NetworkJob) -> ImageResult:
    """Run ``job`` on one image file and record its outputs in the output folder's manifest.

    The batch's up-front checks come first (an output that another input or other options made is one error);
    the outputs of a re-run with the same options are replaced.
    """
    from featmap.io.discover import InputImage
    from featmap.run.imagejob import apply_image
    from featmap.run.preflight import check_batch

    path = Path(image)
    check_batch([InputImage(path, Path(), path.stem)], job, overwrite=True)
    return apply_image(image, job)


class FoundImages(NamedTuple):
    """What `find_images` found: the images (local `InputImage`s and URL inputs), the names that could not be
    used with the reason, and how many files were ignored (not images, hidden)."""

    items: list[Any]
    problems: list[tuple[str, str]]
    ignored: int


def find_images(
    inputs: Sequence[str], *, recursive: bool = False, out: str | os.PathLike[str] | None = None, required: bool = True
) -> FoundImages:
    """The images of ``inputs`` (files, folders, globs, fsspec URLs), the output folder ``out`` left out.

    With ``required``, finding none raises: the first problem (a missing path, the output folder given as input)
    or `NothingToDoError` when every file was ignored.
    """
    from featmap.io.storage import is_remote, local_path

    out_text = None if out is None else str(out)
    remote_out = out_text is not None and is_remote(out_text)
    if not remote_out and not any(is_remote(i) for i in inputs):
        from featmap.io.discover import discover

        exclude = [Path(out_text)] if out_text is not None else []
        items, problems, ignored = discover(inputs, recursive=recursive, exclude=exclude)
    else:
        from featmap.io.storage import discover_urls

        items, problems, ignored = discover_urls(
            [local_path(i) for i in inputs], recursive=recursive, exclude=out_text if remote_out else None
        )
        if out_text is not None and not remote_out:
            excluded = Path(out_text).resolve()
            items = [i for i in items if getattr(i, "url", None) or not Path(i.path).resolve().is_relative_to(excluded)]
    if required and not items and problems:
        output = "output folder" in problems[0][1]
        raise FeatmapError(
            problems[0][0], problems[0][1], "choose another -o folder" if output else "check the path or pattern"
        )
    if required and not items:
        raise NothingToDoError(
            " ".join(inputs)[:200],
            f"holds no image ({ignored} file{'' if ignored == 1 else 's'} ignored: not images, or hidden)",
            "nothing to do; check the folder, or pass -r to descend into sub-folders",
        )
    return FoundImages(items, problems, ignored)


def apply_batch(
    images: Sequence[Any],
    job: ApplyJob | NetworkJob,
    *,
    out: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    chunk: int | None = None,
    skip_existing: bool = False,
    on_progress: Callable[[Progress], None] = lambda progress: None,
) -> BatchReport:
    """Run ``job`` on every image of ``images`` (`find_images`' items) and record each in the manifest.

    Parameters
    ----------
    out : path or URL, optional
        The output folder (default ``job.output.out_dir``) or an fsspec URL (``s3://bucket/maps/``).
    jobs : int, optional
        Processes on this machine (default: every core), or a ``local`` Dask cluster's workers.
    scheduler, chunk : str, int, optional
        A Dask scheduler (``local``, or ``tcp://host:8786``) and its images per task.
    skip_existing : bool
        Skip images whose outputs the manifest shows were made with these options (resume).
    on_progress : callable
        Called with a `featmap.run.batch.Progress` before the first image and after each.

    Returns
    -------
    BatchReport
        What was processed, skipped and failed (with reasons), the notes, and a network's predictions.
        An interrupt raises `BatchInterrupted` carrying the report of what was done, once unfinished outputs
        are removed.
    """
    from featmap import _checked_jobs
    from featmap.io.storage import is_remote
    from featmap.run.batch import run_batch
    from featmap.run.workers import keep_freed_memory

    count = _checked_jobs(jobs) or os.cpu_count() or 1
    keep_freed_memory()  # this process runs image after image: reuse freed pages (see featmap.run.workers)
    backend = None
    if scheduler:
        from featmap.run.backends import choose_backend
        from featmap.run.backends.dask import require_dask

        require_dask()
        backend = choose_backend(scheduler, jobs=count, chunk=chunk)
    url = str(out) if out is not None and is_remote(out) else None
    if not scheduler and url is None and len(images) > 2 and not any(hasattr(i, "url") for i in images):
        from featmap import start_helpers  # local files: the pool's helpers' server imports this kind's path only
        from featmap.run.jobs import ApplyJob

        start_helpers(count, network=not isinstance(job, ApplyJob))
    if url is None:  # what no pixel decides, for the whole batch, before any work
        from featmap.run.preflight import check_batch

        resuming = (1 if scheduler else count) if skip_existing else 0
        check_batch(images, job, overwrite=job.output.overwrite, resume_processes=resuming)
    return run_batch(
        images, job, jobs=count, skip_existing=skip_existing, on_progress=on_progress, backend=backend, out=url
    )
