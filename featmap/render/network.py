"""Rich view and dict for `featmap apply --spec/--model`: one row per layer output, then the top classes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from featmap.render.apply import input_header
from featmap.render.kernels import shape_text

if TYPE_CHECKING:  # annotations only
    from featmap.run.netjob import NetworkImageResult, NetworkJob

__all__ = ["network_dict", "network_view"]


def _num(value: float) -> str:
    return f"{value:.4g}"


def _weights_text(job: NetworkJob) -> str:
    if job.weights_file is not None:
        return f"weights {job.weights_file.name}" + (" (Keras layout)" if job.layout == "keras" else "")
    if job.init is not None:
        return f"{job.init} init, seed {job.seed}"
    return "weights from the spec's kernels"


def network_view(result: NetworkImageResult, job: NetworkJob) -> RenderableType:
    """A header about the input and the network, a table with one row per layer output, and the top classes."""
    header = input_header(
        result.input,
        f"network {job.model.name}: {len(result.layers)} layer outputs, {_weights_text(job)}; "
        f"maps written under {job.output.out_dir}",
    )
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    for column, justify in (
        ("#", "left"),
        ("layer", "left"),
        ("type", "left"),
        ("output", "right"),
        ("params", "right"),
        ("min", "right"),
        ("max", "right"),
        ("mean", "right"),
        ("maps", "left"),
    ):
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=column not in ("layer", "maps"),
            overflow="fold" if column in ("layer", "maps") else "ellipsis",
        )
    out_dir = job.output.out_dir
    for layer in result.layers:
        pngs = [f for f in layer.files if f.suffix == ".png"]
        where = ""
        if pngs:
            folder = _rel(pngs[0].parent, out_dir)
            where = f"{folder}/ ({len(pngs)} PNG{'s' if len(pngs) > 1 else ''})"
        table.add_row(
            layer.path,
            layer.name,
            layer.kind,
            shape_text(layer.shape),
            f"{layer.params:,}" if layer.params else "",
            _num(layer.stats["min"]),
            _num(layer.stats["max"]),
            _num(layer.stats["mean"]),
            where,
        )
    parts: list[RenderableType] = [header, table]
    if result.top:
        parts += prediction_lines(result)
    return Group(*parts)


#: Width of the probability bars, in characters.
_BAR = 30


def prediction_lines(result: NetworkImageResult) -> list[RenderableType]:
    """The prediction: the best class and its probability, how the probabilities were made (the softmax
    formula), then the top classes as labelled bars (eighths of a character) with their probabilities."""
    best = result.top[0]
    last = result.layers[-1] if result.layers else None
    count = last.shape[-1] if last is not None else len(result.top)
    name = last.name if last is not None else "the last layer"
    if last is not None and "softmax" in last.kind.lower():
        how = f"probabilities: the network's own softmax ({name}, {count} classes)"
    else:
        how = f"probabilities: softmax of the {count} logits z of {name}, p_i = exp(z_i) / Σ_j exp(z_j)"
    lines: list[RenderableType] = [
        Text.assemble("prediction: ", (best[1], "bold"), f"  (p = {best[2]:.3f})"),
        Text(how, style="dim"),
    ]
    width = max(len(label) for _, label, _ in result.top)
    for rank, (_, label, p) in enumerate(result.top):
        eighths = round(p * _BAR * 8)
        bar = "█" * (eighths // 8) + ("" if eighths % 8 == 0 else " ▏▎▍▌▋▊▉"[eighths % 8])
        lines.append(
            Text.assemble(
                f"  {label:>{width}}  ",
                (f"{bar:<{_BAR}}", "bold cyan" if rank == 0 else "cyan"),
                f"  {p:.3f}",
            )
        )
    return lines


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def network_dict(result: NetworkImageResult, job: NetworkJob) -> dict[str, Any]:
    """The same facts as `network_view`, as JSON-ready data."""
    out_dir = job.output.out_dir
    return {
        "input": {
            "path": result.input.path,
            "width": result.input.width,
            "height": result.input.height,
            "mode": result.input.mode,
            "channels": result.input.channels,
        },
        "model": job.model.name,
        "weights": None if job.weights_file is None else str(job.weights_file),
        "init": job.init,
        "seed": job.seed,
        "layers": [
            {
                "path": layer.path,
                "key": layer.key,
                "name": layer.name,
                "kind": layer.kind,
                "shape": list(layer.shape),
                "params": layer.params,
                "stats": layer.stats,
                "files": [_rel(f, out_dir) for f in layer.files],
            }
            for layer in result.layers
        ],
        "top": [{"index": i, "label": label, "probability": p} for i, label, p in result.top],
        "warnings": list(result.warnings),
        "options": result.options_hash,
    }
