"""The apply command's scale-out options: ``--scheduler`` and ``--chunk``, and URLs for inputs and ``-o``.

Kept apart from `featmap.cli.apply` so that the command only asks `scaled_batch` whether a batch goes to
fsspec or Dask; local paths without ``--scheduler`` never import either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from featmap.errors import brief
from featmap.io.storage import is_remote, local_path

__all__ = ["OutLocation", "local_out_dir", "scale_options", "scaled_batch"]

F = TypeVar("F", bound=Callable[..., Any])

#: Where a remote output's target paths are worked out; nothing is ever written there.
_REMOTE_PLACEHOLDER = Path("/featmap-remote-output")


class OutLocation(click.ParamType):  # type: ignore[type-arg]  # generic only in newer Click
    """An output folder: a local path (``file://`` accepted) as a `Path`, or an fsspec URL kept as text."""

    name = "DIR|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path) or not is_remote(value):
            path = Path(local_path(str(value)))
            problem = folder_problem(path)
            if problem:
                self.fail(f"{brief(str(value))} {problem}", param, ctx)
            return path
        return str(value)


def folder_problem(path: Path) -> str:
    """Why ``path`` cannot be an output folder (a file, a file on its way, a name too long), or ``""``.

    Examples
    --------
    >>> folder_problem(Path("x" * 300))
    'has a name of 300 bytes, longer than the 255 the file system allows; give a shorter name'
    """
    import errno
    import os

    for part in path.parts:
        size = len(os.fsencode(part))
        if size > 255:  # NAME_MAX on Linux, macOS and Windows alike
            return f"has a name of {size} bytes, longer than the 255 the file system allows; give a shorter name"
    for parent in (path, *path.parents):
        try:
            if parent.is_file():
                where = "is a file" if parent == path else f"is inside {brief(str(parent))}, which is a file"
                return f"{where}; give a folder"
            if parent.is_dir():
                return ""
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                return "is a path longer than the file system allows; give a shorter one"
            return f"cannot be checked ({exc.strerror}); give another folder"
    return ""


def local_out_dir(out: Path | str) -> Path:
    """The folder `OutputOptions` works out targets in: the output folder, or a placeholder for a URL."""
    return out if isinstance(out, Path) else _REMOTE_PLACEHOLDER


def scale_options(func: F) -> F:
    """``--scheduler`` (also ``FEATMAP_SCHEDULER``) and ``--chunk``."""
    func = click.option(
        "--chunk",
        type=click.IntRange(1, 1000),
        default=None,
        help="Images per Dask task  [default: 4].",
    )(func)
    return click.option(
        "--scheduler",
        envvar="FEATMAP_SCHEDULER",
        default=None,
        metavar="ADDRESS",
        help="Run the batch on Dask: 'local' (a LocalCluster of -j workers) or tcp://host:8786 "
        "(pip install 'featmap[dask]').",
    )(func)


def scaled_batch(
    images: Sequence[str], job: Any, opts: dict[str, Any], jobs: int
) -> tuple[list[Any], list[tuple[str, str]], int, Callable[..., Any]] | None:
    """For URLs or ``--scheduler``: ``(items, problems, ignored, run)`` with ``run(on_progress)`` the batch.
    None for local paths on this machine (the command's own path, unchanged)."""
    out = opts["out_dir"]
    scheduler = opts.get("scheduler") or None
    remote = is_remote(out) or any(is_remote(i) for i in images)
    if not remote and not scheduler:
        return None
    backend = None
    if scheduler:
        from featmap.run.backends import choose_backend
        from featmap.run.backends.dask import require_dask

        require_dask()
        backend = choose_backend(scheduler, jobs=jobs, chunk=opts.get("chunk"))
    skip = opts["skip_existing"]
    if not remote:
        from featmap.io.discover import discover
        from featmap.run.batch import run_batch

        items, problems, ignored = discover(images, recursive=opts["recursive"], exclude=[out])

        def run_local(on_progress: Any) -> Any:
            return run_batch(items, job, jobs=jobs, skip_existing=skip, on_progress=on_progress, backend=backend)

        return items, problems, ignored, run_local
    from featmap.io.storage import discover_urls
    from featmap.run.backends.urlbatch import run_url_batch

    found, problems, ignored = discover_urls(
        [local_path(i) for i in images], recursive=opts["recursive"], exclude=out if is_remote(out) else None
    )
    if not is_remote(out):
        excluded = Path(out).resolve()
        found = [i for i in found if getattr(i, "url", None) or not Path(i.path).resolve().is_relative_to(excluded)]

    def run_urls(on_progress: Any) -> Any:
        return run_url_batch(found, job, out, backend=backend, jobs=jobs, skip_existing=skip, on_progress=on_progress)

    return found, problems, ignored, run_urls
