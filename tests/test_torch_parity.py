"""Cross-checks against PyTorch (optional extra: ``pip install '.[test,torch]'``); skipped without torch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from featmap import conv2d, pool2d
from featmap.core.geometry import resolve_padding

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
@pytest.mark.parametrize(
    ("size", "stride", "pad", "hw"), [(3, 2, 0, (112, 57)), (2, 2, 0, (7, 9)), (3, 2, 1, (10, 11))]
)
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


def _torch_counts(model: object) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
    buffers = sum(b.numel() for name, b in model.named_buffers() if "running" in name)  # type: ignore[attr-defined]
    return trainable, buffers


def test_summary_matches_torch_shapes_and_params() -> None:
    from featmap.net.spec import parse_tokens
    from featmap.net.summary import summarize

    nn = torch.nn
    tokens = [
        "conv:8@3x3/s2/p1/nobias",
        "bn",
        "relu",
        "maxpool:3/s2/p1/ceil",
        "conv:16@5x3/d2/p2,1/g2",
        "avgpool:2",
        "dwconv:3x3/p1",
        "flatten",
        "dense:10",
    ]
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
        nn.Conv2d(8, 16, (5, 3), dilation=2, padding=(2, 1), groups=2),
        nn.AvgPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.Flatten(),
        nn.Linear(16 * 3 * 5, 10),
    )
    x = torch.zeros(1, 3, 37, 45)
    s = summarize(parse_tokens(tokens), (37, 45, 3))
    out = x
    for module, row in zip(net, s.layers, strict=True):
        out = module(out)
        expect = tuple(out.shape[2:]) + (out.shape[1],) if out.ndim == 4 else tuple(out.shape[1:])
        assert row.out_shape == expect, row
    assert (s.totals.trainable, s.totals.non_trainable) == _torch_counts(net)


def test_residual_block_matches_torch() -> None:
    from featmap.net.spec import parse_file
    from featmap.net.summary import summarize

    nn = torch.nn
    import tempfile
    from pathlib import Path

    spec = """
layers:
  - residual:
      main: ["conv:32@3x3/s2/p1/nobias", bn, relu, "conv:32@3x3/p1/nobias", bn]
      shortcut: ["conv:32@1x1/s2/nobias", bn]
"""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(spec)
        s = summarize(parse_file(path).layers, (15, 15, 16))
    main = nn.Sequential(
        nn.Conv2d(16, 32, 3, 2, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, 1, 1, bias=False),
        nn.BatchNorm2d(32),
    )
    short = nn.Sequential(nn.Conv2d(16, 32, 1, 2, bias=False), nn.BatchNorm2d(32))
    y = main(torch.zeros(1, 16, 15, 15)) + short(torch.zeros(1, 16, 15, 15))
    assert s.layers[0].out_shape == (y.shape[2], y.shape[3], y.shape[1])
    t_main, b_main = _torch_counts(main)
    t_short, b_short = _torch_counts(short)
    assert (s.totals.trainable, s.totals.non_trainable) == (t_main + t_short, b_main + b_short)
