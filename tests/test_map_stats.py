"""`StatsAccumulator`: a map's statistics from its bands, bit for bit those `MapStats.of` gives on the whole map."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import featmap.net.records as records
from featmap.net.records import MapStats, StatsAccumulator

_SPECIAL = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e30, -1e-30]


def _bits(stats: MapStats) -> list[str]:
    """Every field to the bit (``repr`` tells -0.0 from 0.0 and shows NaN; ``==`` would do neither)."""
    return [repr(v) for v in (stats.min, stats.max, stats.mean, stats.std)]


def _in_bands(values: np.ndarray, cuts: list[int]) -> MapStats:
    """The accumulator fed ``values`` in bands of rows cut at ``cuts`` (empty bands included)."""
    accumulator = StatsAccumulator(values.size, values.dtype)
    start = 0
    for stop in [*cuts, values.shape[0]]:
        accumulator.add(values[start:stop])
        start = max(start, stop)
    return accumulator.result()


@settings(max_examples=150)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 37),
    channels=st.sampled_from([1, 1, 3]),
    block=st.sampled_from([1, 5, 64, 97, 1000, 1 << 18]),
    dtype=st.sampled_from([np.float32, np.float32, np.float64]),
    offset=st.sampled_from([0.0, 1e4, -3.5]),
    special=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(_SPECIAL)), max_size=4),
    cut_seed=st.integers(0, 2**32 - 1),
    cut_count=st.integers(0, 8),
)
def test_bands_give_the_whole_maps_statistics_to_the_bit(
    rows: int,
    cols: int,
    channels: int,
    block: int,
    dtype: type,
    offset: float,
    special: list[tuple[int, float]],
    cut_seed: int,
    cut_count: int,
) -> None:
    """Awkward shapes, blocks that no band boundary meets, bands of one row or none, zeros of both signs, NaN and
    infinities: the same digits as `MapStats.of` of the whole map."""
    rng = np.random.default_rng(cut_seed)
    values = (rng.standard_normal((rows, cols, channels)) * 3 + offset).astype(dtype)
    values[rng.random(values.shape) < 0.2] = 0.0  # runs of zeros, as after a ReLU
    flat = values.reshape(-1)
    for at, value in special:
        flat[at % flat.size] = value
    cuts = sorted(int(c) for c in rng.integers(0, rows + 1, cut_count))
    original = records._STATS_BLOCK
    records._STATS_BLOCK = block
    try:
        whole = MapStats.of(values)
        banded = _in_bands(values, cuts)
    finally:
        records._STATS_BLOCK = original
    assert _bits(banded) == _bits(whole)


def test_a_six_megapixel_map_in_pooled_bands(rng: np.random.Generator) -> None:
    """The big photo's case at full size: a 2000×3000 pooled map (23 blocks of 2^18 values and a short one) in the
    band path's 32-row bands, none of them ending where a block does."""
    values = np.maximum(rng.standard_normal((2000, 3000, 1)).astype(np.float32), 0)
    assert (32 * 3000) % records._STATS_BLOCK != 0 and values.size % records._STATS_BLOCK != 0
    assert _bits(_in_bands(values, list(range(32, 2000, 32)))) == _bits(MapStats.of(values))


def test_of_is_the_blockwise_float64_arithmetic(rng: np.random.Generator) -> None:
    """The accumulator did not move `MapStats.of`'s digits: mean and std are the shifted float64 sums of its blocks,
    min and max the map's own."""
    values = rng.standard_normal((700, 800, 1)).astype(np.float32) * 2 + 50  # 3 blocks, the last one short
    flat = values.reshape(-1)
    block = records._STATS_BLOCK
    shift = float(flat[:block].mean(dtype=np.float64))
    parts = [flat[s : s + block].astype(np.float64) - shift for s in range(0, flat.size, block)]
    mean = sum(float(p.sum()) for p in parts) / flat.size
    variance = sum(float(np.einsum("i,i->", p, p)) for p in parts) / flat.size - mean * mean
    stats = MapStats.of(values)
    assert (stats.min, stats.max) == (float(values.min()), float(values.max()))
    assert (stats.mean, stats.std) == (shift + mean, float(np.sqrt(variance)))


def test_accumulator_refuses_too_many_or_too_few_values() -> None:
    accumulator = StatsAccumulator(6, np.dtype(np.float32))
    accumulator.add(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="4 were given"):
        accumulator.result()
    with pytest.raises(ValueError, match="got 7"):
        accumulator.add(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="0 values"):
        StatsAccumulator(0, np.dtype(np.float32)).result()


@settings(max_examples=120)
@given(
    size=st.sampled_from([1, 7, 8, 9, 127, 8191, 8192, 8193, 20000, 1 << 18, (1 << 18) + 5]),
    scale=st.sampled_from([1e-3, 1.0, 1e4]),
    offset=st.sampled_from([0.0, 1e4, -3.5]),
    zeros=st.sampled_from([0.0, -0.0, None]),
    special=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(_SPECIAL)), max_size=3),
    seed=st.integers(0, 2**32 - 1),
    buffer=st.sampled_from([8192, 8192, 1008]),
)
def test_the_mean_is_numpys_buffered_float64_sum(
    size: int,
    scale: float,
    offset: float,
    zeros: float | None,
    special: list[tuple[int, float]],
    seed: int,
    buffer: int,
) -> None:
    """`_buffered_sum` of the float64 copy is ``add.reduce(float32 values, dtype=float64)`` to the bit (the sum
    `MapStats.of`'s shift always came from), whatever numpy's buffer size; zeros of both signs, NaN, infinities."""
    rng = np.random.default_rng(seed)
    spread = 10.0 ** rng.uniform(-6, 6, size)  # magnitudes 10^12 apart: float64 sums that depend on their order
    values = (rng.standard_normal(size) * spread * scale + offset).astype(np.float32)
    if zeros is not None:
        values[rng.random(size) < 0.3] = zeros
    for at, value in special:
        values[at % size] = value
    before = np.setbufsize(buffer)
    try:
        with np.errstate(invalid="ignore", over="ignore"):
            expected = float(np.add.reduce(values, dtype=np.float64))
            got = records._buffered_sum(values.astype(np.float64))
    finally:
        np.setbufsize(before)
    assert repr(got) == repr(expected)
