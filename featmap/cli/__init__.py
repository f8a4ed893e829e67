"""The ``featmap`` command: thin Click commands over the library.

Each command parses its options, makes one library call and renders the result. Library errors
(`FeatmapError`) become one line on stderr, ``featmap: error: <what>: <problem>; <fix>``, and exit 1.
Heavy modules (numpy, Pillow, Rich) are imported inside the commands so ``--help`` stays fast.
One module per command group: `apply` (single images and batches), `explain`, `kernels`, `shape`, `weights`;
a command's module is imported when that command runs (or when ``--help`` lists them all), so
``featmap apply`` does not load the other four.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module

import click

from featmap import __version__
from featmap.cli._common import ExitCode, FeatmapGroup, exit_code_for
from featmap.launch import collect_after_start_up, quiet_blas_threads, start_helpers_early, start_up_over

__all__ = ["ExitCode", "cli", "main", "quiet_blas_threads", "run"]

#: Each command's name -> the module under `featmap.cli` that defines it (under the same name).
COMMAND_MODULES = {name: f"featmap.cli.{name}" for name in ("apply", "explain", "kernels", "shape", "weights")}


class _CommandsOnDemand(FeatmapGroup):
    """The ``featmap`` group: a command's module is imported the first time Click asks for the command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMAND_MODULES, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMAND_MODULES and cmd_name not in self.commands:
            command: click.Command = getattr(import_module(COMMAND_MODULES[cmd_name]), cmd_name)
            self.add_command(command)
        if cmd_name != "apply":  # apply's start-up ends once its job is built; the others' once they are loaded
            start_up_over()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_CommandsOnDemand, context_settings={"help_option_names": ["-h", "--help"]})
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


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``featmap`` command."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="featmap")


def run() -> None:
    """The ``featmap`` command as a process (the console script and ``python -m featmap``): `main`, then the
    process ends without the interpreter's teardown.

    By then the command is over: its files are written and closed, and here threads are joined and the exit
    handlers run (a pool's) and stdout and stderr are flushed, as at any exit. What is skipped is the teardown after:
    every module and object freed one by one, OpenBLAS and OpenCV joining their idle threads; 50-160 ms a
    command on the 2-core bench machine, a tenth of a one-image command. An exit status that is not a number,
    an exception, a stream that cannot be flushed, or a profiler or tracer watching (``python -m cProfile -m
    featmap``, which writes its report after the command returns) leave by the ordinary way.

    Before numpy or OpenCV load, OpenBLAS's idle threads are told not to spin (`quiet_blas_threads`), then a
    batch's helpers' server is started when the command line is sure of it (`featmap.launch`; ``python -m
    featmap`` has done both before Click loaded, and a running server is kept).
    """
    import atexit
    import os
    import signal
    import sys
    import threading

    from featmap import _stop_loading
    from featmap.cli._common import raise_terminated

    if signal.getsignal(signal.SIGINT) is _stop_loading:  # featmap's start-up guard: Ctrl-C is Python's again
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_terminated)  # from the start: a SIGTERM stops as Ctrl-C does, exit 143
    collect_after_start_up()  # until featmap apply's job is built (`featmap.launch.start_up_over`)
    try:
        quiet_blas_threads(os.environ)
        start_helpers_early(sys.argv[1:])
        main()
    except SystemExit as exc:
        status = 0 if exc.code is None else exc.code
        if not isinstance(status, int):
            raise
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM before the command's own handling (start-up, imports)
        from featmap.cli._common import asks_json, interrupted

        status = interrupted(asks_json(sys.argv[1:]), exc)
    else:
        status = 0
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the command is over: the exit below is not to be interrupted
    # CPython's own first steps of an exit, in its order: join the threads that are not daemons (and what
    # concurrent.futures registered to run then), then the exit handlers.
    join_threads = getattr(threading, "_shutdown", None)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    watched = sys.getprofile() is not None or sys.gettrace() is not None  # python -m cProfile: it writes after
    if join_threads is None or run_exit_handlers is None or watched:
        sys.exit(status)
    join_threads()
    run_exit_handlers()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the ordinary exit says so
        sys.exit(status)
    os._exit(status)
