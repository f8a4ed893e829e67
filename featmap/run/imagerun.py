"""One interface for every image command: an `ImageJob` (`featmap.run.jobs.ApplyJob` for a kernel bank,
`featmap.run.netjob.NetworkJob` for a network) opens an `ImageRun` per image, the stream of that image's layer
outputs (`featmap.net.records.LayerMaps`) with its manifest records, and `write_image` hands the stream to one set
of writers (`featmap.io.writers`), whatever made it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from featmap.io.discover import InputImage
    from featmap.io.images import LoadedImage
    from featmap.io.outputs import OutputOptions
    from featmap.io.writers import Writer
    from featmap.net.records import LayerMaps

__all__ = ["ImageJob", "ImageRun", "write_image"]


class ImageJob(Protocol):
    """What every image command's job gives the batch: how its outputs are written, a digest of the options that
    change them, and the files an input will get (by name: map keys, then ``(sheet)``/``(report)``)."""

    @property
    def output(self) -> OutputOptions:
        """Where and how outputs are written."""
        ...

    @property
    def max_pixels(self) -> int | None:
        """The decompression-bomb guard images are read with."""
        ...

    def options_hash(self) -> str:
        """A digest of every setting that changes an output's bytes (the manifest's ``options``)."""
        ...

    def targets(self, item: InputImage, *, single: bool = False) -> dict[str, Path]:
        """Every file ``item`` will produce, by name (a ``single`` image's report is the folder's ``report.html``)."""
        ...


class ImageRun(Protocol):
    """One image through a job, loaded and planned: the stream of its layer outputs and its manifest records.

    `write_image` opens the writers named by `formats`, calls `Writer.begin` with `image` and `subject`, hands each
    layer output of `layers` to every writer (`Writer.add_layer` with `writer_targets`), then tells `written` what
    they made; after the last layer each writer's `Writer.finish` (with `targets`) goes to `finished`, and `result`
    is the image's outcome.
    """

    @property
    def item(self) -> InputImage:
        """The input (a `featmap.io.discover.FetchedImage` names the URL its file came from)."""
        ...

    @property
    def image(self) -> LoadedImage:
        """The input as loaded (what the sheet and report show)."""
        ...

    @property
    def subject(self) -> Any:
        """What the per-image writers (the sheet, the report) draw besides the layer outputs, handed to every
        writer's `Writer.begin`: a kernel bank's job; a network run's `featmap.io.writers.netpictures.NetworkDrawing`
        (None when neither is asked for)."""
        ...

    @property
    def targets(self) -> dict[str, Path]:
        """The image's files by name (`ImageJob.targets`): what the manifest checks and records."""
        ...

    @property
    def writer_targets(self) -> Mapping[str, Path]:
        """`targets` and any file a writer makes for a whole layer (a network layer's raw stack)."""
        ...

    @property
    def formats(self) -> tuple[str, ...]:
        """The writers the image's layer outputs go to (`featmap.io.writers.REGISTRY` names)."""
        ...

    def layers(self) -> Iterator[LayerMaps]:
        """The image's layer outputs, one at a time."""
        ...

    def written(self, layer: LayerMaps, files: Mapping[str, list[Path | None]], writers: Sequence[Writer]) -> None:
        """Record what the writers made of ``layer`` (``files`` by writer name, one entry per map or stack)."""
        ...

    def finished(self, writer: Writer, files: tuple[Path, ...]) -> None:
        """Record the per-image files ``writer`` made when the image was done."""
        ...

    def result(self) -> Any:
        """The image's outcome, timed from when the run was opened (`featmap.run.imagejob.ImageResult`,
        `featmap.run.netimage.NetworkImageResult`)."""
        ...


def write_image(run: ImageRun, job: ImageJob) -> Any:
    """Hand one image's layer outputs to the one set of writers its job asks for, and return its outcome.

    Outputs are computed and written one layer after another, so memory holds one layer output at a time.
    """
    from featmap.io.images import fetched_from
    from featmap.io.writers import open_writers

    writers = open_writers(job.output, run.formats)
    image = fetched_from(run.image, run.item.source)  # a fetched input's pages name its URL, not the local copy
    for writer in writers:
        writer.begin(image, run.subject)
    for layer in run.layers():
        run.written(layer, {w.name: w.add_layer(run.writer_targets, layer) for w in writers}, writers)
        del layer
    for writer in writers:
        run.finished(writer, writer.finish(run.targets))
    return run.result()
