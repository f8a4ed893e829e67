"""Rich views and dicts for `featmap apply`: one image's maps, and a batch's summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from featmap.net.layers import GlobalPool2d, Pool2d
from featmap.render.fit import FittedTable
from featmap.render.kernels import shape_text

if TYPE_CHECKING:  # annotations only: one image's table does not load the batch machinery
    from featmap.io.images import ImageInfo
    from featmap.run.batch import ApplyJob, BatchReport, ImageResult, WrittenMap
    from featmap.run.pipeline import MapInfo

__all__ = ["apply_dict", "apply_view", "batch_dict", "batch_view"]


def _pair(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}×{pair[1]}"


def _padding_text(info: MapInfo, job: ApplyJob) -> str:
    top, bottom, left, right = info.geometry.padding
    if not any(info.geometry.padding):
        return "0 (valid)"
    mode = job.conv.pad_mode.value
    if job.conv.pad_mode.value == "zeros" and job.conv.pad_value:
        mode = f"constant {job.conv.pad_value:g}"
    return f"{top},{bottom},{left},{right} {mode}"


def _pool_text(job: ApplyJob) -> str:
    pool = job.pool
    if isinstance(pool, Pool2d):
        return f"{pool.kind.value} {_pair(pool.size)}/s{_pair(pool.stride or pool.size)}"
    if isinstance(pool, GlobalPool2d):
        return f"global {pool.kind.value}"
    return "none"


def _num(value: float) -> str:
    return f"{value:.4g}"


def _path(path: Path | None, base: Path) -> str:
    if path is None:
        return ""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _says_range(job: ApplyJob) -> bool:
    """The table names each PNG's value range when it is not the plain min-max gray of before."""
    return job.output.colormap is not None or job.output.normalize.value == "percentile"


def _mapped_text(written: WrittenMap) -> str:
    if written.shown is None:
        return ""
    colormap = "gray" if written.colormap is None else written.colormap.split(":")[-1]
    return f"{written.shown.text()} {colormap}"


def input_header(info: ImageInfo, second_line: str) -> Text:
    """The view's first lines: the input file, its size, Pillow mode and the channels used, then ``second_line``."""
    colour = f"gray ({info.gray})" if info.channels == 1 else f"{info.channels} channels"
    return Text.assemble(
        (info.path, "bold"),
        f"  {info.width}×{info.height}  {info.format} mode {info.mode}  → {colour}\n",
        second_line,
    )


def apply_view(result: ImageResult, job: ApplyJob) -> RenderableType:
    """A header line about the input and a table with one row per map."""
    header = input_header(
        result.input,
        f"{'convolution (kernel flipped)' if job.conv.flip else 'cross-correlation'}, "
        f"activation {job.act.kind.value}, pool {_pool_text(job)}; maps written under {job.output.out_dir}",
    )
    out_dir = job.output.out_dir
    justify = {"kernel": "left", "pad t,b,l,r": "left", "mapped": "left", "file": "left"}
    columns = ["kernel", "size/stride", "pad t,b,l,r", "conv out", "pooled", "params", "min", "max", "mean", "mapped"]
    columns.append("file")
    if job.pool is None:
        columns.remove("pooled")
    if not _says_range(job):
        columns.remove("mapped")
    rows = []
    for written in result.maps:
        m = written.info
        name = m.name if not m.combined_from else f"{m.name} of {len(m.combined_from)} maps"
        geometry = f"{shape_text(m.kernel_size)} s{_pair(m.geometry.stride)}"
        if m.geometry.dilation != (1, 1):
            geometry += f" d{_pair(m.geometry.dilation)}"
        cells = {
            "kernel": name,
            "size/stride": geometry,
            "pad t,b,l,r": _padding_text(m, job),
            "conv out": shape_text(m.conv_shape),
            "pooled": shape_text(m.shape),
            "params": f"{m.params:,}" if not m.combined_from else "-",
            "min": _num(m.stats.min),
            "max": _num(m.stats.max),
            "mean": _num(m.stats.mean),
            "mapped": _mapped_text(written) if _says_range(job) else "",
            "file": _path(written.png, out_dir) + (f" + {written.raw.suffix[1:]}" if written.raw else ""),
        }
        rows.append(cells)

    def make(kept: Sequence[str]) -> Table:
        table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
        for column in kept:
            table.add_column(
                column,
                justify=justify.get(column, "right"),  # type: ignore[arg-type]
                no_wrap=column != "file",
                overflow="fold" if column in ("kernel", "file") else "ellipsis",
                min_width=12 if column == "file" else None,
            )
        for cells in rows:
            table.add_row(*(cells[column] for column in kept))
        return table

    # At 80 columns and below, the least telling columns go first (the header names the output folder).
    drop = ["file", "pad t,b,l,r", "params", "conv out", "mapped", "mean", "size/stride"]
    return Group(header, FittedTable(make, columns, drop))


def apply_dict(result: ImageResult, job: ApplyJob) -> dict[str, Any]:
    """The same facts as `apply_view`, as plain JSON-ready data."""
    maps = []
    for written in result.maps:
        m = written.info
        top, bottom, left, right = m.geometry.padding
        maps.append(
            {
                "name": m.name,
                "combined_from": list(m.combined_from),
                "kernel_size": list(m.kernel_size),
                "stride": list(m.geometry.stride),
                "dilation": list(m.geometry.dilation),
                "padding": {
                    "top": top,
                    "bottom": bottom,
                    "left": left,
                    "right": right,
                    "mode": job.conv.pad_mode.value,
                    "value": job.conv.pad_value,
                },
                "dropped": list(m.geometry.dropped_hw),
                "operation": "convolution" if job.conv.flip else "cross-correlation",
                "conv_shape": list(m.conv_shape),
                "pooled_shape": list(m.shape) if m.pooled else None,
                "params": m.params,
                "stats": asdict(m.stats),
                "png": str(written.png),
                "raw": None if written.raw is None else str(written.raw),
                "mapped": None
                if written.shown is None
                else {
                    "low": written.shown.low,
                    "high": written.shown.high,
                    "method": written.shown.method,
                    "absolute": written.shown.absolute,
                    "colormap": written.colormap,
                },
            }
        )
    info = result.input
    return {
        "input": {
            "path": info.path,
            "width": info.width,
            "height": info.height,
            "mode": info.mode,
            "format": info.format,
            "channels": info.channels,
            "gray": info.gray if info.channels == 1 else None,
        },
        "activation": job.act.kind.value,
        "pool": _pool_text(job),
        "options_hash": result.options_hash,
        "maps": maps,
        "warnings": list(result.warnings),
        "seconds": round(result.seconds, 4),
    }


def batch_view(report: BatchReport, problems: Sequence[tuple[str, str]], ignored: int, out_dir: Path) -> RenderableType:
    """The end-of-batch summary: counts, time, throughput, and every failure with its reason."""
    counts = Table(header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("processed", "skipped", "failed", "ignored", "time", "images/s"):
        counts.add_column(column, justify="right")
    counts.add_row(
        str(len(report.processed)),
        str(len(report.skipped)),
        str(len(report.failed) + len(problems)),
        str(ignored),
        f"{report.seconds:.1f} s",
        f"{report.images_per_second:.1f}",
    )
    status = "interrupted" if report.interrupted else "done"
    parts: list[RenderableType] = [
        Text(
            f"{status}: {report.total} images found; maps under {out_dir} "
            f"(manifest: {str(out_dir).rstrip('/')}/manifest.jsonl)"
        ),
        counts,
    ]
    if report.predictions:
        shown = ", ".join(f"{label} × {count}" for label, count in report.predictions[:20])
        more = len(report.predictions) - 20
        where = f" (every image: {report.predictions_file})" if report.predictions_file else ""
        parts.append(Text(f"predicted: {shown}" + (f", … {more} more classes" if more > 0 else "") + where))
    if report.failed or problems:
        failures = Table(title="failed", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
        failures.add_column("file", no_wrap=True)
        failures.add_column("reason", overflow="fold")
        for path, reason in [*problems, *report.failed]:
            failures.add_row(path, reason)
        parts.append(failures)
    return Group(*parts)


def _image_outputs(result: Any) -> dict[str, Any]:
    """A processed image's outputs: its maps (kernels), or its layers and top classes (a network)."""
    layers = getattr(result, "layers", None)
    if layers is None:
        return {"maps": [{"name": m.info.name, "png": str(m.png), "shape": list(m.info.shape)} for m in result.maps]}
    return {
        "layers": [
            {"path": la.path, "name": la.name, "shape": list(la.shape), "files": [str(f) for f in la.files]}
            for la in layers
        ],
        "top": [{"index": i, "label": label, "probability": p} for i, label, p in result.top],
    }


def batch_dict(report: BatchReport, problems: Sequence[tuple[str, str]], ignored: int) -> dict[str, Any]:
    """The batch outcome as JSON-ready data (per processed image: its maps' files, shapes and stats)."""
    return {
        "total": report.total,
        "processed": [
            {
                "input": r.input.path,
                "seconds": round(r.seconds, 4),
                **_image_outputs(r),
                "warnings": list(r.warnings),
            }
            for r in report.processed
        ],
        "skipped": list(report.skipped),
        "failed": [{"input": p, "reason": why} for p, why in [*problems, *report.failed]],
        "ignored": ignored,
        "seconds": round(report.seconds, 3),
        "images_per_second": round(report.images_per_second, 2),
        "interrupted": report.interrupted,
        **(
            {
                "predictions": [{"label": label, "images": count} for label, count in report.predictions],
                "predictions_file": str(report.predictions_file),
            }
            if report.predictions
            else {}
        ),
    }
