"""featmap.core.gemm: the channel-last kernels of a network's inner layers (depthwise, pointwise, dense at every
position) against scipy.ndimage in float64, against the engine's numpy tap walk (``method="direct"``), and the
engine's automatic choice against both, on random shapes, strides, dilations, padding modes and multipliers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from featmap.core import gemm
from featmap.core.engine import correlate, pad_input
from featmap.core.geometry import conv_geometry
from featmap.enums import PaddingMode

# scipy's names for featmap's padding modes (design.md's crosswalk)
SCIPY_MODE = {"zeros": "constant", "reflect": "mirror", "symmetric": "reflect", "replicate": "nearest"}


def scipy_depthwise(
    x: np.ndarray, bank: np.ndarray, stride: tuple[int, int], dilation: tuple[int, int], pad: int, mode: str
) -> np.ndarray:
    """Each filter ``c·m + k`` on channel ``c``, by scipy in float64: padded by numpy, then a 'valid' correlation
    (the window's top-left at each kept position), then strided."""
    channels = x.shape[2]
    mult = bank.shape[0] // channels
    kh, kw = bank.shape[2:]
    (dh, dw), (sh, sw) = dilation, stride
    spread_h, spread_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    padded = pad_input(x.astype(np.float64), (pad, pad, pad, pad), PaddingMode(mode))
    top, left = spread_h // 2, spread_w // 2  # ndimage centres the kernel: shift back to the window's top-left
    out = []
    for n in range(bank.shape[0]):
        kernel = np.zeros((spread_h, spread_w))
        kernel[::dh, ::dw] = bank[n, 0]
        full = ndimage.correlate(padded[:, :, n // mult], kernel, mode="constant")
        valid = full[top : top + padded.shape[0] - spread_h + 1, left : left + padded.shape[1] - spread_w + 1]
        out.append(valid[::sh, ::sw])
    return np.stack(out, axis=-1)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "symmetric", "replicate"])
@pytest.mark.parametrize(
    ("size", "channels", "mult", "kernel", "stride", "dilation", "pad"),
    [
        ((17, 23), 8, 1, (3, 3), (1, 1), (1, 1), 1),
        ((19, 16), 12, 1, (3, 3), (2, 2), (1, 1), 1),
        ((29, 31), 16, 1, (7, 7), (1, 1), (1, 1), 3),
        ((21, 20), 8, 2, (5, 3), (2, 1), (1, 2), 2),
        ((15, 33), 9, 3, (3, 3), (1, 3), (2, 2), 2),
    ],
)
def test_depthwise_equals_scipy(size, channels, mult, kernel, stride, dilation, pad, mode) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(sum(size) + channels + mult)
    x = rng.standard_normal((*size, channels)).astype(np.float32)
    bank = rng.standard_normal((channels * mult, 1, *kernel)).astype(np.float32)
    g = conv_geometry(size, kernel, stride=stride, padding=pad, dilation=dilation)
    got = gemm.depthwise(pad_input(x, g.padding, PaddingMode(mode)), bank, g, padded=True)
    ref = scipy_depthwise(x, bank, stride, dilation, pad, mode)
    if mode == "zeros":  # the padding left unread gives the same sums, bit for bit
        np.testing.assert_array_equal(gemm.depthwise(x, bank, g), got)
    assert got.shape == ref.shape == (*g.out_hw, channels * mult) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    auto = correlate(x, bank, g, channels, PaddingMode(mode))  # the engine picks the depthwise kernel here
    np.testing.assert_array_equal(auto, got)
    direct = correlate(x, bank, g, channels, PaddingMode(mode), method="direct")
    np.testing.assert_allclose(auto, direct, rtol=1e-5, atol=1e-5 * float(np.abs(direct).max()))


def tap_walk(padded: np.ndarray, bank: np.ndarray, g: object) -> np.ndarray:
    """The depthwise sum as the tap walk makes it, in the input's dtype: tap (0, 0)'s product, then each next
    tap's product added in row-major order (the order featmap's outputs were made in, so the same pixels)."""
    channels, n_out = padded.shape[2], bank.shape[0]
    source = np.repeat(padded, n_out // channels, axis=2)
    total = None
    for i in range(bank.shape[2]):
        for j in range(bank.shape[3]):
            rows, cols = g.tap_slices(i, j)  # type: ignore[attr-defined]
            product = source[rows, cols] * bank[:, 0, i, j]
            total = product if total is None else total + product
    assert total is not None
    return total


@pytest.mark.parametrize(
    ("size", "channels", "mult", "kernel", "stride", "dilation", "pad"),
    [
        ((9, 8), 16, 1, (3, 3), (1, 1), (1, 1), 1),
        ((9, 9), 8, 1, (3, 3), (2, 2), (1, 1), 1),
        ((10, 13), 8, 2, (5, 3), (2, 3), (1, 2), (2, 0, 1, 3)),
        ((6, 7), 24, 1, (7, 7), (1, 1), (1, 1), 3),
        ((5, 5), 8, 1, (3, 3), (1, 1), (3, 3), 4),  # whole bands of windows in the padding
    ],
)
def test_depthwise_adds_taps_in_row_major_order_then_the_bias(  # type: ignore[no-untyped-def]
    size, channels, mult, kernel, stride, dilation, pad
) -> None:
    rng = np.random.default_rng(channels + mult + kernel[0])
    x = rng.standard_normal((*size, channels)).astype(np.float32)
    bank = rng.standard_normal((channels * mult, 1, *kernel)).astype(np.float32)
    bias = rng.standard_normal(channels * mult).astype(np.float32)
    g = conv_geometry(size, kernel, stride=stride, padding=pad, dilation=dilation)
    expected = tap_walk(pad_input(x, g.padding, PaddingMode.ZEROS), bank, g) + bias
    np.testing.assert_array_equal(gemm.depthwise(x, bank, g, bias), expected)
    np.testing.assert_array_equal(correlate(x, bank, g, channels, bias=bias), expected)


def test_depthwise_hand_worked() -> None:
    """Two channels, a 2×2 box on one and a delta on the other, valid padding."""
    x = np.stack([np.arange(9.0).reshape(3, 3), np.full((3, 3), 5.0)], axis=-1).astype(np.float32)
    x = np.concatenate([x] * 4, axis=2)  # 8 channels: the engine's threshold for the channel-last kernels
    bank = np.zeros((8, 1, 2, 2), np.float32)
    bank[0::2] = 1.0
    bank[1::2, 0, 1, 1] = 1.0
    g = conv_geometry((3, 3), (2, 2))
    out = correlate(x, bank, g, 8)
    assert out[..., 0].tolist() == [[8.0, 12.0], [20.0, 24.0]]
    assert out[..., 1].tolist() == [[5.0, 5.0], [5.0, 5.0]]


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (3, 1)])
@pytest.mark.parametrize(("size", "channels", "filters"), [((13, 17), 8, 5), ((32, 9), 64, 24), ((7, 7), 512, 33)])
def test_pointwise_equals_a_float64_product(size, channels, filters, stride) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(channels + filters)
    x = rng.standard_normal((*size, channels)).astype(np.float32)
    bank = rng.standard_normal((filters, channels, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    ref = x[:: stride[0], :: stride[1]].astype(np.float64) @ bank[:, :, 0, 0].T.astype(np.float64) + bias
    got = gemm.pointwise(x, bank, bias, stride=stride)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    g = conv_geometry(size, 1, stride=stride)
    auto = correlate(x, bank, g, 1)
    np.testing.assert_array_equal(auto, gemm.pointwise(x, bank, stride=stride))
    direct = correlate(x, bank, g, 1, method="direct")
    np.testing.assert_allclose(auto, direct, rtol=1e-5, atol=1e-5 * float(np.abs(direct).max()))


def test_matmul_rows_bands_equal_one_product(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands of a few rows give the one-call product, bias included."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((101, 40)).astype(np.float32)
    w = rng.standard_normal((40, 7)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    monkeypatch.setattr(gemm, "_BAND_BYTES", 40 * 4 * 16)  # bands of 16 rows
    got = gemm.matmul_rows(a, w, np.empty((101, 7), np.float32), bias)
    ref = a.astype(np.float64) @ w.astype(np.float64) + bias
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def test_dense_at_every_position_equals_torch_linear() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install '.[torch]')")
    from featmap.net.layers import Dense

    rng = np.random.default_rng(2)
    x = rng.standard_normal((9, 11, 24)).astype(np.float32)
    w = {"weight": rng.standard_normal((40, 24)).astype(np.float32), "bias": rng.standard_normal(40).astype(np.float32)}
    layer = Dense(40, pointwise=True)
    got = layer.forward(x, layer.plan(x.shape), w)
    ref = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w["weight"]), torch.from_numpy(w["bias"]))
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-5 * float(np.abs(ref.numpy()).max()))


def test_workspace_reuses_memory_per_name_and_thread() -> None:
    import threading

    a = gemm.workspace("t-a", (4, 8), np.dtype(np.float32))
    b = gemm.workspace("t-a", (2, 3), np.dtype(np.float64))
    assert a.shape == (4, 8) and b.shape == (2, 3) and b.dtype == np.float64
    assert np.shares_memory(a, b)  # the same temporary, reused
    assert not np.shares_memory(a, gemm.workspace("t-b", (4, 8), np.dtype(np.float32)))
    big = (gemm._WORKSPACE_BYTES // 4 + 1,)
    assert not np.shares_memory(
        gemm.workspace("t-c", big, np.dtype(np.float32)), gemm.workspace("t-c", big, np.dtype(np.float32))
    )
    other: list[np.ndarray] = []
    thread = threading.Thread(target=lambda: other.append(gemm.workspace("t-a", (4, 8), np.dtype(np.float32))))
    thread.start()
    thread.join()
    assert not np.shares_memory(a, other[0])  # each thread its own


def test_result_array_reuses_a_results_memory_once_no_array_uses_it() -> None:
    f32 = np.dtype(np.float32)

    def address(a: np.ndarray) -> int:
        return int(a.__array_interface__["data"][0])

    assert gemm.result_array((16, 8), f32).base is None  # outside reused_results: plain arrays
    with gemm.reused_results():
        first = gemm.result_array((16, 8), f32)
        first_at = address(first)
        second = gemm.result_array((16, 8), f32)
        assert not np.shares_memory(first, second)  # first is still in use
        del first
        third = gemm.result_array((8, 16), f32)  # the same size: first's memory again
        assert address(third) == first_at and third.shape == (8, 16)
        view = third[1:]
        del third
        fourth = gemm.result_array((16, 8), f32)
        assert not np.shares_memory(fourth, view)  # a view of third still uses it
        assert not np.shares_memory(fourth, second)
        big = gemm.result_array((gemm._RESULT_BYTES // 4 + 1,), f32)
        assert big.base is None  # too large to keep: a plain array


@pytest.mark.parametrize("quad", [(1, 1, 1, 1), (0, 2, 3, 0), (3, 0, 0, 1), (0, 0, 0, 0)])
@pytest.mark.parametrize("value", [0.0, -2.5])
def test_constant_padded_is_np_pads_constant_mode(quad: tuple[int, int, int, int], value: float) -> None:
    x = np.random.default_rng(5).standard_normal((5, 4, 3)).astype(np.float32)
    gemm.constant_padded(np.full((9, 9, 3), np.nan, np.float32), (2, 2, 2, 2))  # leave old values in the workspace
    got = gemm.constant_padded(x, quad, value)
    top, bottom, left, right = quad
    want = np.pad(x, ((top, bottom), (left, right), (0, 0)), constant_values=value)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
