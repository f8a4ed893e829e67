"""What a network run's sheet and report show besides its layer outputs, worked out before the first layer and
handed to their writer as one pure data object (`network_drawing` → `featmap.io.writers.netpictures.NetworkDrawing`):
for the report, the planned layers as the writer's neutral `LayerRecord` (what each layer computes, which outputs
it read, its weights), with the tensors to embed chosen so that the page keeps to the report size limit.

Examples
--------
>>> from featmap.net.spec import parse_tokens
>>> from featmap.net.plan import plan_layers
>>> nodes = plan_layers(parse_tokens(["conv:2@3x3", "relu", "flatten", "dense:3"]), (6, 6, 1))
>>> [(n.plan.kind, s) for n, s in run_order(nodes)]
[('Conv2d', (0,)), ('relu', (1,)), ('Flatten', (2,)), ('Dense', (3,))]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from featmap.io.writers.netpictures import NetworkDrawing
from featmap.io.writers.netreport import LayerRecord, NetworkPage, ReportPlan, choose_exact
from featmap.net.layers import (
    Act,
    AdaptiveAvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    DropPath,
    Flatten,
    GlobalPool2d,
    Parallel,
    Pool2d,
)
from featmap.net.layers.base import spatial_geometry
from featmap.net.plan import PlanNode
from featmap.net.summary import Summary
from featmap.run.executor import WeightSource

if TYPE_CHECKING:
    from featmap.io.discover import InputImage
    from featmap.io.images import ImageInfo
    from featmap.io.outputs import OutputOptions
    from featmap.run.netjob import NetworkJob

__all__ = ["extra_record", "layer_op", "network_drawing", "report_page", "report_plan", "report_target", "run_order"]


def run_order(nodes: Sequence[PlanNode]) -> list[tuple[PlanNode, tuple[int, ...]]]:
    """Every output a run yields (leaf layers and merges, in the executor's order) with the outputs it reads:
    0 is the network's input, ``i`` the ``i``-th output."""
    found: list[tuple[PlanNode, tuple[int, ...]]] = []

    def walk(children: Sequence[PlanNode], current: int) -> int:
        for node in children:
            if node.role == "layer":
                found.append((node, (current,)))
                current = len(found)
            elif node.role == "block":
                current = walk(node.children, current)
            else:
                ends = tuple(walk(branch.children, current) for branch in node.children)
                found.append((node, ends))
                current = len(found)
        return current

    walk(nodes, 0)
    return found


def layer_op(node: PlanNode, layout: str) -> dict[str, Any]:
    """What a layer computes, as the page recomputes it: ``{"type": ..., parameters}``."""
    layer = node.layer
    if isinstance(layer, Conv2d):
        return {"type": "conv", "pad_mode": layer.pad_mode.value, "pad_value": layer.pad_value, "flip": layer.flip}
    if isinstance(layer, Conv1d):
        return {"type": "conv", "pad_mode": "zeros", "pad_value": 0.0, "flip": False}
    if isinstance(layer, Dense):
        return {"type": "dense"}
    if isinstance(layer, Act):
        return {"type": "act", "fn": layer.kind.value, "slope": float(dict(layer.params).get("slope", 0.01))}
    if isinstance(layer, BatchNorm):
        return {"type": "bn", "eps": layer.eps}
    if isinstance(layer, Pool2d):
        shape = node.plan.in_shape
        declared = spatial_geometry(shape, layer.size, layer.stride or layer.size, layer.padding, (1, 1), pool=True)
        return {
            "type": "pool",
            "kind": layer.kind.value,
            "declared": list(declared.padding),
            "count_include_pad": layer.count_include_pad,
        }
    if isinstance(layer, GlobalPool2d):
        return {"type": "gpool", "kind": layer.kind.value}
    if isinstance(layer, AdaptiveAvgPool2d) and len(node.plan.out_shape) == 3 and node.plan.out_shape[:2] == (1, 1):
        return {"type": "gpool", "kind": "avg"}
    if isinstance(layer, Flatten):
        return {"type": "flatten", "layout": layout}
    if isinstance(layer, (Dropout, DropPath)):
        return {"type": "identity"}
    if isinstance(layer, Parallel):
        return {"type": {"add": "add", "concat": "concat", "mul": "mul", "aux": "first"}[layer.merge_mode]}
    return {"type": "other"}


def network_drawing(
    job: NetworkJob,
    nodes: Sequence[PlanNode],
    info: ImageInfo,
    pixels: NDArray[np.floating],
    maps: Sequence[tuple[str, int]],
    weights: WeightSource,
    notes: Sequence[str],
    summary: Summary,
) -> NetworkDrawing:
    """What the sheet and the report of one image show besides its layer outputs (the report's plan only when
    ``job`` asks for a report): ``info`` the input as the page names it, ``pixels`` what the network saw, ``maps``
    each layer's folder and channels, ``notes`` what was done to the input, ``summary`` the plan's table."""
    plan = None
    if job.output.report:
        plan = report_plan(job, nodes, info, pixels, weights, notes, summary)
    labels = tuple(job.model.labels)
    return NetworkDrawing(pixels, tuple(maps), labels, job.top, job.upto is None, plan)


def report_plan(
    job: NetworkJob,
    nodes: Sequence[PlanNode],
    info: ImageInfo,
    pixels: NDArray[np.floating],
    weights: WeightSource,
    notes: Sequence[str],
    summary: Summary,
) -> ReportPlan:
    """The report of one image as the writer renders it (`featmap.io.writers.netreport.NetworkReport`), worked out
    before the first layer: which outputs the page recomputes within the report size limit (checked now), each
    output's record with its weights when it is recomputed, and the page's facts."""
    order = run_order(nodes)
    shapes = [(n.plan.out_shape, [s for _, s in n.plan.weights], src) for n, src in order]
    explained, kept = choose_exact(shapes, pixels.shape)
    if any(node.role == "layer" and node.plan.weights for i, (node, _) in enumerate(order, 1) if i in explained):
        weights.bind(nodes)  # the tensors by layer, as the run will take them
    records = []
    for index, (node, sources) in enumerate(order, start=1):
        exact = index in explained
        tensors = weights.for_node(node) if exact and node.role == "layer" else {}
        op = layer_op(node, job.layout)
        found = {k: np.asarray(v, np.float32) for k, v in tensors.items()}
        records.append(LayerRecord(index, node.plan.name, node.path, "", node.plan, op, sources, found, exact=exact))
    return ReportPlan(report_page(job, info, pixels, notes, summary), tuple(records), frozenset(kept))


def report_page(
    job: NetworkJob, info: ImageInfo, pixels: NDArray[np.floating], notes: Sequence[str], summary: Summary
) -> NetworkPage:
    """The page's facts about the image, the network and the weights."""
    model = job.model
    if job.weights_file is not None:
        weights = f"{job.weights_file.name}" + (" (Keras layout)" if job.layout == "keras" else "")
    elif job.init is not None:
        weights = f"{job.init} init, seed {job.seed} (untrained)"
    else:
        weights = "the spec's kernels"
    seen = "×".join(map(str, pixels.shape))
    note = f"{seen}, float32, exactly the array the first layer read" + (f" ({'; '.join(notes)})" if notes else "")
    facts = [
        ("input", f"{info.shown} ({info.width}×{info.height}, {info.format} mode {info.mode})"),
        ("network saw", note),
        ("network", f"{model.name}: {len(summary.layers)} rows, {summary.totals.params:,} parameters"),
        ("weights", weights),
    ]
    return NetworkPage(
        f"{model.name} on {Path(info.path).name}",
        facts,
        pixels,
        note,
        labels=tuple(model.labels),
        top=job.top,
        layout=job.layout,
        notes=tuple(summary.warnings),
    )


def extra_record(item: InputImage, kernel: str, written: Path, out: OutputOptions, digest: str) -> dict[str, Any]:
    """The manifest record of a network run's sheet or report."""
    png = written.relative_to(out.out_dir).as_posix()
    return {"input": str(item.path.resolve()), "kernel": kernel, "png": png, "options": digest, "status": "ok"}


def report_target(item: InputImage, out: OutputOptions, *, single: bool = False) -> Path:
    """Where an image's report goes: ``report.html`` in the output folder for a single image, else beside the
    image's layer folders (``{stem}/report.html``)."""
    if single:
        return out.out_dir / "report.html"
    return out.extra_target(item.path, "report.html", rel_dir=item.rel_dir, stem=item.stem)
