"""Output writers: one interface for every file featmap makes from a feature map, chosen by name.

The batch (`featmap.run.batch.process_image`) opens the writers an `OutputOptions` asks for
(`open_writers`), hands each one every map of an image in order, then tells each the image is done.
It never knows a format: quantising, encoding and file suffixes live in the writers.

Writing a writer
----------------
A writer is a subclass of `Writer` in its own module of this package, plus one line in `REGISTRY`
(``name -> "module:Class"``, imported on first use, as Pillow's format plugins are registered)::

    class GifWriter(Writer):
        name = "gif"               # the registry key, the word users pass (e.g. in ``--raw`` or a job)
        suffix = ".gif"            # the file's suffix, put on the map's target path
        manifest_key = "gif"       # the manifest record field that names the file (None: not recorded)
        per_map = False            # True: one file per map (add returns it); False: one per image

        def add(self, target, fmap):       # each map of an image, in order (a kernel's, a network channel's)
            self.frames.append(...)        # keep what you need; the map's array is freed after the call
            return None
        def finish(self, targets):         # the image is done; ``targets`` maps map names to their paths
            return (atomic_write(path, ...),)

A run hands the writers one layer output at a time (`Writer.add_layer` with a `featmap.net.records.LayerMaps`:
a kernel's map is a layer of its own, a network layer brings its channels and its whole output); the default
calls `add` for each map, and a writer overrides it to take the layer as one (the PNG writer writes a layer's
channels on two threads; the raw writers write a network layer's whole stack). A map is a
`featmap.net.records.Map` (values and facts) whatever made it.

A new writer instance is opened for every image, so state kept on ``self`` is per image. Every file is
written with `featmap.io.images.atomic_write` (temporary sibling, then rename). `planned_paths` must name
every file the writer may create for an image (the batch checks them before and removes them after an
interrupted image). Only `featmap.io.writers.png` quantises float maps to 8/16-bit pixels.

Registered: ``png`` (8/16-bit, the primary output; 8-bit RGB with a colormap), ``npy`` and ``tiff`` (float32
arrays), ``json`` (the maps' facts of one image, one file), ``pictures`` (a kernel bank's ``--sheet`` and
``--report``: it needs the input image and the job, which `Writer.begin` hands every writer before the first
map), ``netpictures`` (a network run's: `Writer.begin` hands it the run's
`featmap.io.writers.netpictures.NetworkDrawing`, a pure data object the run works out before the first layer,
and it takes each layer as one). Not a map writer, so not
registered: `featmap.io.writers.gif` draws an explanation (`featmap explain --gif`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from featmap.errors import SpecError

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from featmap.io.images import LoadedImage
    from featmap.io.outputs import OutputOptions
    from featmap.net.records import LayerMaps, Map

__all__ = [
    "REGISTRY",
    "REPORT_KEY",
    "SHEET_KEY",
    "Writer",
    "get_writer",
    "layer_planes",
    "open_writers",
    "register",
    "writer_names",
]

#: The keys of an image's targets (`featmap.run.batch.targets_for`) naming its sheet and its report (here, not in
#: `featmap.io.writers.pictures`, so that a run without ``--sheet`` or ``--report`` does not load the drawing).
SHEET_KEY, REPORT_KEY = "(sheet)", "(report)"

#: name -> "module:Class" (relative to this package); a new writer is one module and one line here.
REGISTRY: dict[str, str] = {
    "png": "png:PngWriter",
    "npy": "raw:NpyWriter",
    "tiff": "raw:TiffWriter",
    "json": "summary:JsonWriter",
    "pictures": "pictures:PicturesWriter",  # --sheet and --report: they need the input, see `Writer.begin`
    "netpictures": "netpictures:NetworkPicturesWriter",  # a network run's --sheet and --report
}


class Writer(ABC):
    """One output format. Subclasses set `name`, `suffix`, `manifest_key`, `per_map` and implement `add`."""

    name: ClassVar[str]
    suffix: ClassVar[str]
    #: The field of a map's manifest record that names this writer's file (None: not recorded per map).
    manifest_key: ClassVar[str | None] = None
    #: True when the writer makes one file per map (returned by `add`), False for one file per image.
    per_map: ClassVar[bool] = True

    def __init__(self, options: OutputOptions) -> None:
        self.options = options

    def begin(self, image: LoadedImage, job: Any) -> None:  # noqa: B027 - a hook most writers leave alone
        """Called once per image before its first map, with the loaded input and what the run draws besides its
        maps (`featmap.run.imagerun.ImageRun.subject`: a kernel bank's job, a network run's
        `featmap.io.writers.netpictures.NetworkDrawing`), for writers that show them (the sheet and the report)."""

    def path_for(self, target: Path) -> Path:
        """The file this writer makes for the map whose primary (PNG) target path is ``target``."""
        return target.with_suffix(self.suffix)

    def planned_paths(self, targets: Mapping[str, Path]) -> list[Path]:
        """Every file this writer may create for an image whose maps go to ``targets`` (name -> path)."""
        return [self.path_for(t) for t in targets.values()] if self.per_map else []

    @abstractmethod
    def add(self, target: Path, fmap: Map) -> Path | None:
        """Take one map of the image; return the file written for it, or None (a per-image writer)."""

    def add_layer(self, targets: Mapping[str, Path], layer: LayerMaps) -> list[Path | None]:
        """Take one layer output of the image (its maps go to ``targets[map.info.name]``); return the files
        written for it in order (None for a map a per-image writer keeps). The default adds each map."""
        return [self.add(targets[m.info.name], m) for m in layer.maps]

    def finish(self, targets: Mapping[str, Path]) -> tuple[Path, ...]:
        """The image's last map has been added: write any per-image file and return what was written."""
        return ()


def register(name: str, where: str) -> None:
    """Register writer ``name`` as ``"module:Class"`` (a module of this package, or an absolute one)."""
    REGISTRY[name] = where


def writer_names() -> tuple[str, ...]:
    """The registered writer names.

    Examples
    --------
    >>> writer_names()[:3]
    ('png', 'npy', 'tiff')
    """
    return tuple(REGISTRY)


def get_writer(name: str) -> type[Writer]:
    """The writer class registered as ``name``.

    Examples
    --------
    >>> get_writer("npy").suffix
    '.npy'
    """
    if name not in REGISTRY:
        raise SpecError("`writer`", f"unknown output format {name!r}", f"use one of: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    found: type[Writer] = getattr(import_module(module if "." in module else f"{__name__}.{module}"), cls)
    return found


def open_writers(options: OutputOptions, names: Sequence[str] | None = None) -> list[Writer]:
    """Fresh writers for one image: ``names``, or the ones ``options`` asks for (`OutputOptions.formats`)."""
    return [get_writer(name)(options) for name in (options.formats if names is None else names)]


def layer_planes(values: NDArray[Any]) -> NDArray[Any]:
    """A layer output as the writers draw it, ``(H, W, C)``: a 1-D ``(L, C)`` output as columns, a flat one (or
    1×1×C) as a one-row strip.

    Examples
    --------
    >>> import numpy as np
    >>> layer_planes(np.zeros(10)).shape, layer_planes(np.zeros((1, 1, 4))).shape, layer_planes(np.zeros((5, 3))).shape
    ((1, 10, 1), (1, 4, 1), (5, 1, 3))
    """
    if values.ndim == 1 or (values.ndim == 3 and values.shape[0] * values.shape[1] == 1):
        return values.reshape(1, -1, 1)
    if values.ndim == 2:
        return values[:, None, :]
    return values
