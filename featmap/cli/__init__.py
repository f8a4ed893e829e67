"""The ``featmap`` command: thin Click commands over the library.

Each command parses its options, makes one library call and renders the result. Library errors
(`FeatmapError`) become one line on stderr, ``featmap: error: <what>: <problem>; <fix>``, and exit 1.
Heavy modules (numpy, Pillow, Rich) are imported inside the commands so ``--help`` stays fast.
One module per command group: `apply` (single images and batches), `explain`, `kernels`, `shape`.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from .. import __version__
from ._common import ExitCode, FeatmapGroup
from .apply import apply
from .explain import explain
from .kernels import kernels
from .shape import shape

__all__ = ["ExitCode", "cli", "main"]


@click.group(cls=FeatmapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="featmap")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """See what a convolutional layer does to a picture."""
    ctx.meta["featmap.debug"] = debug


cli.add_command(apply)
cli.add_command(explain)
cli.add_command(kernels)
cli.add_command(shape)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``featmap`` command."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="featmap")
