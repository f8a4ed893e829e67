"""Rich view and dict for `featmap weights check`: one row per tensor (layer → tensor → shapes → status), then
the counts and how names were read."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from featmap.net.weights import WeightsCheck

__all__ = ["weights_dict", "weights_view"]

_STYLES = {"ok": "green", "missing": "bold red", "shape": "bold red", "unused": "yellow"}
_WORDS = {"ok": "ok", "missing": "missing", "shape": "mis-shaped", "unused": "not used"}


def _shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return ""
    return "×".join(map(str, shape)) if shape else "scalar"


def weights_view(check: WeightsCheck, network: str) -> RenderableType:
    """A header naming the file and the network, the table, and the counts (problems in red)."""
    header = Text(f"{check.source} against {network}" + (" (Keras layout)" if check.layout == "keras" else ""))
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    for column, justify in (
        ("layer", "left"),
        ("tensor", "left"),
        ("network", "right"),
        ("file", "right"),
        ("status", "left"),
        ("note", "left"),
    ):
        wraps = column in ("tensor", "note")
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=not wraps,
            overflow="fold" if wraps else "ellipsis",
        )
    for row in check.rows:
        note = row.note
        if row.name and row.name != row.key:
            note = f"as `{row.name}`" + (f"; {note}" if note else "")
        if row.near:
            note = "nearest in the file: " + ", ".join(row.near)
        table.add_row(
            row.layer,
            row.key,
            _shape(row.expected),
            _shape(row.found),
            Text(_WORDS[row.status], style=_STYLES[row.status]),
            note,
        )
    verdict = (
        Text("every tensor the network needs is in the file", style="green")
        if check.ok
        else Text("the network cannot run on this file", style="bold red")
    )
    parts: list[RenderableType] = [header, table, Text.assemble(f"{check.summary()}: ", verdict)]
    parts += [Text(note) for note in check.notes]
    return Group(*parts)


def weights_dict(check: WeightsCheck, network: str) -> dict[str, Any]:
    """The same facts as `weights_view`, JSON-ready."""
    return {"network": network, **check.as_dict()}
