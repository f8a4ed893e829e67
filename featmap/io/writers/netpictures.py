"""A network run's sheet and report behind the one writer interface (`NetworkPicturesWriter`, registered as
``netpictures``).

The run works out, before the first layer, everything the two pictures show besides the layer outputs and hands
it to the writer as one finished, pure data object (`NetworkDrawing`, built by `featmap.run.netreport`): what
the network saw, each layer's folder and channels, the labels, how many classes to show, and the report's plan
(`featmap.io.writers.netreport.ReportPlan`). The writer takes each layer output as it goes by
(`Writer.add_layer`: one sheet row, one report record) and writes ``{stem}/sheet.png`` and the report when the
image is done (`Writer.finish`), so writers never import the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from featmap.frozen import frozen_dataclass
from featmap.io.images import LoadedImage, atomic_write
from featmap.io.pngencode import encode_png
from featmap.io.writers import REPORT_KEY, SHEET_KEY, Writer, layer_planes
from featmap.io.writers.pictures import PICTURE_SIDE, shape_text
from featmap.io.writers.sheet import MAX_SHEET_PANELS, shrink
from featmap.net.labels import top_classes

if TYPE_CHECKING:
    from featmap.io.outputs import OutputOptions
    from featmap.io.writers.netreport import NetworkReport, ReportPlan
    from featmap.net.records import LayerMaps, Map

__all__ = ["LayerRows", "NetworkDrawing", "NetworkPicturesWriter"]


@frozen_dataclass
class NetworkDrawing:
    """What a network run's sheet and report show besides its layer outputs, known before the first layer.

    ``pixels`` is the array the first layer read; ``maps`` each layer's ``(folder, channels)`` (a flat layer counts
    1); ``labels`` the model's class names; ``top`` how many classes the prediction shows; ``predicts`` whether the
    run goes to the network's end (no ``upto``), so that a 1-D last output is a prediction; ``report`` the report's
    plan (None: no report).
    """

    pixels: NDArray[np.floating]
    maps: tuple[tuple[str, int], ...]
    labels: tuple[str, ...] = ()
    top: int = 5
    predicts: bool = True
    report: ReportPlan | None = None


class LayerRows:
    """A network run's contact sheet (`featmap.io.writers.netsheet`): the input as the network saw it, then one
    row per layer output on ONE colormap and range per layer (``output.scale``), flat layers as bar charts,
    the ``output.channels`` strongest channels of a big layer, and the prediction; ``{stem}/sheet.png``.

    ``maps`` are the layers' ``(folder, channels)`` (a flat layer counts 1): the sheet's size is checked
    against `featmap.io.writers.netsheet.MAX_SHEET_PIXELS` here, before any work.
    """

    def __init__(
        self,
        image: LoadedImage,
        output: OutputOptions,
        maps: Sequence[tuple[str, int]],
        pixels: NDArray[np.floating] | None = None,
        labels: Sequence[str] = (),
    ) -> None:
        from featmap.io.writers.netsheet import check_sheet_size

        self.output = output
        self.image = image
        self.labels = tuple(labels)
        total = sum(channels for _, channels in maps)
        self.k = output.channels if output.channels is not None else (None if total <= MAX_SHEET_PANELS else 8)
        shown = [(channels if self.k is None else min(channels, self.k), channels == 1) for _, channels in maps]
        check_sheet_size(shown, output.sheet_width)
        info = image.info
        seen = image.pixels if pixels is None else pixels
        self.picture = shrink(seen, PICTURE_SIDE)
        self.input_caption = [
            f"as the network saw it: {shape_text(tuple(seen.shape))}",
            f"file {info.width}×{info.height} {info.mode}",
        ]
        how = output.picture_normalize.value
        if how == "percentile":
            how = f"percentiles {output.percentiles[0]:g}-{output.percentiles[1]:g}"
        rule = "one colormap and range per layer" if output.scale == "per-layer" else "one colormap per layer"
        rule += ", diverging maps centred at 0 (white), sequential only for layers with no negative value"
        self.title = [f"{Path(info.path).name}  {info.width}×{info.height} {info.format} {info.mode}"]
        self.title.append(f"colour: {rule}; range: {how}" + ("" if output.scale == "per-layer" else " per channel"))
        if self.k is not None and any(channels > self.k for _, channels in maps):
            self.title.append(
                f"channels: the {self.k} of highest mean activation per layer, strongest first "
                "(--channels K for more or fewer; every channel's PNG is written)"
            )
        from featmap.io.writers.netsheet import LayerPicture

        self.layers: list[LayerPicture] = []

    def add_layer(
        self, label: str, planes: NDArray[np.floating], shape: tuple[int, ...] | None = None, kind: str = ""
    ) -> None:
        """One row: a layer output ``(H, W, C)`` (a flat one as ``(1, N, 1)``)."""
        from featmap.io.display import layer_scale
        from featmap.io.writers.netsheet import LayerPicture, pick_channels

        out = self.output
        full = tuple(shape or planes.shape)
        flat = planes.shape[0] == 1 and planes.shape[2] == 1 and (len(full) == 1 or np.prod(full[:-1]) == 1)
        channels = [planes[:, :, ch] for ch in range(planes.shape[2])]
        scale = layer_scale(channels, out.picture_normalize, out.colormap, percentiles=out.percentiles, scale=out.scale)
        title = f"{label}  {kind}".strip()
        if flat:
            vector = np.asarray(planes.reshape(-1), dtype=np.float32)
            labels = self.labels if len(self.labels) == vector.size else ()
            self.layers.append(LayerPicture(title, full, scale, indices=(0,), total=1, flat=vector, labels=labels))
            return
        indices, means = pick_channels(planes, self.k)
        thumbs = tuple(shrink(planes[:, :, ch], 256)[:, :, 0] for ch in indices)
        selected = len(indices) < planes.shape[2]
        self.layers.append(
            LayerPicture(
                title,
                full,
                scale,
                thumbs,
                indices,
                tuple(float(means[i]) for i in indices),
                planes.shape[2],
                selected,
            )
        )

    def write(self, path: Path, top: Sequence[tuple[int, str, float]] = (), logits: Any = None) -> Path:
        """Draw and write the sheet; ``top`` (index, label, probability) adds the prediction row, ``logits`` the
        last layer's values (to say whether they were put through a softmax)."""
        from featmap.io.writers.netsheet import Prediction, draw_network_sheet

        prediction = None
        if top and self.layers:
            values = None if logits is None else np.asarray(logits, dtype=np.float64).ravel()
            softmax = values is None or not (np.all(values >= 0) and abs(values.sum() - 1) < 1e-6)
            size = self.layers[-1].shape[-1] if values is None else values.size
            name = self.layers[-1].title.split()[0]
            prediction = Prediction(tuple(top), name, int(size), softmax)
        pixels = draw_network_sheet(
            self.title, self.picture, self.input_caption, self.layers, prediction, width=self.output.sheet_width
        )
        encoded = encode_png(pixels, self.output.png_compress)
        return atomic_write(path, lambda fh: fh.write(encoded))


class NetworkPicturesWriter(Writer):
    """``--sheet`` and ``--report`` of a network run: one contact sheet (`LayerRows`) and/or one HTML report
    (`featmap.io.writers.netreport.NetworkReport`) per image, from the run's `NetworkDrawing` (`begin`) and its
    layer outputs (`add_layer`), written when the image is done. Their paths are the ``(sheet)`` and ``(report)``
    entries of the image's targets."""

    name = "netpictures"
    suffix = ".png"
    manifest_key = None
    per_map = False

    def __init__(self, options: OutputOptions) -> None:
        super().__init__(options)
        self.drawing: NetworkDrawing | None = None
        self.sheet: LayerRows | None = None
        self.report: NetworkReport | None = None
        self.last: NDArray[np.floating] | None = None

    def begin(self, image: LoadedImage, job: Any) -> None:
        """Take the run's `NetworkDrawing`; the sheet's size is checked here, before any layer runs."""
        if not isinstance(job, NetworkDrawing):
            raise TypeError("the network pictures writer begins with the run's NetworkDrawing")
        self.drawing = job
        if self.options.sheet:
            self.sheet = LayerRows(image, self.options, job.maps, job.pixels, job.labels)
        if self.options.report and job.report is not None:
            from featmap.io.writers.netreport import NetworkReport

            self.report = NetworkReport(job.report)

    def planned_paths(self, targets: Mapping[str, Path]) -> list[Path]:
        return [path for key, path in targets.items() if key in (SHEET_KEY, REPORT_KEY)]

    def add(self, target: Path, fmap: Map) -> None:
        raise TypeError("a network's sheet and report take whole layers (add_layer)")

    def add_layer(self, targets: Mapping[str, Path], layer: LayerMaps) -> list[Path | None]:
        """One sheet row and one report record from the layer's whole output; no file yet."""
        if layer.output is None:
            raise TypeError("a network layer brings its whole output")
        values, node = layer.output.values, layer.output.node
        if self.sheet is not None:
            self.sheet.add_layer(layer.folder, layer_planes(values), tuple(values.shape), node.plan.kind)
        if self.report is not None:
            self.report.add(layer.folder, values)
        self.last = values
        return [None for _ in layer.maps]

    def finish(self, targets: Mapping[str, Path]) -> tuple[Path, ...]:
        """The sheet, with the prediction when the last output is one, then the report."""
        drawing, last, done = self.drawing, self.last, []
        if drawing is None:
            return ()
        if self.sheet is not None:
            top: list[tuple[int, str, float]] = []
            if last is not None and last.ndim == 1 and drawing.predicts:
                top = top_classes(last, drawing.top, drawing.labels)
            done.append(self.sheet.write(targets[SHEET_KEY], top, last))
        if self.report is not None:
            done.append(self.report.write(targets[REPORT_KEY]))
        return tuple(done)
