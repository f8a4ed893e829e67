"""Rich views of `featmap.explain` records (the JSON is `featmap.render.explain_json`); nothing here prints.

In the matrices, padding cells are shown in parentheses (and dimmed), the cells of the current
window in brackets (highlighted) and a pooling winner with a ``*``, so the marks survive plain text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from featmap.enums import Activation, PoolKind
from featmap.explain import (
    AxisArithmetic,
    ConvStep,
    ConvTrace,
    Explanation,
    PoolStep,
    PoolTrace,
    format_number,
    pick_positions,
    terms_text,
)
from featmap.explain.examples import Example

__all__ = ["MAX_VIEW_STEPS", "examples_view", "explain_view", "matrix_table"]

#: Inputs up to this many rows (columns) are shown whole at each step; larger ones around the window.
_FULL_VIEW = 12
#: Widest matrix shown as one table; wider ones are shown in blocks of this many columns.
_BLOCK = 16
#: Most steps the text view works out (``--json`` has no such cap).
MAX_VIEW_STEPS = 200
_PAD = "dim"
_WINDOW = "bold black on yellow"
_WINNER = "bold white on red"


def _pair(pair: Sequence[int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}×{pair[1]}"


def _cell(value: float, padding: bool, window: bool, winner: bool) -> tuple[str, str]:
    """A matrix entry as text with its marks, and its style."""
    text = format_number(value)
    if padding:
        text = f"({text})"
    if window:
        text = f"[{text}]"
    if winner:
        text += "*"
    return text, _WINNER if winner else _WINDOW if window else _PAD if padding else ""


def matrix_table(
    values: np.ndarray,
    *,
    title: str = "",
    mask: np.ndarray | None = None,
    window: Iterable[tuple[int, int]] = (),
    winner: tuple[int, int] | None = None,
    rows: range | None = None,
    cols: range | None = None,
) -> Text:
    """A 2-D matrix with row and column numbers under its title; ``mask`` marks padding, ``window`` the window.

    ``rows`` and ``cols`` show only part of it (numbered as in the whole). Built as aligned text rather
    than a `rich.table.Table` (a 64×64 input is 4,096 cells: a table of them takes seconds); wider than
    `_BLOCK` columns, it is shown in blocks of columns one under another, as numpy prints, so no value is cut.
    """
    marked = set(window)
    rows = rows or range(values.shape[0])
    cols = cols or range(values.shape[1])
    cells = {
        (r, c): _cell(float(values[r, c]), bool(mask is not None and mask[r, c]), (r, c) in marked, winner == (r, c))
        for r in rows
        for c in cols
    }
    width = max(max(len(t) for t, _ in cells.values()), len(str(cols[-1])))
    label = len(str(rows[-1]))
    out = Text(no_wrap=True, overflow="ignore")
    if title:
        out.append(title + "\n", style="italic")
    blocks = [cols[i : i + _BLOCK] for i in range(0, len(cols), _BLOCK)]
    for n, block in enumerate(blocks):
        if len(blocks) > 1:
            out.append(f"{'' if n == 0 else chr(10)}columns {block.start}–{block.stop - 1}\n", style="dim italic")
        header = " " * label + "".join(f"  {c:>{width}}" for c in block)
        out.append(header + "\n", style="dim")
        out.append("─" * len(header) + "\n", style="dim")
        for r in rows:
            out.append(f"{r:>{label}}", style="dim")
            for c in block:
                text, style = cells[(r, c)]
                out.append("  ")
                out.append(f"{text:>{width}}", style=style)
            out.append("\n")
    out.rstrip()
    return out


def _around(cells: tuple[tuple[int, ...], tuple[int, ...]], shape: tuple[int, ...]) -> dict[str, Any]:
    """The rows and columns to show around a window: everything up to `_FULL_VIEW`, else the window ± 2."""
    shown: dict[str, Any] = {}
    for key, axis, size in (("rows", cells[0], shape[0]), ("cols", cells[1], shape[1])):
        if size > _FULL_VIEW:
            shown[key] = range(max(0, min(axis) - 2), min(size, max(axis) + 3))
    return shown


def _part(title: str, shown: dict[str, Any]) -> str:
    if not shown:
        return title
    rows, cols = shown.get("rows"), shown.get("cols")
    parts = [f"rows {r.start}–{r.stop - 1}" for r in [rows] if r] + [
        f"columns {c.start}–{c.stop - 1}" for c in [cols] if c
    ]
    return f"{title} ({', '.join(parts)} shown)"


class Flow:
    """Renderables side by side, wrapped onto as many lines as the terminal's width needs, so no column of a
    matrix is cut; one wider than the terminal on its own is shown with a line saying what is cut."""

    def __init__(self, items: Sequence[RenderableType], gap: int = 3) -> None:
        self.items = list(items)
        self.gap = gap

    def _widths(self, console: Console, options: ConsoleOptions) -> list[int]:
        wide = options.update_width(100_000)
        return [Measurement.get(console, wide, item).maximum for item in self.items]

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widths = self._widths(console, options)
        return Measurement(max(widths, default=0), sum(widths) + self.gap * max(0, len(widths) - 1))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        room = options.max_width
        lines: list[list[tuple[RenderableType, int]]] = [[]]
        used = 0
        for item, width in zip(self.items, self._widths(console, options), strict=True):
            if lines[-1] and used + self.gap + width > room:
                lines.append([])
                used = 0
            used += (self.gap if lines[-1] else 0) + width
            lines[-1].append((item, width))
        for line in lines:
            grid = Table.grid(padding=(0, self.gap))
            for _, width in line:
                grid.add_column(no_wrap=True, min_width=min(width, room))
            grid.add_row(*(item for item, _ in line))
            yield grid
            widest = max(width for _, width in line)
            if len(line) == 1 and widest > room:
                yield Text(
                    f"(this part is {widest} characters wide and the terminal {room}: its characters past column "
                    f"{room} are not shown; widen the terminal, or use --json)",
                    style="yellow",
                )


def _planes(values: np.ndarray, title: str, **marks: Any) -> RenderableType:
    """One table per channel of ``(H, W, C)``, side by side as far as the terminal's width allows."""
    if values.shape[2] == 1:
        return Flow([matrix_table(values[:, :, 0], title=title, **marks)])
    tables = [matrix_table(values[:, :, ch], title=f"{title}, channel {ch}", **marks) for ch in range(values.shape[2])]
    return Flow(tables)


def _arithmetic(axes: Sequence[AxisArithmetic]) -> RenderableType:
    lines = [Text.assemble(("output size  ", "bold"), f"{axes[0].formula}  (N input, F kernel, P padding, S stride)")]
    for axis in axes:
        lines.append(Text(f"  {axis.axis:<8} {axis.worked}"))
        if axis.note:
            lines.append(Text(f"           {axis.note}", style="yellow"))
    return Group(*lines)


def _padding_text(g: Any) -> str:
    top, bottom, left, right = g.padding
    if not any(g.padding):
        return "padding 0 (valid)"
    if len(set(g.padding)) == 1:
        return f"padding {top} on each side"
    return f"padding top {top}, bottom {bottom}, left {left}, right {right}"


def _activation_text(trace: ConvTrace, value: str) -> str:
    if trace.activation is Activation.LEAKY_RELU:
        return f"leaky_relu({value}, slope {format_number(trace.slope)})"
    return f"{trace.activation.value}({value})"


def _conv_step_view(trace: ConvTrace, step: ConvStep, number: int, total: int) -> RenderableType:
    r, c = step.position
    window_cells = [(i, j) for i in step.rows for j in step.cols]
    head = Text(
        f"step {number} of {total}: output ({r}, {c}) ← window rows {step.rows[0]}–{step.rows[-1]}, "
        f"columns {step.cols[0]}–{step.cols[-1]} of the {'padded ' if any(trace.geometry.padding) else ''}input",
        style="bold",
    )
    shown = _around((step.rows, step.cols), trace.padded.shape)
    lines: list[RenderableType] = [
        head,
        _planes(trace.padded, _part("input", shown), mask=trace.pad_mask, window=window_cells, **shown),
    ]
    for ch in range(step.window.shape[0]):
        suffix = f", channel {ch}" if step.window.shape[0] > 1 else ""
        products = [
            matrix_table(step.window[ch], title=f"window{suffix}"),
            Text("\n" * (3 + step.window.shape[1] // 2) + "×", style="bold"),
            matrix_table(step.weights[ch], title=f"kernel{suffix}" + (" (turned 180°)" if trace.flip else "")),
            Text("\n" * (3 + step.window.shape[1] // 2) + "=", style="bold"),
            matrix_table(step.products[ch], title=f"products{suffix}"),
        ]
        lines.append(Flow(products, gap=2))
    if len(step.channel_sums) > 1:
        for ch, part in enumerate(step.channel_sums):
            lines.append(Text(f"channel {ch} sum: {terms_text(step.products[ch].ravel())} = {format_number(part)}"))
        sums = " + ".join(f"{format_number(v)} (ch {ch})" for ch, v in enumerate(step.channel_sums)).replace(
            "+ -", "- "
        )
        lines.append(Text(f"sum over channels: {sums} = {format_number(step.total)}"))
    else:
        lines.append(Text(f"sum: {terms_text(step.products.ravel())} = {format_number(step.total)}"))
    value = format_number(step.pre_activation)
    if step.bias:
        lines.append(Text(f"+ bias {format_number(step.bias)} = {value}"))
    if trace.activation is not Activation.NONE:
        lines.append(Text(f"{_activation_text(trace, value)} = {format_number(step.value)}"))
    lines.append(Text.assemble("→ output ", (f"({r}, {c}) = {format_number(step.value)}", "bold"), "\n"))
    return Group(*lines)


def _pool_step_view(trace: PoolTrace, step: PoolStep, number: int, total: int, source: str) -> RenderableType:
    r, c = step.position
    cells = [(i, j) for i in step.rows for j in step.cols]
    head = Text(
        f"step {number} of {total}: pooled ({r}, {c}) ← window rows {step.rows[0]}–{step.rows[-1]}, "
        f"columns {step.cols[0]}–{step.cols[-1]}",
        style="bold",
    )
    shown = _around((step.rows, step.cols), trace.padded.shape)
    table = matrix_table(
        trace.padded[:, :, 0],
        title=_part(source, shown),
        mask=trace.pad_mask,
        window=cells,
        winner=step.winner,
        **shown,
    )
    real = [float(v) for v in step.window[step.real]]
    listed = ", ".join(format_number(v) for v in real)
    skipped = "" if step.count == step.window.size else f" ({step.window.size - step.count} padding cells left out)"
    if trace.kind is PoolKind.AVG:
        line = f"average: ({terms_text(real)}) / {step.count} = {format_number(step.value)}{skipped}"
    else:
        line = f"{trace.kind.value}({listed}) = {format_number(step.value)} at {step.winner}{skipped}"
    return Group(
        head,
        Flow([table]),
        Text(line),
        Text.assemble("→ pooled ", (f"({r}, {c}) = {format_number(step.value)}", "bold"), "\n"),
    )


def _not_shown(shown: int, total: int) -> list[RenderableType]:
    if shown >= total:
        return []
    return [
        Text(f"({shown} of {total} positions shown; --steps N, --steps all or --at ROW,COL for others)\n", style="dim")
    ]


def _conv_view(e: Explanation, trace: ConvTrace, positions: list[tuple[int, int]]) -> list[RenderableType]:
    g = trace.geometry
    kh, kw = g.kernel_hw
    channels = trace.input.shape[2]
    kind = "convolution (kernel turned 180°)" if trace.flip else "cross-correlation (what CNNs call convolution)"
    name = f" {e.kernel_name}" if e.kernel_name else ""
    facts = (
        f"{kind} of the {g.in_hw[0]}×{g.in_hw[1]}{'×' + str(channels) if channels > 1 else ''} input with the "
        f"{kh}×{kw}{'×' + str(channels) if channels > 1 else ''} kernel{name}: stride {_pair(g.stride)}, "
        f"{_padding_text(g)}"
    )
    if any(g.padding):
        mode = trace.pad_mode.value
        facts += f" ({mode}{' ' + format_number(trace.pad_value) if mode == 'zeros' and trace.pad_value else ''})"
    if g.dilation != (1, 1):
        facts += f", dilation {_pair(g.dilation)}"
    facts += f", bias {format_number(trace.bias)}, activation {trace.activation.value}"
    parts: list[RenderableType] = [Text(facts), Text()]
    kernel = np.moveaxis(trace.kernel, 0, -1)
    row: list[RenderableType] = [_planes(trace.input, "input"), _planes(kernel, "kernel")]
    if any(g.padding):
        row.append(_planes(trace.padded, f"padded input {g.padded_hw[0]}×{g.padded_hw[1]}", mask=trace.pad_mask))
    parts += [Flow(row, gap=4), _arithmetic(trace.axes), Text()]
    for r, c in positions:
        number = r * g.out_hw[1] + c + 1  # its place in reading order
        parts.append(_conv_step_view(trace, trace.step(r, c), number, len(trace.positions)))
    parts += _not_shown(len(positions), len(trace.positions))
    label = f"feature map {g.out_hw[0]}×{g.out_hw[1]}"
    if trace.activation is not Activation.NONE:
        label += f" (after {trace.activation.value})"
    parts.append(Flow([matrix_table(trace.output, title=label)]))
    return parts


def _pool_view(trace: PoolTrace, positions: list[tuple[int, int]], after_conv: bool) -> list[RenderableType]:
    g = trace.geometry
    what = "the feature map" if after_conv else f"the {g.in_hw[0]}×{g.in_hw[1]} input"
    source = "feature map" if after_conv else "input"
    if trace.global_pool:
        facts = f"global {trace.kind.value} pooling of {what}: one window covers it all"
    else:
        facts = f"{trace.kind.value} pooling of {what}: window {_pair(g.kernel_hw)}, stride {_pair(g.stride)}, "
        facts += _padding_text(g)
        if any(g.padding):
            facts += " (padding never wins and is not counted in an average)"
    parts: list[RenderableType] = [Text(facts, style="bold" if after_conv else "")]
    if any(g.padding):
        parts.append(Flow([matrix_table(trace.padded[:, :, 0], title="padded input", mask=trace.pad_mask)]))
    elif not after_conv:
        parts.append(Flow([matrix_table(trace.input[:, :, 0], title="input")]))
    parts += [_arithmetic(trace.axes), Text()]
    for r, c in positions:
        number = r * g.out_hw[1] + c + 1
        parts.append(_pool_step_view(trace, trace.step(r, c), number, len(trace.positions), source))
    parts += _not_shown(len(positions), len(trace.positions))
    parts.append(Flow([matrix_table(trace.output, title=f"pooled {g.out_hw[0]}×{g.out_hw[1]}")]))
    return parts


def explain_view(e: Explanation, *, at: tuple[int, int] | None = None, steps: int | None = 3) -> RenderableType:
    """Everything `featmap explain` prints: input, padding, size arithmetic, the chosen steps, the output."""
    conv_at, pool_at = pick_positions(e, at, steps)
    conv_at, pool_at = conv_at[:MAX_VIEW_STEPS], pool_at[:MAX_VIEW_STEPS]
    parts: list[RenderableType] = [Text(f"featmap explain: {e.source}", style="bold")]
    if e.title:
        parts.append(Text(e.title, style="italic"))
    if e.conv is not None:
        parts += _conv_view(e, e.conv, conv_at)
    if e.pool is not None:
        parts += _pool_view(e.pool, pool_at, e.conv is not None)
    parts.append(Text("marks: (padding)  [window cell]  * winner", style="dim"))
    return Group(*parts)


def examples_view(examples: Iterable[Example]) -> RenderableType:
    """The shipped examples: name and what each shows."""
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("example", no_wrap=True)
    table.add_column("what it shows", overflow="fold")
    for example in examples:
        table.add_row(example.name, example.title)
    return Group(table, Text("run one: featmap explain --example NAME", style="dim"))
