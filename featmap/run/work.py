"""One image as a back end's task: `work_image` for a local input and output folder, `work_url` for fsspec URLs.

Both return ``(index, result, error)``: a failure becomes its one-line reason, never an exception, so a batch
goes on. Every back end (`featmap.run.backends`) ships these unchanged functions; the batch loop
(`featmap.run.batch`) keeps the manifest.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from featmap.errors import FeatmapError
from featmap.io.discover import FetchedImage, InputImage
from featmap.io.storage import UrlImage, filesystem, join_url
from featmap.run.imagejob import ImageResult, process_image
from featmap.run.jobs import ApplyJob

__all__ = ["work_image", "work_url"]


def work_image(task: tuple[int, InputImage, ApplyJob]) -> tuple[int, ImageResult | None, str | None]:
    """Process one image; a failure becomes its reason. Python warnings (Pillow's, numpy's) join the
    result's warnings instead of reaching stderr in the middle of a progress bar."""
    import warnings

    index, item, job = task
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = process_image(item, job)
        if caught:
            said = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
            result = replace(result, warnings=result.warnings + said)
        return index, result, None
    except FeatmapError as exc:
        return index, None, f"{exc.problem}" + (f"; {exc.fix}" if exc.fix else "")
    except (FileExistsError, NotADirectoryError) as exc:
        return index, None, f"{exc.filename} is a file where an output folder should be; move it or choose another -o"
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return index, None, f"cannot write{where}: {exc.strerror or exc}; check the output folder"
    except MemoryError:
        return index, None, "out of memory; use fewer --jobs or a smaller image"
    except (ValueError, ArithmeticError) as exc:
        return index, None, f"{type(exc).__name__}: {exc}"


def work_url(task: tuple[int, Any, Any]) -> tuple[int, Any, str | None]:
    """`work_image` for URLs: ``task`` is ``(index, input, (job, out_url))`` with ``out_url`` None
    for a local output folder. The input is fetched, the image processed by the unchanged per-image function,
    and each output uploaded whole."""
    import tempfile

    index, item, (job, out_url) = task
    with tempfile.TemporaryDirectory(prefix="featmap-") as temp:
        staged = Path(temp)
        source = item.path
        if isinstance(item, UrlImage):
            fs, path = filesystem(item.url)
            source = staged / "in" / item.path.name
            source.parent.mkdir()
            try:
                source.write_bytes(fs.cat_file(path))
            except (OSError, ValueError) as exc:  # missing, denied, network
                return index, None, f"cannot read {item.url} ({type(exc).__name__}: {exc}); check the URL and access"
        local_item = FetchedImage(source, item.rel_dir, item.stem, item.url) if isinstance(item, UrlImage) else item
        local_job = job if out_url is None else replace(job, output=replace(job.output, out_dir=staged / "out"))
        _, result, error = work_image((index, local_item, local_job))
        if result is None:
            return index, None, error
        if out_url is not None:
            fs, _ = filesystem(out_url)
            out = staged / "out"
            try:  # every file the writers made for this image, each in one whole write (one PUT)
                for file in sorted(p for p in out.rglob("*") if p.is_file()):
                    rel = file.relative_to(out).as_posix()
                    fs.pipe_file(filesystem(join_url(out_url, rel))[1], file.read_bytes())
            except (OSError, ValueError) as exc:
                return (
                    index,
                    None,
                    f"cannot write under {out_url} ({type(exc).__name__}: {exc}); check the URL and access",
                )
        if isinstance(item, UrlImage):
            records = tuple({**rec, "input": item.url} for rec in result.records)
            said = tuple(w.replace(str(source), item.url) for w in result.warnings)  # the URL, not the staged copy
            result = replace(result, input=replace(result.input, path=item.url), records=records, warnings=said)
        if out_url is not None:
            out = staged / "out"
            maps = tuple(
                replace(m, png=m.png.relative_to(out), raw=None if m.raw is None else m.raw.relative_to(out))
                for m in result.maps
            )
            result = replace(result, maps=maps)
            network: Any = result
            if getattr(network, "layers", None):  # a network's layers: files relative to the folder, as a kernel's maps
                layers = [replace(la, files=tuple(f.relative_to(out) for f in la.files)) for la in network.layers]
                result = replace(network, layers=tuple(layers))
        return index, result, None
