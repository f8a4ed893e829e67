"""The ``featmap`` command: thin Click commands over the library.

Each command parses its options, makes one library call and renders the result. Library errors
(`FeatmapError`) become one line on stderr, ``featmap: error: <what>: <problem>; <fix>``, and exit 1.
Heavy modules (numpy, Pillow, Rich) are imported inside the commands so ``--help`` stays fast.
One module per command group: `apply` (single images and batches), `explain`, `kernels`, `shape`, `weights`.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from featmap import __version__
from featmap.cli._common import ExitCode, FeatmapGroup, exit_code_for
from featmap.cli.apply import apply
from featmap.cli.explain import explain
from featmap.cli.kernels import kernels
from featmap.cli.shape import shape
from featmap.cli.weights import weights

__all__ = ["ExitCode", "cli", "main"]


@click.group(cls=FeatmapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="featmap")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """See what a convolutional layer does to a picture.

    \b
    Examples:
      featmap apply samples/camera.png -k sobel_x -k sobel_y --combine magnitude
      featmap shape --model vgg16
      featmap explain --example stride-2
      featmap kernels list --tag edges
    """
    ctx.meta["featmap.debug"] = debug
    from featmap.errors import LimitError
    from featmap.limits import check_environment

    try:
        check_environment()  # a FEATMAP_MAX_* typo is reported before any work
    except LimitError as exc:
        if debug:
            raise
        click.echo(f"featmap: error: {exc}", err=True)
        ctx.exit(exit_code_for(exc, ""))


cli.add_command(apply)
cli.add_command(explain)
cli.add_command(kernels)
cli.add_command(shape)
cli.add_command(weights)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``featmap`` command."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="featmap")
