"""Cross-checks against PyTorch (optional extra: ``pip install '.[test,torch]'``); skipped without torch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from featmap import conv2d, pool2d
from featmap.shapes import resolve_padding

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def reference(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    *,
    stride: object,
    padding: object,
    pad_mode: str,
    dilation: object,
    groups: int,
) -> np.ndarray:
    """torch F.conv2d after F.pad (numpy's pad for 'symmetric', which torch lacks)."""
    s = stride if isinstance(stride, tuple) else (stride, stride)
    d = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    top, bottom, left, right = resolve_padding(padding, x.shape[:2], w.shape[2:], stride=s, dilation=d)  # type: ignore[arg-type]
    if pad_mode == "symmetric":
        xp = np.pad(x, ((top, bottom), (left, right), (0, 0)), mode="symmetric")
        xt = torch.from_numpy(np.ascontiguousarray(xp.transpose(2, 0, 1)))[None]
    else:
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
        xt = F.pad(xt, (left, right, top, bottom), mode=TORCH_MODE[pad_mode])
    out = F.conv2d(
        xt,
        torch.from_numpy(w),
        None if b is None else torch.from_numpy(b),
        stride=s,
        dilation=d,
        groups=groups,
    )
    return out[0].numpy().transpose(1, 2, 0)


CASES = list(
    itertools.product(
        [1, 2, (2, 1), 3],
        ["valid", "same", "full", 1, (2, 1), (0, 1, 2, 3)],
        ["zeros", "reflect", "symmetric", "replicate", "circular"],
        [1, 2],
    )
)


@pytest.mark.parametrize(("stride", "padding", "pad_mode", "dilation"), CASES)
def test_conv2d_matches_torch(stride: object, padding: object, pad_mode: str, dilation: int) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((11, 13, 4)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 4)).astype(np.float32)  # even, non-square kernel; 2 groups
    b = rng.standard_normal(6).astype(np.float32)
    ours = conv2d(x, w, b, stride=stride, padding=padding, pad_mode=pad_mode, dilation=dilation, groups=2)  # type: ignore[arg-type]
    ref = reference(x, w, b, stride=stride, padding=padding, pad_mode=pad_mode, dilation=dilation, groups=2)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 3])
def test_depthwise_and_dense_banks(groups: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 9, 3)).astype(np.float32)
    w = rng.standard_normal((6, 3 // groups, 5, 5)).astype(np.float32)
    ours = conv2d(x, w, stride=2, padding="same", groups=groups)
    ref = reference(x, w, None, stride=2, padding="same", pad_mode="zeros", dilation=1, groups=groups)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(("size", "stride", "pad"), [(2, None, 0), (3, 2, 1), ((3, 2), (2, 1), (1, 0))])
def test_pooling_matches_torch(mode: str, size: object, stride: object, pad: object) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 11, 2)).astype(np.float32)
    ph, pw = pad if isinstance(pad, tuple) else (pad, pad)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    if mode == "max":
        ref = F.max_pool2d(xt, size, stride, padding=(ph, pw))
    else:
        ref = F.avg_pool2d(xt, size, stride, padding=(ph, pw), count_include_pad=True)
    ours = pool2d(x, size, stride=stride, padding=(ph, pw), mode=mode, count_include_pad=True)  # type: ignore[arg-type]
    np.testing.assert_allclose(ours, ref[0].numpy().transpose(1, 2, 0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize(("size", "stride", "pad", "hw"), [(3, 2, 0, (112, 57)), (2, 2, 0, (7, 9)), (3, 2, 1, (10, 11))])
def test_ceil_mode_pooling_matches_torch(
    mode: str, include: bool, size: int, stride: int, pad: int, hw: tuple[int, int]
) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((*hw, 2)).astype(np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    if mode == "max":
        ref = F.max_pool2d(xt, size, stride, padding=pad, ceil_mode=True)
    else:
        ref = F.avg_pool2d(xt, size, stride, padding=pad, ceil_mode=True, count_include_pad=include)
    ours = pool2d(x, size, stride=stride, padding=pad, mode=mode, count_include_pad=include, ceil_mode=True)
    np.testing.assert_allclose(ours, ref[0].numpy().transpose(1, 2, 0), rtol=1e-6, atol=1e-6)
