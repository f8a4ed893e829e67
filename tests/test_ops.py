"""featmap.core.ops: conv2d by hand, by identity and against scipy; padding modes; activations; errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage, signal

from featmap import activate, conv2d, pad
from featmap.core.ops import normalize, separable
from featmap.errors import ShapeError, SpecError
from featmap.io.writers.png import quantize, to_pixels

TEXTBOOK_X = np.array(
    [[2, 2, 3, 3, 3], [0, 1, 3, 0, 3], [2, 3, 0, 1, 3], [3, 3, 2, 1, 2], [3, 3, 0, 2, 3]], dtype=np.float32
)
TEXTBOOK_K = np.array([[2, 0, 1], [1, 0, 0], [0, 1, 1]], dtype=np.float32)

# featmap mode -> scipy.ndimage mode (the crosswalk the README documents)
SCIPY_MODE = {
    "zeros": "constant",
    "reflect": "mirror",
    "symmetric": "reflect",
    "replicate": "nearest",
    "circular": "wrap",
}
NUMPY_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "symmetric": "symmetric",
    "replicate": "edge",
    "circular": "wrap",
}


def test_textbook_example_zero_padding_one() -> None:
    out = conv2d(TEXTBOOK_X, TEXTBOOK_K, padding=1)[..., 0]
    np.testing.assert_array_equal(out[:3, :3], [[1, 6, 5], [7, 10, 9], [7, 10, 8]])
    assert out.shape == (5, 5)


def test_textbook_by_hand_valid_stride_two() -> None:
    # top-left window [[2,2,3],[0,1,3],[2,3,0]] . K = 4+0+3+0+0+0+0+3+0 = 10
    out = conv2d(TEXTBOOK_X, TEXTBOOK_K, stride=2)[..., 0]
    assert out.shape == (2, 2)
    assert out[0, 0] == 10
    assert out[1, 1] == float((TEXTBOOK_X[2:5, 2:5] * TEXTBOOK_K).sum())


def test_flip_gives_true_convolution() -> None:
    ours = conv2d(TEXTBOOK_X, TEXTBOOK_K, padding="same", flip=True)[..., 0]
    np.testing.assert_allclose(ours, ndimage.convolve(TEXTBOOK_X, TEXTBOOK_K, mode="constant"), rtol=1e-6)
    assert not np.allclose(ours, conv2d(TEXTBOOK_X, TEXTBOOK_K, padding="same")[..., 0])


@pytest.mark.parametrize("mode", list(SCIPY_MODE))
def test_delta_kernel_is_identity(mode: str, rng: np.random.Generator) -> None:
    x = rng.random((9, 11, 3), dtype=np.float32)
    delta = np.zeros((5, 5), np.float32)
    delta[2, 2] = 1
    np.testing.assert_array_equal(conv2d(x, delta, padding="same", pad_mode=mode), x)


def test_box_kernel_preserves_sum_with_circular_padding(rng: np.random.Generator) -> None:
    x = rng.random((16, 12), dtype=np.float64)
    out = conv2d(x, np.full((3, 5), 1 / 15), padding="same", pad_mode="circular")
    assert out.sum() == pytest.approx(x.sum(), rel=1e-12)


def test_shift_equivariance(rng: np.random.Generator) -> None:
    x = rng.random((20, 20))
    k = rng.random((3, 3))
    shifted = np.roll(x, (2, 3), axis=(0, 1))
    a = conv2d(x, k, padding="same", pad_mode="circular")
    b = conv2d(shifted, k, padding="same", pad_mode="circular")
    np.testing.assert_allclose(np.roll(a, (2, 3), axis=(0, 1)), b, rtol=1e-12)


def test_linearity(rng: np.random.Generator) -> None:
    x, y = rng.random((10, 10)), rng.random((10, 10))
    k = rng.standard_normal((3, 3))
    lhs = conv2d(2 * x - 3 * y, k, padding=1)
    np.testing.assert_allclose(lhs, 2 * conv2d(x, k, padding=1) - 3 * conv2d(y, k, padding=1), atol=1e-12)


@pytest.mark.parametrize("mode", list(SCIPY_MODE))
@pytest.mark.parametrize("ksize", [(3, 3), (5, 3), (1, 7)])
def test_matches_scipy_correlate_same_stride_one(mode: str, ksize: tuple[int, int], rng: np.random.Generator) -> None:
    x = rng.random((13, 17), dtype=np.float32)
    k = rng.standard_normal(ksize).astype(np.float32)
    ours = conv2d(x, k, padding="same", pad_mode=mode)[..., 0]
    ref = ndimage.correlate(x.astype(np.float64), k.astype(np.float64), mode=SCIPY_MODE[mode])
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (3, 2), (2, 1)])
@pytest.mark.parametrize("dilation", [(1, 1), (2, 1), (2, 3)])
@pytest.mark.parametrize("padding", ["valid", "same", "full", 2, (1, 3), (0, 2, 3, 1)])
def test_matches_scipy_signal_on_padded_input(
    stride: tuple[int, int], dilation: tuple[int, int], padding: object, rng: np.random.Generator
) -> None:
    x = rng.random((14, 15))
    k = rng.standard_normal((3, 4))
    ours = conv2d(x, k, stride=stride, padding=padding, dilation=dilation, pad_mode="symmetric")[..., 0]  # type: ignore[arg-type]
    from featmap.core.geometry import resolve_padding

    top, bottom, left, right = resolve_padding(padding, (14, 15), (3, 4), stride=stride, dilation=dilation)  # type: ignore[arg-type]
    padded = np.pad(x, ((top, bottom), (left, right)), mode="symmetric")
    dilated = np.zeros((dilation[0] * 2 + 1, dilation[1] * 3 + 1))
    dilated[:: dilation[0], :: dilation[1]] = k
    full = signal.correlate2d(padded, dilated, mode="valid")
    np.testing.assert_allclose(ours, full[:: stride[0], :: stride[1]], rtol=1e-12, atol=1e-12)


def test_bank_with_channels_and_bias_matches_sum_over_channels(rng: np.random.Generator) -> None:
    x = rng.random((8, 9, 3))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    out = conv2d(x, w, b, padding=1)
    assert out.shape == (8, 9, 4)
    for n in range(4):
        ref = sum(ndimage.correlate(x[..., c], w[n, c], mode="constant") for c in range(3)) + b[n]
        np.testing.assert_allclose(out[..., n], ref, rtol=1e-10, atol=1e-12)


def test_groups_and_depthwise(rng: np.random.Generator) -> None:
    x = rng.random((7, 7, 4))
    w = rng.standard_normal((6, 2, 3, 3))  # 2 groups: channels 0-1 -> filters 0-2, 2-3 -> 3-5
    out = conv2d(x, w, groups=2)
    np.testing.assert_allclose(out[..., :3], conv2d(x[..., :2], w[:3]), atol=1e-12)
    np.testing.assert_allclose(out[..., 3:], conv2d(x[..., 2:], w[3:]), atol=1e-12)
    k = rng.standard_normal((3, 3))
    depthwise = conv2d(x, k)  # a 2-D kernel filters each channel on its own
    for c in range(4):
        np.testing.assert_allclose(depthwise[..., c], conv2d(x[..., c], k)[..., 0], atol=1e-12)


def test_per_channel_kernel_sums_into_one_map(rng: np.random.Generator) -> None:
    x = rng.random((6, 6, 3))
    w = rng.standard_normal((3, 3, 3))
    out = conv2d(x, w)
    assert out.shape == (4, 4, 1)
    np.testing.assert_allclose(out[..., 0], sum(conv2d(x[..., c], w[c])[..., 0] for c in range(3)), atol=1e-12)


@pytest.mark.parametrize(
    ("dtype", "expect"),
    [(np.uint8, np.float32), (np.float32, np.float32), (np.float64, np.float64), (np.int32, np.float32)],
)
def test_dtype_contract(dtype: type, expect: type) -> None:
    out = conv2d(np.ones((5, 5), dtype=dtype), np.ones((3, 3)))
    assert out.dtype == expect
    assert float(out[0, 0, 0]) == 9.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stride": 0}, SpecError, "stride.*>= 1; got 0"),
        ({"dilation": (1, 0)}, SpecError, "dilation"),
        ({"pad_mode": "bogus"}, SpecError, "unknown value 'bogus'"),
        ({"pad_mode": "mirror"}, SpecError, "ambiguous"),
        ({"padding": "middle"}, SpecError, "unknown padding"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        conv2d(np.ones((5, 5)), np.ones((3, 3)), **kwargs)  # type: ignore[arg-type]


def test_bad_weights_and_shapes() -> None:
    with pytest.raises(ShapeError, match="larger than the padded input"):
        conv2d(np.ones((3, 3)), np.ones((5, 5)))
    with pytest.raises(ShapeError, match="input channels"):
        conv2d(np.ones((5, 5, 3)), np.ones((2, 2, 3, 3)))
    with pytest.raises(SpecError, match="NaN"):
        conv2d(np.ones((5, 5)), [[1, np.nan], [0, 1]])
    with pytest.raises(ShapeError, match="groups"):
        conv2d(np.ones((5, 5, 3)), np.ones((4, 1, 3, 3)), groups=3)
    with pytest.raises(ShapeError, match="reflect padding"):
        conv2d(np.ones((2, 2)), np.ones((5, 5)), padding="same", pad_mode="reflect")
    with pytest.raises(ShapeError, match="bias"):
        conv2d(np.ones((5, 5)), np.ones((2, 1, 3, 3)), bias=[1, 2, 3])


@pytest.mark.parametrize("mode", list(NUMPY_MODE))
def test_pad_modes_follow_numpy(mode: str) -> None:
    row = np.array([[1.0, 2.0, 3.0, 4.0]])
    ours = pad(row, (0, 0, 2, 3), mode)[0, :, 0]
    np.testing.assert_array_equal(ours, np.pad(row[0], (2, 3), mode=NUMPY_MODE[mode]))


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("edge", "replicate"),
        ("nearest", "replicate"),
        ("wrap", "circular"),
        ("reflect_101", "reflect"),
        ("border_reflect", "symmetric"),
        ("constant", "zeros"),
    ],
)
def test_padding_aliases(alias: str, canonical: str) -> None:
    row = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(pad(row, (0, 0, 2, 2), alias), pad(row, (0, 0, 2, 2), canonical))


def test_activations_by_value() -> None:
    x = np.array([-2.0, -0.5, 0.0, 0.5, 7.0], dtype=np.float32)
    np.testing.assert_array_equal(activate(x, "relu"), [0, 0, 0, 0.5, 7])
    np.testing.assert_allclose(activate(x, "leaky_relu", slope=0.1), [-0.2, -0.05, 0, 0.5, 7], rtol=1e-6)
    np.testing.assert_array_equal(activate(x, "relu6"), [0, 0, 0, 0.5, 6])
    np.testing.assert_array_equal(activate(x, "abs"), np.abs(x))
    np.testing.assert_allclose(activate(x, "sigmoid"), 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6)
    np.testing.assert_allclose(activate(x, "tanh"), np.tanh(x), rtol=1e-6)
    np.testing.assert_array_equal(activate(x, "none"), x)
    assert activate(x, "sigmoid").dtype == np.float32
    assert activate(np.array([-1000.0, 1000.0]), "sigmoid").tolist() == [0.0, 1.0]
    with pytest.raises(SpecError, match="slope"):
        activate(x, "relu", slope=0.2)
    with pytest.raises(SpecError, match="unknown value 'swish'"):
        activate(x, "swish")


def test_normalize_modes() -> None:
    x = np.array([-4.0, 0.0, 2.0])
    np.testing.assert_allclose(normalize(x, "minmax"), [0, 4 / 6, 1])
    np.testing.assert_allclose(normalize(x, "clip"), [0, 0, 1])
    np.testing.assert_allclose(normalize(x, "abs"), [1, 0, 0.5])
    np.testing.assert_allclose(normalize(x, "symmetric"), [0, 0.5, 0.75])
    np.testing.assert_allclose(normalize(np.full(3, 0.25), "minmax"), [0.25] * 3)  # flat map keeps its value


def test_separable() -> None:
    assert separable(np.outer([1, 2, 1], [1, 0, -1]))
    assert not separable([[0, 1, 0], [1, -4, 1], [0, 1, 0]])


@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float64, st.tuples(st.integers(3, 9), st.integers(3, 9)), elements=st.floats(-10, 10)),
    k=arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 3)), elements=st.floats(-3, 3)),
    stride=st.integers(1, 3),
)
def test_strided_equals_stride_one_subsampled(x: np.ndarray, k: np.ndarray, stride: int) -> None:
    full = conv2d(x, k)
    np.testing.assert_allclose(conv2d(x, k, stride=stride), full[::stride, ::stride], rtol=1e-12, atol=1e-9)


def test_lenet_textbook_bank_shape_and_params() -> None:
    from featmap.core.geometry import conv_params

    out = conv2d(np.zeros((32, 32, 3), np.float32), np.ones((6, 3, 5, 5), np.float32), np.zeros(6))
    assert out.shape == (28, 28, 6)
    assert conv_params((5, 5), 3, 6) == 6 * 5 * 5 * 3 + 6 == 456


def test_seven_by_seven_strides() -> None:
    x = np.arange(49.0).reshape(7, 7)
    k = np.ones((3, 3))
    assert conv2d(x, k, stride=1).shape == (5, 5, 1)
    assert conv2d(x, k, stride=2).shape == (3, 3, 1)
    # stride 3 does not fit: two outputs, the last row and column are never read
    out = conv2d(x, k, stride=3)[..., 0]
    assert out.shape == (2, 2)
    assert out[1, 1] == x[3:6, 3:6].sum()


@pytest.mark.parametrize("mode", ["minmax", "clip", "abs", "symmetric", "percentile"])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_to_pixels_is_quantize_of_normalize_band_by_band(
    mode: str, bit_depth: int, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    import featmap.core.ops as ops
    import featmap.io.writers.pixels as pixels

    monkeypatch.setattr(ops, "_BAND_VALUES", 100)  # many bands, the last one short
    monkeypatch.setattr(pixels, "PIXEL_BAND_VALUES", 100)
    maps = [
        rng.standard_normal((57, 13, 1)).astype(np.float32) * 3,
        rng.standard_normal((3, 41, 29)).astype(np.float32).transpose(1, 2, 0),  # a strided view, as banks return
        np.full((20, 9, 1), 0.25, dtype=np.float32),  # constant: minmax keeps the value
        np.zeros((7, 7, 1), dtype=np.float32),  # all zero: abs/symmetric have no peak
    ]
    for values in maps:
        expected = quantize(ops.normalize(values, mode), bit_depth)
        got = to_pixels(values, mode, bit_depth)
        assert got.dtype == (np.uint8 if bit_depth == 8 else np.uint16)
        np.testing.assert_array_equal(got, expected)
    assert to_pixels(np.array([[-1.0, 0.0, 1.0]]), "symmetric").tolist() == [[0, 128, 255]]


def _near_every_tie() -> np.ndarray:
    """float32 display values whose product with 255 lies within a few float32 steps of every k + 1/2 (where
    rounding half to even decides), plus 0, -0, 1 and the smallest values."""
    centres = ((np.arange(255) + 0.5) / 255).astype(np.float32)
    steps = np.arange(-40, 41, dtype=np.int32)
    near = (centres.view(np.int32)[:, None] + steps[None, :]).reshape(-1).view(np.float32)
    ends = np.array([0.0, -0.0, 1.0, np.nextafter(np.float32(1), np.float32(0)), 1e-45, 1e-38], np.float32)
    return np.concatenate([near[(near >= 0) & (near <= 1)], ends]).astype(np.float32)


@pytest.mark.parametrize("width", [31, 64, 513])  # under OpenCV's vector step (its scalar loop), and over it
def test_quantize_into_is_quantize_near_every_tie(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import featmap.io.writers.pixels as pixels

    values = _near_every_tie()
    values = np.resize(values, (-(-values.size // width), width))
    expected = quantize(values, 8)
    assert len(np.unique(expected)) == 256
    for shape in (values.shape, (*values.shape, 1)):
        got = pixels.quantize_into(values.copy().reshape(shape), np.empty(shape, np.uint8), unit=True)
        np.testing.assert_array_equal(got.reshape(values.shape), expected)
    monkeypatch.setattr(pixels, "opencv", lambda: None)  # numpy's levels, the same
    got = pixels.quantize_into(values.copy(), np.empty(values.shape, np.uint8), unit=True)
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=60, deadline=None)
@given(
    values=arrays(
        np.float32,
        st.tuples(st.integers(1, 9), st.integers(1, 70), st.sampled_from([1, 3])),
        elements=st.floats(0, 1, width=32),
    ),
    bit_depth=st.sampled_from([8, 16]),
)
def test_quantize_into_is_quantize(values: np.ndarray, bit_depth: int) -> None:
    from featmap.io.writers.pixels import quantize_into

    dtype = np.uint8 if bit_depth == 8 else np.uint16
    expected = quantize(values, bit_depth)
    np.testing.assert_array_equal(quantize_into(values.copy(), np.empty(values.shape, dtype), unit=True), expected)
    stretched = values * 3 - 1  # outside [0, 1]: clipped first
    expected = quantize(stretched, bit_depth)
    np.testing.assert_array_equal(quantize_into(stretched.copy(), np.empty(values.shape, dtype)), expected)
