"""A table that fits the terminal: columns are dropped, least useful first, until every kept column shows
its content whole (no column squashed to one character), then Rich wraps the wrappable ones. A line under
the table names the columns it dropped.

Examples
--------
>>> import io
>>> from rich.console import Console
>>> from rich.table import Table
>>> def make(columns):
...     table = Table()
...     for name in columns:
...         table.add_column(name, no_wrap=True)
...     table.add_row(*(name * 4 for name in columns))
...     return table
>>> console = Console(file=io.StringIO(), width=30, color_system=None)
>>> console.print(FittedTable(make, ["aa", "bb", "cc", "dd"], drop=["dd", "bb"]))
>>> lines = console.file.getvalue().splitlines()
>>> print(lines[1])
┃ aa       ┃ cc       ┃
>>> print(" ".join(line.strip() for line in lines[5:]))
(not shown at 30 columns: dd, bb; widen the terminal, or use --json)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = ["FittedTable"]


class FittedTable:
    """Builds ``make(columns)`` with as many of ``columns`` as fit the width it is rendered at.

    ``drop`` names the columns that may go, in the order they go; the others always stay.
    """

    def __init__(self, make: Callable[[Sequence[str]], Table], columns: Sequence[str], drop: Sequence[str]) -> None:
        self.make = make
        self.columns = list(columns)
        self.drop = [c for c in drop if c in columns]

    def tables(self) -> Iterator[Table]:
        """The table with all columns, then with one more dropped each time."""
        kept = list(self.columns)
        yield self.make(kept)
        for column in self.drop:
            kept.remove(column)
            yield self.make(kept)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = None
        dropped = -1
        for table in self.tables():
            dropped += 1
            if _needed(console, options, table) <= options.max_width:
                break
        assert table is not None  # `tables` yields at least once
        yield table
        if dropped > 0:  # say what is not shown, never drop silently
            hidden = ", ".join(self.drop[:dropped])
            yield Text(
                f"(not shown at {options.max_width} columns: {hidden}; widen the terminal, or use --json)",
                style="dim",
            )


def _needed(console: Console, options: ConsoleOptions, table: Table) -> int:
    """The width ``table`` needs to show every no-wrap column whole and every other column's longest word."""
    wide = options.update(width=10_000)
    natural, needed = 0, 0
    for column in table.columns:
        cells = [column.header, *column.cells]
        sizes = [Measurement.get(console, wide, cell) for cell in cells]
        longest = max(size.maximum for size in sizes)
        natural += longest
        needed += longest if column.no_wrap else max(size.minimum for size in sizes)
    overhead = Measurement.get(console, wide, table).maximum - natural  # borders and padding
    return needed + overhead
