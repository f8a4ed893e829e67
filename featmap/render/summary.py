"""Rich table, Markdown, JSON and worked formulas for a `featmap.net.summary.Summary`.

Examples
--------
>>> from featmap.net.spec import parse_tokens
>>> from featmap.net.summary import summarize
>>> md = summary_markdown(summarize(parse_tokens(["conv:6@5x5", "flatten", "dense:10"]), (32, 32, 3)))
>>> print(md.splitlines()[2])
| 1 | conv2d | Conv2d | 5×5 s1 p0 | 28×28×6 | 456 | 352,800 | 5 j1 | 18.4 KB |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from featmap.net.summary import LayerInfo, ReceptiveField, Summary
from featmap.render.fit import FittedTable

__all__ = ["summary_dict", "summary_explain", "summary_markdown", "summary_view"]

MAC_CONVENTION = (
    "weight multiply-adds of conv and dense layers only (no bias, norm or element-wise terms); FLOPs = 2 × MACs"
)


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(v) for v in shape)


def _same(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))


def _geometry(row: LayerInfo) -> str:
    if row.kernel is None or row.stride is None:
        return ""
    text = f"{'×'.join(map(str, row.kernel))} s{_same(row.stride)}"
    if row.padding is not None:
        text += f" p{_same(row.padding)}" if len(set(row.padding)) == 1 else f" p{','.join(map(str, row.padding))}"
    if row.dilation is not None and any(d != 1 for d in row.dilation):
        text += f" d{_same(row.dilation)}"
    return text


def _rf(rf: ReceptiveField | None, row: LayerInfo) -> str:
    if rf is None:
        return "all" if row.out_shape and len(row.out_shape) == 1 or row.kind.startswith("Global") else "-"
    return f"{_same(rf.size)} j{_same(rf.jump)}"


def human_bytes(n: int) -> str:
    """``1536`` → ``'1.5 KB'`` (powers of 1024)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def human_count(n: int) -> str:
    """``1814073344`` → ``'1.81 G'``; the unit (or a space) is followed directly by ``MACs``/``FLOPs``."""
    for limit, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= limit:
            return f"{n / limit:.2f} {unit}"
    return f"{n} "


def _cells(row: LayerInfo) -> list[str]:
    params = f"{row.params:,}" if row.params or not row.container else ""
    if row.non_trainable and not row.container:
        params += f" (+{row.non_trainable:,})"
    return [
        row.path + ("!" if row.warnings else ""),
        "  " * row.depth + row.name,
        row.kind + (f" {row.detail}" if row.detail else ""),
        _geometry(row),
        _shape(row.out_shape),
        params,
        f"{row.macs:,}" if row.macs else "",
        _rf(row.receptive_field, row),
        human_bytes(row.memory) if row.memory else "",
    ]


_COLUMNS = ("#", "layer", "type", "kernel", "output", "params", "MACs", "RF", "memory")


def _totals_lines(summary: Summary) -> list[str]:
    t = summary.totals
    batch = f", batch {summary.batch}" if summary.batch > 1 else ""
    lines = [
        f"params: {t.params:,} = {t.trainable:,} trainable + {t.non_trainable:,} non-trainable (batch-norm statistics)"
    ]
    if t.aux_params:
        lines.append(
            f"auxiliary heads: {t.aux_params:,} trainable (training only); "
            f"{t.trainable - t.aux_params:,} trainable without them (--no-aux)"
        )
    return [
        *lines,
        f"multiply-adds: {t.macs:,} ({human_count(t.macs)}MACs); FLOPs = 2 × MACs = {human_count(t.flops)}FLOPs{batch}",
        f"weights: {human_bytes(t.param_bytes)} at {8 * summary.dtype_bytes}-bit floats",
        f"activations: {human_bytes(t.activation_bytes)} (every layer's output{batch}, input excluded)",
    ]


class _FastTable:
    """The summary table, drawn line by line when the console is wide enough for every column: the same
    characters as the Rich `Table` it falls back to (narrow consoles, where columns must shrink), about ten
    times faster on the 200-row tables of today's networks (Rich measures and pads every cell)."""

    def __init__(
        self, table: RenderableType, title: str | None, rows: list[list[str]], styles: list[str | None]
    ) -> None:
        self.table = table
        self.title = title
        self.rows = rows
        self.styles = styles
        self.widths = [max(len(column), *(len(r[i]) for r in rows)) for i, column in enumerate(_COLUMNS)]

    def _line(self, cells: Sequence[str]) -> str:
        parts = []
        for column, cell, width in zip(_COLUMNS, cells, self.widths, strict=True):
            parts.append(cell.rjust(width) if column in _RIGHT else cell.ljust(width))
        return "   ".join(parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        total = sum(self.widths) + 3 * (len(self.widths) - 1)
        if total > options.max_width or any("[" in cell for row in self.rows for cell in row):
            yield self.table
            return
        if self.title is not None:
            yield Text(self.title.ljust(total), style="table.title", end="\n")
        yield Text(self._line(_COLUMNS), style="bold")
        yield Text("─" * total)
        for cells, style in zip(self.rows, self.styles, strict=True):
            yield Text(self._line(cells), style=style or "")


_RIGHT = ("params", "MACs", "memory", "#")


def summary_view(summary: Summary, title: str | None = None) -> RenderableType:
    """A Rich table (blocks indented, container rows dimmed) followed by the totals and warnings."""
    rows = [["", "input", "", "", _shape(summary.input_shape), "", "", "1", ""]]
    styles: list[str | None] = [None]
    for row in summary.layers:
        styles.append("dim" if row.container else ("yellow" if row.warnings else None))
        rows.append(_cells(row))

    def make(kept: Sequence[str]) -> Table:
        table = Table(
            title=title,
            title_justify="left",
            header_style="bold",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
        )
        for column in kept:
            table.add_column(column, justify="right" if column in _RIGHT else "left", no_wrap=True, overflow="ellipsis")
        at = [_COLUMNS.index(column) for column in kept]
        for cells, style in zip(rows, styles, strict=True):
            table.add_row(*(cells[i] for i in at), style=style)
        return table

    # On a narrow terminal the least telling columns go first; `--json` and `--format markdown` keep them all.
    table = FittedTable(make, _COLUMNS, ["memory", "RF", "type", "MACs", "kernel"])
    footer = Text("\n".join(_totals_lines(summary)))
    parts: list[RenderableType] = [
        _FastTable(table, title, rows, styles),
        footer,
        Text(f"RF: receptive field size and jump (input pixels); MACs: {MAC_CONVENTION}", style="dim"),
    ]
    if summary.warnings:
        parts.append(
            Text(
                f"! {len(summary.warnings)} layer(s) with a stride that leaves input rows unused "
                "(floored, as in PyTorch and Keras)",
                style="yellow",
            )
        )
    return Group(*parts)


def summary_explain(summary: Summary) -> RenderableType:
    """Each layer's formulas with the numbers put in."""
    lines = Text()
    for row in summary.layers:
        if not row.explain:
            continue
        lines.append(f"{row.path} {row.name} ({row.kind})\n", style="bold")
        for line in row.explain:
            lines.append(f"    {line}\n")
        rf = row.receptive_field
        if rf is not None and not row.container:
            start = ", ".join(f"{s:g}" for s in rf.start)
            lines.append(
                f"    receptive field {_same(rf.size)} px, jump {_same(rf.jump)}, first centred at ({start})\n"
            )
    return lines


def summary_markdown(summary: Summary, title: str | None = None) -> str:
    """A GitHub-flavoured Markdown table plus the totals, for notes and blog posts."""
    out = [f"### {title}", ""] if title else []
    out.append("| " + " | ".join(_COLUMNS) + " |")
    out.append("|" + "|".join("---:" if c in ("params", "MACs", "memory", "#") else "---" for c in _COLUMNS) + "|")
    for row in summary.layers:
        cells = _cells(row)
        cells[1] = "&nbsp;&nbsp;" * row.depth + row.name
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out.append("")
    out.extend(f"- {line}" for line in _totals_lines(summary))
    out.append(f"- convention: {MAC_CONVENTION}; input {_shape(summary.input_shape)}")
    out.extend(f"- warning: {note}" for note in summary.warnings)
    return "\n".join(out) + "\n"


def summary_dict(summary: Summary, name: str | None = None) -> dict[str, Any]:
    """Plain JSON-ready data: every row with its facts, the totals and the convention."""
    layers = []
    for row in summary.layers:
        data = asdict(row)
        data["in_shape"], data["out_shape"] = list(row.in_shape), list(row.out_shape)
        layers.append(data)
    return {
        "model": name,
        "input": list(summary.input_shape),
        "batch": summary.batch,
        "dtype_bytes": summary.dtype_bytes,
        "convention": MAC_CONVENTION,
        "layers": layers,
        "totals": asdict(summary.totals),
        "warnings": list(summary.warnings),
    }
