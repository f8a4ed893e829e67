"""What ``--sheet`` and ``--report`` need from one image's run, gathered as its maps go by.

`featmap.run.batch` writes maps one at a time and lets each go; `Pictures` keeps only a picture-sized copy
of each (block means to `PICTURE_SIDE`) and the colour scale taken on the full map, then draws the
contact sheet and the HTML report from them and the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import SpecError
from featmap.io.colormaps import AUTO, Colormap
from featmap.io.display import DisplayRange
from featmap.io.images import LoadedImage, atomic_write
from featmap.io.pngencode import encode_png
from featmap.io.writers import Writer
from featmap.io.writers.captions import BankRun, op_summary, shape_text
from featmap.io.writers.pixels import scale_for
from featmap.io.writers.sheet import MAX_SHEET_PANELS, Panel, SheetRow, build_sheet, shrink

if TYPE_CHECKING:
    from featmap.io.outputs import OutputOptions
    from featmap.net.records import FeatureMap, MapInfo

__all__ = [
    "PICTURE_SIDE",
    "REPORT_KEY",
    "SHEET_KEY",
    "DrawnMap",
    "LayerRows",
    "Pictures",
    "PicturesWriter",
    "op_summary",
    "shape_text",
]

#: Maps are kept for the pictures at most this many pixels on a side.
PICTURE_SIDE = 512
#: The input's square on a sheet.
INPUT_SIDE = 384


@dataclass(frozen=True)
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

    def add(self, values: NDArray[np.floating], info: MapInfo, png: Path) -> None:
        """Keep a small copy of ``values`` and the scale it is drawn with: the PNG's colormap, or ``auto`` when
        the PNGs are gray (a sheet shows signed maps on a diverging scale)."""
        out = self.job.output
        channels = values.shape[2] if values.ndim == 3 else 1
        wanted = (out.colormap or AUTO) if channels == 1 else None
        shown, colormap = scale_for(values, out.normalize, wanted, out.percentiles)
        kernel = self._kernels.get(info.name) if not info.combined_from else None
        weights = None if kernel is None else np.asarray(kernel.weights, dtype=np.float32)
        if weights is not None and self.job.conv.flip:
            weights = np.ascontiguousarray(weights[..., ::-1, ::-1])
        bias = None if kernel is None else kernel.bias
        self.maps.append(DrawnMap(info, png, shrink(values, PICTURE_SIDE), shown, colormap, weights, bias))

    def title(self) -> list[str]:
        """The sheet's and report's header lines."""
        info = self.image.info
        colour = "gray (BT.601 luma)" if info.channels == 1 else f"{info.channels} channels"
        return [f"{Path(info.path).name}  {info.width}×{info.height} {info.format} {info.mode} → {colour}"]

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
        if sheet is not None:
            drawn = build_sheet(self.title(), self.sheet_rows())
            encoded = encode_png(drawn.pixels, self.job.output.png_compress)
            done.append(atomic_write(sheet, lambda fh: fh.write(encoded)))
        if report is not None:
            from featmap.io.writers.report import write_report

            done.append(write_report(report, self))
        return tuple(done)


class LayerRows:
    """A network run's contact sheet: the input, then one row per layer output, each channel a panel (drawn
    with the PNGs' colormap, or ``auto``), written as ``{stem}/sheet.png``."""

    def __init__(self, image: LoadedImage, output: OutputOptions, channels: int) -> None:
        if channels + 1 > MAX_SHEET_PANELS:
            raise SpecError(
                "`sheet`",
                f"{channels} layer channels exceed the limit of {MAX_SHEET_PANELS - 1} maps per sheet",
                "stop earlier with --upto, or drop `sheet`",
            )
        self.output = output
        self.image = image
        info = image.info
        self.title = [f"{Path(info.path).name}  {info.width}×{info.height} {info.format} {info.mode}"]
        picture = shrink(image.pixels, PICTURE_SIDE)
        caption = ("input", f"{shape_text((info.height, info.width, info.channels))}, values 0 to 1")
        panel = Panel(picture, DisplayRange(0.0, 1.0, "input"), caption, colour_bar=False, side=INPUT_SIDE)
        self.rows = [SheetRow("input", (panel,))]

    def add_layer(self, label: str, planes: NDArray[np.floating], shape: tuple[int, ...] | None = None) -> None:
        """One row: each channel of a layer output ``(H, W, C)``."""
        out = self.output
        panels = []
        for ch in range(planes.shape[2]):
            values = planes[:, :, ch : ch + 1]
            shown, colormap = scale_for(values, out.normalize, out.colormap or AUTO, out.percentiles)
            scale = "gray" if colormap is None else colormap.name
            caption = (f"{ch:03d}", f"{shape_text(values.shape[:2])}  {scale}", shown.text())
            panels.append(Panel(shrink(values, PICTURE_SIDE), shown, caption, colormap))
        self.rows.append(SheetRow(f"{label}  {shape_text(shape or planes.shape)}", tuple(panels)))

    def write(self, path: Path) -> Path:
        drawn = build_sheet(self.title, self.rows)
        encoded = encode_png(drawn.pixels, self.output.png_compress)
        return atomic_write(path, lambda fh: fh.write(encoded))


#: The keys of an image's targets (`featmap.run.batch.targets_for`) naming its sheet and its report.
SHEET_KEY, REPORT_KEY = "(sheet)", "(report)"


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

    def add(self, target: Path, fmap: FeatureMap) -> None:
        if self.pictures is None:
            raise RuntimeError("PicturesWriter.begin must be called with the image before its maps")
        self.pictures.add(fmap.values, fmap.info, target)

    def finish(self, targets: Mapping[str, Path]) -> tuple[Path, ...]:
        if self.pictures is None:
            return ()
        return self.pictures.write(targets.get(SHEET_KEY), targets.get(REPORT_KEY))
