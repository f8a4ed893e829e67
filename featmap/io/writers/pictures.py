"""What ``--sheet`` and ``--report`` need from one image's run, gathered as its maps go by.

`featmap.run.batch` writes maps one at a time and lets each go; `Pictures` keeps only a picture-sized copy
of each (block means to `PICTURE_SIDE`) and the colour scale taken on the full map, then draws the
contact sheet and the HTML report from them and the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from featmap.frozen import frozen_dataclass
from featmap.io.colormaps import AUTO, Colormap
from featmap.io.display import LAYER_SAMPLE_LIMIT, DisplayRange, layer_scale
from featmap.io.images import LoadedImage, atomic_write
from featmap.io.pngencode import encode_png
from featmap.io.writers import REPORT_KEY, SHEET_KEY, Writer
from featmap.io.writers.captions import BankRun, op_summary, shape_text
from featmap.io.writers.pixels import scale_for
from featmap.io.writers.sheet import Panel, SheetRow, build_sheet, shrink

if TYPE_CHECKING:
    from featmap.io.outputs import OutputOptions
    from featmap.net.records import Map, MapInfo

__all__ = [
    "PICTURE_SIDE",
    "REPORT_KEY",
    "SHEET_KEY",
    "DrawnMap",
    "Pictures",
    "PicturesWriter",
    "op_summary",
    "shape_text",
]

#: Maps are kept for the pictures at most this many pixels on a side.
PICTURE_SIDE = 512
#: The input's square on a sheet.
INPUT_SIDE = 384


@frozen_dataclass
class DrawnMap:
    """A map as the pictures show it: a small copy, its scale, its facts and weights."""

    info: MapInfo
    png: Path
    small: NDArray[np.float32]
    shown: DisplayRange
    colormap: Colormap | None
    weights: NDArray[np.float32] | None
    bias: float | None


class Pictures:
    """Collects one image's maps for its sheet and report, then writes them."""

    def __init__(self, image: LoadedImage, job: BankRun) -> None:
        self.image = image
        self.job = job
        self.maps: list[DrawnMap] = []
        self._kernels = {k.name: k for k in job.bank}
        self._samples: list[NDArray[np.float32] | None] = []

    def add(self, values: NDArray[np.floating], info: MapInfo, png: Path) -> None:
        """Keep a small copy of ``values``, an even sample of them for the layer's percentiles, and the scale
        the map alone would get; `finish_scales` then puts the kernel bank's maps on one scale."""
        out = self.job.output
        channels = values.shape[2] if values.ndim == 3 else 1
        wanted = (out.colormap or AUTO) if channels == 1 else None
        shown, colormap = scale_for(values, out.picture_normalize, wanted, out.percentiles)
        kernel = self._kernels.get(info.name) if not info.combined_from else None
        weights = None if kernel is None else np.asarray(kernel.weights, dtype=np.float32)
        if weights is not None and self.job.conv.flip:
            weights = np.ascontiguousarray(weights[..., ::-1, ::-1])
        bias = None if kernel is None else kernel.bias
        self.maps.append(DrawnMap(info, png, shrink(values, PICTURE_SIDE), shown, colormap, weights, bias))
        if channels == 1:
            limit = max(4096, LAYER_SAMPLE_LIMIT // max(1, len(self._kernels)))
            flat = values.reshape(-1)
            self._samples.append(np.array(flat[:: -(-flat.size // limit)], dtype=np.float32))
        else:
            self._samples.append(None)

    def finish_scales(self) -> None:
        """One colormap and range for the kernel bank's one-channel maps (``--scale per-layer``; each its own
        range with ``per-channel``); a combined map (magnitude, max) is a layer of its own."""
        out = self.job.output
        groups: dict[bool, list[int]] = {}
        for n, (m, sample) in enumerate(zip(self.maps, self._samples, strict=True)):
            if sample is not None:
                groups.setdefault(bool(m.info.combined_from), []).append(n)
        for members in groups.values():
            samples = [s for n in members if (s := self._samples[n]) is not None]
            scale = layer_scale(
                samples, out.picture_normalize, out.colormap or AUTO, percentiles=out.percentiles, scale=out.scale
            )
            for ch, n in enumerate(members):
                self.maps[n] = replace(self.maps[n], shown=scale.range_of(ch), colormap=scale.colormap)

    def title(self) -> list[str]:
        """The sheet's and report's header lines."""
        info = self.image.info
        colour = f"gray ({info.gray})" if info.channels == 1 else f"{info.channels} channels"
        return [f"{Path(info.path).name}  {info.width}×{info.height} {info.format} {info.mode} → {colour}"]

    def scale_line(self) -> str:
        """How the sheet's colours were chosen (after `finish_scales`)."""
        out = self.job.output
        how = out.picture_normalize.value
        if how == "percentile":
            how = f"percentiles {out.percentiles[0]:g}-{out.percentiles[1]:g}"
        rule = "one colormap and range for the kernels' maps" if out.scale == "per-layer" else "one range per map"
        return f"colour: {rule} ({how}); diverging maps centred at 0, sequential only for maps with no negative value"

    def sheet_rows(self) -> list[SheetRow]:
        """An input row, then one row for the kernel bank."""
        info = self.image.info
        shown_input = DisplayRange(0.0, 1.0, "input")
        input_panel = Panel(
            shrink(self.image.pixels, PICTURE_SIDE),
            shown_input,
            ("input", f"{shape_text((info.height, info.width, info.channels))}, values 0 to 1"),
            colour_bar=False,
            side=INPUT_SIDE,
        )
        panels = []
        for m in self.maps:
            facts = m.info
            name = facts.name if not facts.combined_from else f"{facts.name} of {len(facts.combined_from)} maps"
            scale = "gray" if m.colormap is None else m.colormap.name
            caption = (name, f"{shape_text(facts.shape)}  {scale}", m.shown.text())
            panels.append(Panel(m.small, m.shown, caption, m.colormap, m.weights))
        return [SheetRow("input", (input_panel,)), SheetRow(op_summary(self.job), tuple(panels))]

    def write(self, sheet: Path | None, report: Path | None) -> tuple[Path, ...]:
        """Write the sheet PNG and/or the report; the files written."""
        done = []
        self.finish_scales()
        if sheet is not None:
            drawn = build_sheet(
                [*self.title(), self.scale_line()], self.sheet_rows(), width=self.job.output.sheet_width
            )
            encoded = encode_png(drawn.pixels, self.job.output.png_compress)
            done.append(atomic_write(sheet, lambda fh: fh.write(encoded)))
        if report is not None:
            from featmap.io.writers.report import write_report

            done.append(write_report(report, self))
        return tuple(done)


class PicturesWriter(Writer):
    """``--sheet`` and ``--report``: one contact sheet and/or one HTML report per image, drawn when its last
    map is in. Their paths are the ``(sheet)`` and ``(report)`` entries of the image's targets."""

    name = "pictures"
    suffix = ".png"
    manifest_key = None
    per_map = False

    def __init__(self, options: OutputOptions) -> None:
        super().__init__(options)
        self.pictures: Pictures | None = None

    def begin(self, image: LoadedImage, job: Any) -> None:
        self.pictures = Pictures(image, job)

    def planned_paths(self, targets: Mapping[str, Path]) -> list[Path]:
        return [path for key, path in targets.items() if key in (SHEET_KEY, REPORT_KEY)]

    def add(self, target: Path, fmap: Map) -> None:
        from featmap.net.records import MapInfo

        if self.pictures is None:
            raise RuntimeError("PicturesWriter.begin must be called with the image before its maps")
        if not isinstance(fmap.info, MapInfo):
            raise TypeError("a network's sheet and report are drawn by layer (featmap.io.writers.netpictures)")
        self.pictures.add(fmap.values, fmap.info, target)

    def finish(self, targets: Mapping[str, Path]) -> tuple[Path, ...]:
        if self.pictures is None:
            return ()
        return self.pictures.write(targets.get(SHEET_KEY), targets.get(REPORT_KEY))
