"""The one batch loop (`run_batch`); one file is `featmap.run.imagejob` (re-exported here).

Per image: `featmap.run.imagejob.process_image` (load → maps or layers → writers, each file written atomically),
through `featmap.run.work`. A batch takes local files and fsspec URLs alike, writes to a local folder or a URL
(`featmap.run.stores`: one interface, local paths the fast case), runs images on a back end (in-process, a pool
of worker processes, Dask), reports progress through a callback, records every output and failure in the output
folder's manifest, resumes from it, and on an interrupt stops the workers and removes whatever the unfinished
images had written. Discovery, progress, manifest, resume, clean-up, clobber checks and predictions.csv are
written here once, for every storage and back end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from itertools import compress
from operator import attrgetter, not_
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featmap.errors import FeatmapError
from featmap.frozen import frozen_dataclass
from featmap.io.discover import InputImage
from featmap.io.outputs import MANIFEST_NAME, OutputOptions
from featmap.io.storage import UrlImage
from featmap.io.writers import REPORT_KEY, open_writers
from featmap.io.writers.predictions import PREDICTIONS_NAME, Row, predictions_csv
from featmap.run.backends import Backend, InProcess, Task, Work, choose_backend
from featmap.run.imagejob import (
    ImageResult,
    WrittenMap,
    _planned,
    apply_image,
    process_image,
    targets_for,
)
from featmap.run.jobs import ApplyJob
from featmap.run.resume import local_processes, none_done
from featmap.run.stores import Store, open_store, shown, source
from featmap.run.work import work_image, work_url
from featmap.run.workers import signals_deferred

if TYPE_CHECKING:  # a job that is not an ApplyJob is a NetworkJob: a kernel batch does not load the network path
    from featmap.run.netjob import NetworkJob

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


@frozen_dataclass
class Progress:
    """What a batch reports after each image (and once before the first)."""

    done: int
    total: int
    failed: int
    skipped: int
    current: str | None = None


@frozen_dataclass
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
    items: Sequence[Any],
    job: ApplyJob | NetworkJob,
    *,
    jobs: int = 1,
    skip_existing: bool = False,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    clock: Callable[[], float] = time.perf_counter,
    backend: Backend | None = None,
    out: str | Path | None = None,
) -> BatchReport:
    """Apply ``job`` to every item on ``jobs`` processes (this one and ``jobs - 1`` helpers), or on
    ``backend`` (`featmap.run.backends`: a Dask cluster; the manifest stays here).

    ``items`` are local `InputImage`s and fsspec `featmap.io.storage.UrlImage`s; ``out`` is where the outputs
    go: None (or a local folder, which must then be ``job.output.out_dir``) for the job's output folder, or an
    fsspec URL (`featmap.run.stores`). A local folder is locked for the run (`OutputLock`: another run writing
    there raises `OutputBusyError`); what a killed run left (its lock, its temporary files) is cleared and said
    in the report's ``notes``.

    A file that fails (corrupt, truncated, too large, an output that may not be replaced) is recorded
    with its reason and the batch goes on. ``skip_existing`` skips inputs whose outputs the manifest
    shows were made with the same options. Outputs are byte-identical whatever ``jobs``, the back end or the
    storage is. On KeyboardInterrupt (or any other exception) the workers are stopped, files written by
    unfinished images are removed, and `BatchInterrupted` carries the report of what was done.
    """
    chosen = _backend_for(items, out, backend, jobs)
    store = open_store(out, job.output.out_dir, open_writers(job.output))
    notes = store.open()
    try:
        report = _run_batch(
            items, job, store, chosen, skip_existing=skip_existing, on_progress=on_progress, clock=clock
        )
    except BatchInterrupted as stop:
        stop.report = replace(stop.report, notes=notes)
        raise
    finally:
        store.close()
    return replace(report, notes=notes + report.notes)


def _backend_for(items: Sequence[Any], out: str | Path | None, backend: Backend | None, jobs: int) -> Backend:
    """``backend``, or this machine's for ``jobs``; ``memory://`` lives in this process only."""
    urls = [str(getattr(item, "url", "")) for item in items if type(item) is not InputImage]  # a local file has none
    in_memory = any(url.startswith("memory://") for url in urls) or str(out or "").startswith("memory://")
    if backend is None:
        return InProcess() if in_memory else choose_backend(None, jobs=jobs)
    if in_memory and not isinstance(backend, InProcess):
        raise FeatmapError(
            "memory://", "lives in this process only; other processes cannot see it", "drop --scheduler and use -j 1"
        )
    return backend


def _reason(exc: FeatmapError) -> str:
    return f"{exc.what}: {exc.problem}" + (f"; {exc.fix}" if exc.fix else "")


def _run_batch(
    items: Sequence[Any],
    job: ApplyJob | NetworkJob,
    store: Store,
    backend: Backend,
    *,
    skip_existing: bool,
    on_progress: Callable[[Progress], None],
    clock: Callable[[], float],
) -> BatchReport:
    """The batch loop of `run_batch` on an opened ``store``."""
    started = clock()
    digest = job.options_hash()
    processed: list[ImageResult] = []
    skipped: list[Any] = []
    failed: list[tuple[str, str]] = []
    pending: dict[int, tuple[Any, dict[str, Path], set[Path]]] = {}
    writers = open_writers(job.output)  # only asked where their files go
    overwrite = job.output.overwrite

    local_only = store.out_url is None and not any(issubclass(kind, UrlImage) for kind in set(map(type, items)))
    # A batch with URLs names a local input by its resolved path, one without as given (as each always has).
    name = shown if local_only else source

    def fail(item: Any, reason: str) -> None:
        failed.append((name(item), reason))
        store.append([{"input": source(item), "options": digest, "status": "failed", "error": reason}], clock())

    def report(current: str | None = None) -> None:
        done = len(processed) + len(failed) + len(skipped)
        on_progress(Progress(done, len(items), len(failed), len(skipped), current))

    # The resume check for the whole batch at once (featmap.run.resume): a look-up and a stat per output.
    finished = store.done(items, job, digest, local_processes(backend)) if skip_existing else none_done(items)
    skipped += compress(items, finished)
    for index in compress(range(len(items)), map(not_, finished)):  # a resume's 10⁵ done inputs: no step each
        item = items[index]
        try:
            targets = targets_for(InputImage(item.path, item.rel_dir, item.stem) if not local_only else item, job)
            wanted = list(targets.values())
            there = store.existing(list(dict.fromkeys([*_planned(targets, writers), *wanted])))  # one stat a file
            store.check(item, wanted, digest, overwrite=overwrite, existing=there)
        except FeatmapError as exc:  # a name that cannot be an output, or one that may not be replaced
            fail(item, _reason(exc))
            continue
        pending[index] = (item, targets, there)
    report()

    def start(task: Task) -> Task:
        """Journal an image's targets as it is handed out: after a kill -9 they are known as this run's."""
        item, targets, _ = pending[task[0]]
        store.begin(item, list(targets.values()), digest)
        return task

    def finish(index: int, result: ImageResult | None, error: str | None) -> None:
        with signals_deferred():  # an interrupt between the last write and its manifest line would orphan it
            item, targets, before = pending.pop(index)
            if result is None:
                store.remove(targets, before)
                fail(item, error or "failed")
            else:
                store.append(result.records, clock())
                processed.append(result)
        report(name(item))

    if local_only:  # the fast case: the per-image function writes into the folder itself
        tasks: list[Task] = [(index, item, job) for index, (item, _, _) in pending.items()]
        work: Work = work_image
    else:  # fetched and uploaded around the same per-image function
        tasks = [(index, item, (job, store.out_url)) for index, (item, _, _) in pending.items()]
        work = work_url
    try:
        backend.run(tasks, work, finish, report, start)
    except BaseException as exc:
        for index in list(pending):
            item, targets, before = pending.pop(index)
            store.remove(targets, before)
            if not isinstance(exc, KeyboardInterrupt):
                failed.append((name(item), f"not processed: {type(exc).__name__}: {exc}"))
        store.flush(clock())
        if not isinstance(exc, KeyboardInterrupt):
            raise
        done = BatchReport(tuple(processed), tuple(skipped), tuple(failed), len(items), clock() - started, True)
        raise BatchInterrupted(done, exc) from exc
    store.flush(clock())
    processed.sort(key=lambda r: r.input.path)
    if job.output.report:  # an index of every image's report (kernels or a network), kept ones included
        found = [(shown(item), _targets_or_none(item, job)) for item in items]
        reports = [(source, paths[REPORT_KEY]) for source, paths in found if paths is not None]
        store.write_index([r[0] for r in reports], [r[1] for r in reports])
    counts, csv_file = batch_predictions(
        job,
        processed,
        [] if isinstance(job, ApplyJob) else [(shown(item), source(item)) for item in skipped],
        lambda: store.recorded_tops(digest),
        lambda rows: store.put(PREDICTIONS_NAME, predictions_csv(rows)),
    )
    return BatchReport(
        tuple(processed),
        _names(skipped, local_only),
        tuple(failed),
        len(items),
        clock() - started,
        notes=tuple(getattr(backend, "notes", ())),
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
    if isinstance(job, ApplyJob):  # a kernel bank predicts nothing
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


def _names(items: list[Any], local_only: bool) -> tuple[str, ...]:
    """Each item as the report names it (`shown`, or `source` in a batch with URLs), by C loops for local files
    (a resume names its 10⁵ skipped inputs)."""
    if local_only:  # no URL: each as given (`shown`)
        return tuple(map(str, map(_PATH_OF, items)))
    return tuple(map(source, items))


_PATH_OF = attrgetter("path")


def _targets_or_none(item: Any, job: ApplyJob | NetworkJob) -> dict[str, Path] | None:
    """An item's targets, or None for one whose name cannot be an output (it failed with the reason)."""
    try:
        return targets_for(InputImage(item.path, item.rel_dir, item.stem) if isinstance(item, UrlImage) else item, job)
    except FeatmapError:
        return None
