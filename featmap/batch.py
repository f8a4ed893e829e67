"""Apply a kernel bank to image files: one file (`apply_image`) or a whole batch (`run_batch`).

Per image: load → `pipeline.iter_feature_maps` → one PNG (and raw array) per map, each written
atomically. A batch runs images on a pool of worker processes, reports progress through a callback,
records every output and failure in the output folder's manifest, and on an interrupt stops the
workers and removes whatever the unfinished images had written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .discover import InputImage
from .display import DisplayRange, range_from_stats
from .errors import FeatmapError
from .images import ImageInfo, load_image
from .jobs import ApplyJob
from .netjob import NetworkJob, network_targets, process_network_image
from .outputs import MANIFEST_NAME, Manifest, OutputOptions
from .pipeline import MapInfo, geometry_notes, iter_feature_maps
from .workers import Helpers, one_opencv_thread
from .writers import Writer, open_writers
from .writers.pictures import REPORT_KEY, SHEET_KEY

__all__ = [
    "MANIFEST_NAME",
    "ApplyJob",
    "BatchInterrupted",
    "BatchReport",
    "ImageResult",
    "OutputOptions",
    "Progress",
    "WrittenMap",
    "apply_image",
    "process_image",
    "run_batch",
]


@dataclass(frozen=True)
class WrittenMap:
    """A map's facts and the files written for it."""

    info: MapInfo
    png: Path
    raw: Path | None
    shown: DisplayRange | None = None  # the value range the PNG maps
    colormap: str | None = None  # cmap's name of the PNG's colormap; None: gray levels


@dataclass(frozen=True)
class ImageResult:
    """The outcome of one input image."""

    input: ImageInfo
    maps: tuple[WrittenMap, ...]
    warnings: tuple[str, ...]
    options_hash: str
    seconds: float
    records: tuple[dict[str, Any], ...] = ()


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def map_names(job: ApplyJob) -> list[str]:
    """The names of the maps a job writes: its kernels, then the combined map."""
    return list(job.bank.names) + ([job.combine.value] if job.combine is not None else [])


def targets_for(item: InputImage, job: ApplyJob | NetworkJob, *, single: bool = False) -> dict[str, Path]:
    """Every PNG an input will produce, by map name, then ``(sheet)`` and ``(report)`` when asked (the report
    of a ``single`` image is ``report.html`` in the output folder, else beside its sheet)."""
    if isinstance(job, NetworkJob):
        return network_targets(item, job)
    out = job.output
    targets = {name: out.target(item.path, name, rel_dir=item.rel_dir, stem=item.stem) for name in map_names(job)}
    if out.sheet:
        targets[SHEET_KEY] = out.extra_target(item.path, "sheet.png", rel_dir=item.rel_dir, stem=item.stem)
    if out.report:
        folder = out.extra_target(item.path, "report.html", rel_dir=item.rel_dir, stem=item.stem)
        targets[REPORT_KEY] = out.out_dir / "report.html" if single else folder
    return targets


def process_image(item: InputImage, job: ApplyJob | NetworkJob, *, single: bool = False) -> ImageResult:
    """Load one image, run the job's kernels (or network) and write its maps; the manifest is left to the caller.

    Maps are computed and written one after another, so memory holds one map at a time.
    """
    if isinstance(job, NetworkJob):
        return process_network_image(item, job)  # type: ignore[return-value]  # the batch reads the shared fields
    started = time.perf_counter()
    path = item.path
    image = load_image(path, color=job.color, background=job.background, max_pixels=job.max_pixels)
    out = job.output
    digest = job.options_hash()
    targets = targets_for(item, job, single=single)
    notes = geometry_notes((image.info.height, image.info.width), job.bank, job.conv, job.pool)
    written: list[WrittenMap] = []
    records: list[dict[str, Any]] = []
    maps = iter_feature_maps(
        image.pixels, job.bank, job.conv, job.act, job.pool, combine=job.combine, strict=job.strict
    )
    writers = open_writers(out)
    for writer in writers:
        writer.begin(image, job)
    for fmap in maps:
        files: dict[str | None, Path | None] = {}
        for writer in writers:
            made = writer.add(targets[fmap.info.name], fmap)
            if writer.per_map:
                files[writer.manifest_key] = made
        png, raw = files.pop("png"), files.pop("raw", None)
        assert png is not None, "the png writer returns its file"
        shown, colormap = _scale(writers, fmap.info, out)
        written.append(WrittenMap(fmap.info, png, raw, shown, colormap))
        records.append(
            {
                "input": str(path.resolve()),
                "kernel": fmap.info.name,
                "png": _rel(png, out.out_dir),
                "raw": None if raw is None else _rel(raw, out.out_dir),
                **{key: None if file is None else _rel(file, out.out_dir) for key, file in files.items() if key},
                "options": digest,
                "input_shape": [image.info.height, image.info.width, image.info.channels],
                "conv_shape": list(fmap.info.conv_shape),
                "shape": list(fmap.info.shape),
                "params": fmap.info.params,
                "stats": asdict(fmap.info.stats),
                "mapped": {"low": shown.low, "high": shown.high, "method": shown.method, "colormap": colormap},
                "status": "ok",
            }
        )
        del fmap
    for writer in writers:
        for made in writer.finish(targets):
            if writer.name == "pictures":  # sheet and report: recorded, so re-runs replace them and resume sees them
                key = next(k for k in (SHEET_KEY, REPORT_KEY) if targets.get(k) == made)
                rel = _rel(made, out.out_dir)
                records.append(
                    {"input": str(path.resolve()), "kernel": key, "png": rel, "options": digest, "status": "ok"}
                )
    return ImageResult(image.info, tuple(written), notes, digest, time.perf_counter() - started, tuple(records))


def _scale(writers: Sequence[Writer], info: MapInfo, out: OutputOptions) -> tuple[DisplayRange, str | None]:
    """The value range the map's PNG shows and its colormap: as the PNG writer drew it (colormap or percentile),
    else worked out from the map's statistics (no pass over the map)."""
    for writer in writers:
        scales = getattr(writer, "scales", None)
        if writer.name == "png" and scales and info.name in scales:
            shown, colormap = scales[info.name]
            return shown, None if colormap is None else colormap.qualified
    return range_from_stats(info.stats.min, info.stats.max, out.normalize), None


def apply_image(source: str | os.PathLike[str], job: ApplyJob) -> ImageResult:
    """Apply ``job`` to one image file and record its outputs in the manifest.

    Existing outputs are replaced only when the manifest shows this input and these options made
    them (a re-run), or with ``overwrite``; the input itself is never written.
    """
    item = InputImage(Path(source), Path(), Path(source).stem)
    manifest = Manifest(job.output.out_dir)
    targets = targets_for(item, job, single=True)
    manifest.check(targets.values(), item.path, job.options_hash(), overwrite=job.output.overwrite)
    result = process_image(item, job, single=True)
    manifest.append(result.records)
    return result


# ------------------------------------------------------------------------------------------ batch


@dataclass(frozen=True)
class Progress:
    """What a batch reports after each image (and once before the first)."""

    done: int
    total: int
    failed: int
    skipped: int
    current: str | None = None


@dataclass(frozen=True)
class BatchReport:
    """The outcome of a batch: what was processed, skipped (already done) and failed, and why."""

    processed: tuple[ImageResult, ...]
    skipped: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    total: int
    seconds: float
    interrupted: bool = False

    @property
    def images_per_second(self) -> float:
        """Processed images per second of wall time."""
        return len(self.processed) / self.seconds if self.seconds > 0 else 0.0


class BatchInterrupted(Exception):
    """Raised by `run_batch` after an interrupt, once the workers are stopped and partial outputs removed."""

    def __init__(self, report: BatchReport, cause: BaseException) -> None:
        super().__init__("interrupted")
        self.report = report
        self.cause = cause


def _work(task: tuple[int, InputImage, ApplyJob]) -> tuple[int, ImageResult | None, str | None]:
    index, item, job = task
    try:
        return index, process_image(item, job), None
    except FeatmapError as exc:
        return index, None, f"{exc.problem}" + (f"; {exc.fix}" if exc.fix else "")
    except (OSError, ValueError, MemoryError) as exc:
        return index, None, f"{type(exc).__name__}: {exc}"


def _planned(targets: dict[str, Path], writers: list[Writer]) -> list[Path]:
    """Every file the job's writers may create for an image whose maps go to ``targets``."""
    return [path for writer in writers for path in writer.planned_paths(targets)]


def _remove_partial(targets: dict[str, Path], before: set[Path], writers: list[Writer]) -> None:
    """Delete what an unfinished image wrote this run: new files and stray temporary files."""
    folders = {path.parent for path in targets.values()}
    for file in _planned(targets, writers):
        if file not in before:
            file.unlink(missing_ok=True)
    for folder in folders:
        if folder.is_dir():
            for temp in folder.glob(".*.tmp"):
                temp.unlink(missing_ok=True)
            try:
                folder.rmdir()  # only if it is now empty
            except OSError:
                pass


def run_batch(
    items: Sequence[InputImage],
    job: ApplyJob,
    *,
    jobs: int = 1,
    skip_existing: bool = False,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    clock: Callable[[], float] = time.perf_counter,
) -> BatchReport:
    """Apply ``job`` to every item on ``jobs`` processes: this one and ``jobs - 1`` helpers.

    A file that fails (corrupt, truncated, too large, an output that may not be replaced) is recorded
    with its reason and the batch goes on. ``skip_existing`` skips inputs whose outputs the manifest
    shows were made with the same options. Outputs are byte-identical whatever ``jobs`` is. On
    KeyboardInterrupt (or any other exception) the workers are stopped, files written by unfinished
    images are removed, and `BatchInterrupted` carries the report of what was done.
    """
    started = clock()
    manifest = Manifest(job.output.out_dir)
    digest = job.options_hash()
    processed: list[ImageResult] = []
    skipped: list[str] = []
    failed: list[tuple[str, str]] = []
    pending: dict[int, tuple[InputImage, dict[str, Path], set[Path]]] = {}
    writers = open_writers(job.output)  # only asked where their files go

    def fail(item: InputImage, reason: str) -> None:
        failed.append((str(item.path), reason))
        manifest.append([{"input": str(item.path.resolve()), "options": digest, "status": "failed", "error": reason}])

    def report(current: str | None = None) -> None:
        done = len(processed) + len(failed) + len(skipped)
        on_progress(Progress(done, len(items), len(failed), len(skipped), current))

    for index, item in enumerate(items):
        targets = targets_for(item, job)
        if skip_existing and manifest.complete(list(targets.values()), item.path, digest):
            skipped.append(str(item.path))
            continue
        try:
            manifest.check(targets.values(), item.path, digest, overwrite=job.output.overwrite)
        except FeatmapError as exc:
            fail(item, f"{exc.what}: {exc.problem}" + (f"; {exc.fix}" if exc.fix else ""))
            continue
        before = {p for p in _planned(targets, writers) if p.exists()}
        pending[index] = (item, targets, before)
    report()

    def finish(index: int, result: ImageResult | None, error: str | None) -> None:
        item, targets, before = pending.pop(index)
        if result is None:
            _remove_partial(targets, before, writers)
            fail(item, error or "failed")
        else:
            manifest.append(result.records)
            processed.append(result)
        report(str(item.path))

    tasks = [(index, item, job) for index, (item, _, _) in pending.items()]
    helpers: Helpers | None = None
    try:
        if jobs <= 1 or len(tasks) <= 1:
            for task in tasks:
                report(str(task[1].path))
                finish(*_work(task))
        else:
            from concurrent.futures import FIRST_COMPLETED, wait
            from concurrent.futures.process import BrokenProcessPool

            # The parent is the last of the `jobs` workers: it takes images itself between handing them out, so
            # work starts at once rather than after the helpers' start-up.
            helpers = Helpers(min(jobs, len(tasks)) - 1)
            queue = list(reversed(tasks))
            running: dict[Any, tuple[int, InputImage, ApplyJob]] = {}
            with one_opencv_thread():  # like each helper
                while queue or running:
                    while queue and len(running) < 2 * (jobs - 1):  # a short queue: an interrupt has little to cancel
                        task = queue.pop()
                        running[helpers.submit(_work, task)] = task
                    if queue:
                        task = queue.pop()
                        report(str(task[1].path))
                        finish(*_work(task))
                        finished = {future for future in running if future.done()}
                    else:
                        finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        task = running.pop(future)
                        try:
                            finish(*future.result())
                        except BrokenProcessPool:
                            finish(task[0], None, "a worker process died (out of memory?); retry with fewer --jobs")
                            raise
            helpers.close()
    except BaseException as exc:
        if helpers is not None:
            helpers.stop()
        for index in list(pending):
            item, targets, before = pending.pop(index)
            _remove_partial(targets, before, writers)
            if not isinstance(exc, KeyboardInterrupt):
                failed.append((str(item.path), f"not processed: {type(exc).__name__}: {exc}"))
        if not isinstance(exc, KeyboardInterrupt):
            if isinstance(exc, Exception) and type(exc).__name__ == "BrokenProcessPool":
                return BatchReport(tuple(processed), tuple(skipped), tuple(failed), len(items), clock() - started)
            raise
        done = BatchReport(tuple(processed), tuple(skipped), tuple(failed), len(items), clock() - started, True)
        raise BatchInterrupted(done, exc) from exc
    processed.sort(key=lambda r: r.input.path)
    if job.output.report and isinstance(job, ApplyJob):  # an index of every image's report, kept ones included
        from .writers.report import write_index

        reports = [(str(item.path), targets_for(item, job)[REPORT_KEY]) for item in items]
        reports = [(source, report) for source, report in reports if report.is_file()]
        if reports:
            write_index(job.output.out_dir, [r[0] for r in reports], [r[1] for r in reports])
    return BatchReport(tuple(processed), tuple(skipped), tuple(failed), len(items), clock() - started)
