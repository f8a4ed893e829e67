"""Kernel maps a band of rows at a time: conv → activation → pool with no fresh full-size float temporary.

The whole-image path (the layers' own forwards) convolves the whole image into a fresh full-size float map per
kernel, then pools it: on a 1024² image a 4 MB temporary written and read back per kernel, and page faults for
every fresh one (measured: 5.6 ms of system time per image). Here each kernel's convolution runs on bands of
about `BAND_VALUES` values (a multiple of `BAND_ROWS` rows) in one reused buffer, each band is pooled at once
into the map's pooled array, the only full-size result (a quarter of the conv's size under a 2×2 pool), which
min-max scaling needs whole anyway. The PNG writer then quantises and deflates that a band at a time
(`featmap.io.writers.png`, `featmap.io.pngencode.PngStream`).

The same engine computes each band (`featmap.core.engine.correlate` on the band's rows plus the kernel's halo,
with the image's own padding only where the band meets an edge), so every value is the one the whole-image
pass gives: tests/test_fused.py compares them bit for bit. `fits` says when a run qualifies; anything else
(strides, dilation, pooling with padding or ceil mode, filters summing over channels, combined maps) takes the
whole-image path.

A colour image's depthwise map (a 2-D kernel on each channel: ``--color``) goes band by band too: each band's
rows of every channel, filtered as the whole image's are (one OpenCV call on the interleaved channels when they
share the kernel, else plane by plane), so an RGB image of 8-bit samples (`ScaledSamples` with three channels) is
never converted whole, and a map above `TWO_PASS_ABOVE` values never held.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.core import cvfilter
from featmap.core.engine import check_padding, correlate
from featmap.core.geometry import ConvGeometry, conv_geometry
from featmap.core.ops import activate
from featmap.core.pool import tile_pool
from featmap.core.samples import ImageData, ScaledSamples
from featmap.enums import Activation, PaddingMode, PoolKind
from featmap.frozen import frozen_dataclass
from featmap.net.layers import Act, Conv2d, GlobalPool2d, LayerPlan, Pool2d

__all__ = [
    "BAND_ROWS",
    "TWO_PASS_ABOVE",
    "BandRun",
    "FusedBands",
    "band_run",
    "band_spans",
    "banded_map",
    "edges_fit",
    "fits",
    "make_band",
    "source_rows",
    "source_span",
]

#: Conv output rows per band at least (and a multiple of): bands hold about `BAND_VALUES` values, 128 rows of a
#: 1024-wide map (512 KB of float32), in this thread's reused buffer: the band's source rows, its conv rows and the
#: pool's column band then share the core's L2 cache. Per-image minimum CPU of 4 maps (no statistics) on 12 crops,
#: bands alternated in one process, 8 rounds: 128 rows 0.946 of 256 rows' (64 rows 0.96, 512 rows 0.96, a whole map
#: 0.93, but a whole map's buffer is a full-size map kept beside the map being made: a 900×700 bank then peaks at
#: 4.3 maps, tests/test_groups.py holds 3.5). The OpenCV call is worked out once per map (`cvfilter.band_filter`).
BAND_ROWS = 64
BAND_VALUES = 1 << 17
#: Final maps of more values than this (32 MiB of float32: an unpooled map of more than 2896², a pooled one of more
#: than 5792²) that nothing but a PNG needs whole are not held: `FusedBands`, read twice (statistics, then the PNG),
#: two conv passes. Smaller maps are made once and held. The line is drawn above a 6000×4000 photo's 2×2-pooled maps
#: (6M values, 24 MB): held, that photo with 5 kernels peaks at ~128 MiB at its one-pass speed; in two passes it
#: peaked at ~109 MiB and took 1.23× the CPU (issue 22 asks for <= 150 MB and no slower). An unpooled photo's maps
#: (24M values, 96 MB each) take two passes.
TWO_PASS_ABOVE = 1 << 23


def fits(
    image: ImageData,
    conv: Conv2d,
    pool: Pool2d | GlobalPool2d | None,
    combine: object,
    geometry: ConvGeometry | None = None,
) -> bool:
    """Whether a kernel run can go band by band (``FEATMAP_FUSED=0`` says never): one float32 channel (or a colour
    image's few, each filtered on its own: `_planes_fit`), stride 1 and no dilation, no combined map, and no pooling
    or a pool whose windows tile the rows (valid padding, stride = size, floor mode); with the conv's ``geometry``,
    also edges a band reproduces (`edges_fit`)."""
    if os.environ.get("FEATMAP_FUSED", "1") == "0":  # the whole-image path, to compare against
        return False
    if geometry is not None and not edges_fit(geometry, conv.pad_mode):
        return False
    if combine is not None or image.ndim != 3 or image.dtype != np.float32 or not _planes_fit(image, conv):
        return False
    if tuple(conv.stride) != (1, 1) or tuple(conv.dilation) != (1, 1) or image.shape[0] < 2 * BAND_ROWS:
        return False
    if pool is None:
        return True
    if not isinstance(pool, Pool2d) or pool.padding != "valid" or pool.ceil_mode:
        return False
    stride = pool.size if pool.stride is None else pool.stride
    return tuple(stride) == tuple(pool.size) and BAND_ROWS % pool.size[0] == 0


def _planes_fit(image: ImageData, conv: Conv2d) -> bool:
    """One channel, or a colour image's few channels (at most `cvfilter.MAX_CHANNELS`), every filter reading one
    of them (a depthwise conv: a 2-D kernel on an RGB image, a bank of them); not a filter summing over channels."""
    channels = image.shape[2]
    if channels == 1:
        return True
    if channels > cvfilter.MAX_CHANNELS or (conv.filters is None and not conv.depthwise):
        return False
    filters, groups, _ = conv.channels(channels)
    return groups == channels and filters % groups == 0


def edges_fit(geometry: ConvGeometry, pad_mode: PaddingMode) -> bool:
    """Whether bands see the image's top and bottom edges as the whole image does: a kernel of at most half a band
    and at most its height less one row of padding above and below (valid, same, full), and no circular padding
    above or below (a band would wrap onto its own rows, not onto the image's other end). Then the first and the
    last band hold more rows than their padding, as reflect, symmetric and replicate padding read."""
    top, bottom = geometry.padding[:2]
    kh = geometry.kernel_hw[0]
    if kh > BAND_ROWS // 2 or max(top, bottom) >= kh:
        return False
    return pad_mode is not PaddingMode.CIRCULAR or not (top or bottom)


@cache
def _band_geometry(hw: tuple[int, int], kernel: tuple[int, int], padding: tuple[int, int, int, int]) -> ConvGeometry:
    return conv_geometry(hw, kernel, padding=padding)


@cache
def _pool_plan(pool: Pool2d, shape: tuple[int, int, int]) -> LayerPlan:
    return pool.plan(shape)


@frozen_dataclass
class BandRun:
    """One kernel's band loop, worked out once: the image, the filter in the image's dtype, the layers and the
    geometry (``per_band`` conv rows a band, the last band longer by less than `BAND_ROWS`)."""

    image: ImageData
    bank: NDArray[np.floating]
    bias: NDArray[np.floating] | None
    conv: Conv2d
    geometry: ConvGeometry
    act: Act
    pool: Pool2d | None
    out_shape: tuple[int, int, int]
    commutes: bool
    per_band: int
    ready: cvfilter.BandFilter | None  # the band's OpenCV call, worked out once for every band


def band_run(
    image: ImageData,
    weights: dict[str, NDArray[np.floating]],
    conv: Conv2d,
    conv_plan: LayerPlan,
    act: Act,
    pool: Pool2d | None,
    out_shape: tuple[int, int, int],
    commutes: bool,
) -> BandRun:
    """One kernel's band loop worked out once, for `banded_map` or `FusedBands`: ``conv_plan`` is the whole image's
    plan (its padding says where the edges are); ``out_shape`` is the final map's shape; ``commutes`` says the pool
    may go before the activation, as `iter_feature_maps` does it."""
    geometry = conv_plan.geometry
    assert geometry is not None  # a conv plan always has one
    assert edges_fit(geometry, conv.pad_mode), "fits(..., geometry) said no"
    check_padding((image.shape[0], image.shape[1]), geometry.padding, conv.pad_mode)  # the whole image's refusal
    bank = np.asarray(weights["weight"])
    if conv.flip:
        bank = bank[:, :, ::-1, ::-1]
    bank = np.ascontiguousarray(bank, dtype=image.dtype)
    bias = weights.get("bias")
    bias_value = None if bias is None else np.asarray(bias, dtype=image.dtype)
    per_band = max(BAND_ROWS, BAND_VALUES // max(1, image.shape[1] * image.shape[2]) // BAND_ROWS * BAND_ROWS)
    ready = _ready_filter(bank, image, geometry, conv)
    return BandRun(image, bank, bias_value, conv, geometry, act, pool, out_shape, commutes, per_band, ready)


def banded_map(run: BandRun) -> NDArray[np.floating]:
    """One kernel's final map (conv → activation → pool), computed a band of `BAND_ROWS` conv rows at a time.

    ``run`` is `band_run`'s. An image of 8-bit samples (`ScaledSamples`) is converted to float a band of rows at a
    time.
    """
    result = np.empty(run.out_shape, dtype=run.image.dtype)
    for _ in _fill(run, lambda done, count: result[done : done + count], each=False):
        pass
    pool, act = run.pool, run.act
    if pool is not None and run.commutes and act.kind is not Activation.NONE:  # once, on the pooled map, as run_tail
        activate(result, act.kind, out=result, **dict(act.params))
    return result


class FusedBands:
    """One kernel's final map as `banded_map` makes it, never held: `bands` runs the band loop again each time it
    is asked, into one buffer of a band's final rows (a `featmap.net.records.MapBands`). The values are
    `banded_map`'s, bit for bit: the same bands, each activated where `banded_map` activates the whole pooled map
    (an activation is elementwise). A map read twice (its statistics, then its PNG) costs two conv passes and
    holds a band instead of the map (`TWO_PASS_ABOVE`)."""

    def __init__(self, run: BandRun) -> None:
        self._run = run

    @property
    def shape(self) -> tuple[int, int, int]:
        """The final map's ``(H, W, C)``."""
        return self._run.out_shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """Its dtype (the image's)."""
        return np.dtype(self._run.image.dtype)

    def bands(self) -> Iterator[NDArray[np.floating]]:
        """The final map's rows in order, a band at a time (each valid until the next one is asked for)."""
        run = self._run
        step = 1 if run.pool is None else run.pool.size[0]
        most = (run.per_band + BAND_ROWS) // step  # final rows of the longest band (the last one)
        buffer = np.empty((min(most, run.out_shape[0]), *run.out_shape[1:]), dtype=run.image.dtype)
        for _, count in _fill(run, lambda _, rows: buffer[:rows], each=True):
            yield buffer[:count]


def _fill(run: BandRun, into: Callable[[int, int], NDArray[np.floating]], *, each: bool) -> Iterator[tuple[int, int]]:
    """The band loop: each band's final rows written into ``into(done, count)`` (final rows ``done`` to ``done +
    count``), then ``(done, count)`` yielded. ``each`` activates every band whose activation commutes with the pool
    (else the caller activates the whole map once)."""
    act, params = run.act, dict(run.act.params)
    late = run.pool is not None and run.commutes and act.kind is not Activation.NONE  # activated after the pool
    done = 0  # final rows written
    for start, rows, final_rows in band_spans(run):
        first, last = source_span(run, start, rows)
        target = into(done, final_rows)
        make_band(run, source_rows(run.image, first, last), start - first, rows, target, params)
        if each and late:
            activate(target, act.kind, out=target, **params)
        yield done, final_rows
        done += final_rows
    assert done == run.out_shape[0], (done, run.out_shape)


def band_spans(run: BandRun, per_band: int | None = None) -> tuple[tuple[int, int, int], ...]:
    """The band loop's bands of ``per_band`` conv rows (the run's own by default): each band's first conv row, its
    conv rows (a floor pool's unused last rows left out) and final rows; a short rest joins the last band."""
    step = 1 if run.pool is None else run.pool.size[0]
    return _spans(run.geometry.out_hw[0], run.per_band if per_band is None else per_band, step)


@cache
def _spans(conv_rows: int, per_band: int, step: int) -> tuple[tuple[int, int, int], ...]:
    spans = []
    start = 0
    while start < conv_rows:
        rows = min(per_band, conv_rows - start)
        if conv_rows - start - rows < BAND_ROWS:  # a short rest joins this band: the last band reaches its edge
            rows = conv_rows - start
        kept = rows - rows % step  # the floor pool's unused last conv row(s)
        if kept == 0:
            break
        spans.append((start, kept, kept // step))
        start += rows
    return tuple(spans)


def source_span(run: BandRun, start: int, rows: int) -> tuple[int, int]:
    """The image rows ``[first, last)`` a band of ``rows`` conv rows from ``start`` reads (its halo, within the
    image: the image's own padding stands in beyond its edges)."""
    top, kh = run.geometry.padding[0], run.geometry.kernel_hw[0]
    return max(start - top, 0), min(start + rows - top + kh - 1, run.image.shape[0])


def make_band(
    run: BandRun,
    source: NDArray[np.floating],
    skip: int,
    rows: int,
    target: NDArray[np.floating],
    params: dict[str, Any],
) -> None:
    """One band's final rows into ``target``: ``source`` (the image's rows `source_span` names) filtered, conv rows
    ``skip`` to ``skip + rows`` of it biased, activated (unless that waits for the pooled map) and pooled."""
    # The band is filtered with the whole image's padding, so the engine places the kernel exactly as it does on
    # the whole image (OpenCV sums a centred symmetric kernel in another order than an off-centre one); the rows
    # that padding adds inside the image are computed and dropped (top + bottom per band).
    if run.ready is not None:  # the OpenCV call worked out once (a band is never shorter than its padding)
        band = _filtered(source, run.ready)[skip : skip + rows]
    else:
        kh, kw = run.geometry.kernel_hw
        band_geometry = _band_geometry((source.shape[0], source.shape[1]), (kh, kw), run.geometry.padding)
        band = _correlate(source, run.bank, band_geometry, run.conv)[skip : skip + rows]
    if run.bias is not None:
        band += run.bias
    _finish(band, run.act, run.pool, run.commutes, target, params)


_BUFFERS = threading.local()  # each thread's conv band buffer, reused from band to band and map to map


def source_rows(image: ImageData, start: int, stop: int) -> NDArray[np.floating]:
    """Rows ``start:stop`` of the image in float: a view of a float image, or 8-bit samples converted into this
    thread's source buffer (reused from band to band, as the conv band's)."""
    if not isinstance(image, ScaledSamples):
        return image[start:stop]
    shape = (stop - start, *image.shape[1:])
    size = shape[0] * shape[1] * shape[2]
    buffer: NDArray[np.float32] | None = getattr(_BUFFERS, "source", None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype=np.float32)
        _BUFFERS.source = buffer
    return image.rows(start, stop, out=buffer[:size].reshape(shape))


def _band_buffer(shape: tuple[int, ...], dtype: np.dtype[np.floating]) -> NDArray[np.floating]:
    """This thread's buffer for a conv band of ``shape`` (grown when too small: bands are alike in a batch)."""
    size = math.prod(shape)
    buffer: NDArray[np.floating] | None = getattr(_BUFFERS, "band", None)
    if buffer is None or buffer.size < size or buffer.dtype != dtype:
        buffer = np.empty(size, dtype=dtype)
        _BUFFERS.band = buffer
    return buffer[:size].reshape(shape)


def _ready_filter(
    bank: NDArray[np.floating], image: ImageData, geometry: ConvGeometry, conv: Conv2d
) -> cvfilter.BandFilter | None:
    """The OpenCV call that filters each band (`featmap.core.cvfilter.band_filter`) where the engine would take
    OpenCV for the band in one call (one filter on one channel, or one kernel shared by a colour image's channels,
    filtered together as the whole image's are: `_one_call`), else None."""
    if not _one_call(bank, image.shape[2]) or cvfilter.opencv() is None:
        return None
    return cvfilter.band_filter(bank[0, 0], geometry, conv.pad_mode, conv.pad_value, image.dtype)


def _one_call(bank: NDArray[np.floating], channels: int) -> bool:
    """Whether the engine filters every channel in one OpenCV call: one filter on one channel, or a depthwise
    bank whose filters are one kernel on at most `cvfilter.MAX_CHANNELS` channels (the engine's shared kernel:
    interleaved channels filtered together, as `featmap.core.engine.correlate` filters the whole image)."""
    if bank.shape[:2] == (1, 1) and channels == 1:
        return True
    return (
        bank.shape[1] == 1 and 1 < bank.shape[0] == channels <= cvfilter.MAX_CHANNELS and bool(np.all(bank == bank[0]))
    )


def _correlate(
    source: NDArray[np.floating],
    bank: NDArray[np.floating],
    geometry: ConvGeometry,
    conv: Conv2d,
) -> NDArray[np.floating]:
    """The band's conv rows ``(rows, W, N)`` where no OpenCV call was worked out for every band (`BandRun.ready`):
    `featmap.core.engine.correlate`'s values (a colour band's channels each by its own filter, ``groups`` =
    channels); where that takes OpenCV in one call (`_one_call`), the same call (`featmap.core.cvfilter.correlate`)
    filtering into the band buffer."""
    channels = source.shape[2]
    if not _one_call(bank, channels) or cvfilter.opencv() is None:
        return correlate(source, bank, geometry, channels, conv.pad_mode, conv.pad_value)
    check_padding((source.shape[0], source.shape[1]), geometry.padding, conv.pad_mode)
    plane = source[:, :, 0] if channels == 1 else source
    into = _band_buffer(plane.shape, plane.dtype)
    out = cvfilter.correlate(plane, bank[0, 0], geometry, conv.pad_mode, conv.pad_value, out=into)
    return out.reshape(out.shape[0], out.shape[1], channels)


def _filtered(source: NDArray[np.floating], ready: cvfilter.BandFilter) -> NDArray[np.floating]:
    """The band's conv rows ``(rows, W, C)`` by the OpenCV call worked out for every band, into the band buffer."""
    channels = source.shape[2]
    plane = source[:, :, 0] if channels == 1 else source
    out = ready(plane, _band_buffer(plane.shape, plane.dtype))
    return out.reshape(out.shape[0], out.shape[1], channels)


def _finish(
    band: NDArray[np.floating],
    act: Act,
    pool: Pool2d | None,
    commutes: bool,
    into: NDArray[np.floating],
    params: dict[str, Any],
) -> None:
    """Pool one band into ``into`` (its rows of the map), activated first (with ``params``, the activation's) unless
    the activation commutes with the pool (then `banded_map` activates the whole pooled map once); the band is the
    caller's scratch."""
    if pool is None:
        activate(band, act.kind, out=into, **params)
        return
    if act.kind is not Activation.NONE and not commutes:
        band = activate(band, act.kind, out=band, **params)
    if pool.kind is PoolKind.AVG:
        shape = (int(band.shape[0]), int(band.shape[1]), int(band.shape[2]))
        into[...] = pool.forward(band, _pool_plan(pool, shape), {})
    else:
        tile_pool(band, (pool.size[0], pool.size[1]), pool.kind, out=into)
