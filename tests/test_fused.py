"""featmap.run.fused: band-by-band kernel maps equal the whole-image path's bit for bit (values, shapes, stats)."""

from __future__ import annotations

import numpy as np
import pytest

from featmap.kernels import Kernel, KernelBank, KernelLibrary
from featmap.net.layers import Act, Conv2d, Pool2d
from featmap.run import fused
from featmap.run.pipeline import iter_feature_maps


@pytest.fixture(autouse=True)
def _small_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands of `fused.BAND_ROWS` (64) conv rows: these images are then cut into 2-5 bands, a short last one too
    (at the default size one band would hold each of them whole)."""
    monkeypatch.setattr(fused, "BAND_VALUES", 1)


def _bank(*names: str) -> KernelBank:
    lib = KernelLibrary()
    return KernelBank(tuple(lib[name] for name in names))


def _both(image: np.ndarray, bank: KernelBank, conv: Conv2d, act: Act, pool: Pool2d | None, monkeypatch) -> tuple:
    assert fused.fits(image, conv, pool, None)
    banded = list(iter_feature_maps(image, bank, conv, act, pool))
    monkeypatch.setenv("FEATMAP_FUSED", "0")
    assert not fused.fits(image, conv, pool, None)
    whole = list(iter_feature_maps(image, bank, conv, act, pool))
    monkeypatch.delenv("FEATMAP_FUSED")
    return banded, whole


def _photo(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    ramp = np.cumsum(rng.random(shape, dtype=np.float32), axis=1)
    return (ramp / ramp.max() * 0.7 + rng.random(shape, dtype=np.float32) * 0.3)[:, :, None].astype(np.float32)


@pytest.mark.parametrize("shape", [(128, 97), (301, 250), (129, 64), (255, 6)])
@pytest.mark.parametrize(
    ("padding", "pad_mode", "act", "pool"),
    [
        ("same", "zeros", "relu", ("max", 2)),
        ("valid", "zeros", "none", None),
        ("same", "reflect", "abs", ("avg", 2)),
        ("full", "replicate", "tanh", ("min", 4)),
        ((2, 0, 1, 3), "zeros", "leaky_relu", ("max", 2)),
    ],
)
def test_banded_maps_equal_whole_image_maps(
    shape: tuple[int, int], padding, pad_mode: str, act: str, pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(sum(shape))
    image = _photo(rng, shape)
    bank = _bank("sobel_x", "sobel_y", "laplacian_4")
    bank = KernelBank((*bank, Kernel("g5", rng.random((5, 5)).astype(np.float32), bias=-0.5)))
    conv = Conv2d(padding=padding, pad_mode=pad_mode)
    pooling = None if pool is None else Pool2d(pool[0], pool[1])
    banded, whole = _both(image, bank, conv, Act(act), pooling, monkeypatch)
    assert len(banded) == len(whole) == 4
    for a, b in zip(banded, whole, strict=True):
        assert a.values.dtype == b.values.dtype == np.float32
        np.testing.assert_array_equal(a.values, b.values)
        assert a.info == b.info


def test_what_does_not_fit_takes_the_whole_image_path() -> None:
    gray = np.zeros((200, 200, 1), np.float32)
    assert fused.fits(gray, Conv2d(padding="same"), Pool2d("max", 2), None)
    assert not fused.fits(np.zeros((200, 200, 3), np.float32), Conv2d(), None, None)  # colour
    assert not fused.fits(gray, Conv2d(stride=(2, 2)), None, None)
    assert not fused.fits(gray, Conv2d(), Pool2d("max", 2, stride=1), None)  # overlapping windows
    assert not fused.fits(gray, Conv2d(), Pool2d("max", 3), None)  # windows do not tile a band
    assert not fused.fits(gray, Conv2d(), None, "magnitude")
    assert not fused.fits(np.zeros((20, 200, 1), np.float32), Conv2d(), None, None)  # one band anyway


@pytest.mark.parametrize("act", ["none", "relu", "relu6", "leaky_relu", "abs", "sigmoid", "tanh", "silu", "gelu"])
@pytest.mark.parametrize("pool", [None, ("max", 2), ("min", 2), ("avg", 2), ("max", (2, 4)), ("max", (1, 2))])
def test_every_activation_and_pool_in_bands_equals_the_whole_image(act: str, pool, monkeypatch) -> None:
    """The band loop's in-place stages (filter into a reused buffer, bias, pool into the map's rows, activation
    on those rows) give the whole-image path's bits, whichever stage order the activation and pool need."""
    rng = np.random.default_rng(len(act) * 31 + (0 if pool is None else len(pool[0])))
    image = _photo(rng, (300, 203))
    flat = np.zeros((9, 9), np.float32)  # maps with flat zero regions: ties between signed zeros in every window
    image[40:120, 10:90, 0] = 0.0
    bank = _bank("sobel_x", "laplacian_4")
    bank = KernelBank((*bank, Kernel("g3", rng.standard_normal((3, 3)).astype(np.float32), bias=0.25)))
    bank = KernelBank((*bank, Kernel("flat", flat)))
    conv = Conv2d(padding="same", flip=act == "abs")
    pooling = None if pool is None else Pool2d(pool[0], pool[1])
    banded, whole = _both(image, bank, conv, Act(act), pooling, monkeypatch)
    for a, b in zip(banded, whole, strict=True):
        np.testing.assert_array_equal(a.values.view(np.uint32), b.values.view(np.uint32))
        assert a.info == b.info


def test_non_finite_bands_equal_the_whole_image(monkeypatch) -> None:
    """Overflowing weights give infinities and NaNs (inf - inf) in the conv bands: the same ones, at the same
    places, as the whole-image path, so the same map is refused with the same first bad value."""
    rng = np.random.default_rng(11)
    image = _photo(rng, (260, 140))
    huge = np.array([[3e38, 0, -3e38], [3e38, 0, -3e38], [0, 0, 0]], np.float32)
    bank = KernelBank((Kernel("huge", huge),))
    for act, pool in (("relu", Pool2d("max", 2)), ("none", None), ("tanh", Pool2d("min", 2))):
        with np.errstate(over="ignore", invalid="ignore"):  # numpy's engine (without OpenCV) warns of the overflow
            banded, whole = _both(image, bank, Conv2d(padding="same"), Act(act), pool, monkeypatch)
        assert act == "tanh" or not np.isfinite(banded[0].values).all()  # tanh maps the infinities to ±1
        np.testing.assert_array_equal(banded[0].values.view(np.uint32), whole[0].values.view(np.uint32))
