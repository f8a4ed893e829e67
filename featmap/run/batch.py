"""A whole batch of image files (`run_batch`); one file is `featmap.run.imagejob` (re-exported here).

Per image: `featmap.run.imagejob.process_image` (load → maps or layers → writers, each file written atomically).
A batch runs images on a back end (in-process, a pool of worker processes, Dask), reports progress through a
callback, records every output and failure in the output folder's manifest, and on an interrupt stops the
workers and removes whatever the unfinished images had written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from featmap.errors import FeatmapError
from featmap.io.discover import InputImage
from featmap.io.outputs import MANIFEST_NAME, Manifest, OutputLock, OutputOptions
from featmap.io.writers import open_writers
from featmap.io.writers.pictures import REPORT_KEY
from featmap.io.writers.predictions import Row, tops_from_manifest, write_predictions
from featmap.run.backends import Backend, choose_backend
from featmap.run.imagejob import (
    ImageResult,
    WrittenMap,
    _existing,
    _remove_partial,
    _settle,
    apply_image,
    process_image,
    targets_for,
)
from featmap.run.jobs import ApplyJob
from featmap.run.netjob import NetworkJob
from featmap.run.work import work_image
from featmap.run.workers import signals_deferred

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
    "targets_for",
]


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
    notes: tuple[str, ...] = ()
    #: A network's batch: how many images each top-1 class got (most first), and predictions.csv.
    predictions: tuple[tuple[str, int], ...] = ()
    predictions_file: Path | str | None = None  # a URL for a remote output folder

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


def run_batch(
    items: Sequence[InputImage],
    job: ApplyJob,
    *,
    jobs: int = 1,
    skip_existing: bool = False,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    clock: Callable[[], float] = time.perf_counter,
    backend: Backend | None = None,
) -> BatchReport:
    """Apply ``job`` to every item on ``jobs`` processes: this one and ``jobs - 1`` helpers.

    The output folder is locked for the run (`OutputLock`: another run writing there raises
    `OutputBusyError`); what a killed run left (its lock, its temporary files) is cleared and said in
    the report's ``notes``. See `_run_batch` for the rest.
    """
    lock = OutputLock(job.output.out_dir).acquire()
    notes = tuple(f"cleared {what}" for what in lock.cleared)
    try:
        report = _run_batch(
            items, job, jobs=jobs, skip_existing=skip_existing, on_progress=on_progress, clock=clock, backend=backend
        )
    except BatchInterrupted as stop:
        stop.report = replace(stop.report, notes=notes)
        raise
    finally:
        _settle(job.output.out_dir)
        lock.release()
    return replace(report, notes=notes + report.notes)


def _run_batch(
    items: Sequence[InputImage],
    job: ApplyJob,
    *,
    jobs: int = 1,
    skip_existing: bool = False,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    clock: Callable[[], float] = time.perf_counter,
    backend: Backend | None = None,
) -> BatchReport:
    """Apply ``job`` to every item on ``jobs`` processes: this one and ``jobs - 1`` helpers, or on
    ``backend`` (`featmap.run.backends`: a Dask cluster; the manifest stays here).

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
        try:
            targets = targets_for(item, job)
        except FeatmapError as exc:  # a name that cannot be an output (the --name pattern and this file)
            fail(item, f"{exc.what}: {exc.problem}" + (f"; {exc.fix}" if exc.fix else ""))
            continue
        if skip_existing and manifest.complete(list(targets.values()), item.path, digest):
            skipped.append(str(item.path))
            continue
        try:
            manifest.check(targets.values(), item.path, digest, overwrite=job.output.overwrite)
        except FeatmapError as exc:
            fail(item, f"{exc.what}: {exc.problem}" + (f"; {exc.fix}" if exc.fix else ""))
            continue
        pending[index] = (item, targets, _existing(targets, writers))
    report()

    def start(task: tuple[int, InputImage, ApplyJob]) -> tuple[int, InputImage, ApplyJob]:
        """Journal an image's targets as it is handed out: after a kill -9 they are known as this run's."""
        manifest.begin(pending[task[0]][1].values(), task[1].path, digest)
        return task

    def finish(index: int, result: ImageResult | None, error: str | None) -> None:
        with signals_deferred():  # an interrupt between the last write and its manifest line would orphan it
            item, targets, before = pending.pop(index)
            if result is None:
                _remove_partial(targets, before, writers)
                fail(item, error or "failed")
            else:
                manifest.append(result.records)
                processed.append(result)
        report(str(item.path))

    tasks = [(index, item, job) for index, (item, _, _) in pending.items()]
    notes: list[str] = []
    chosen = backend or choose_backend(None, jobs=jobs)
    try:
        chosen.run(tasks, work_image, finish, report, start)
    except BaseException as exc:
        for index in list(pending):
            item, targets, before = pending.pop(index)
            _remove_partial(targets, before, writers)
            if not isinstance(exc, KeyboardInterrupt):
                failed.append((str(item.path), f"not processed: {type(exc).__name__}: {exc}"))
        if not isinstance(exc, KeyboardInterrupt):
            raise
        done = BatchReport(tuple(processed), tuple(skipped), tuple(failed), len(items), clock() - started, True)
        raise BatchInterrupted(done, exc) from exc
    processed.sort(key=lambda r: r.input.path)
    if job.output.report:  # an index of every image's report (kernels or a network), kept ones included
        from featmap.io.writers.report import write_index

        found = [(str(item.path), _targets_or_none(item, job)) for item in items]
        reports = [(source, paths[REPORT_KEY]) for source, paths in found if paths is not None]
        reports = [(source, report) for source, report in reports if report.is_file()]
        if reports:
            write_index(job.output.out_dir, [r[0] for r in reports], [r[1] for r in reports])
    notes.extend(getattr(chosen, "notes", ()))
    given = {str(item.path): str(item.path.resolve()) for item in items}
    counts, csv_file = batch_predictions(
        job,
        processed,
        [(path, given.get(path, path)) for path in skipped],
        lambda: tops_from_manifest(manifest.path, digest),
        lambda rows: write_predictions(job.output.out_dir, rows),
    )
    return BatchReport(
        tuple(processed),
        tuple(skipped),
        tuple(failed),
        len(items),
        clock() - started,
        notes=tuple(notes),
        predictions=counts,
        predictions_file=csv_file,
    )


def batch_predictions(
    job: ApplyJob | NetworkJob,
    processed: Sequence[ImageResult],
    skipped: Sequence[tuple[str, str]],
    recorded: Callable[[], Mapping[str, Sequence[dict[str, Any]]]],
    write: Callable[[list[Row]], Path | str],
) -> tuple[tuple[tuple[str, int], ...], Path | str | None]:
    """A network batch's class counts and ``predictions.csv`` (`featmap.io.writers.predictions`), for every
    back end and output (`run_batch`, `featmap.run.backends.urlbatch`): this run's images and, for the ones a
    resume skipped (``(input as shown, its manifest input)``), the predictions ``recorded()`` (the manifest's)
    hold. ``write(rows)`` writes the file and returns where; nothing is written for a batch without predictions."""
    if not isinstance(job, NetworkJob):
        return (), None
    from featmap.io.writers.predictions import class_counts

    tops = [(str(r.input.path), list(getattr(r, "top", ()))) for r in processed]
    rows: list[Row] = [
        (path, [{"index": i, "label": label, "probability": p} for i, label, p in top]) for path, top in tops
    ]
    if skipped:
        found = recorded()
        rows += [(shown, found.get(key, [])) for shown, key in skipped]
    if not any(top for _, top in rows):
        return (), None
    return class_counts(rows), write(rows)


def _targets_or_none(item: InputImage, job: ApplyJob | NetworkJob) -> dict[str, Path] | None:
    """An item's targets, or None for one whose name cannot be an output (it failed with the reason)."""
    try:
        return targets_for(item, job)
    except FeatmapError:
        return None
