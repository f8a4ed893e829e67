"""The HTML report: one self-contained page per image (pictures as ``data:`` URIs, no network), and an
index page for a batch.

The page shows the run's facts, the per-map table, the input, the kernels and the maps (each map read from its
`featmap.net.records.LayerRecord`, `kernel_records`: the record the network report reads for a layer); hovering or
tapping a map pixel outlines its receptive window on the input (stride, padding, dilation; padded cells
marked) and lists the window's values, the weights, the products, the sum, the bias, the activation and
the pooling step that give the pixel's value. Its script (``report_template.html``, shipped with the
package) recomputes that arithmetic in float64 from the very arrays the pipeline used: the input's
float32 values (its 8- or 16-bit samples when they give those floats exactly, as they do for an 8-bit
gray image) and the float32 weights, so the value shown is the ``.npy``'s to float32 precision.

Pictures are downscaled (maps to `MAP_PICTURE_SIDE`, the input to `INPUT_PICTURE_SIDE`); the numbers
are not. The input array is stored losslessly: each row minus the one above (as PNG's Up filter), bytes
split into planes, deflated; the page inflates it with the browser's own ``DecompressionStream``.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import asdict
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from featmap.core.geometry import pool_geometry
from featmap.errors import FeatmapError, OutputExistsError
from featmap.io.images import GRAY_BT601, LUMA_BT601, LoadedImage, atomic_write, load_image
from featmap.io.pngencode import encode_png
from featmap.io.writers.captions import op_summary
from featmap.io.writers.png import quantize
from featmap.io.writers.sheet import shrink
from featmap.net.layers import GlobalPool2d, LayerPlan, Pool2d
from featmap.net.records import LayerRecord

if TYPE_CHECKING:
    from featmap.io.writers.pictures import DrawnMap, Pictures

__all__ = [
    "GENERATOR",
    "INPUT_PICTURE_SIDE",
    "MAP_PICTURE_SIDE",
    "encode_samples",
    "index_page",
    "kernel_records",
    "render_html",
    "write_index",
    "write_report",
]

MAP_PICTURE_SIDE = 256
INPUT_PICTURE_SIDE = 512
#: Marks pages featmap wrote, so a re-run may replace its own index page and nothing else.
GENERATOR = '<meta name="generator" content="featmap report">'
_TEMPLATE = "report_template.html"


@cache
def _template() -> str:
    return resources.files(__package__).joinpath(_TEMPLATE).read_text(encoding="utf-8")


def _data_uri(pixels: NDArray[np.unsignedinteger]) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(pixels)).decode("ascii")


def _deflate(data: bytes) -> bytes:
    from featmap.io.pngencode import isal_zlib

    fast = isal_zlib()
    if fast is not None:
        return bytes(fast.compress(data, 3))
    import zlib

    return zlib.compress(data, 6)


def encode_samples(pixels: NDArray[np.float32]) -> dict[str, Any]:
    """The input array, losslessly: as 8- or 16-bit samples when ``q · float32(1/255)`` (or 1/65535) gives back
    every float32 exactly, else as the float32 bit patterns. Rows are differenced (mod 2^bits), the bytes
    split into planes and deflated; ``{"kind", "h", "w", "c", "data"}`` with base64 ``data``.

    Examples
    --------
    >>> enc = encode_samples(np.array([[[0.0], [1.0]]], np.float32))
    >>> enc["kind"], enc["h"], enc["w"], enc["c"]
    ('u8', 1, 2, 1)
    """
    arr = np.ascontiguousarray(pixels, dtype=np.float32)
    h, w, c = arr.shape
    samples: NDArray[Any] | None = None
    kind = "f32"
    for name, top, dtype in (("u8", 255, np.uint8), ("u16", 65535, np.uint16)):
        levels = np.rint(np.clip(arr, 0.0, 1.0) * top)
        if np.array_equal(np.multiply(levels, np.float32(1 / top), dtype=np.float32), arr):
            samples, kind = levels.astype(dtype), name
            break
    if samples is None:
        samples = arr.view(np.uint32)
    rows = samples.reshape(h, w * c)
    diff = rows.copy()
    np.subtract(rows[1:], rows[:-1], out=diff[1:])  # wraps modulo 2^bits, as the page's typed arrays do
    planes = diff.view(np.uint8).reshape(-1, diff.itemsize).T  # little-endian bytes, plane by plane
    data = _deflate(np.ascontiguousarray(planes).tobytes())
    return {"kind": kind, "h": h, "w": w, "c": c, "data": base64.b64encode(data).decode("ascii")}


def luma_bits(rgb: NDArray[np.float32]) -> NDArray[np.float32]:
    """BT.601 luma as the page computes it: float32 products, summed left to right, each step rounded to float32."""
    weights = np.asarray(LUMA_BT601, dtype=np.float32)
    partial: NDArray[np.float32] = np.multiply(rgb[:, :, 0], weights[0], dtype=np.float32)
    partial += np.multiply(rgb[:, :, 1], weights[1], dtype=np.float32)
    partial += np.multiply(rgb[:, :, 2], weights[2], dtype=np.float32)
    return partial


def encode_input(pixels: NDArray[np.float32], rgb: NDArray[np.float32] | None = None) -> dict[str, Any]:
    """`encode_samples` of the input, or for gray made from 8-bit RGB (``rgb``, as loaded with ``color=True``) the
    RGB samples plus a per-pixel correction (in float32 units in the last place, -128..127) from `luma_bits` to
    featmap's luma: about 40 % smaller than the float32 bits of a photo. Falls back to `encode_samples` when the
    correction would not fit."""
    if rgb is None or pixels.shape[2] != 1 or rgb.shape[:2] != pixels.shape[:2] or rgb.shape[2] != 3:
        return encode_samples(pixels)
    samples = encode_samples(rgb)
    difference = pixels[:, :, 0].view(np.int32).astype(np.int64) - luma_bits(rgb).view(np.int32).astype(np.int64)
    if samples["kind"] != "u8" or difference.min() < -128 or difference.max() > 127:
        return encode_samples(pixels)
    correction = base64.b64encode(_deflate(difference.astype(np.int8).tobytes())).decode("ascii")
    h, w = pixels.shape[:2]
    return {
        "kind": "luma8",
        "h": h,
        "w": w,
        "c": 1,
        "rgb": samples,
        "weights": list(LUMA_BT601),
        "correction": correction,
    }


def _picture(values: NDArray[np.floating], m: DrawnMap) -> str:
    from featmap.io.writers.sheet import _colour

    small = shrink(values, MAP_PICTURE_SIDE)
    return _data_uri(np.ascontiguousarray(_colour(small, m.shown, m.colormap)))


def _bar(m: DrawnMap) -> str:
    from featmap.io.writers.sheet import _colour

    ramp = np.linspace(m.shown.low, m.shown.high, 256, dtype=np.float64)
    strip = (np.abs(ramp) if m.shown.absolute else ramp).astype(np.float32).reshape(1, 256, 1)
    channels = m.small.shape[2]
    if channels == 3 and m.colormap is None:  # an RGB map: one ramp per channel, red over green over blue
        levels = _colour(strip, m.shown, None)[0, :, 0]  # the gray ramp's 8-bit levels
        rows = np.zeros((3, 256, 3), np.uint8)
        for k in range(3):
            rows[k, :, k] = levels
        return _data_uri(np.ascontiguousarray(np.repeat(rows, 4, axis=0)))
    if channels > 1 and m.colormap is None:
        strip = np.repeat(strip, channels, axis=2)
    return _data_uri(np.ascontiguousarray(np.repeat(_colour(strip, m.shown, m.colormap), 12, axis=0)))


def _weights_picture(weights: NDArray[np.floating] | None) -> str | None:
    from PIL import Image, ImageDraw

    from featmap.io.writers.sheet import _draw_weights, _weights_size

    if weights is None:
        return None
    width, height = _weights_size(weights)
    canvas = Image.new("RGB", (width + 2, height + 2), (255, 255, 255))
    _draw_weights(canvas, ImageDraw.Draw(canvas), weights, 1, 1)
    return _data_uri(np.asarray(canvas))


def _pool_data(pictures: Pictures, conv_hw: tuple[int, int]) -> dict[str, Any] | None:
    pool = pictures.job.pool
    if isinstance(pool, GlobalPool2d):
        return {"kind": pool.kind.value, "global": True}
    if not isinstance(pool, Pool2d):
        return None
    geometry = pool_geometry(conv_hw, pool.size, stride=pool.stride, padding=pool.padding, ceil_mode=pool.ceil_mode)
    declared = pool_geometry(conv_hw, pool.size, stride=pool.stride, padding=pool.padding)
    return {
        "kind": pool.kind.value,
        "global": False,
        "size": list(geometry.kernel_hw),
        "stride": list(geometry.stride),
        "pad": list(geometry.padding),
        "declared": list(declared.padding),
        "count_include_pad": pool.count_include_pad,
    }


def kernel_records(pictures: Pictures, out_dir: Path) -> list[LayerRecord]:
    """The kernel page's layers: each map of the bank (then the combined map) as the `LayerRecord` the network
    report reads, a channel of the one-layer network the bank is: its conv planned on the input (a combined map:
    the merge of the maps it names), its weights and bias, the map's pictures and statistics; the activation and
    pooling go with each record (``shape``: the map as written)."""
    job = pictures.job
    conv = job.conv
    in_shape = tuple(pictures.image.pixels.shape)
    names = [d.info.name for d in pictures.maps]
    records = []
    for index, m in enumerate(pictures.maps, start=1):
        info = m.info
        merged = bool(info.combined_from)
        plan = LayerPlan(
            "Conv2d" if not merged or job.combine is None else job.combine.value,
            info.name,
            info.conv_shape if merged else in_shape,
            info.conv_shape,
            params=info.params,
            geometry=info.geometry,
            field="keep" if merged else "window",
            kernel=info.kernel_size,
        )
        op = {"type": "merge" if merged else "conv", "pad_mode": conv.pad_mode.value, "pad_value": conv.pad_value}
        sources = tuple(names.index(n) + 1 for n in info.combined_from) or (0,)
        try:
            png = m.png.relative_to(out_dir).as_posix()
        except ValueError:
            png = m.png.as_posix()
        pictured = {
            "mapped": m.shown.text(),
            "colormap": "gray" if m.colormap is None else m.colormap.name,
            "colormap_source": None if m.colormap is None else m.colormap.qualified,
            "picture": _picture(m.small, m),
            "bar": _bar(m),
            "low": m.shown.low,
            "high": m.shown.high,
            "png": png,
        }
        records.append(
            LayerRecord(
                index,
                info.name,
                str(index - 1),
                info.name,
                plan,
                {**op, "flip": conv.flip, "bias": m.bias},
                sources,
                {} if m.weights is None else {"weight": m.weights},
                thumbs=pictured,
                stats=asdict(info.stats),
                shape=info.shape,
            )
        )
    return records


def _map_data(record: LayerRecord) -> dict[str, Any]:
    """One map of the kernel page from its `LayerRecord`."""
    plan, pictured = record.plan, record.thumbs
    weights = record.weights.get("weight")
    return {
        "index": record.index - 1,
        "name": record.name,
        "kernel_size": list(plan.kernel or ()),
        "weights": None if weights is None else weights.tolist(),
        "weights_picture": _weights_picture(weights),
        "bias": record.op.get("bias"),
        "combined_from": [source - 1 for source in record.sources if source > 0],
        "conv_shape": list(plan.out_shape),
        "shape": list(record.shape or plan.out_shape),
        "params": plan.params,
        "stats": dict(record.stats),
        **{key: pictured[key] for key in ("mapped", "colormap", "colormap_source", "picture", "bar", "low", "high")},
        "png": pictured["png"],
        "pad": [0, 0, 0, 0] if plan.geometry is None else list(plan.geometry.padding),
    }


def _source_rgb(image: LoadedImage) -> NDArray[np.float32] | None:
    """The RGB an 8-bit RGB image's gray was computed from (decoded again: the pipeline kept only the luma); None
    for a JPEG's luma plane, which is 8-bit samples of its own."""
    if image.info.channels != 1 or image.info.mode != "RGB" or image.info.gray != GRAY_BT601:
        return None
    try:
        return load_image(image.info.path, color=True).pixels
    except FeatmapError:
        return None


def report_data(pictures: Pictures, out_dir: Path) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    job = pictures.job
    image = pictures.image
    info = image.info
    records = kernel_records(pictures, out_dir)
    first = records[0].plan.geometry if records else None
    conv_hw = (records[0].plan.out_shape[0], records[0].plan.out_shape[1]) if records else (info.height, info.width)
    picture = shrink(image.pixels, INPUT_PICTURE_SIDE)
    levels = quantize(np.clip(picture, 0.0, 1.0), 8)
    levels = levels[:, :, 0] if levels.shape[2] == 1 else levels[:, :, :3]
    act_params = dict(job.act.params)
    return {
        "title": pictures.title()[0],
        "facts": [
            ["input", f"{info.shown} ({info.width}×{info.height}, {info.format} mode {info.mode})"],
            ["channels used", f"gray ({info.gray})" if info.channels == 1 else f"{info.channels} (RGB)"],
            ["operation", op_summary(job)],
            ["kernels", ", ".join(k.name for k in job.bank)],
            ["maps", f"{len(records)} written; their paths below are relative to the output folder"],
        ],
        "input": {
            **encode_input(image.pixels, _source_rgb(image)),
            "picture": _data_uri(np.ascontiguousarray(levels)),
            "picture_hw": list(levels.shape[:2]),
        },
        "conv": {
            "stride": list(first.stride) if first else [1, 1],
            "dilation": list(first.dilation) if first else [1, 1],
            "mode": job.conv.pad_mode.value,
            "value": job.conv.pad_value,
            "flip": job.conv.flip,
        },
        "act": {"kind": job.act.kind.value, "slope": float(act_params.get("slope", 0.01))},
        "pool": _pool_data(pictures, conv_hw),
        "combine": None if job.combine is None else job.combine.value,
        "maps": [_map_data(record) for record in records],
    }


def render_html(data: dict[str, Any]) -> str:
    """The page: the template with the data as JSON, every ``<`` written ``\\u003c`` (it occurs only in strings): no
    string can end the script (``</script>``) or start HTML's script escape states (``<!--`` then ``<script``, after
    which ``</script>`` no longer ends it)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    page = _template()
    return page.replace("{{TITLE}}", html.escape(str(data["title"]))).replace("{{DATA}}", text)


def write_report(path: Path, pictures: Pictures) -> Path:
    """Write one image's report atomically."""
    page = render_html(report_data(pictures, path.parent))
    encoded = page.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(encoded))


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_uri()


def write_index(out_dir: Path, inputs: Sequence[str], reports: Sequence[Path]) -> Path:
    """``report.html`` in ``out_dir`` linking each image's report (paths relative to ``out_dir``).

    Refuses to replace a ``report.html`` that featmap did not write.
    """
    target = Path(out_dir) / "report.html"
    if target.is_file() and GENERATOR not in target.read_text(encoding="utf-8", errors="replace")[:4096]:
        raise OutputExistsError(str(target), "exists and is not a featmap report", "choose another -o folder")
    encoded = index_page(out_dir, inputs, reports)
    return atomic_write(target, lambda fh: fh.write(encoded))


def index_page(out_dir: Path, inputs: Sequence[str], reports: Sequence[Path]) -> bytes:
    """The bytes of `write_index`'s page (a remote output folder puts them whole)."""
    target = Path(out_dir) / "report.html"
    items = "\n".join(
        f'<li><a href="{html.escape(_relative(report, target.parent), quote=True)}">'
        f'{html.escape(Path(source).name)}</a> <span class="path">{html.escape(source)}</span></li>'
        for source, report in zip(inputs, reports, strict=True)
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{GENERATOR}
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>featmap reports ({len(reports)} images)</title>
<style>body{{font:15px system-ui,sans-serif;margin:2em;color:#222}} li{{margin:.3em 0}}
.path{{color:#888;font-size:13px}}</style>
</head><body><h1>featmap reports</h1><p>{len(reports)} images; each link opens that image's report.</p>
<ol>
{items}
</ol></body></html>
"""
    return page.encode("utf-8")
