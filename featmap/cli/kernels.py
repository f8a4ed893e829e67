"""featmap kernels list / show."""

from __future__ import annotations

import json
from pathlib import Path

import click

from featmap.cli._common import (
    FeatmapGroup,
    _console,
    kernel_options,
)
from featmap.errors import FeatmapError


@click.group(cls=FeatmapGroup)
def kernels() -> None:
    """List and inspect the kernel library.

    \b
    Examples:
      featmap kernels list --tag edges
      featmap kernels show sobel_x
    """


@kernels.command("list", short_help="List every kernel: name, size, tags, description and source.")
@kernel_options
@click.option("--tag", default=None, help="Only kernels with this tag.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def kernels_list(kernel_dirs: tuple[Path, ...], tag: str | None, as_json: bool) -> None:
    """List every kernel: name, size, tags, description and source.

    \b
    Examples:
      featmap kernels list
      featmap kernels list --tag blur --json
      featmap kernels list --kernel-dir my_kernels/
    """
    from featmap.kernels import KernelLibrary
    from featmap.render import kernel_dict, kernel_list

    chosen = [k for k in KernelLibrary(kernel_dirs) if tag is None or tag in k.tags]
    if tag is not None and not chosen:
        raise FeatmapError("--tag", f"no kernel has tag {tag!r}", "see `featmap kernels list` for the tags")
    if as_json:
        click.echo(json.dumps([kernel_dict(k) for k in chosen], indent=2, allow_nan=False))
    else:
        _console().print(kernel_list(chosen))


@kernels.command("show", short_help="Show a kernel's weights and facts.")
@click.argument("spec")
@kernel_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def kernels_show(spec: str, kernel_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Show the weights and facts of SPEC (a name, tag, file or parametric kernel).

    \b
    Examples:
      featmap kernels show sobel_x
      featmap kernels show gaussian:size=5,sigma=1.2
      featmap kernels show kernels/edges.yaml --json
    """
    from featmap.kernels import KernelLibrary
    from featmap.render import kernel_dict, kernel_show

    chosen = KernelLibrary(kernel_dirs).select(spec)
    if as_json:
        data = [kernel_dict(k) for k in chosen]
        click.echo(json.dumps(data[0] if len(data) == 1 else data, indent=2, allow_nan=False))
        return
    console = _console()
    for k in chosen:
        console.print(kernel_show(k))
