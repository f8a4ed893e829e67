"""A batch's mistakes that no pixel decides, found for the whole batch before any work: one message.

Two checks, each cheap beside the work it saves (`check_batch`):

- ``combine`` needs every kernel's map to have one shape. The shapes follow from each image's size
  (read from its header, not decoded) and the options; valid padding with kernels of different sizes
  fails on every image alike.
- An output that exists and was made from another input or with other options is refused per image
  unless ``--overwrite``; ``--skip-existing`` skips only outputs made with the same options. Asked
  up front, a re-run with changed options is one error naming how many images it concerns and the flag
  that replaces them, instead of one error an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from pathlib import Path
from typing import Any

from featmap.errors import FeatmapError, OptionError, brief
from featmap.io.outputs import MANIFEST_NAME, Manifest

__all__ = ["check_batch"]

#: Distinct image sizes whose map shapes are worked out; more sizes than this are checked on these.
_MAX_SIZES = 256


def check_batch(items: Sequence[Any], job: Any, *, overwrite: bool, resume_processes: int = 0) -> None:
    """Raise one `OptionError` (a usage error: exit 2) for a mistake that would fail images of ``items``
    alike: maps that ``combine`` cannot merge, or outputs that other options made (without ``overwrite``).
    Nothing is read beyond image headers and the output folder's manifest; nothing is written.
    ``resume_processes``: a resume's (``--skip-existing``) processes on this machine; from 2, the resume check's
    stats begin here, as soon as the outputs' names are known (`featmap.run.resume.Recorded`)."""
    if getattr(job, "combine", None) is not None:
        _check_combine(items, job)
    if not overwrite:
        _check_existing(items, job, resume_processes)


def _header_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from the image's header, or None when it cannot be read (its run says why)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # any failure to open is the image's own error, reported when it is processed
        return None
    return height, width


def _check_combine(items: Sequence[Any], job: Any) -> None:
    from featmap.run.pipeline import plan_kernels

    slices = {k.weights.shape[0] for k in job.bank if k.weights.ndim == 3}
    if len(slices) > 1:
        return  # kernels for different channel counts: each image's own error says which
    channels = slices.pop() if slices else 3 if job.color else 1
    sizes: dict[tuple[int, int], list[str]] = {}
    for item in items:
        path = getattr(item, "path", None)
        if path is None or getattr(item, "url", None):
            continue
        size = _header_size(Path(path))
        if size is not None and (size in sizes or len(sizes) < _MAX_SIZES):
            sizes.setdefault(size, []).append(str(path))
    failing: list[str] = []
    example = ""
    for (height, width), paths in sizes.items():
        try:
            plans = plan_kernels((height, width, channels), job.bank, job.conv, job.pool)
        except FeatmapError:
            continue  # a kernel larger than the image and the like: the image's own error
        shapes = {p.kernel.name: tuple(p.conv_plan.out_shape) for p in plans}
        if len(set(shapes.values())) > 1:
            failing += paths
            if not example:
                example = ", ".join(f"{name} {'×'.join(map(str, s))}" for name, s in list(shapes.items())[:4])
                example = f"{Path(paths[0]).name} ({height}×{width}): {example}"
    if failing:
        where = f"on {len(failing)} of {len(items)} images, e.g. " if len(items) > 1 else ""
        raise OptionError(
            "`combine`",
            f"maps differ in shape {where}{example}",
            "use `padding` same, or combine kernels of one size",
        )


def _busy(out_dir: Path) -> bool:
    """Whether a live run holds the folder (`OutputLock`): the batch then refuses it as busy (exit 5), and the
    files that run is writing are not another input's outputs."""
    import fcntl
    import os

    from featmap.io.outputlock import LOCK_NAME

    try:
        fd = os.open(out_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when the file is closed
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _check_existing(items: Sequence[Any], job: Any, resume_processes: int = 0) -> None:
    from featmap.io.manifest_index import lend
    from featmap.run.imagejob import targets_for
    from featmap.run.resume import Begun, Recorded

    out_dir = Path(job.output.out_dir)
    if not out_dir.is_dir() or not any(out_dir.iterdir()) or _busy(out_dir):
        return
    recorded = (out_dir / MANIFEST_NAME).exists()
    # A resume on more processes: its names first and its stats begun, beside the manifest's reading and the check.
    begun = Begun(items, job, resume_processes) if recorded and resume_processes > 1 else None
    try:
        manifest = Manifest(out_dir) if recorded else None
    except BaseException:
        if begun is not None:
            begun.let_go()
        raise
    digest = job.options_hash()
    clashes: list[Path] = []
    # An input whose every output the manifest records, last, as its own with these options clashes with
    # nothing, whatever is on disk: asked for the whole batch, by name, with no file system call (a resume).
    batch = Recorded(items, job, digest, manifest, resume_processes, begun) if manifest is not None else None
    unrecorded = [not found for found in batch.recorded] if batch is not None else repeat(True)
    for item in compress(items, unrecorded):  # a resume's 10⁵ recorded inputs: not one Python step each
        if getattr(item, "url", None):
            continue
        source = Path(item.path)
        try:
            targets = targets_for(item, job).values()
        except FeatmapError:
            continue  # a pattern this input cannot use: its own error
        for target in targets:
            if target.exists() and target.resolve() != source.resolve():
                if manifest is None or not manifest.made_by(target, source, digest):
                    clashes.append(target)
                    break
    if manifest is not None and batch is not None and not clashes:  # the batch asks the same next: asked once
        lend(manifest._outputs, manifest._size, manifest._indexed)
        batch.share()
    if clashes:
        if batch is not None:
            batch.let_go()
        first = clashes[0]
        rel = first.relative_to(out_dir).as_posix() if first.is_relative_to(out_dir) else str(first)
        raise OptionError(
            str(out_dir),
            f"{len(clashes)} of {len(items)} images have outputs made from another input or with other options "
            f"(first: {brief(rel, 80)}); --skip-existing skips only outputs made with the same options",
            "pass --overwrite to replace them, or choose another -o folder",
        )
