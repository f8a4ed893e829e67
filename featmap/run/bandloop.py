"""Several kernels' maps of one image in one band loop: bands outer, kernels inner.

`featmap.run.fused.banded_map` makes one kernel's map a band of rows at a time, kernel after kernel: each kernel
reads the whole image again (OpenCV copies every row into its own buffer per call), and a small image of 8-bit
samples is converted to float whole first (`featmap.core.samples.CONVERT_WHOLE_UP_TO`), 4 MB written and read
back per kernel for a 1024² image. Here each band of the image's rows is converted once and filtered by every
kernel while it is in the core's cache, each kernel's pooled rows going into that kernel's map: every map of the
bank is held until the last band is done, so `featmap.run.groups` takes this loop only for maps that are small
together (`featmap.run.groups.HELD_TOGETHER`).

Each kernel's band is the one `banded_map` filters: the same image rows (`fused.source_span`, a view of the
converted band's rows), the same OpenCV call, pool and activation (`fused.make_band`), so every value is
`banded_map`'s to the bit (tests/test_bandloop.py compares them, and the whole-image path's).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from featmap.core.ops import activate
from featmap.enums import Activation
from featmap.run.fused import BAND_ROWS, BandRun, band_spans, make_band, source_rows, source_span

__all__ = ["banded_maps", "loop_bands", "shares_bands"]


def loop_bands(run: BandRun) -> tuple[tuple[int, int, int], ...]:
    """The bands a shared loop cuts ``run``'s map into (`featmap.run.fused.band_spans`): half the rows of its own
    loop's bands (at least `fused.BAND_ROWS`), 64 rows of a 1024-wide map. The source rows every kernel reads in
    turn, a kernel's conv band and its pool band then stay in the core's L2 cache together: the issue's command on
    20 crops in one process, per-image CPU (load, maps, statistics, PNG files) against kernel after kernel, 0.944-0.966
    with 64-row bands, 0.969-0.992 with 128 (bands of any height give the same bits: tests/test_bandloop.py)."""
    per_band = max(BAND_ROWS, run.per_band // 2 // BAND_ROWS * BAND_ROWS)
    return band_spans(run, per_band)


def shares_bands(runs: Sequence[BandRun]) -> bool:
    """Whether ``runs`` can share one band loop: one image (the same object) cut into the same bands of conv rows
    (`loop_bands`: the same conv output height, band height and pool rows: a bank of one padding)."""
    first = runs[0]
    spans = loop_bands(first)
    return all(run.image is first.image and loop_bands(run) == spans for run in runs[1:])


def banded_maps(runs: Sequence[BandRun]) -> list[NDArray[np.floating]]:
    """Each run's final map (conv → activation → pool), as `featmap.run.fused.banded_map` makes it, from one pass
    over the image's bands (`loop_bands`; ``runs`` must `shares_bands`): each band's rows (every kernel's halo)
    converted once, then filtered and pooled by each kernel in turn."""
    first = runs[0]
    image = first.image
    maps = [np.empty(run.out_shape, dtype=image.dtype) for run in runs]
    params = [dict(run.act.params) for run in runs]
    done = 0  # final rows written
    for start, rows, final_rows in loop_bands(first):
        spans = [source_span(run, start, rows) for run in runs]
        low, high = min(span[0] for span in spans), max(span[1] for span in spans)
        source = source_rows(image, low, high)  # every kernel's rows of this band, converted once
        for run, (top, bottom), result, kept in zip(runs, spans, maps, params, strict=True):
            make_band(run, source[top - low : bottom - low], start - top, rows, result[done : done + final_rows], kept)
        done += final_rows
    assert done == first.out_shape[0], (done, first.out_shape)
    for run, result, kept in zip(runs, maps, params, strict=True):
        if run.pool is not None and run.commutes and run.act.kind is not Activation.NONE:  # as `banded_map`
            activate(result, run.act.kind, out=result, **kept)
    return maps
