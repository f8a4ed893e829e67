"""A batch whose inputs or output folder are fsspec URLs: `run_url_batch`, the URL twin of
`featmap.run.batch.run_batch` (same report, progress, failure and interrupt behaviour).

This process alone keeps the manifest: the back end returns each image's records, which are appended here.
A remote output folder is listed once at the start; what the manifest and the listing say decides, as
locally, which outputs a re-run may replace and which inputs ``skip_existing`` skips.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from featmap.errors import FeatmapError
from featmap.io.storage import RemoteOutput, UrlImage, is_remote
from featmap.run.backends.base import Backend, InProcess
from featmap.run.work import work_url

__all__ = ["run_url_batch"]


class _LocalOutput:
    """A local output folder seen through RemoteOutput's interface (the local manifest, appended to)."""

    def __init__(self, out_dir: Path) -> None:
        from featmap.io.manifest_index import index_lines
        from featmap.io.outputs import Manifest

        self.out_dir = out_dir
        self.manifest = Manifest(out_dir)
        self.by_png: dict[str, tuple[str, str]] = {}
        if self.manifest.path.is_file():
            with open(self.manifest.path, encoding="utf-8", errors="replace") as fh:
                self.by_png = index_lines(fh)

    def exists(self, rel: str) -> bool:
        return (self.out_dir / rel).exists()

    def made_by(self, rel: str, source: str, digest: str) -> bool:
        return self.by_png.get(rel) == (source, digest)

    def append(self, records: Sequence[dict[str, Any]], now: float) -> None:
        self.manifest.append(records)
        self.by_png.update((r["png"], (r["input"], r["options"])) for r in records if isinstance(r.get("png"), str))

    def flush(self, now: float = 0.0) -> None:
        pass

    def remove(self, rels: Sequence[str]) -> None:
        for rel in rels:
            (self.out_dir / rel).unlink(missing_ok=True)

    def manifest_lines(self) -> list[str]:
        try:
            return self.manifest.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return []

    def put(self, rel: str, data: bytes) -> Path:
        from featmap.io.images import atomic_write

        return atomic_write(self.out_dir / rel, lambda handle: handle.write(data))


def _source(item: Any) -> str:
    return item.url if isinstance(item, UrlImage) else str(Path(item.path).resolve())


def _shown(item: Any) -> str:
    """An input as a result names it (``input.path``): its URL, or its path as given."""
    return item.url if isinstance(item, UrlImage) else str(item.path)


def run_url_batch(
    items: Sequence[Any],
    job: Any,
    out: str | Path,
    *,
    backend: Backend | None = None,
    jobs: int = 1,
    skip_existing: bool = False,
    on_progress: Callable[[Any], None] = lambda progress: None,
    clock: Callable[[], float] = time.perf_counter,
) -> Any:
    """Apply ``job`` to ``items`` (local `InputImage`s and `UrlImage`s) writing under ``out`` (a URL, or a
    local folder that must then be ``job.output.out_dir``). See `featmap.run.batch.run_batch`."""
    from featmap.io.discover import InputImage
    from featmap.io.writers import open_writers
    from featmap.io.writers.predictions import PREDICTIONS_NAME, predictions_csv, tops_from_lines
    from featmap.run.backends import choose_backend
    from featmap.run.batch import BatchInterrupted, BatchReport, Progress, batch_predictions
    from featmap.run.imagejob import ImageResult, _planned, targets_for

    started = clock()
    remote = is_remote(out)
    in_memory = any(str(getattr(i, "url", "")).startswith("memory://") for i in items) or str(out).startswith(
        "memory://"
    )
    if backend is None:
        backend = InProcess() if in_memory else choose_backend(None, jobs=jobs)
    elif in_memory and not isinstance(backend, InProcess):
        raise FeatmapError(
            "memory://", "lives in this process only; other processes cannot see it", "drop --scheduler and use -j 1"
        )
    output: Any = RemoteOutput(str(out)) if remote else _LocalOutput(job.output.out_dir)
    out_root = job.output.out_dir
    digest = job.options_hash()
    writers = open_writers(job.output)  # only asked where their files go
    processed: list[ImageResult] = []
    skipped: list[str] = []
    shown: dict[str, str] = {}  # a skipped input's manifest name → its name in predictions.csv
    failed: list[tuple[str, str]] = []
    pending: dict[int, tuple[Any, list[str], set[str]]] = {}

    def exists(rel: str) -> bool:
        return rel in output.existing if remote else bool(output.exists(rel))

    def fail(item: Any, reason: str) -> None:
        failed.append((_source(item), reason))
        output.append([{"input": _source(item), "options": digest, "status": "failed", "error": reason}], clock())

    def report(current: str | None = None) -> None:
        done = len(processed) + len(failed) + len(skipped)
        on_progress(Progress(done, len(items), len(failed), len(skipped), current))

    for index, item in enumerate(items):
        source = _source(item)
        local = InputImage(Path(item.path), item.rel_dir, item.stem)
        try:
            targets = targets_for(local, job)
            pngs = [p.relative_to(out_root).as_posix() for p in targets.values()]
        except FeatmapError as exc:
            fail(item, str(exc))
            continue
        if skip_existing and all(exists(rel) and output.made_by(rel, source, digest) for rel in pngs):
            skipped.append(source)
            shown[source] = _shown(item)
            continue
        clobbered = [rel for rel in pngs if exists(rel) and not output.made_by(rel, source, digest)]
        if clobbered and not job.output.overwrite:
            fail(
                item,
                f"{clobbered[0]}: exists and was not made from this input with these options; "
                "pass --overwrite to replace it, or choose another -o folder",
            )
            continue
        planned = _planned(targets, writers)
        rels = [p.relative_to(out_root).as_posix() for p in planned]
        pending[index] = (item, rels, {rel for rel in rels if exists(rel)})
    report()

    def finish(index: int, result: Any, error: str | None) -> None:
        item, rels, before = pending.pop(index)
        if result is None:
            output.remove([rel for rel in rels if rel not in before])
            fail(item, error or "failed")
        else:
            output.append(result.records, clock())
            processed.append(result)
        report(_source(item))

    tasks = [(index, item, (job, str(out) if remote else None)) for index, (item, _, _) in pending.items()]
    try:
        backend.run(tasks, work_url, finish, report)
    except BaseException as exc:
        for index in list(pending):
            item, rels, before = pending.pop(index)
            output.remove([rel for rel in rels if rel not in before])
        output.flush(clock())
        report_now = BatchReport(tuple(processed), tuple(skipped), tuple(failed), len(items), clock() - started, True)
        if isinstance(exc, KeyboardInterrupt):
            raise BatchInterrupted(report_now, exc) from exc
        raise
    output.flush(clock())
    processed.sort(key=lambda r: r.input.path)
    predicted = batch_predictions(
        job,
        processed,
        [(shown[source], source) for source in skipped],
        lambda: tops_from_lines(output.manifest_lines(), digest),
        lambda rows: output.put(PREDICTIONS_NAME, predictions_csv(rows)),
    )
    done = BatchReport(tuple(processed), tuple(skipped), tuple(failed), len(items), clock() - started)
    return replace(done, predictions=predicted[0], predictions_file=predicted[1])
