"""`featmap apply --spec/--model` on image files: a `NetworkJob` (the layers, where the weights come from, how
maps are written, the files an input gets) and `make_network_job`, the one builder from named options. One image
through it is `featmap.run.netimage` (`process_network_image`, re-exported here).

Each layer's output is written as one PNG per channel in a folder per layer, named so that they sort in layer
order: ``{stem}/03-C3/007.png`` is channel 7 of the third layer written (key ``C3``).

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
import re
import stat
from collections.abc import Sequence
from dataclasses import field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from featmap.errors import FeatmapError, OptionError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.io.discover import InputImage
from featmap.io.images import DEFAULT_MAX_PIXELS
from featmap.io.outputs import OutputOptions
from featmap.net.plan import PlanNode, layers_fingerprint, output_nodes, plan_layers, stop_after
from featmap.net.preprocess import check_preprocess_channels
from featmap.net.preprocess import resolve as resolve_preprocess
from featmap.net.spec import Model
from featmap.run.executor import WeightSource, check_network_limits
from featmap.run.netimage import LayerFacts, NetworkImageResult, process_network_image
from featmap.run.netinput import check_job_labels, weights_layout, with_labels

__all__ = [
    "LayerFacts",
    "NetworkImageResult",
    "NetworkJob",
    "make_network_job",
    "network_targets",
    "process_network_image",
]

# A spec without an input shape is planned on this (H, W) to name its layers' folders; images then run at
# their own size.
_NOMINAL_HW = (224, 224)


@lru_cache(maxsize=4)
def _read_weights(path: str, digest: str) -> dict[str, NDArray[np.floating]]:
    """A weights file, read once per process and content (a batch runs many images with it)."""
    from featmap.net.networks import load_network_weights

    return load_network_weights(path)


def file_digest(path: Path) -> str:
    """The SHA-256 of the file at ``path`` (hex): what a network job's options hash knows its weights by."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_weights_file(file: Path) -> None:
    """Refuse a weights file that is a folder, a pipe or a device before any byte of it is read (a pipe blocks its
    reader, a device may never end: hashing /dev/zero would); a missing one is said where the run reads it."""
    try:
        mode = file.stat().st_mode
    except (OSError, ValueError):
        return
    if not stat.S_ISREG(mode):
        problem = "is a folder, not a file" if stat.S_ISDIR(mode) else "is not a regular file (a pipe or a device)"
        raise SpecError(str(file), problem, "give a weights file (.npz, .safetensors, .pt, .keras, .h5 or .onnx)")


@frozen_dataclass
class WeightsStamp:
    """A weights file as a run found it: its content's digest, and the size and modification time it had then (a
    helper that finds them unchanged takes the digest as it is; anything else is hashed again)."""

    path: str
    digest: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, file: Path) -> WeightsStamp | None:
        """The stamp of ``file`` now, or None when it is not a file (the run then says the file is missing)."""
        path = file.resolve()
        try:
            before = path.stat()
            if not stat.S_ISREG(before.st_mode):  # a pipe or a device: never hashed (`check_weights_file` says so)
                return None
            digest = file_digest(path)
        except OSError:
            return None
        return cls(str(path), digest, before.st_size, before.st_mtime_ns)

    def check(self, file: Path) -> None:
        """Refuse ``file`` if its content is no longer the one this run's outputs are recorded with."""
        now = WeightsStamp.of(file)
        if now is None:
            raise SpecError(str(file), "weights file not found", "check the path")
        if (now.size, now.mtime_ns) != (self.size, self.mtime_ns) and now.digest != self.digest:
            raise SpecError(
                str(file),
                "weights file changed while this run was using it (its content is not the one the run started with)",
                "run the command again once the file is final",
            )


@frozen_dataclass
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
    #: The weights file's content digest, taken once when the job is made (and shipped with it to the helpers).
    stamp: WeightsStamp | None = field(default=None, compare=False, repr=False)

    @property
    def channels(self) -> int:
        """The input channels the spec asks for: 1 reads images as gray, 3 as RGB."""
        return self.model.channels or 1

    def __post_init__(self) -> None:
        if self.weights_file is not None and (
            self.stamp is None or self.stamp.path != str(Path(self.weights_file).resolve())
        ):
            object.__setattr__(self, "stamp", WeightsStamp.of(Path(self.weights_file)))
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
            if self.stamp is None or not path.is_file():
                check_weights_file(path)
                raise SpecError(str(path), "weights file not found", "check the path")
            self.stamp.check(path)
            tensors = _read_weights(self.stamp.path, self.stamp.digest)
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

    def targets(
        self, item: InputImage, *, single: bool = False, maps: Sequence[tuple[str, int]] | None = None
    ) -> dict[str, Path]:
        """Every file ``item`` will produce, by name (see `network_targets`)."""
        return network_targets(item, self, maps, single=single)

    def options_hash(self) -> str:
        """A digest of everything that changes an output's pixels: the weights file by its content, hashed once
        when the job is made, so a file touched but unchanged resumes and a changed one is done again."""
        weights = None if self.stamp is None else self.stamp.digest  # content, not path and time (a copy resumes)
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
        raise OptionError("`init`", "was given with a weights file; a run takes one or the other", "drop one of them")
    file = Path(weights) if weights is not None else (model.weights if init is None else None)
    if file is not None:
        check_weights_file(file)
    layout = weights_layout(file, layout)  # a Keras file: Keras names, kernels and flatten order
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError("`seed`", f"must be a whole number >= 0; got {seed!r}")
    model = with_labels(model, labels)
    out = output or OutputOptions()
    job = NetworkJob(model, file, init, seed, layout, upto, 5, background, max_pixels, out, preprocess, resize)
    check_job_labels(job, str(labels) if labels is not None else f"{model.name}: labels")
    check_preprocess_channels(
        resolve_preprocess(model.preprocess, preprocess, resize),
        job.channels,
        f"`preprocess` {preprocess}" if preprocess is not None else f"{model.name}: preprocess",
    )
    if file is None and init is None:
        _check_every_layer_has_weights(job)
    if model.input_shape is not None:  # a declared input over the limits: said before an image is fitted to it
        check_network_limits(job.plan(model.input_shape))
    if upto is not None:  # any row featmap shape prints (a block stops after its last output: see stop_after)
        nodes: tuple[PlanNode, ...] = ()
        try:
            nodes = job.plan(job.nominal_shape)
            stop = stop_after(nodes, upto)
        except FeatmapError:
            stop = upto  # no input declared and the stand-in size does not fit: the run says what is wrong
        if stop is None:
            problem = f"no layer is called {upto!r}"
            if upto.isdigit():  # a number past the end, or 0
                problem = f"there is no layer {upto}: the network's layers are numbered 1 … {len(nodes)}"
            raise OptionError("`upto`", problem, "give a layer's number, key or name (featmap shape)")
        last = output_nodes(nodes)[-1].path if nodes else None
        job = replace(job, upto=None if stop == last else stop)  # the last layer: the whole run, its prediction too
    return job


def _check_every_layer_has_weights(job: NetworkJob) -> None:
    """Without a weights file or ``init`` every layer with weights must name its kernels in the spec: the first that
    does not is said before any work, once (not once per image of a batch)."""
    try:
        nodes = job.plan(job.nominal_shape)
    except FeatmapError:
        return  # the stand-in size does not fit: each image's plan says what is wrong
    try:
        WeightSource().bind(nodes)
    except SpecError as exc:
        raise SpecError(f"{job.model.name}: {exc.what}", exc.problem, exc.fix) from None


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
        from featmap.run.netreport import report_target  # the HTML report's modules load only when asked for

        targets["(report)"] = report_target(item, out, single=single)
    return targets
