"""The apply command's scale-out options: ``--scheduler`` and ``--chunk``, and ``-o`` as a folder or a URL.

Whether a batch goes to fsspec or Dask is `featmap.apply_batch`'s to decide; local paths without
``--scheduler`` never import either.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from featmap.errors import brief
from featmap.io.storage import is_remote, local_out_dir, local_path

__all__ = ["OutLocation", "local_out_dir", "scale_options"]

F = TypeVar("F", bound=Callable[..., Any])


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
