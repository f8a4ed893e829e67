"""Rendering of the kernel library: a list table, one kernel's weights and facts, JSON-ready dicts.

Apart from `featmap.render.apply` so that ``featmap kernels`` does not import the batch machinery.

Examples
--------
>>> import io
>>> from rich.console import Console
>>> from featmap.kernels import parametric_kernel
>>> console = Console(file=io.StringIO(), width=60, color_system=None, record=True)
>>> console.print(kernel_show(parametric_kernel("box:size=2")))
>>> "separable" in console.export_text()
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from featmap.core.ops import separable
from featmap.render.fit import FittedTable

if TYPE_CHECKING:  # annotations only: a network's table (`shape_text`) does not load the kernel library
    from featmap.kernels import Kernel

__all__ = ["kernel_dict", "kernel_list", "kernel_show", "shape_text"]


def shape_text(shape: tuple[int, ...]) -> str:
    """``(3, 5)`` as ``3×5``."""
    return "×".join(str(v) for v in shape)


def kernel_dict(kernel: Kernel) -> dict[str, Any]:
    """A kernel as JSON-ready data."""
    return {
        "name": kernel.name,
        "size": list(kernel.size),
        "channels": kernel.weights.shape[0] if kernel.per_channel else None,
        "weights": kernel.weights.tolist(),
        "bias": kernel.bias,
        "sum": float(kernel.weights.sum(dtype="float64")),
        "separable": None if kernel.per_channel else separable(kernel.weights),
        "tags": list(kernel.tags),
        "description": kernel.description,
        "source": kernel.source,
        "origin": kernel.origin,
    }


def kernel_list(kernels: Iterable[Kernel]) -> RenderableType:
    """The kernel library as a table: name, size, tags, description and source (the last ones dropped on a
    narrow terminal, so that names and sizes are never squashed)."""
    rows = []
    for k in kernels:
        size = shape_text(k.size) if not k.per_channel else f"{k.weights.shape[0]}×{shape_text(k.size)}"
        rows.append({"name": k.name, "size": size, "tags": ", ".join(k.tags), "description": k.description,
                     "source": k.source})  # fmt: skip

    def make(kept: Sequence[str]) -> Table:
        table = Table(header_style="bold")
        for column in kept:
            table.add_column(column, overflow="fold", no_wrap=column in ("name", "size"), min_width=8)
        for cells in rows:
            table.add_row(*(cells[column] for column in kept))
        return table

    return FittedTable(make, ["name", "size", "tags", "description", "source"], ["source", "tags", "description"])


def _weight_text(value: float, digits: int = 6) -> str:
    return f"{value:.{digits}g}"


def kernel_show(kernel: Kernel) -> RenderableType:
    """A kernel's weights as a grid plus its facts (sum, separability, bias, source)."""
    data = kernel_dict(kernel)
    slices = [kernel.weights] if not kernel.per_channel else list(kernel.weights)
    parts: list[RenderableType] = [Text.assemble((kernel.name, "bold"), f"  {kernel.description}")]
    for index, plane in enumerate(slices):
        grid = Table(show_header=False, title=f"channel {index}" if kernel.per_channel else None)
        for _ in range(plane.shape[1]):
            grid.add_column(justify="right")
        digits = 6 if plane.shape[1] <= 7 else 3  # keep a 15x15 Gabor within a terminal
        for row in plane:
            grid.add_row(*(_weight_text(float(v), digits) for v in row))
        parts.append(grid)
    sep = "n/a (per-channel)" if data["separable"] is None else ("yes (rank 1)" if data["separable"] else "no")
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key, value in (
        ("size", shape_text(kernel.size)),
        ("sum", _weight_text(data["sum"])),
        ("separable", sep),
        ("bias", "none" if kernel.bias is None else _weight_text(kernel.bias)),
        ("tags", ", ".join(kernel.tags) or "-"),
        ("source", kernel.source or "-"),
        ("file", kernel.origin or "-"),
    ):
        facts.add_row(key, value)
    parts.append(facts)
    return Group(*parts)
