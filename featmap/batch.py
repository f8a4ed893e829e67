"""Apply a kernel bank to image files and write the maps: loading, naming, safe writing, the manifest.

`apply_image` does one file: load → `pipeline.iter_feature_maps` → PNG (and raw) per map, each
written atomically, then one manifest line per map in ``manifest.jsonl`` of the output folder.
An existing output is replaced only when the manifest shows it came from the same input with the
same options (a re-run), or with ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .enums import Combine, Normalize, parse_enum
from .errors import OutputExistsError, SpecError
from .images import DEFAULT_MAX_PIXELS, ImageInfo, load_image, save_png, save_raw
from .kernels import KernelBank
from .layers import Act, Conv2d, GlobalPool2d, Pool2d
from .ops import normalize
from .pipeline import MapInfo, iter_feature_maps, stride_warnings

__all__ = ["MANIFEST_NAME", "ApplyJob", "ImageResult", "OutputOptions", "WrittenMap", "apply_image"]

MANIFEST_NAME = "manifest.jsonl"
_FIELDS = {"stem", "kernel", "ext"}


@dataclass(frozen=True)
class OutputOptions:
    """Where and how maps are written.

    ``name`` is a pattern relative to ``out_dir`` with ``{stem}`` (input name without suffix),
    ``{ext}`` (input suffix without the dot) and ``{kernel}``; ``.png`` is added when absent.
    """

    out_dir: Path = Path("featmap-out")
    name: str = "{stem}/{kernel}"
    normalize: Normalize = Normalize.MINMAX
    bit_depth: int = 8
    raw: str | None = None
    png_compress: int = 1
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "normalize", parse_enum(Normalize, self.normalize, "normalize"))
        pattern = self.name[:-4] if self.name.lower().endswith(".png") else self.name
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
        except ValueError as exc:
            raise SpecError("--name", f"bad pattern {self.name!r} ({exc})", "e.g. '{stem}_{kernel}.png'") from None
        if used - _FIELDS or "kernel" not in used:
            raise SpecError(
                "--name",
                f"pattern {self.name!r} must use {{kernel}} and only {{stem}}, {{ext}}, {{kernel}}",
                "e.g. '{stem}_{kernel}.png'",
            )
        object.__setattr__(self, "name", pattern)
        if self.bit_depth not in (8, 16):
            raise SpecError("--bit-depth", f"must be 8 or 16; got {self.bit_depth}")
        if self.raw not in (None, "npy", "tiff"):
            raise SpecError("--raw", f"unknown format {self.raw!r}", "use npy or tiff")

    def target(self, source: Path, kernel: str) -> Path:
        """The PNG path for ``kernel``'s map of ``source``; never outside ``out_dir``."""
        rel = self.name.format(stem=source.stem, ext=source.suffix.lstrip("."), kernel=kernel) + ".png"
        path = self.out_dir / rel
        root = self.out_dir.resolve()
        if Path(rel).is_absolute() or not path.resolve().is_relative_to(root):
            raise SpecError(
                "--name", f"{rel!r} points outside the output folder {self.out_dir}", "use a relative pattern"
            )
        return path


@dataclass(frozen=True)
class ApplyJob:
    """Everything `apply_image` needs besides the input path."""

    bank: KernelBank
    conv: Conv2d = Conv2d()
    act: Act = Act()
    pool: Pool2d | GlobalPool2d | None = None
    combine: Combine | None = None
    strict: bool = False
    color: bool = False
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    output: OutputOptions = field(default_factory=OutputOptions)

    def __post_init__(self) -> None:
        if self.combine is not None:
            object.__setattr__(self, "combine", parse_enum(Combine, self.combine, "combine"))
        if self.combine is not None and len(self.bank) < 2:
            raise SpecError(
                "--combine",
                f"needs two or more kernels; got {len(self.bank)}",
                "add -k for each map to combine",
            )

    def options_hash(self) -> str:
        """A digest of every setting that changes an output's pixels (kernels' weights included)."""
        out = self.output
        recipe: dict[str, Any] = {
            "conv": asdict(self.conv),
            "act": asdict(self.act),
            "pool": None if self.pool is None else {"type": type(self.pool).__name__, **asdict(self.pool)},
            "combine": self.combine,
            "color": self.color,
            "background": self.background,
            "normalize": out.normalize,
            "bit_depth": out.bit_depth,
            "raw": out.raw,
            "kernels": [(k.name, k.weights.tolist(), k.bias) for k in self.bank],
        }
        text = json.dumps(recipe, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WrittenMap:
    """A map's facts and the files written for it."""

    info: MapInfo
    png: Path
    raw: Path | None


@dataclass(frozen=True)
class ImageResult:
    """The outcome of one input image."""

    input: ImageInfo
    maps: tuple[WrittenMap, ...]
    warnings: tuple[str, ...]
    options_hash: str
    seconds: float


def _read_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The latest manifest record for each output (keyed by the PNG path relative to ``out_dir``)."""
    path = out_dir / MANIFEST_NAME
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash says nothing about the outputs
            if isinstance(rec, dict) and isinstance(rec.get("png"), str):
                records[rec["png"]] = rec
    return records


def _append_manifest(out_dir: Path, records: Sequence[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    fd = os.open(out_dir / MANIFEST_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _check_targets(paths: Sequence[Path], source: Path, job: ApplyJob, digest: str) -> None:
    out = job.output
    known = None
    for path in paths:
        if path.exists() and path.resolve() == source.resolve():
            raise OutputExistsError(str(path), "is the input image itself", "choose another -o folder or --name")
        if out.overwrite or not path.exists():
            continue
        known = _read_manifest(out.out_dir) if known is None else known
        rec = known.get(path.relative_to(out.out_dir).as_posix())
        if not rec or rec.get("input") != str(source.resolve()) or rec.get("options") != digest:
            raise OutputExistsError(
                str(path),
                "exists and was not made from this input with these options",
                "pass --overwrite to replace it, or choose another -o folder",
            )


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def apply_image(source: str | os.PathLike[str], job: ApplyJob) -> ImageResult:
    """Load ``source``, run ``job``'s kernels and write one PNG (and raw array) per map.

    Maps are computed and written one after another, so memory holds one map at a time.
    """
    started = time.perf_counter()
    path = Path(source)
    image = load_image(path, color=job.color, background=job.background, max_pixels=job.max_pixels)
    out = job.output
    digest = job.options_hash()
    names = list(job.bank.names) + ([job.combine.value] if job.combine is not None else [])
    targets = {name: out.target(path, name) for name in names}
    _check_targets(list(targets.values()), path, job, digest)
    in_hw = (image.info.height, image.info.width)
    notes: list[str] = []
    for kernel in job.bank:
        for what, problem in stride_warnings(in_hw, kernel.size, job.conv, job.pool):
            if f"{what}: {problem}" not in notes:
                notes.append(f"{what}: {problem}")
    written: list[WrittenMap] = []
    records: list[dict[str, Any]] = []
    maps = iter_feature_maps(
        image.pixels, job.bank, job.conv, job.act, job.pool, combine=job.combine, strict=job.strict
    )
    for fmap in maps:
        png = save_png(
            targets[fmap.info.name],
            normalize(fmap.values, out.normalize),
            bit_depth=out.bit_depth,
            compress_level=out.png_compress,
        )
        raw = None
        if out.raw is not None:
            raw = save_raw(png.with_suffix("." + out.raw), fmap.values, out.raw)
        written.append(WrittenMap(fmap.info, png, raw))
        records.append(
            {
                "input": str(path.resolve()),
                "kernel": fmap.info.name,
                "png": _rel(png, out.out_dir),
                "raw": None if raw is None else _rel(raw, out.out_dir),
                "options": digest,
                "input_shape": [image.info.height, image.info.width, image.info.channels],
                "conv_shape": list(fmap.info.conv_shape),
                "shape": list(fmap.info.shape),
                "params": fmap.info.params,
                "stats": asdict(fmap.info.stats),
                "status": "ok",
            }
        )
        del fmap
    _append_manifest(out.out_dir, records)
    return ImageResult(image.info, tuple(written), tuple(notes), digest, time.perf_counter() - started)
