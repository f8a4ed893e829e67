"""`ApplyJob`, everything `featmap apply` does to one image besides the input path, and `make_job`, the one
function that builds it from named options (used by the command line and by `featmap.apply`).

Every image command's job (`ApplyJob`, `featmap.run.netjob.NetworkJob`) is an `ImageJob`
(`featmap.run.imagerun`): an options hash, the targets of an input, and an `ImageRun` per image (the stream of
its layer outputs and its manifest records), which `write_image` hands to one set of writers.

Option combinations are checked here, and errors name the parameters (`pool_size`), never command-line
flags: `featmap.cli` maps parameter names to flags.

Examples
--------
>>> job = make_job(["sobel_x", "sobel_y"], stride=2, pool="max", combine="magnitude")
>>> job.conv.stride, job.pool.size, job.combine.value, job.bank.names
((2, 2), (2, 2), 'magnitude', ('sobel_x', 'sobel_y'))
>>> make_job(["sobel_x"], pool_size=3)
Traceback (most recent call last):
...
featmap.errors.OptionError: `pool_size` and `pool_stride` need `pool` max, avg or min
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from featmap.core.budget import check_image_plan
from featmap.core.geometry import PaddingArg, as_pair
from featmap.enums import Activation, Combine, Normalize, PaddingMode, PoolKind, parse_enum
from featmap.errors import OptionError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.io.images import DEFAULT_MAX_PIXELS, parse_color
from featmap.io.outputs import OutputOptions
from featmap.io.writers import REPORT_KEY, SHEET_KEY
from featmap.net.layers import Act, Conv2d, GlobalPool2d, Pool2d
from featmap.run.imagerun import ImageJob, ImageRun, write_image

if TYPE_CHECKING:  # the kernel library loads when a bank is made (`make_bank`), not for a network's job
    from featmap.io.discover import InputImage
    from featmap.kernels import Kernel, KernelBank

__all__ = [
    "ApplyJob",
    "ImageJob",
    "ImageRun",
    "KernelsArg",
    "make_bank",
    "make_job",
    "make_layers",
    "make_output",
    "taken_by",
    "write_image",
]

#: Kernel names, tags, files or parametric specs (``"gaussian:size=5"``), `Kernel` objects, or a `KernelBank`.
KernelsArg: TypeAlias = "str | Kernel | KernelBank | Sequence[str | Kernel]"
Pair = int | Sequence[int]


@frozen_dataclass
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
        self.check_plan()  # the sizes, before any image is read
        for what, value in (("pad_value", self.conv.pad_value), *self.act.params):
            if not math.isfinite(value):
                raise SpecError(f"`{what}`", f"must be a finite number; got {value}", "give a finite number")
        if self.combine is not None:
            object.__setattr__(self, "combine", parse_enum(Combine, self.combine, "combine"))
        if self.combine is not None and len(self.bank) < 2:
            raise SpecError(
                "`combine`",
                f"needs two or more kernels; got {len(self.bank)}",
                "add `kernels` for each map to combine",
            )

    def check_plan(
        self, in_hw: tuple[int, int] = (1, 1), channels: int = 1, what: str = "", *, bands: bool = False
    ) -> int:
        """Check the job's sizes, and its memory on an ``in_hw`` image (``bands``: every map made band by band),
        against `featmap.limits`. A size that passed is remembered by the job (a batch of same-sized images checks
        once)."""
        passed: dict[tuple[tuple[int, int], int, bool], int] = self.__dict__.setdefault("_plans_passed", {})
        key = ((in_hw[0], in_hw[1]), channels, bands)
        if key in passed:
            return passed[key]
        pool = self.pool
        passed[key] = check_image_plan(
            in_hw,
            channels,
            [k.size for k in self.bank],
            stride=self.conv.stride,
            padding=self.conv.padding,
            dilation=self.conv.dilation,
            pool=(pool.size, pool.stride, pool.padding) if isinstance(pool, Pool2d) else None,
            what=what,
            bands=bands,
        )
        return passed[key]

    @property
    def map_names(self) -> list[str]:
        """The names of the maps the job writes: its kernels, then the combined map."""
        return list(self.bank.names) + ([self.combine.value] if self.combine is not None else [])

    def targets(self, item: InputImage, *, single: bool = False) -> dict[str, Path]:
        """Every PNG an input will produce, by map name, then ``(sheet)`` and ``(report)`` when asked (the report
        of a ``single`` image is ``report.html`` in the output folder, else beside its sheet)."""
        out, path, rel_dir, stem = self.output, item.path, item.rel_dir, item.stem
        targets = {name: out.target(path, name, rel_dir=rel_dir, stem=stem) for name in self.map_names}
        if out.sheet:
            targets[SHEET_KEY] = out.extra_target(path, "sheet.png", rel_dir=rel_dir, stem=stem)
        if out.report:
            folder = out.extra_target(path, "report.html", rel_dir=rel_dir, stem=stem)
            targets[REPORT_KEY] = out.out_dir / "report.html" if single else folder
        return targets

    def options_hash(self) -> str:
        """A digest of every setting that changes an output's pixels (kernels' weights included), worked out
        once per job (the job is frozen)."""
        digest: str | None = self.__dict__.get("_options_hash")
        if digest is None:
            digest = self.__dict__["_options_hash"] = self._options_digest()
        return digest

    def _options_digest(self) -> str:
        from featmap.digests import sha256  # here: helpers never hash options

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
            **({"colormap": out.colormap} if out.colormap else {}),
            **({"percentiles": out.percentiles} if out.normalize == "percentile" else {}),
            **({"sheet": True} if out.sheet else {}),
            **(out.picture_key() if out.sheet or out.report else {}),
            **({"report": True} if out.report else {}),
            "kernels": [(k.name, k.weights.tolist(), k.bias) for k in self.bank],
        }
        text = json.dumps(recipe, sort_keys=True, default=str)
        return sha256(text.encode()).hexdigest()[:16]


def taken_by(function: Callable[..., Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that ``function`` takes by name: one set of named options reaches each builder
    (`make_layers`, `make_output`, `make_job`) without the names listed again at every call.

    Examples
    --------
    >>> taken_by(make_layers, {"stride": 2, "out_dir": "maps"})
    {'stride': 2}
    """
    names = inspect.signature(function).parameters
    return {key: value for key, value in values.items() if key in names}


def make_bank(kernels: KernelsArg, *, kernel_dirs: Iterable[str | os.PathLike[str]] = ()) -> KernelBank:
    """A `KernelBank` from kernel specs (as ``-k`` takes them) and/or `Kernel` objects, in order.

    Examples
    --------
    >>> make_bank(["sobel_x", "gaussian:size=3,sigma=1"]).names
    ('sobel_x', 'gaussian-size3-sigma1')
    """
    from featmap.kernels import Kernel, KernelBank, KernelLibrary

    if isinstance(kernels, KernelBank):
        return kernels
    items: Sequence[str | Kernel] = [kernels] if isinstance(kernels, (str, Kernel)) else kernels
    specs = [k for k in items if isinstance(k, str)]
    if len(specs) == len(items):  # names only: the library's own rules (order, repeats, clashes)
        return KernelLibrary(kernel_dirs).bank(specs)
    library = KernelLibrary(kernel_dirs) if specs else None
    chosen: list[Kernel] = []
    for item in items:
        if isinstance(item, Kernel):
            chosen.append(item)
        else:
            assert library is not None
            chosen.extend(library.bank([item]))
    if not chosen:
        raise SpecError("`kernels`", "no kernel selected", "give a kernel name, spec or Kernel")
    unique: dict[str, Kernel] = {}
    for k in chosen:
        unique.setdefault(k.name, k)
    return KernelBank(tuple(unique.values()))


def make_layers(
    *,
    stride: Pair = 1,
    padding: PaddingArg = "valid",
    pad_mode: str | PaddingMode = "zeros",
    pad_value: float = 0.0,
    dilation: Pair = 1,
    flip: bool = False,
    activation: str | Activation = "none",
    slope: float = 0.01,
    pool: str | None = None,
    pool_size: Pair | None = None,
    pool_stride: Pair | None = None,
    pool_padding: str = "valid",
) -> tuple[Conv2d, Act, Pool2d | GlobalPool2d | None]:
    """The conv, activation and pooling layers that `featmap apply`'s options describe.

    ``pool`` is ``None``/``"none"``, ``"max"``, ``"avg"``, ``"min"`` or ``"global-avg"``/``-max``/``-min``;
    ``pool_size`` (default 2) and ``pool_stride`` (default the size) only go with a windowed pool.
    """
    conv = Conv2d(
        stride=as_pair(stride, "stride"),
        padding=padding,
        pad_mode=parse_enum(PaddingMode, pad_mode, "pad_mode"),
        pad_value=pad_value,
        dilation=as_pair(dilation, "dilation"),
        flip=flip,
    )
    kind = parse_enum(Activation, activation, "activation")
    act = Act(kind, (("slope", slope),) if kind is Activation.LEAKY_RELU else ())
    word = "none" if pool is None else str(pool).lower()
    if word not in ("max", "avg", "min") and (pool_size is not None or pool_stride is not None):
        raise OptionError("", "`pool_size` and `pool_stride` need `pool` max, avg or min")
    layer: Pool2d | GlobalPool2d | None = None
    if word.startswith("global-"):
        layer = GlobalPool2d(parse_enum(PoolKind, word.split("-", 1)[1], "pool"))
    elif word != "none":
        stride_pair = None if pool_stride is None else as_pair(pool_stride, "pool_stride")
        layer = Pool2d(
            parse_enum(PoolKind, word, "pool"),
            as_pair(2 if pool_size is None else pool_size, "pool_size"),
            stride_pair,
            pool_padding,
        )
    return conv, act, layer


def make_job(
    kernels: KernelsArg,
    *,
    kernel_dirs: Iterable[str | os.PathLike[str]] = (),
    stride: Pair = 1,
    padding: PaddingArg = "valid",
    pad_mode: str | PaddingMode = "zeros",
    pad_value: float = 0.0,
    dilation: Pair = 1,
    flip: bool = False,
    activation: str | Activation = "none",
    slope: float = 0.01,
    pool: str | None = None,
    pool_size: Pair | None = None,
    pool_stride: Pair | None = None,
    pool_padding: str = "valid",
    combine: str | Combine | None = None,
    strict: bool = False,
    color: bool = False,
    background: str | tuple[float, float, float] = "white",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    out_dir: str | os.PathLike[str] = "featmap-out",
    name_pattern: str = "{stem}/{kernel}.png",
    normalize: str | Normalize = "minmax",
    bit_depth: int = 8,
    raw: str | None = None,
    png_compress: int = 1,
    overwrite: bool = False,
    colormap: str | None = None,
    percentiles: str | tuple[float, float] = (1.0, 99.0),
    sheet: bool = False,
    report: bool = False,
    scale: str = "per-layer",
    sheet_width: int = 1920,
    channels: int | None = None,
    sheet_normalize: str | Normalize | None = None,
) -> ApplyJob:
    """Build an `ApplyJob` from named options: the one place `featmap apply`'s options become a job.

    Parameters
    ----------
    kernels : str, Kernel, KernelBank or sequence of str / Kernel
        Names, tags, kernel files or parametric specs (``"gaussian:size=5,sigma=1.2"``), and/or kernels.
    kernel_dirs : paths
        Extra kernel folders or files, searched before ``FEATMAP_KERNEL_PATH`` and the built-ins.
    stride, padding, pad_mode, pad_value, dilation, flip
        The convolution (see `featmap.conv2d`).
    activation, slope
        The activation after the convolution; ``slope`` is leaky ReLU's.
    pool, pool_size, pool_stride, pool_padding
        Pooling after the activation (see `make_layers`).
    combine : {"magnitude", "max"}, optional
        Also make one map merging all kernels' responses (needs two kernels or more).
    strict : bool
        Refuse a stride that leaves input rows or columns unused.
    color, background, max_pixels
        How image files are read (keep RGB; the colour under transparency; the decompression-bomb guard).
    out_dir, name_pattern, normalize, bit_depth, raw, png_compress, overwrite
        Where and how maps are written (see `featmap.io.outputs.OutputOptions` and `featmap.io.writers`).
    colormap, percentiles, sheet, report
        Colour PNGs through a colormap (a `cmap` name or ``"auto"``), the percentiles ``normalize="percentile"``
        maps, and the contact sheet and HTML report (`featmap.io.writers.pictures`).
    scale, sheet_width, channels, sheet_normalize
        The pictures' colour scale (``per-layer`` or ``per-channel``), the sheet's width, a network sheet's
        channels per layer and the pictures' normalization (default ``percentile``).

    Returns
    -------
    ApplyJob
    """
    given = locals()  # every option once, handed to each builder by the names it takes
    conv, act, layer = make_layers(**taken_by(make_layers, given))
    output = make_output(**taken_by(make_output, given))
    return ApplyJob(
        make_bank(kernels, kernel_dirs=kernel_dirs),
        conv,
        act,
        layer,
        None if combine is None else parse_enum(Combine, combine, "combine"),
        strict,
        color,
        parse_color(background) if isinstance(background, str) else background,
        max_pixels,
        output,
    )


def make_output(
    *,
    out_dir: str | os.PathLike[str] = "featmap-out",
    name_pattern: str = "{stem}/{kernel}.png",
    normalize: str | Normalize = "minmax",
    bit_depth: int = 8,
    raw: str | None = None,
    png_compress: int = 1,
    overwrite: bool = False,
    colormap: str | None = None,
    percentiles: str | tuple[float, float] = (1.0, 99.0),
    sheet: bool = False,
    report: bool = False,
    scale: str = "per-layer",
    sheet_width: int = 1920,
    channels: int | None = None,
    sheet_normalize: str | Normalize | None = None,
) -> OutputOptions:
    """`OutputOptions` from named options (shared by kernel and network jobs).

    Examples
    --------
    >>> make_output(out_dir="maps", bit_depth=16).bit_depth
    16
    """
    how = parse_enum(Normalize, normalize, "normalize")
    return OutputOptions(
        Path(out_dir),
        name_pattern,
        how,
        int(bit_depth),
        raw,
        png_compress,
        overwrite,
        colormap=colormap,
        percentiles=percentiles,  # type: ignore[arg-type]  # OutputOptions parses "1,99"
        sheet=sheet,
        report=report,
        scale=scale,
        sheet_width=int(sheet_width),
        channels=channels,
        sheet_normalize=None if sheet_normalize is None else parse_enum(Normalize, sheet_normalize, "normalize"),
    )
