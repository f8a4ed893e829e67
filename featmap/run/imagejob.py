"""One image file through a job: its output targets, `process_image` (load → maps or layers → writers) and
`apply_image` (the same, checked against and recorded in the output folder's manifest, under its lock).

`featmap.run.batch` runs `process_image` over many files; a back end (`featmap.run.backends`) runs it on helpers.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featmap.errors import FeatmapError
from featmap.io.discover import InputImage
from featmap.io.display import DisplayRange, range_from_stats
from featmap.io.images import ImageInfo, load_image
from featmap.io.outputs import Manifest, OutputLock, OutputOptions, safe_stem
from featmap.io.writers import Writer, open_writers
from featmap.io.writers.pictures import REPORT_KEY, SHEET_KEY
from featmap.run.jobs import ApplyJob
from featmap.run.netjob import NetworkJob, network_targets, process_network_image
from featmap.run.pipeline import FeatureMap, MapInfo, geometry_notes, iter_feature_maps
from featmap.run.workers import signals_deferred

__all__ = ["ImageResult", "WrittenMap", "apply_image", "map_names", "process_image", "targets_for"]


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
        return network_targets(item, job, single=single)
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
        return process_network_image(item, job, single=single)  # type: ignore[return-value]  # the batch reads the shared fields
    started = time.perf_counter()
    path = item.path
    image = load_image(path, color=job.color, background=job.background, max_pixels=job.max_pixels)
    job.check_plan((image.info.height, image.info.width), image.pixels.shape[-1], str(path))
    out = job.output
    digest = job.options_hash()
    targets = targets_for(item, job, single=single)
    notes = geometry_notes((image.info.height, image.info.width), job.bank, job.conv, job.pool, image.pixels.shape[-1])
    written: list[WrittenMap] = []
    records: list[dict[str, Any]] = []
    maps = iter_feature_maps(
        image.pixels, job.bank, job.conv, job.act, job.pool, combine=job.combine, strict=job.strict
    )
    writers = open_writers(out)
    for writer in writers:
        writer.begin(image, job)
    for fmap in _finite_maps(maps, str(path)):
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
    them (a re-run), or with ``overwrite``; the input itself is never written. The output folder is
    locked meanwhile (`OutputLock`). A run that fails or is interrupted part-way removes the maps it had
    written, so that nothing of it is left behind (and the fix its error suggests needs no ``--overwrite``).
    """
    item = InputImage(Path(source), Path(), safe_stem(Path(source).name))
    targets = targets_for(item, job, single=True)
    writers = open_writers(job.output)  # only asked where their files go
    made_folder = not job.output.out_dir.exists()
    lock = OutputLock(job.output.out_dir).acquire()
    before: set[Path] | None = None  # set once the outputs may be written
    try:
        manifest = Manifest(job.output.out_dir)
        digest = job.options_hash()
        manifest.check(targets.values(), item.path, digest, overwrite=job.output.overwrite)
        before = _existing(targets, writers)
        manifest.begin(targets.values(), item.path, digest)
        result = process_image(item, job, single=True)
        with signals_deferred():
            manifest.append(result.records)
    except BaseException:
        if before is not None:
            _remove_partial(targets, before, writers)
        _settle(job.output.out_dir)
        lock.release()
        if made_folder:
            try:
                job.output.out_dir.rmdir()  # only if it is empty: the folder this run made
            except OSError:
                pass
        raise
    _settle(job.output.out_dir)
    lock.release()
    return result


def _existing(targets: dict[str, Path], writers: list[Writer]) -> set[Path]:
    """The files an image may get that are already on disk: what a failed run must not remove."""
    return {p for p in _planned(targets, writers) if p.exists()}


def _settle(out_dir: Path) -> None:
    """Trim the manifest's journal at the end of a run (see `Manifest.settle`); a failure to is harmless."""
    try:
        Manifest(out_dir).settle()
    except OSError:
        pass


def _finite_maps(maps: Iterable[FeatureMap], where: str) -> Iterator[FeatureMap]:
    """Pass maps through, refusing (before anything of it is written) one holding inf or nan."""
    with np.errstate(all="ignore"):  # overflow shows as a non-finite map, refused here with its position
        for fmap in maps:
            stats = fmap.info.stats
            if not all(math.isfinite(v) for v in (stats.min, stats.max, stats.mean, stats.std)):
                bad = np.argwhere(~np.isfinite(fmap.values))
                if len(bad):
                    row, col, channel = (int(v) for v in bad[0])
                    value = float(fmap.values[row, col, channel])
                    at = f"{value} first at row {row}, column {col}"
                    if fmap.values.shape[-1] > 1:
                        at += f", channel {channel}"
                else:  # every value finite, but their sum of squares overflowed float64
                    at = "values too large for their statistics"
                raise FeatmapError(
                    f"{where}: kernel {fmap.info.name!r}",
                    f"the map is not finite ({at}): weights or values too large for float32; no map of it is written",
                    "scale the kernel down (`scale:` in its file) or use a smaller --pad-value",
                )
            yield fmap


def _planned(targets: dict[str, Path], writers: list[Writer]) -> list[Path]:
    """Every file the job's writers may create for an image whose maps go to ``targets``."""
    return [path for writer in writers for path in writer.planned_paths(targets)]


def _remove_partial(targets: dict[str, Path], before: set[Path], writers: list[Writer]) -> None:
    """Delete what an unfinished image wrote this run: new files and stray temporary files."""
    folders = {path.parent for path in targets.values()}
    for file in _planned(targets, writers):
        if file not in before:
            try:
                file.unlink(missing_ok=True)
            except OSError:  # the folder is a file, or not ours to change: nothing of this run is there
                pass
    for folder in folders:
        try:
            if folder.is_dir():
                for temp in folder.glob(".*.tmp"):
                    temp.unlink(missing_ok=True)
                folder.rmdir()  # only if it is now empty
        except OSError:
            pass
