"""The HTML report of a network run: the kernel report's page (``report_template.html``) grown to a whole
layer stack, built from neutral per-layer records (`featmap.net.records.LayerRecord`, as the kernel page is) so
that a kernel bank (a one-layer network) and a spec, preset or ONNX graph give the same page.

The page shows the input as the network saw it, every layer's channels as thumbnails on one scale and
colormap per layer (diverging about 0 for a layer with negative values, sequential from 0 otherwise), each
layer's shape, parameters and formula, and the prediction (logits → softmax, top-k bars with the model's
labels). Selecting a unit recomputes its value in the page from the float32 tensors featmap used (the layer's
input and weights, embedded losslessly), so it equals the ``.npy`` to float32 precision.

Thumbnails are colormap indices (one byte a value, at most `THUMB_SIDE` on a side), deflated; exact tensors are
float32 bytes split into planes and deflated. Which layers' tensors are embedded is chosen before the run
(`choose_exact`) so that the page keeps to the report size limit (`featmap.limits.REPORT_SIZE`); the page is
measured again before it is written and refused with the limit if it is over.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.frozen import frozen_dataclass
from featmap.io.colormaps import DIVERGING_DEFAULT, SEQUENTIAL_DEFAULT, get_colormap
from featmap.io.display import layer_scale
from featmap.io.images import atomic_write
from featmap.io.writers.report import _data_uri, _deflate, _template, render_html
from featmap.io.writers.sheet import shrink
from featmap.limits import REPORT_SIZE
from featmap.net.records import LayerRecord

__all__ = [
    "THUMB_SIDE",
    "LayerRecord",
    "NetworkPage",
    "NetworkReport",
    "ReportPlan",
    "choose_exact",
    "encode_f32",
    "estimate_thumbs",
    "network_page_data",
    "write_network_report",
]

#: Thumbnails are downscaled (block means) so that neither side exceeds this.
THUMB_SIDE = 64
#: Channels drawn per layer when the page opens; the rest on request.
FIRST_CHANNELS = 16
_OVERHEAD = 40_000  # facts, per-layer text and the colormaps, besides the template
_BASE64 = 4 / 3


@frozen_dataclass
class NetworkPage:
    """Everything about a network report besides its layers."""

    title: str
    facts: Sequence[tuple[str, str]]
    input: NDArray[np.floating]
    input_note: str
    labels: Sequence[str] = ()
    top: int = 5
    layout: str = "torch"
    notes: Sequence[str] = ()


@frozen_dataclass
class ReportPlan:
    """A network report as the run plans it before the first layer (`featmap.run.netreport.report_plan`): the
    page's facts, and each output's record in run order without its pictures (its plan, what it computes, the
    outputs it reads, its weights when the page recomputes it: ``exact``); ``kept`` the outputs (0: the input)
    whose values the page embeds."""

    page: NetworkPage
    layers: tuple[LayerRecord, ...]
    kept: frozenset[int]


class NetworkReport:
    """One image's network report, collected as its layer outputs go by: `add` each output's values, then
    `write`."""

    def __init__(self, plan: ReportPlan) -> None:
        self.plan = plan
        self.records: list[LayerRecord] = []
        self._last: NDArray[np.floating] | None = None

    def add(self, folder: str, values: NDArray[np.floating]) -> None:
        """The next output's record: its thumbnails and statistics always, its values when the page embeds them."""
        planned = self.plan.layers[len(self.records)]
        thumbs, stats = thumbnails(values)
        self._last = values
        output = np.asarray(values, np.float32) if planned.index in self.plan.kept else None
        self.records.append(replace(planned, folder=folder, output=output, thumbs=thumbs, stats=stats))

    def write(self, path: Path) -> Path:
        """Write the page (the last output is always embedded: an ``upto`` run may stop before the planned end)."""
        if self.records and self.records[-1].output is None and self._last is not None:
            self.records[-1] = replace(self.records[-1], output=np.asarray(self._last, np.float32))
        return write_network_report(path, self.plan.page, self.records)


def encode_f32(values: NDArray[np.floating]) -> dict[str, Any]:
    """A float32 array losslessly: its bytes split into 4 planes (so that exponents sit together), deflated,
    base64; ``{"shape", "data"}``.

    Examples
    --------
    >>> encode_f32(np.zeros((2, 3), np.float32))["shape"]
    [2, 3]
    """
    arr = np.ascontiguousarray(values, dtype="<f4")
    planes = arr.reshape(-1).view(np.uint8).reshape(-1, 4).T
    data = _deflate(np.ascontiguousarray(planes).tobytes())
    return {"shape": list(arr.shape), "data": base64.b64encode(data).decode("ascii")}


def thumbnails(values: NDArray[np.floating]) -> tuple[dict[str, Any], dict[str, float]]:
    """A layer's channels as colormap indices on the layer's one range (`layer_range`), downscaled to
    `THUMB_SIDE`: ``{"h", "w", "c", "flat", "data", "low", "high", "cmap", "method"}``, and its statistics."""
    arr = np.asarray(values, dtype=np.float32)
    flat = arr.ndim == 1 or (arr.ndim == 3 and arr.shape[0] * arr.shape[1] == 1)
    planes = arr.reshape(1, -1, 1) if flat else (arr[:, np.newaxis, :] if arr.ndim == 2 else arr)
    low, high = float(arr.min()), float(arr.max())
    scale = layer_scale([arr], "minmax")  # the layer's one range: -m..m (diverging) or 0..max (sequential)
    shown = scale.ranges[0]
    small = planes if flat else shrink(planes, THUMB_SIDE)
    t = shown.positions(small)
    index = np.minimum(np.floor(t * 256), 255).astype(np.uint8)
    order = np.ascontiguousarray(np.moveaxis(index, 2, 0))  # channel by channel
    cmap = DIVERGING_DEFAULT if scale.colormap.diverging else SEQUENTIAL_DEFAULT
    thumbs = {
        "h": int(small.shape[0]),
        "w": int(small.shape[1]),
        "c": int(small.shape[2]),
        "flat": flat,
        "data": base64.b64encode(_deflate(order.tobytes())).decode("ascii"),
        "low": shown.low,
        "high": shown.high,
        "cmap": cmap,
        "method": shown.method,
    }
    stats = {"min": low, "max": high, "mean": float(arr.mean(dtype=np.float64))}
    return thumbs, stats


def estimate_thumbs(shape: Sequence[int]) -> int:
    """Bytes a layer's thumbnails can take in the page (uncompressed, base64)."""
    if len(shape) == 1 or (len(shape) == 3 and shape[0] * shape[1] == 1):
        return int(math.prod(shape) * _BASE64)
    h, w = shape[0], shape[1] if len(shape) == 3 else 1
    factor = max(1, -(-max(h, w) // THUMB_SIDE))
    return int(max(1, h // factor) * max(1, w // factor) * shape[-1] * _BASE64)


def choose_exact(
    layers: Sequence[tuple[Sequence[int], Sequence[Sequence[int]], tuple[int, ...]]],
    input_shape: Sequence[int],
    budget: int | None = None,
) -> tuple[set[int], set[int]]:
    """Which layers' arithmetic the page can recompute within ``budget`` bytes (the report size limit): layers
    ``(out_shape, weight_shapes, sources)`` in run order, each needing its weights and its sources' outputs; taken
    in order while they fit, the last layer (the prediction) always. Returns the layers explained and the outputs
    (0: the input) to embed."""
    limit = REPORT_SIZE.value() if budget is None else budget
    shapes = [tuple(input_shape)] + [tuple(out) for out, _, _ in layers]
    used: float = _OVERHEAD + len(_template()) + sum(estimate_thumbs(out) for out, _, _ in layers)
    used += 4 * (math.prod(input_shape) + math.prod(shapes[-1])) * _BASE64
    if budget is None:  # the page without any arithmetic must fit, or nothing is run
        REPORT_SIZE.check(int(used), "report page (thumbnails, input and prediction, estimated before the run)")
    explained: set[int] = set()
    outputs: set[int] = {len(layers)} if layers else set()
    for i, (out, weights, sources) in enumerate(layers, start=1):
        need = sum(math.prod(s) for s in weights) + sum(math.prod(shapes[s]) for s in sources if s not in outputs)
        cost = 4 * need * _BASE64 + (0 if i in outputs else 4 * math.prod(out) * _BASE64)
        if used + cost > limit:
            break
        used += cost
        explained.add(i)
        outputs.update((i, *sources))
    return explained, outputs


def _layer_data(record: LayerRecord, tensors: dict[str, Any]) -> dict[str, Any]:
    plan = record.plan
    g = plan.geometry
    weights: dict[str, str] = {}
    if record.exact:
        for name, tensor in record.weights.items():
            key = f"w{record.index}.{name}"
            tensors[key] = encode_f32(tensor)
            weights[name] = key
    if record.output is not None:
        tensors[f"y{record.index}"] = encode_f32(record.output)
    return {
        "i": record.index,
        "name": record.name,
        "path": record.path,
        "folder": record.folder,
        "kind": plan.kind,
        "in_shape": list(plan.in_shape),
        "shape": list(plan.out_shape),
        "params": plan.params,
        "macs": plan.macs,
        "detail": plan.detail,
        "explain": list(plan.explain),
        "field": plan.field,
        "geometry": None
        if g is None
        else {
            "kernel": list(g.kernel_hw),
            "stride": list(g.stride),
            "dilation": list(g.dilation),
            "pad": list(g.padding),
        },
        "groups": plan.groups,
        "op": dict(record.op),
        "sources": list(record.sources),
        "exact": record.exact,
        "has_output": record.output is not None,
        "weights": weights,
        "thumbs": dict(record.thumbs),
        "stats": dict(record.stats),
    }


def _input_picture(x: NDArray[np.floating]) -> tuple[str, str]:
    """The input as a picture (gray or RGB; min-max when its values leave [0, 1]) and what it maps."""
    arr = np.asarray(x, dtype=np.float32)
    arr = arr[:, :, np.newaxis] if arr.ndim == 2 else arr
    low, high = float(arr.min()), float(arr.max())
    if low >= 0 and high <= 1:
        shown, text = arr, "values 0..1 as they are"
    else:
        span = high - low if high > low else 1.0
        shown, text = (arr - low) / span, f"{low:.4g}..{high:.4g} stretched to black..white"
    small = shrink(shown, 256)
    levels = np.rint(np.clip(small, 0, 1) * 255).astype(np.uint8)
    levels = levels[:, :, 0] if levels.shape[2] != 3 else levels
    return _data_uri(np.ascontiguousarray(levels)), text


def network_page_data(page: NetworkPage, records: Sequence[LayerRecord]) -> dict[str, Any]:
    """Everything the network page shows, as JSON-ready data."""
    tensors: dict[str, Any] = {"y0": encode_f32(page.input)}
    picture, mapped = _input_picture(page.input)
    layers = [_layer_data(r, tensors) for r in records]
    cmaps = {name: get_colormap(name).lut8.tolist() for name in (SEQUENTIAL_DEFAULT, DIVERGING_DEFAULT)}
    return {
        "network": True,
        "title": page.title,
        "facts": [list(f) for f in page.facts],
        "notes": list(page.notes),
        "input": {"shape": list(page.input.shape), "picture": picture, "mapped": mapped, "note": page.input_note},
        "layers": layers,
        "labels": list(page.labels),
        "top": page.top,
        "layout": page.layout,
        "first_channels": FIRST_CHANNELS,
        "cmaps": cmaps,
        "tensors": tensors,
    }


def render_network_html(data: dict[str, Any]) -> str:
    """The page: the report template with the network data (`featmap.io.writers.report.render_html`)."""
    return render_html(data)


def write_network_report(path: Path, page: NetworkPage, records: Sequence[LayerRecord]) -> Path:
    """Write one image's network report atomically, after checking its size against the report size limit."""
    encoded = render_network_html(network_page_data(page, records)).encode("utf-8")
    REPORT_SIZE.check(len(encoded), f"{path}: report page")
    return atomic_write(path, lambda fh: fh.write(encoded))
