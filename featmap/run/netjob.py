"""`featmap apply --spec/--model` on image files: a `NetworkJob` (the layers, where the weights come from, how
maps are written) and `process_network_image`, the per-image function the batch runs.

Each layer's output is written as one PNG per channel in a folder per layer, named so that they sort in layer
order: ``{stem}/03-C3/007.png`` is channel 7 of the third layer written (key ``C3``). A flat output (flatten,
dense) is a one-pixel-high strip. With ``raw``, each layer's whole float32 stack goes beside its PNGs
(``{stem}/03-C3/all.npy``).

Examples
--------
>>> from featmap.net.spec import load_model
>>> job = make_network_job(load_model("lenet5"), init="kaiming")
>>> [name for name, _ in job.layer_maps()][:3]
['01-C1', '02-tanh', '03-S2']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import FeatmapError, OptionError, SpecError
from featmap.io.discover import InputImage
from featmap.io.images import DEFAULT_MAX_PIXELS, ImageInfo
from featmap.io.outputs import OutputOptions
from featmap.net.plan import PlanNode, layers_fingerprint, output_nodes, plan_layers, stop_after
from featmap.net.preprocess import resolve as resolve_preprocess
from featmap.net.spec import Model
from featmap.net.summary import summarize_plan
from featmap.run.executor import LayerOutput, WeightSource, iter_network, top_classes
from featmap.run.netinput import check_job_labels, load_for_network, weights_layout, with_labels
from featmap.run.netreport import ReportBuilder, extra_record, report_page, report_target

__all__ = ["LayerFacts", "NetworkImageResult", "NetworkJob", "make_network_job", "process_network_image"]

# A spec without an input shape is planned on this (H, W) to name its layers' folders; images then run at
# their own size.
_NOMINAL_HW = (224, 224)


@lru_cache(maxsize=4)
def _read_weights(path: str, mtime_ns: int) -> dict[str, NDArray[np.floating]]:
    """A weights file, read once per process (a batch runs many images with it)."""
    from featmap.net.networks import load_network_weights

    return load_network_weights(path)


@dataclass(frozen=True)
class NetworkJob:
    """Everything `process_network_image` needs besides the input path."""

    model: Model
    weights_file: Path | None = None
    init: str | None = None
    seed: int = 0
    layout: str = "torch"
    upto: str | None = None
    top: int = 5
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    output: OutputOptions = field(default_factory=OutputOptions)
    preprocess: str | None = None  # --preprocess NAME over the model's transform (featmap.net.preprocess)
    resize: str | None = None  # --resize crop|stretch|pad

    @property
    def channels(self) -> int:
        """The input channels the spec asks for: 1 reads images as gray, 3 as RGB."""
        return self.model.input_shape[-1] if self.model.input_shape else 1

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) and self.model.input_shape and len(self.model.input_shape) == 3:
            raise SpecError(
                f"{self.model.name}: input",
                f"has {self.channels} channels, but images are read as gray (1) or RGB (3)",
                "declare an input of 1 or 3 channels, or run the layers on an array with featmap.forward",
            )

    @property
    def nominal_shape(self) -> tuple[int, ...]:
        """The spec's input, or a 224×224 stand-in to name the layers' folders by."""
        return self.model.input_shape or (*_NOMINAL_HW, self.channels)

    def weights(self) -> WeightSource:
        """A fresh `WeightSource` for one image (the file itself is read once per process)."""
        tensors: dict[str, NDArray[np.floating]] = {}
        if self.weights_file is not None:
            path = Path(self.weights_file)
            if not path.is_file():
                raise SpecError(str(path), "weights file not found", "check the path")
            tensors = _read_weights(str(path.resolve()), path.stat().st_mtime_ns)
        return WeightSource(tensors, self.init, self.seed, self.layout, str(self.weights_file or "weights"))

    def plan(self, shape: Sequence[int]) -> tuple[PlanNode, ...]:
        """The layers planned on an input of ``shape``."""
        return plan_layers(self.model.layers, tuple(shape))

    def input_shape_for(self, path: Path) -> tuple[int, ...]:
        """The shape the network sees for the image at ``path``: the declared input (images are resized to it),
        else the image's own size from its header (the nominal shape if the header cannot be read: the image
        then fails when it is loaded, with the reason)."""
        if self.model.input_shape is not None:
            return self.model.input_shape
        from featmap.io.images import image_size

        try:
            height, width = image_size(path)
        except FeatmapError:
            return self.nominal_shape
        return (height, width, self.channels)

    def layer_maps(self, shape: Sequence[int] | None = None) -> list[tuple[str, int]]:
        """``(folder name, channels)`` of every layer output written for an input of ``shape``, in order."""
        found: list[tuple[str, int]] = []
        nodes = self.plan(self.nominal_shape if shape is None else shape)
        outputs = output_nodes(nodes)
        width = max(2, len(str(len(outputs))))
        for index, node in enumerate(outputs, start=1):
            shape = node.plan.out_shape
            flat = len(shape) == 1 or (len(shape) == 3 and shape[0] * shape[1] == 1)
            label = _safe(getattr(node.layer, "name", None) or node.plan.name)
            found.append((f"{index:0{width}d}-{label}", 1 if flat else shape[-1]))
            if self.upto is not None and self.upto in (node.path, node.key, node.plan.name):
                break
        return found

    def options_hash(self) -> str:
        """A digest of everything that changes an output's pixels."""
        weights = None
        if self.weights_file is not None and Path(self.weights_file).is_file():
            stat = Path(self.weights_file).stat()
            weights = [str(Path(self.weights_file).resolve()), stat.st_size, stat.st_mtime_ns]
        out = self.output
        recipe = {
            "layers": layers_fingerprint(self.model.layers),
            "weights": weights,
            "init": self.init,
            "seed": self.seed,
            "layout": self.layout,
            "upto": self.upto,
            "background": self.background,
            "input": [repr(resolve_preprocess(self.model.preprocess, self.preprocess, self.resize)), self.model.labels],
            "normalize": str(out.normalize),
            "bit_depth": out.bit_depth,
            "raw": out.raw,
            **({"colormap": out.colormap} if out.colormap else {}),
            **({"percentiles": out.percentiles} if str(out.normalize) == "percentile" else {}),
            **({"sheet": True} if out.sheet else {}),
            **(out.picture_key() if out.sheet else {}),
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _safe(name: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.")  # an ONNX node /a/b/Conv: a_b_Conv
    return (text if len(text) <= 60 else text[-60:].partition("_")[2] or text[-60:]) or "layer"  # long: its end


def make_network_job(
    model: Model,
    *,
    weights: str | Path | None = None,
    init: str | None = None,
    seed: int = 0,
    layout: str = "torch",
    upto: str | None = None,
    output: OutputOptions | None = None,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    preprocess: str | None = None,
    resize: str | None = None,
    labels: str | Path | None = None,
) -> NetworkJob:
    """A `NetworkJob` from named options. The weights come from ``weights`` (a file), else the model's own
    weights file (a trained preset), else ``init``; a spec whose conv layers name kernels needs none.
    ``preprocess``/``resize`` override the model's input transform, ``labels`` its class names (`netinput`)."""
    if weights is not None and init is not None:
        raise SpecError("`weights`", "a weights file and a random `init` were both given", "give one of them")
    file = Path(weights) if weights is not None else (model.weights if init is None else None)
    layout = weights_layout(file, layout)  # a Keras file: Keras names, kernels and flatten order
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError("`seed`", f"must be a whole number >= 0; got {seed!r}")
    resolve_preprocess(model.preprocess, preprocess, resize)  # an unknown name is refused before any work
    model = with_labels(model, labels)
    out = output or OutputOptions()
    job = NetworkJob(model, file, init, seed, layout, upto, 5, background, max_pixels, out, preprocess, resize)
    check_job_labels(job, str(labels) if labels is not None else f"{model.name}: labels")
    if upto is not None:  # any row featmap shape prints (a block stops after its last output: see stop_after)
        try:
            stop = stop_after(job.plan(job.nominal_shape), upto)
        except FeatmapError:
            stop = upto  # no input declared and the stand-in size does not fit: the run says what is wrong
        if stop is None:
            raise OptionError(
                "`upto`", f"no layer is called {upto!r}", "give a layer's number, key or name (featmap shape)"
            )
        job = replace(job, upto=stop)
    return job


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


def network_targets(
    item: InputImage, job: NetworkJob, maps: Sequence[tuple[str, int]] | None = None, *, single: bool = False
) -> dict[str, Path]:
    """Every file an input will produce by name (``03-C3/007``, ``(sheet)``, ``(report)``: a ``single`` image's is
    the folder's ``report.html``); ``maps``: the layers' folders and channels (default: planned from the header)."""
    out = job.output
    targets = {}
    if maps is None:
        try:
            maps = job.layer_maps(job.input_shape_for(item.path))
        except FeatmapError:
            maps = []  # the layers do not fit this image: loading and planning it says why, nothing is written
    for folder, channels in maps:
        first = out.target(item.path, f"{folder}/000", rel_dir=item.rel_dir, stem=item.stem)  # checked once a layer
        targets.update({f"{folder}/{ch:03d}": first.with_name(f"{ch:03d}.png") for ch in range(channels)})
    if out.sheet:
        targets["(sheet)"] = out.extra_target(item.path, "sheet.png", rel_dir=item.rel_dir, stem=item.stem)
    if out.report:
        targets["(report)"] = report_target(item, out, single=single)
    return targets


def _planes(values: NDArray[np.floating]) -> NDArray[np.floating]:
    """A layer output as ``(H, W, C)``: a 1-D ``(L, C)`` output as columns, a flat one (or 1×1×C) as a one-row
    strip."""
    if values.ndim == 1 or (values.ndim == 3 and values.shape[0] * values.shape[1] == 1):
        return values.reshape(1, -1, 1)
    if values.ndim == 2:
        return values[:, np.newaxis, :]
    return values


def process_network_image(item: InputImage, job: NetworkJob, *, single: bool = False) -> NetworkImageResult:
    """Load one image, run the network on it and write every layer's maps; the manifest is left to the caller."""
    from featmap.io.writers.pixels import map_pixels
    from featmap.io.writers.png import save_png
    from featmap.io.writers.raw import save_raw

    started = time.perf_counter()
    pixels, image, resized = load_for_network(
        item.path, job.model, job.background, job.max_pixels, job.preprocess, job.resize
    )
    nodes = job.plan(pixels.shape)
    source = job.weights()
    out = job.output
    digest = job.options_hash()
    maps = job.layer_maps(pixels.shape)
    names = iter(maps)
    targets = network_targets(item, job, maps, single=single)
    facts: list[LayerFacts] = []
    records: list[dict[str, Any]] = []
    last: LayerOutput | None = None
    sheet = None
    if out.sheet:  # one row per layer (featmap.io.writers.pictures); the sheet's size is checked before any work
        from featmap.io.writers.pictures import LayerRows

        sheet = LayerRows(image, out, maps, pixels, job.model.labels)
    writers = _channel_writers()
    report = ReportBuilder(nodes, pixels, source) if out.report else None  # checks the report size limit now
    for result in iter_network(nodes, pixels, source, upto=job.upto):
        folder, _ = next(names)
        planes = _planes(result.values)

        def write(ch: int, planes: NDArray[np.floating] = planes, folder: str = folder) -> Path:
            drawn = map_pixels(
                planes[:, :, ch : ch + 1],
                out.normalize,
                bit_depth=out.bit_depth,
                colormap=out.colormap,
                percentiles=out.percentiles,
            )
            target = targets[f"{folder}/{ch:03d}"]
            return save_png(target, drawn.pixels, bit_depth=out.bit_depth, compress_level=out.png_compress)

        # A layer's channels are independent files: numpy's reductions, the deflate and the file calls release
        # the GIL, so two threads write them in about 0.6 of the time (VGG-16's 960 maps, measured)
        files: list[Path] = list(writers.map(write, range(planes.shape[2])))
        records += [_record(item, result, folder, png, out, digest) for png in files]
        if out.raw is not None:
            raw_path = out.target(item.path, f"{folder}/all", rel_dir=item.rel_dir, stem=item.stem)
            stack = result.values if out.raw == "npy" else planes  # a TIFF page is 2-D: flat outputs as a strip
            files.append(save_raw(raw_path.with_suffix("." + out.raw), stack, out.raw))
        if sheet is not None:
            sheet.add_layer(folder, planes, tuple(result.values.shape), result.node.plan.kind)
        if report is not None:
            report.add(result, folder, job.layout)
        node = result.node
        facts.append(
            LayerFacts(
                folder,
                node.path,
                node.key,
                node.plan.name,
                node.plan.kind,
                tuple(result.values.shape),
                node.plan.params,
                asdict(result.stats),
                tuple(files),
            )
        )
        last = result
    top: tuple[tuple[int, str, float], ...] = ()
    if last is not None and last.values.ndim == 1 and job.upto is None:
        top = tuple(top_classes(last.values, job.top, job.model.labels))
        ranked = [{"index": i, "label": label, "probability": p} for i, label, p in top]
        records = [{**r, "top": ranked} if r.get("layer") == last.node.path else r for r in records]  # manifest
    if sheet is not None:
        written = sheet.write(
            out.extra_target(item.path, "sheet.png", rel_dir=item.rel_dir, stem=item.stem),
            top,
            None if last is None else last.values,
        )
        records.append(extra_record(item, "(sheet)", written, out, digest))
    summary = summarize_plan(nodes, tuple(pixels.shape))
    if report is not None:
        written = report.write(targets["(report)"], report_page(job, image.info, pixels, resized, summary))
        records.append(extra_record(item, "(report)", written, out, digest))
    replaced: tuple[str, ...] = ()
    if job.init is not None and job.model.weights is not None:
        replaced = (f"the model's trained weights ({job.model.weights.name}) are replaced by {job.init} init",)
    notes = (*resized, *replaced, *summary.warnings, *source.warnings)
    return NetworkImageResult(
        image.info,
        tuple(facts),
        top,
        notes,
        digest,
        time.perf_counter() - started,
        tuple(records),
        network_input=pixels,
        shown_input=image.pixels,
    )


def _channel_writers() -> ThreadPoolExecutor:
    """The threads that write a layer's channel PNGs (one per core, at most two: the files are small)."""
    return _POOL


_POOL = ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1)), thread_name_prefix="featmap-png")


def _record(
    item: InputImage, result: LayerOutput, folder: str, png: Path, out: OutputOptions, digest: str
) -> dict[str, Any]:
    return {
        "input": str(item.path.resolve()),
        "kernel": f"{folder}/{png.stem}",
        "layer": result.node.path,
        "png": png.relative_to(out.out_dir).as_posix(),
        "options": digest,
        "shape": list(result.values.shape),
        "params": result.node.plan.params,
        "stats": asdict(result.stats),
        "status": "ok",
    }
