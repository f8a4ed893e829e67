"""featmap.core.geometry: output sizes, 'same' padding, parameters and MACs, by hand and against the ops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featmap import conv2d, pool2d
from featmap.core.geometry import (
    conv_geometry,
    conv_macs,
    conv_output_size,
    conv_params,
    pool_geometry,
    pool_output_size,
    resolve_padding,
    same_padding,
)
from featmap.errors import ShapeError, SpecError


@pytest.mark.parametrize(("stride", "expect"), [(1, 5), (2, 3)])
def test_seven_by_seven_with_three_by_three(stride: int, expect: int) -> None:
    assert conv_output_size(7, 3, stride=stride) == expect
    assert conv_geometry((7, 7), 3, stride=stride).fits


def test_stride_three_does_not_fit_seven_by_seven() -> None:
    g = conv_geometry((7, 7), 3, stride=3)
    assert g.out_hw == (2, 2)  # floored, as PyTorch does
    assert g.dropped_hw == (1, 1)  # the last row and column are never read
    assert not g.fits


def test_lenet_first_layer_textbook() -> None:
    g = conv_geometry((32, 32), 5)
    assert g.out_hw == (28, 28)
    assert conv_params((5, 5), 3, 6) == 456  # 5*5*3*6 + 6
    assert conv_params((5, 5), 3, 6, bias=False) == 450
    assert conv_macs((5, 5), 3, 6, (28, 28)) == 5 * 5 * 3 * 6 * 28 * 28


def test_grouped_params_divide_input_channels() -> None:
    assert conv_params((3, 3), 32, 32, groups=32) == 3 * 3 * 1 * 32 + 32


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "dilation", "expect"),
    [
        (5, 3, 1, 1, (1, 1)),
        (5, 4, 1, 1, (1, 2)),  # even kernel: the smaller half on top/left
        (6, 3, 2, 1, (0, 1)),  # TF: out 3, total (3-1)*2+3-6 = 1
        (7, 3, 2, 1, (1, 1)),
        (5, 3, 1, 2, (2, 2)),  # dilation 2: effective kernel 5
        (4, 1, 3, 1, (0, 0)),
    ],
)
def test_same_padding_tensorflow_rule(
    size: int, kernel: int, stride: int, dilation: int, expect: tuple[int, int]
) -> None:
    assert same_padding(size, kernel, stride=stride, dilation=dilation) == expect
    out = conv_output_size(size, kernel, stride=stride, padding=sum(expect), dilation=dilation)
    assert out == -(-size // stride)  # ceil(size / stride)


@pytest.mark.parametrize(
    ("padding", "expect"),
    [
        ("valid", (0, 0, 0, 0)),
        ("full", (2, 2, 4, 4)),
        (1, (1, 1, 1, 1)),
        ((1, 2), (1, 1, 2, 2)),
        ((0, 1, 2, 3), (0, 1, 2, 3)),
    ],
)
def test_padding_forms(padding: object, expect: tuple[int, int, int, int]) -> None:
    assert resolve_padding(padding, (9, 9), (3, 5)) == expect  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["middle", (1, 2, 3), -1, 1.5])
def test_bad_padding_is_refused(bad: object) -> None:
    with pytest.raises(SpecError, match="padding"):
        resolve_padding(bad, (9, 9), (3, 3))  # type: ignore[arg-type]


def test_kernel_larger_than_padded_input() -> None:
    with pytest.raises(ShapeError, match="larger than the padded input"):
        conv_output_size(3, 5)
    with pytest.raises(SpecError, match="stride.*>= 1; got 0"):
        conv_geometry((5, 5), 3, stride=0)


def test_pool_defaults_to_window_stride() -> None:
    assert pool_output_size(8, 2) == 4
    assert pool_geometry((8, 8), 2).out_hw == (4, 4)
    assert pool_geometry((7, 7), 2).dropped_hw == (1, 1)
    assert pool_geometry((7, 7), 2, padding="same").out_hw == (4, 4)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    sh=st.integers(1, 4),
    sw=st.integers(1, 4),
    dh=st.integers(1, 3),
    dw=st.integers(1, 3),
    padding=st.one_of(st.sampled_from(["valid", "same", "full"]), st.tuples(*[st.integers(0, 3)] * 4)),
)
def test_formula_equals_actual_conv_shape(
    h: int, w: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, padding: object
) -> None:
    try:
        g = conv_geometry((h, w), (kh, kw), stride=(sh, sw), padding=padding, dilation=(dh, dw))  # type: ignore[arg-type]
    except ShapeError:
        with pytest.raises(ShapeError):
            conv2d(np.zeros((h, w)), np.ones((kh, kw)), stride=(sh, sw), padding=padding, dilation=(dh, dw))  # type: ignore[arg-type]
        return
    out = conv2d(np.zeros((h, w)), np.ones((kh, kw)), stride=(sh, sw), padding=padding, dilation=(dh, dw))  # type: ignore[arg-type]
    assert out.shape == (*g.out_hw, 1)
    # every output row reads inside the padded input, and one more stride would not fit
    ph = g.padded_hw[0]
    last = (g.out_hw[0] - 1) * sh + dh * (kh - 1)
    assert last + 1 + g.dropped_hw[0] == ph
    assert 0 <= g.dropped_hw[0] < sh


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 16), w=st.integers(1, 16), k=st.integers(1, 4), s=st.integers(1, 4), same=st.booleans())
def test_pool_formula_equals_actual_pool_shape(h: int, w: int, k: int, s: int, same: bool) -> None:
    padding = "same" if same else "valid"
    try:
        g = pool_geometry((h, w), k, stride=s, padding=padding)
    except ShapeError:
        return
    top, bottom, left, right = g.padding
    if max(top, bottom, left, right) > k // 2:
        return  # refused by pool2d: a window could be all padding
    assert pool2d(np.zeros((h, w)), k, stride=s, padding=padding).shape == (*g.out_hw, 1)


@pytest.mark.parametrize(
    ("in_hw", "kernel", "stride", "dilation", "padding"),
    [((7, 7), 3, 3, 1, "valid"), ((9, 6), (3, 2), (2, 1), (1, 2), "same"), ((5, 8), 2, 2, 3, "full")],
)
def test_tap_slices_pick_each_window_cell(in_hw, kernel, stride, dilation, padding):
    """Tap (i, j) of output (y, x) reads padded cell (y*sh + i*dh, x*sw + j*dw), and only the out_hw of them."""
    from featmap.core.geometry import conv_geometry

    g = conv_geometry(in_hw, kernel, stride=stride, padding=padding, dilation=dilation)
    ph, pw = g.padded_hw
    grid_r, grid_c = np.meshgrid(np.arange(ph), np.arange(pw), indexing="ij")
    for i in range(g.kernel_hw[0]):
        for j in range(g.kernel_hw[1]):
            rows, cols = g.tap_slices(i, j)
            assert grid_r[rows, cols].shape == g.out_hw
            ys, xs = np.arange(g.out_hw[0]), np.arange(g.out_hw[1])
            assert (grid_r[rows, cols][:, 0] == ys * g.stride[0] + i * g.dilation[0]).all()
            assert (grid_c[rows, cols][0] == xs * g.stride[1] + j * g.dilation[1]).all()
