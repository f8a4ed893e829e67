"""One image file through a job: its output targets, `process_image` (load → maps or layers → writers) and
`apply_image` (the same, checked against and recorded in the output folder's manifest, under its lock).

`featmap.run.batch` runs `process_image` over many files; a back end (`featmap.run.backends`) runs it on helpers.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featmap.core.samples import CONVERT_WHOLE_UP_TO, ScaledSamples
from featmap.errors import FeatmapError
from featmap.frozen import frozen_dataclass
from featmap.io.discover import InputImage
from featmap.io.display import DisplayRange, range_from_stats
from featmap.io.images import ImageInfo, load_image
from featmap.io.outputs import Manifest, OutputLock, OutputOptions, safe_stem
from featmap.io.writers import REPORT_KEY, SHEET_KEY, Writer, open_writers
from featmap.net.records import BandedFeatureMap, LayerMaps, MapInfo
from featmap.run.imagerun import ImageJob, ImageRun, write_image
from featmap.run.jobs import ApplyJob
from featmap.run.workers import signals_deferred

if TYPE_CHECKING:  # the rest is imported where a kernel bank or a network needs it, so each loads only its own
    from featmap.run.netjob import NetworkJob
    from featmap.run.pipeline import FeatureMap

__all__ = ["ImageResult", "KernelRun", "WrittenMap", "apply_image", "map_names", "process_image", "targets_for"]


@frozen_dataclass
class WrittenMap:
    """A map's facts and the files written for it."""

    info: MapInfo
    png: Path
    raw: Path | None
    shown: DisplayRange | None = None  # the value range the PNG maps
    colormap: str | None = None  # cmap's name of the PNG's colormap; None: gray levels


@frozen_dataclass
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
    return job.map_names


def targets_for(item: InputImage, job: ImageJob, *, single: bool = False) -> dict[str, Path]:
    """Every PNG an input will produce, by map name, then ``(sheet)`` and ``(report)`` when asked (the report
    of a ``single`` image is ``report.html`` in the output folder, else beside its sheet)."""
    return job.targets(item, single=single)


def process_image(item: InputImage, job: ApplyJob | NetworkJob, *, single: bool = False) -> ImageResult:
    """Load one image, run the job's kernels (or network) and write its maps; the manifest is left to the caller.

    Layer outputs are computed and written one after another, so memory holds one at a time. The only thing
    that differs between a kernel bank and a network is the stream of layer outputs (`featmap.run.imagerun`).
    """
    if isinstance(job, ApplyJob):
        run: ImageRun = KernelRun(item, job, single=single)
    else:
        from featmap.run.netimage import NetworkRun

        run = NetworkRun(item, job, single=single)
    result: ImageResult = write_image(run, job)  # a network's NetworkImageResult: the batch reads the shared fields
    return result


class KernelRun:
    """One image through an `ApplyJob` (an `featmap.run.imagerun.ImageRun`): each kernel's map (then the combined
    map) is a layer output of its own, refused before anything of it is written when it is not finite."""

    def __init__(self, item: InputImage, job: ApplyJob, *, single: bool = False) -> None:
        from featmap.run.pipeline import geometry_notes

        self.started = time.perf_counter()
        self.item, self.job = item, job
        path = self.where = item.path
        self.image = load_image(
            path, color=job.color, background=job.background, max_pixels=job.max_pixels, run_memory=self._memory
        )
        height, width, channels = self.image.info.height, self.image.info.width, self.image.info.channels
        bands = self._by_bands((height, width, channels))
        job.check_plan((height, width), channels, str(path), bands=bands)
        self.digest = job.options_hash()
        self.source = item.resolved or str(path.resolve())  # the input as every record of it names it (discovery's)
        self.targets = self.writer_targets = job.targets(item, single=single)
        self.formats = job.output.formats
        self.notes = geometry_notes((height, width), job.bank, job.conv, job.pool, channels)
        if isinstance(self.image.data, ScaledSamples) and not bands:
            self.image = self.image.in_floats()  # before the writers see it: the samples go, not held beside the floats
        self.written_maps: list[WrittenMap] = []
        self.records: list[dict[str, Any]] = []
        #: Maps larger than this are never held when only the PNG writer reads them (`featmap.run.fused.FusedBands`).
        self.bands = _bands_above(job.output)

    def _by_bands(self, shape: tuple[int, int, int]) -> bool:
        """Whether every map of the run on an image of ``shape`` goes band by band, never reading the float image
        whole (`featmap.run.pipeline.reads_floats_whole`), remembered by the job per shape (a batch asks three times
        an image); False for a bank that does not fit the image, refused by the run's own checks."""
        known: dict[tuple[int, int, int], bool] = self.job.__dict__.setdefault("_by_bands", {})
        if shape not in known:
            from featmap.run.pipeline import reads_floats_whole

            job = self.job
            try:
                known[shape] = not reads_floats_whole(shape, job.bank, job.conv, job.act, job.pool, job.combine)
            except FeatmapError:
                return False
        return known[shape]

    def _memory(self, hw: tuple[int, int], channels: int, samples: bool) -> int:
        """The most memory the run holds on a loaded image of ``hw`` and ``channels`` (`featmap.core.budget.RunMemory`,
        checked before the image is decoded): the image as the run keeps it (8-bit ``samples`` while every map goes
        band by band, else float32; a small image's samples and their float image, which `featmap.run.groups.run_stacks`
        makes when its maps do not share one band loop) and the larger of the largest map's plan
        (`ApplyJob.check_plan`) and the float image a sheet or report draws the input from, after the maps, beside
        the samples. A sheet or report does not make a run convert its samples before the maps: that would hold the
        float image beside them (6000×4000 `--color -k sobel_x --sheet`: 695 → 894 MiB)."""
        bands = self._by_bands((hw[0], hw[1], channels))
        values, out = hw[0] * hw[1] * channels, self.job.output
        kept = samples and bands
        image = values * (4 if not kept else 5 if values <= CONVERT_WHOLE_UP_TO else 1)
        drawn = values * 4 if kept and (out.sheet or out.report) else 0
        return image + max(drawn, self.job.check_plan(hw, channels, str(self.where), bands=bands))

    @property
    def subject(self) -> ApplyJob:
        """What the sheet and the report draw besides the maps: the job (its kernels, layers and options)."""
        return self.job

    def layers(self) -> Iterator[LayerMaps]:
        """Each kernel's map, then the combined map, as a layer of one map."""
        from featmap.run.pipeline import iter_feature_maps

        job, data = self.job, self.image.data  # 8-bit samples still held here go band by band, never whole
        maps = iter_feature_maps(
            data, job.bank, job.conv, job.act, job.pool, combine=job.combine, strict=job.strict, bands_above=self.bands
        )
        for fmap in _finite_maps(maps, str(self.item.path)):
            yield LayerMaps(fmap.info.name, (fmap,))
            del fmap  # the writers are done with it: make the next map without holding this one

    def written(self, layer: LayerMaps, files: Mapping[str, list[Path | None]], writers: Sequence[Writer]) -> None:
        """The map's manifest record and its `WrittenMap`."""
        (fmap,) = layer.maps
        info = fmap.info
        assert isinstance(info, MapInfo), "a kernel's map has its MapInfo"
        out, image = self.job.output, self.image.info
        made = {w.manifest_key: files[w.name][0] for w in writers if w.per_map}
        png, raw = made.pop("png"), made.pop("raw", None)
        assert png is not None, "the png writer returns its file"
        shown, colormap = _scale(writers, info, out)
        self.written_maps.append(WrittenMap(info, png, raw, shown, colormap))
        self.records.append(
            {
                "input": self.source,
                "kernel": info.name,
                "png": _rel(png, out.out_dir),
                "raw": None if raw is None else _rel(raw, out.out_dir),
                **{key: None if file is None else _rel(file, out.out_dir) for key, file in made.items() if key},
                "options": self.digest,
                "input_shape": [image.height, image.width, image.channels],
                "conv_shape": list(info.conv_shape),
                "shape": list(info.shape),
                "params": info.params,
                "stats": _fields(info.stats),
                "mapped": {"low": shown.low, "high": shown.high, "method": shown.method, "colormap": colormap},
                "status": "ok",
            }
        )

    def finished(self, writer: Writer, files: tuple[Path, ...]) -> None:
        """The sheet and report: recorded, so re-runs replace them and resume sees them."""
        if writer.name != "pictures":
            return
        out, targets = self.job.output, self.targets
        for made in files:
            key = next(k for k in (SHEET_KEY, REPORT_KEY) if targets.get(k) == made)
            record = {"input": self.source, "kernel": key, "png": _rel(made, out.out_dir)}
            self.records.append({**record, "options": self.digest, "status": "ok"})

    def result(self) -> ImageResult:
        """The image's outcome."""
        seconds = time.perf_counter() - self.started
        maps = tuple(self.written_maps)
        return ImageResult(self.image.info, maps, self.notes, self.digest, seconds, tuple(self.records))


def _bands_above(output: OutputOptions) -> int | None:
    """`featmap.run.fused.TWO_PASS_ABOVE` when the PNG writer is the only reader of the maps and takes them as bands
    (gray levels scaled by min-max or a fixed rule: `featmap.io.writers.png.takes_bands`), else None."""
    from featmap.io.writers.png import takes_bands
    from featmap.run.fused import TWO_PASS_ABOVE

    return TWO_PASS_ABOVE if output.formats == ("png",) and takes_bands(output) else None


def _fields(stats: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` of a dataclass of plain values, without its recursive deep copy."""
    return {f.name: getattr(stats, f.name) for f in fields(stats)}


def _scale(writers: Sequence[Writer], info: MapInfo, out: OutputOptions) -> tuple[DisplayRange, str | None]:
    """The value range the map's PNG shows and its colormap: as the PNG writer drew it (colormap or percentile),
    else worked out from the map's statistics (no pass over the map)."""
    for writer in writers:
        scales = getattr(writer, "scales", None)
        if writer.name == "png" and scales and info.name in scales:
            shown, colormap = scales[info.name]
            return shown, None if colormap is None else colormap.qualified
    return range_from_stats(info.stats.min, info.stats.max, out.normalize), None


def apply_image(source: str | os.PathLike[str], job: ApplyJob | NetworkJob) -> ImageResult:
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


def _finite_maps(maps: Iterable[FeatureMap | BandedFeatureMap], where: str) -> Iterator[FeatureMap | BandedFeatureMap]:
    """Pass maps through, refusing (before anything of it is written) one holding inf or nan."""
    with np.errstate(all="ignore"):  # overflow shows as a non-finite map, refused here with its position
        for fmap in maps:
            stats = fmap.info.stats
            if not all(math.isfinite(v) for v in (stats.min, stats.max, stats.mean, stats.std)):
                values = fmap.values  # a map given as bands is made whole here, once (the run stops at it)
                bad = np.argwhere(~np.isfinite(values))
                if len(bad):
                    row, col, channel = (int(v) for v in bad[0])
                    value = float(values[row, col, channel])
                    at = f"{value} first at row {row}, column {col}"
                    if values.shape[-1] > 1:
                        at += f", channel {channel}"
                else:  # every value finite, but their sum of squares overflowed float64
                    at = "values too large for their statistics"
                raise FeatmapError(
                    f"{where}: kernel {fmap.info.name!r}",
                    f"the map is not finite ({at}): weights or values too large for float32; no map of it is written",
                    "scale the kernel down (`scale:` in its file) or use a smaller --pad-value",
                )
            yield fmap
            del fmap  # one map at a time


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
