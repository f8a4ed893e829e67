"""featmap.run.fused: band-by-band kernel maps equal the whole-image path's bit for bit (values, shapes, stats)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featmap.errors import FeatmapError
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
    from featmap.core.geometry import conv_geometry

    def edges(kernel: int, padding, mode: str) -> bool:
        conv = Conv2d(padding=padding, pad_mode=mode)
        return fused.fits(gray, conv, None, None, conv_geometry((200, 200), (kernel, kernel), padding=padding))

    assert edges(3, "same", "reflect") and edges(7, "full", "symmetric") and edges(5, "valid", "circular")
    assert edges(3, (0, 0, 1, 1), "circular")  # circular on the left and right only: bands are whole rows
    assert not edges(3, "same", "circular")  # a band would wrap onto its own last rows
    assert not edges(3, (3, 0, 0, 0), "zeros")  # more padding than the kernel reaches
    assert not edges(33, "same", "zeros")  # a kernel taller than half a band


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


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(128, 300),
    width=st.integers(1, 90),
    kernel=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    padding=st.sampled_from(["valid", "same", "full", (2, 0, 1, 3), (0, 3, 0, 0)]),
    pad_mode=st.sampled_from(["zeros", "reflect", "symmetric", "replicate", "circular"]),
    act=st.sampled_from(["none", "relu", "leaky_relu", "abs", "tanh", "sigmoid", "relu6"]),
    pool=st.sampled_from([None, ("max", 2), ("min", 2), ("avg", 2), ("max", (4, 1)), ("min", (2, 3))]),
    flip=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_fitting_run_in_bands_equals_the_whole_image(
    height: int, width: int, kernel: tuple[int, int], padding, pad_mode: str, act: str, pool, flip: bool, seed: int
) -> None:
    """Random shapes, kernels (separable or not, with a bias), paddings, modes, activations and tiling pools: the
    band loop's values (64-row bands) and statistics are the whole-image path's, bit for bit, and a run one path
    refuses the other refuses with the same error. (It found circular padding wrapping a band onto its own rows,
    symmetric padding of a 1-row last band reflecting twice, and reflect refusing that band: `fused.edges_fit`.)"""
    rng = np.random.default_rng(seed)
    image = _photo(rng, (height, width))
    weights = rng.standard_normal(kernel).astype(np.float32)
    if seed % 3 == 0:  # an outer product: OpenCV's sepFilter2D
        weights = np.outer(rng.standard_normal(kernel[0]), rng.standard_normal(kernel[1])).astype(np.float32)
    bank = KernelBank((Kernel("k", weights, bias=float(rng.standard_normal())),))
    conv = Conv2d(padding=padding, pad_mode=pad_mode, flip=flip)
    pooling = None if pool is None else Pool2d(pool[0], pool[1])

    def run(fused_path: str) -> list | str:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FEATMAP_FUSED", fused_path)
            try:
                return list(iter_feature_maps(image, bank, conv, Act(act), pooling))
            except FeatmapError as error:
                return f"{type(error).__name__}: {error}"

    banded, whole = run("1"), run("0")
    if isinstance(whole, str) or isinstance(banded, str):
        assert banded == whole
        return
    for a, b in zip(banded, whole, strict=True):
        np.testing.assert_array_equal(a.values.view(np.uint32), b.values.view(np.uint32))
        assert a.info == b.info
