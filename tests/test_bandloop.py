"""featmap.run.bandloop: a bank's maps from one band loop (bands outer, kernels inner) equal each kernel's own band
loop's (`fused.banded_map`) and the whole-image path's bit for bit; `groups.run_stacks` takes it only where it may."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featmap.core.samples import ScaledSamples
from featmap.kernels import Kernel, KernelBank, KernelLibrary
from featmap.net.layers import Act, Conv2d, Pool2d
from featmap.net.records import BandedFeatureMap, FeatureMap
from featmap.run import bandloop, fused, groups
from featmap.run.pipeline import iter_feature_maps

LIB = KernelLibrary()


@pytest.fixture(autouse=True)
def _small_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands of `fused.BAND_ROWS` (64) conv rows, so that these images are cut into several bands."""
    monkeypatch.setattr(fused, "BAND_VALUES", 1)


@pytest.fixture
def loops(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many runs each shared band loop made (`bandloop.banded_maps` calls, as `groups` makes them)."""
    made: list[int] = []
    real = bandloop.banded_maps

    def counted(runs):  # type: ignore[no-untyped-def]
        made.append(len(runs))
        return real(runs)

    monkeypatch.setattr(bandloop, "banded_maps", counted)
    return made


def _samples(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """8-bit gray samples with a ramp, noise, and the extremes 0 and 255 in whole rows and columns."""
    ramp = np.linspace(0, 255, shape[1])[None, :] * rng.random((shape[0], 1))
    samples = np.clip(ramp + rng.normal(0, 40, shape), 0, 255).astype(np.uint8)
    samples[::17] = 255
    samples[5::23] = 0
    samples[:, ::11] = 255
    return samples[:, :, None]


def _bank(rng: np.random.Generator) -> KernelBank:
    """The issue's bank (3×3 and 5×5 kernels, separable and not) and an off-centre kernel with a bias."""
    named = LIB.bank(["sobel_x", "sobel_y", "laplacian_4", "gaussian:size=5,sigma=1"])
    return KernelBank((*named, Kernel("odd", rng.normal(size=(4, 3)).astype(np.float32), bias=-0.25)))


def _values(fmap: FeatureMap | BandedFeatureMap) -> np.ndarray:
    assert isinstance(fmap, FeatureMap)
    return fmap.values


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(128, 330),
    width=st.integers(9, 90),
    padding=st.sampled_from(["same", "valid", "full", (2, 0, 1, 3)]),
    pad_mode=st.sampled_from(["zeros", "reflect", "replicate"]),
    act=st.sampled_from(["relu", "none", "tanh", "leaky_relu", "abs"]),
    pool=st.sampled_from([None, ("max", 2), ("min", 4), ("avg", 2)]),
    as_samples=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_one_band_loop_gives_each_kernels_own_maps(
    height: int, width: int, padding, pad_mode: str, act: str, pool, as_samples: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    samples = _samples(rng, (height, width))
    image = ScaledSamples(samples) if as_samples else samples * np.float32(1 / 255)
    bank = _bank(rng)
    conv = Conv2d(padding=padding, pad_mode=pad_mode)
    pooling = None if pool is None else Pool2d(pool[0], pool[1])
    if padding == "full" and pad_mode != "zeros":
        pad_mode = "zeros"  # reflect/replicate cannot pad past the kernel's reach: the whole image refuses them too
        conv = Conv2d(padding=padding, pad_mode=pad_mode)
    together = list(iter_feature_maps(image, bank, conv, Act(act), pooling))
    one_by_one = [list(iter_feature_maps(image, KernelBank((kernel,)), conv, Act(act), pooling))[0] for kernel in bank]
    assert [m.info for m in together] == [m.info for m in one_by_one]
    for a, b in zip(together, one_by_one, strict=True):
        np.testing.assert_array_equal(_values(a), _values(b))
        assert _values(a).tobytes() == _values(b).tobytes()  # signed zeros and NaN payloads too


def test_banded_maps_are_banded_map_bit_for_bit_whatever_the_band_height(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV's value for a conv row does not depend on where its band starts: bands of 64, 128, 192, 256 rows and the
    whole image give the same maps, shared (half those heights) or one kernel at a time."""
    rng = np.random.default_rng(7)
    image = ScaledSamples(_samples(rng, (515, 131)))
    bank = _bank(rng)
    conv, act, pool = Conv2d(padding="same"), Act("relu"), Pool2d("max", 2)
    reference = [_values(m) for m in iter_feature_maps(image.floats(), bank, conv, act, pool)]
    for band_values in (1, 128 * 131, 192 * 131, 256 * 131, 1 << 30):
        monkeypatch.setattr(fused, "BAND_VALUES", band_values)
        for maps in (
            iter_feature_maps(image, bank, conv, act, pool),
            iter_feature_maps(image.floats(), bank, conv, act, pool),
        ):
            assert [m.tobytes() for m in map(_values, maps)] == [m.tobytes() for m in reference], band_values


def test_the_whole_image_path_agrees(monkeypatch: pytest.MonkeyPatch, loops: list[int]) -> None:
    rng = np.random.default_rng(3)
    image = ScaledSamples(_samples(rng, (300, 77)))
    bank = _bank(rng)
    conv, act, pool = Conv2d(padding="same"), Act("leaky_relu"), Pool2d("max", 2)
    shared = [_values(m) for m in iter_feature_maps(image, bank, conv, act, pool)]
    assert loops == [len(bank)]  # one loop for every kernel of both sizes
    monkeypatch.setenv("FEATMAP_FUSED", "0")
    whole = [_values(m) for m in iter_feature_maps(image.floats(), bank, conv, act, pool)]
    assert [m.tobytes() for m in shared] == [m.tobytes() for m in whole]


def test_kernels_cut_into_other_bands_get_their_own_loop(loops: list[int]) -> None:
    """Valid padding: a 3×3 kernel's map has 258 conv rows, a 5×5 kernel's 256 and a 4×3 kernel's 257, of which a 2×2
    pool reads 256: the 3×3 kernels' bands differ from the others' (their last band is longer)."""
    rng = np.random.default_rng(4)
    image = ScaledSamples(_samples(rng, (260, 40)))
    list(iter_feature_maps(image, _bank(rng), Conv2d(padding="valid"), Act("relu"), Pool2d("max", 2)))
    assert loops == [3, 2]  # sobel_x, sobel_y, laplacian_4 | gaussian, the 4×3 kernel


def test_maps_too_big_together_or_never_held_go_one_at_a_time(monkeypatch: pytest.MonkeyPatch, loops) -> None:
    rng = np.random.default_rng(5)
    image = ScaledSamples(_samples(rng, (256, 64)))
    bank = _bank(rng)
    conv, act, pool = Conv2d(padding="same"), Act("relu"), Pool2d("max", 2)
    held = len(bank) * 128 * 32
    monkeypatch.setattr(groups, "HELD_TOGETHER", held)
    reference = [_values(m) for m in iter_feature_maps(image, bank, conv, act, pool)]
    assert loops == [len(bank)]
    monkeypatch.setattr(groups, "HELD_TOGETHER", held - 1)
    alone = [_values(m) for m in iter_feature_maps(image, bank, conv, act, pool)]
    assert loops == [len(bank)]  # no second shared loop
    assert [m.tobytes() for m in alone] == [m.tobytes() for m in reference]
    monkeypatch.setattr(groups, "HELD_TOGETHER", held)
    banded = list(iter_feature_maps(image, bank, conv, act, pool, bands_above=128 * 32 - 1))
    assert loops == [len(bank)] and all(isinstance(m, BandedFeatureMap) for m in banded)
    merged = list(iter_feature_maps(image, bank, conv, act, pool, combine="max"))  # the combine taps conv maps
    assert loops == [len(bank)] and len(merged) == len(bank) + 1
    assert [m.tobytes() for m in map(_values, merged[:-1])] == [m.tobytes() for m in reference]
