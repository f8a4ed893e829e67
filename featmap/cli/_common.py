"""Shared pieces of the command line: exit codes and the error-handling group (the option types and groups
are in `featmap.cli._options`, re-exported here)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

import click

from featmap.errors import FeatmapError, MissingExtraError, OptionError, SpecError, brief

F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(IntEnum):
    """Process exit codes (README lists them)."""

    OK = 0
    ERROR = 1  # a featmap error: one line on stderr
    USAGE = 2  # Click's own
    PARTIAL = 3  # a batch finished with some files failed
    NOTHING_TO_DO = 4  # no input image found (an empty folder, every file ignored)
    BUSY = 5  # another featmap run holds the output folder (its lock file names the process)
    BUG = 70  # an unexpected exception: a bug in featmap (EX_SOFTWARE); --debug shows the traceback
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


def _one_line(text: str, width: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _err(kind: str, message: str) -> None:
    click.echo(f"featmap: {kind}: {message}", err=True)


def asks_json(args: Sequence[str]) -> bool:
    """Whether a command line asks for JSON on stdout (``--json``, ``--format json``; the package's start-up
    guard reads it too, before this module loads).

    Examples
    --------
    >>> asks_json(["apply", "a.png", "--json"]), asks_json(["shape", "--format", "json"]), asks_json(["-o", "x"])
    (True, True, False)
    """
    from featmap import _asks_json

    return _asks_json(list(args))


def _wants_json(ctx: click.Context) -> bool:
    """Whether the command line asked for JSON (noted by `FeatmapGroup`, else the command's own options)."""
    return bool(ctx.meta.get("featmap.json") or ctx.params.get("as_json") or ctx.params.get("fmt") == "json")


def _json_error(wanted: bool, message: str, code: int, details: Sequence[str] = ()) -> None:
    """With ``--json`` (``wanted``), a failure's one line (and its detail lines) as the JSON document on stdout
    too, so that stdout is JSON on every path: ``{"error": …, "exit_code": …}``."""
    if not wanted:
        return
    import json

    document: dict[str, Any] = {"error": message, "exit_code": int(code)}
    if details:
        document["details"] = list(details)
    click.echo(json.dumps(document, indent=2))


def interrupted(wants_json: bool, exc: KeyboardInterrupt) -> int:
    """Say an interrupt (Ctrl-C, or SIGTERM: `Terminated`) that came before a command could (one line; JSON with
    ``--json``); its exit code."""
    terminated = isinstance(exc, Terminated)
    message = "terminated (SIGTERM)" if terminated else "interrupted"
    code = ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED
    _err("error", message)
    _json_error(wants_json, message, code)
    return int(code)


def _fail(ctx: click.Context, message: str, code: int, details: Sequence[str] = ()) -> None:
    """Say a failure in one line on stderr (its details indented under it), as JSON on stdout with ``--json``,
    and exit with ``code``."""
    _err("error", message)
    for line in details:  # the itemised list under the one line (e.g. every missing tensor)
        click.echo(f"  {line}", err=True)
    _json_error(_wants_json(ctx), message, code, details)
    ctx.exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that a run stops as cleanly as on Ctrl-C (exit 143, not 130)."""


def raise_terminated(signum: int, frame: object) -> None:
    """The SIGTERM handler of a command that writes files: stop like Ctrl-C (`Terminated`)."""
    raise Terminated()


# ----------------------------------------------------------------------------- library errors -> the command line

#: Library parameter names (as errors write them, in backticks) -> the flags that set them. Only names whose
#: flag the messages have always shown are mapped, so every message reads as it did.
PARAM_FLAGS = {
    "pool_size": "--pool-size",
    "pool_stride": "--pool-stride",
    "pool": "--pool",
    "combine": "--combine",
    "input": "--input",
    "model": "--model",
    "background": "--background",
    "name_pattern": "--name",
    "bit_depth": "--bit-depth",
    "raw": "--raw",
    "kernels": "-k",
    "colormap": "--colormap",
    "percentiles": "--percentiles",
    "sheet": "--sheet",
    "scale": "--scale",
    "sheet_width": "--sheet-width",
    "channels": "--channels",
    "color": "--color",
    "crop": "--crop",
    "strict": "--strict",
    "upto": "--upto",
    "init": "--init",
    "preprocess": "--preprocess",
    "resize": "--resize",
    "layout": "--layout",
    "seed": "--seed",
}


def flag_words(text: str) -> str:
    """A library message with its parameter names put as the command line's flags.

    Examples
    --------
    >>> flag_words("`pool_size` and `pool_stride` need `pool` max, avg or min; `sigma` must be > 0")
    '--pool-size and --pool-stride need --pool max, avg or min; `sigma` must be > 0'
    """
    for name, flag in PARAM_FLAGS.items():
        text = text.replace(f"`{name}`", flag)
    return text


def exit_code_for(exc: FeatmapError, command: str) -> ExitCode:
    """The one rule from library errors to exit codes: options that cannot go together (`OptionError`) and,
    for ``featmap shape``, a malformed token, file or shape (`SpecError`) are usage errors (2); a missing
    optional package (`MissingExtraError`) and the rest, an impossible geometry included, are failures (1);
    a class may carry its own (4 nothing to do, 5 output folder busy)."""
    if isinstance(exc, MissingExtraError):
        return ExitCode.ERROR
    if isinstance(exc, OptionError) or (command == "shape" and isinstance(exc, SpecError)):
        return ExitCode.USAGE
    return ExitCode(exc.exit_code)  # 1, or the class's own: 4 nothing to do, 5 output folder busy


class FeatmapCommand(click.Command):
    """A command whose library errors become one line on stderr (or Click's usage message) and an exit code:
    the one place where errors meet the command line (`flag_words`, `exit_code_for`).

    Running out of memory is one line too (exit 1); any other exception is a bug: one short line asking
    for ``--debug`` (exit 70). ``featmap --debug`` lets every error through with its traceback. Python
    warnings raised meanwhile (Pillow's, numpy's) are said once each, as ``featmap: warning:`` lines after
    the command's output, never in the middle of a progress bar.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """``file://`` URLs given anywhere a path goes (inputs, ``--spec``, ``-k FILE``, ``--kernel-dir``) as paths."""
        return super().parse_args(ctx, [_local_arg(arg) for arg in args])

    def make_parser(self, ctx: click.Context) -> Any:
        """Click's parser, told not to suggest long options for a short one it tries as long first.

        Click's parser reads each ``-x`` as a long option before it reads it as a short one, and the failed try
        builds a `NoSuchOption` that suggests close long names (difflib, over the ~50 of ``featmap apply``) and
        is then dropped: ~1 ms per short option, and difflib's import, before the first image. Where that try
        must fail anyway (not a long name, and one dash: the short reading follows), it fails here without the
        suggestions; every message Click shows is unchanged. Parsers without those internals are left alone."""
        parser = super().make_parser(ctx)
        long_names, prefixes = getattr(parser, "_long_opt", None), getattr(parser, "_opt_prefixes", None)
        as_long = getattr(parser, "_match_long_opt", None)
        if isinstance(long_names, dict) and isinstance(prefixes, set) and callable(as_long):

            def match_long_opt(opt: str, explicit_value: str | None, state: Any) -> None:
                if opt not in long_names and opt[:2] not in prefixes:
                    raise click.NoSuchOption(opt, ctx=ctx)  # dropped by Click, which reads ``opt`` as short next
                as_long(opt, explicit_value, state)

            parser._match_long_opt = match_long_opt  # type: ignore[method-assign]
        return parser

    def invoke(self, ctx: click.Context) -> Any:
        import warnings

        debug = bool(ctx.meta.get("featmap.debug"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                return super().invoke(ctx)
            except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
                raise
            except FeatmapError as exc:
                if debug:
                    raise
                if isinstance(exc, OptionError):
                    raise click.UsageError(flag_words(str(exc)), ctx) from None
                details = [_one_line(line) for line in exc.details]
                _fail(ctx, _one_line(flag_words(str(exc))), exit_code_for(exc, self.name or ""), details)
            except OSError as exc:  # the file system refused (a name too long, a full disk, no permission)
                if debug:
                    raise
                _fail(ctx, _one_line(_os_line(exc)), ExitCode.ERROR)
            except MemoryError:
                if debug:
                    raise
                _fail(ctx, "out of memory; use a smaller image, fewer kernels or fewer --jobs", ExitCode.ERROR)
            except Exception as exc:
                if debug:
                    raise
                storage = _storage_error(exc, ctx)
                if storage is not None:  # object storage: no credentials, no endpoint (one line naming the settings)
                    _fail(ctx, _one_line(str(storage)), ExitCode.ERROR)
                _fail(ctx, _bug_line(exc), ExitCode.BUG)
            finally:
                said: set[str] = set()
                for warning in caught:
                    text = _one_line(f"{warning.category.__name__}: {warning.message}")
                    if text not in said:
                        said.add(text)
                        _err("warning", text)


def _local_arg(arg: str) -> str:
    """A ``file://`` URL argument (or ``--flag=file://…``) as a local path; any other argument unchanged.

    Examples
    --------
    >>> _local_arg("file:///data/a.png"), _local_arg("--spec=file:///n.yaml"), _local_arg("s3://b/a.png")
    ('/data/a.png', '--spec=/n.yaml', 's3://b/a.png')
    """
    if "file://" not in arg[:64].lower():
        return arg
    from featmap.io.storage import local_path

    flag, eq, value = arg.partition("=")
    if eq and flag.startswith("-") and value[:7].lower() == "file://":
        return f"{flag}={local_path(value)}"
    return local_path(arg)


def _storage_error(exc: BaseException, ctx: click.Context) -> FeatmapError | None:
    from featmap.io.storage import is_remote, storage_error

    values = [ctx.params.get("out_dir"), *(ctx.params.get("images") or ())]
    urls = [str(v) for v in values if v is not None and is_remote(v)]
    return storage_error(exc, ", ".join(urls[:2]) or "object storage")


def _os_line(exc: OSError) -> str:
    """An operating-system error as ``<file>: <problem>; <fix>``.

    Examples
    --------
    >>> import errno
    >>> _os_line(OSError(errno.ENOSPC, "No space left on device", "out/a.png"))
    "'out/a.png': No space left on device; check the path, its permissions and the free space"
    """
    where = brief(exc.filename, 80) + ": " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; check the path, its permissions and the free space"


def _bug_line(exc: BaseException) -> str:
    """``internal error (Type: message at file.py:line); this is a bug…``: where it was raised, no traceback."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return (
        _one_line(f"internal error ({type(exc).__name__}: {exc}{where})", 200)
        + "; this is a bug in featmap: rerun with `featmap --debug ...` for the traceback and report it"
    )


class FeatmapGroup(click.Group):
    """A group whose commands are `FeatmapCommand`s, and which turns Ctrl-C into one line and exit code 130,
    and a usage error (a bad flag or value, options that cannot go together) into one line and exit code 2:
    ``featmap: error: <problem>; see 'featmap apply --help'``."""

    command_class = FeatmapCommand

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        """The context, noting whether the command line asks for JSON (its commands' failures then print JSON
        on stdout too, usage errors and interrupts included)."""
        wants_json = asks_json(args)
        ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta["featmap.json"] = wants_json
        return ctx

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        wants_json = asks_json(list(args) if args is not None else sys.argv[1:])
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare `featmap`: the help, as Click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "featmap"
            message = " ".join(exc.format_message().split()).rstrip(".")
            _err("error", f"{message}; see '{where} --help'")
            _json_error(wants_json, f"{message}; see '{where} --help'", ExitCode.USAGE)
            sys.exit(ExitCode.USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            _err("error", "interrupted")
            _json_error(wants_json, "interrupted", ExitCode.INTERRUPTED)
            sys.exit(ExitCode.INTERRUPTED)
        sys.exit(code if isinstance(code, int) else ExitCode.OK)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Terminated:
            _fail(ctx, "terminated (SIGTERM); unfinished outputs were removed", ExitCode.TERMINATED)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", ExitCode.INTERRUPTED)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "160"))
    if os.environ.get("NO_COLOR"):  # https://no-color.org: Rich drops colour but keeps bold; drop all styling
        return Console(file=stream, width=width, soft_wrap=False, color_system=None)
    return Console(file=stream, width=width, soft_wrap=False)


from featmap.cli._options import (  # noqa: E402  # re-exported: the commands import them from here
    IntsType,
    PadModeType,
    conv_options,
    kernel_options,
    output_options,
)

__all__ = [
    "ExitCode",
    "Terminated",
    "FeatmapCommand",
    "FeatmapGroup",
    "IntsType",
    "PadModeType",
    "conv_options",
    "exit_code_for",
    "flag_words",
    "kernel_options",
    "output_options",
    "raise_terminated",
]
