"""One image through a network (`NetworkRun`): loaded as the network sees it, planned, then each layer output's
channels handed to the writers as maps (`featmap.net.records.ChannelMap`) with its whole output (the sheet's
row and the report's record: `featmap.io.writers.netpictures`, from the run's `NetworkDrawing`), and its manifest
records; `process_network_image` runs it through `featmap.run.imagerun.write_image`.

Each layer's output is written as one PNG per channel in a folder per layer, named so that they sort in layer
order: ``{stem}/03-C3/007.png`` is channel 7 of the third layer written (key ``C3``). A flat output (flatten,
dense) is a one-pixel-high strip. With ``raw``, each layer's whole float32 stack goes beside its PNGs
(``{stem}/03-C3/all.npy``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from featmap.frozen import frozen_dataclass
from featmap.io.discover import InputImage
from featmap.io.images import ImageInfo
from featmap.io.writers import REPORT_KEY, SHEET_KEY, layer_planes
from featmap.net.records import ChannelInfo, ChannelMap, LayerMaps
from featmap.net.summary import summarize_plan
from featmap.run.executor import LayerOutput, iter_network, top_classes
from featmap.run.imagerun import write_image
from featmap.run.netinput import load_for_network

if TYPE_CHECKING:  # the sheet's and the report's modules load only when asked for
    from featmap.io.writers import Writer
    from featmap.io.writers.netpictures import NetworkDrawing
    from featmap.run.netjob import NetworkJob

__all__ = ["LayerFacts", "NetworkImageResult", "NetworkRun", "process_network_image"]


@frozen_dataclass
class LayerFacts:
    """One layer output of a run: where it sits, its shape, parameters, statistics and the files written."""

    folder: str
    path: str
    key: str
    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    stats: dict[str, float]
    files: tuple[Path, ...]


@frozen_dataclass
class NetworkImageResult:
    """The outcome of one image through a network: every layer's facts, the top classes and the records."""

    input: ImageInfo
    layers: tuple[LayerFacts, ...]
    top: tuple[tuple[int, str, float], ...]
    warnings: tuple[str, ...]
    options_hash: str
    seconds: float
    records: tuple[dict[str, Any], ...] = ()
    maps: tuple[Any, ...] = ()
    #: What the network saw: the preprocessed tensor, and the same picture in [0, 1] for drawing.
    network_input: NDArray[np.float32] | None = None
    shown_input: NDArray[np.float32] | None = None


def process_network_image(item: InputImage, job: NetworkJob, *, single: bool = False) -> NetworkImageResult:
    """Load one image, run the network on it and write every layer's maps; the manifest is left to the caller."""
    result: NetworkImageResult = write_image(NetworkRun(item, job, single=single), job)
    return result


class NetworkRun:
    """One image through a `NetworkJob` (an `featmap.run.imagerun.ImageRun`): the channel PNGs and raw stacks go
    through the writers, and so do the sheet (one row per layer) and the report: the run hands their writer a
    `featmap.io.writers.netpictures.NetworkDrawing` (`subject`) before the first layer."""

    def __init__(self, item: InputImage, job: NetworkJob, *, single: bool = False) -> None:
        self.started = time.perf_counter()
        self.item, self.job = item, job
        out = job.output
        self.pixels, self.image, self.resized = load_for_network(
            item.path, job.model, job.background, job.max_pixels, job.preprocess, job.resize
        )
        self.nodes = job.plan(self.pixels.shape)
        self.source = job.weights()
        self.digest = job.options_hash()
        self.input_name = str(item.path.resolve())  # every manifest record names it
        self.maps = job.layer_maps(self.pixels.shape)
        self.targets = job.targets(item, single=single, maps=self.maps)
        stacks: dict[str, Path] = {}
        if out.raw is not None:  # each layer's whole stack beside its PNGs
            for folder, _ in self.maps:
                stacks[f"{folder}/all"] = out.target(item.path, f"{folder}/all", rel_dir=item.rel_dir, stem=item.stem)
        self.writer_targets: Mapping[str, Path] = {**self.targets, **stacks} if stacks else self.targets
        # a network's sheet and report are the netpictures writer's (the kernel bank's pictures writer draws maps)
        self.formats = tuple("netpictures" if name == "pictures" else name for name in out.formats)
        self.facts: list[LayerFacts] = []
        self.records: list[dict[str, Any]] = []
        self.last: LayerOutput | None = None
        self.summary = summarize_plan(self.nodes, tuple(self.pixels.shape))
        self.subject: NetworkDrawing | None = None
        if out.sheet or out.report:  # their modules load only when asked for; the report's size is checked now
            from featmap.run.netreport import network_drawing

            info = replace(self.image.info, source=item.source)  # a fetched input's page names its URL
            self.subject = network_drawing(
                job, self.nodes, info, self.pixels, self.maps, self.source, self.resized, self.summary
            )

    def layers(self) -> Iterator[LayerMaps]:
        """Each layer output's channels as maps, with the layer's whole output."""
        names = iter(self.maps)
        raw = self.job.output.raw is not None
        for result in iter_network(self.nodes, self.pixels, self.source, upto=self.job.upto):
            folder, _ = next(names)
            drawn = layer_planes(result.values)
            node = result.node
            shape = (drawn.shape[0], drawn.shape[1], 1)
            maps = tuple(
                ChannelMap(
                    drawn[:, :, ch : ch + 1],
                    ChannelInfo(f"{folder}/{ch:03d}", node.path, ch, shape, node.plan.params, result.stats),
                )
                for ch in range(drawn.shape[2])
            )
            yield LayerMaps(folder, maps, result, f"{folder}/all" if raw else None)

    def written(self, layer: LayerMaps, files: Mapping[str, list[Path | None]], writers: Sequence[Writer]) -> None:
        """The layer's manifest records (one per channel PNG), its sheet row and report record, and its facts."""
        result = layer.output
        assert result is not None, "a network layer brings its output"
        out = self.job.output
        pngs = [p for p in files["png"] if p is not None]
        if pngs:  # one record per channel PNG; what they share is worked out once per layer
            layer_path, shape, params = result.node.path, list(result.values.shape), result.node.plan.params
            stats = asdict(result.stats)
            self.records += [
                {
                    "input": self.input_name,
                    "kernel": f"{layer.folder}/{png.stem}",
                    "layer": layer_path,
                    "png": png.relative_to(out.out_dir).as_posix(),
                    "options": self.digest,
                    "shape": list(shape),
                    "params": params,
                    "stats": dict(stats),
                    "status": "ok",
                }
                for png in pngs
            ]
        made: list[Path] = [*pngs, *(p for name, made in files.items() if name != "png" for p in made if p)]
        node = result.node
        self.facts.append(
            LayerFacts(
                layer.folder,
                node.path,
                node.key,
                node.plan.name,
                node.plan.kind,
                tuple(result.values.shape),
                node.plan.params,
                asdict(result.stats),
                tuple(made),
            )
        )
        self.last = result

    def finished(self, writer: Writer, files: tuple[Path, ...]) -> None:
        """The sheet and report (the netpictures writer's): recorded, so re-runs replace them and resume sees them."""
        if writer.name != "netpictures" or not files:
            return
        from featmap.run.netreport import extra_record

        for made in files:
            key = next(k for k in (SHEET_KEY, REPORT_KEY) if self.targets.get(k) == made)
            self.records.append(extra_record(self.item, key, made, self.job.output, self.digest))

    def result(self) -> NetworkImageResult:
        """The prediction, then the image's outcome."""
        job, last = self.job, self.last
        records = self.records
        top: tuple[tuple[int, str, float], ...] = ()
        if last is not None and last.values.ndim == 1 and job.upto is None:
            top = tuple(top_classes(last.values, job.top, job.model.labels))
            ranked = [{"index": i, "label": label, "probability": p} for i, label, p in top]
            records = [{**r, "top": ranked} if r.get("layer") == last.node.path else r for r in records]  # manifest
        replaced: tuple[str, ...] = ()
        if job.init is not None and job.model.weights is not None:
            replaced = (f"the model's trained weights ({job.model.weights.name}) are replaced by {job.init} init",)
        notes = (*self.resized, *replaced, *self.summary.warnings, *self.source.warnings)
        return NetworkImageResult(
            self.image.info,
            tuple(self.facts),
            top,
            notes,
            self.digest,
            time.perf_counter() - self.started,
            tuple(records),
            network_input=self.pixels,
            shown_input=self.image.pixels,
        )
