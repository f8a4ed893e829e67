"""featmap.net.layers.channels and the new merges (gate, aux) and activations: plans, hand-worked forward passes,
and PyTorch where installed."""

from __future__ import annotations

import numpy as np
import pytest

from featmap.core.ops import activate
from featmap.errors import ShapeError, SpecError
from featmap.net.layers import (
    Act,
    ChannelShuffle,
    Conv2d,
    Dense,
    DropPath,
    Flatten,
    GlobalPool2d,
    LayerNorm,
    LayerScale,
    Parallel,
    RunContext,
    Sequential,
    Softmax,
    Split,
    without_aux,
)
from featmap.net.spec import parse_tokens
from featmap.net.summary import summarize
from featmap.run.executor import WeightSource, run_network

RNG = np.random.default_rng(11)


def _run(layer, x, weights=None):
    plan = layer.plan(x.shape)
    out = layer.forward(x, plan, weights or {}, RunContext())
    assert out.shape == plan.out_shape  # the plan states what the forward pass makes
    return out


def test_activations_hand_values() -> None:
    x = np.array([-4.0, -1.0, 0.0, 1.0, 4.0])
    np.testing.assert_allclose(activate(x, "hardsigmoid"), [0, 2 / 6, 0.5, 4 / 6, 1])
    np.testing.assert_allclose(activate(x, "hardswish"), [0, -2 / 6, 0, 4 / 6, 4])
    np.testing.assert_allclose(activate(x, "silu"), x / (1 + np.exp(-x)), rtol=1e-12)
    # GELU(1) = Φ(1) = 0.8413447460685429 (the normal CDF at 1)
    np.testing.assert_allclose(activate(np.array([1.0, -1.0]), "gelu"), [0.8413447460685429, -0.15865525393145707])


@pytest.mark.parametrize("name", ["silu", "hardswish", "hardsigmoid", "gelu"])
def test_activations_in_place_equal_fresh(name: str) -> None:
    x = RNG.standard_normal(100).astype(np.float32) * 5
    y = x.copy()
    activate(y, name, out=y)
    np.testing.assert_array_equal(y, activate(x, name))


def test_layernorm_over_channels_hand_worked() -> None:
    x = np.array([[[1.0, 2.0, 3.0, 6.0]]], np.float32)  # mean 3, biased variance 3.5
    w = {"weight": np.array([1.0, 1.0, 2.0, 1.0]), "bias": np.array([0.0, 0.0, 0.0, 1.0])}
    out = _run(LayerNorm(eps=0.0), x, w)
    expected = (np.array([1, 2, 3, 6]) - 3) / np.sqrt(3.5) * w["weight"] + w["bias"]
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)
    plan = LayerNorm().plan((7, 7, 96))
    assert (plan.params, plan.macs, plan.non_trainable) == (192, 0, 0)


@pytest.mark.parametrize("shape", [(6, 5, 12), (7, 3), (9,)])
def test_layernorm_bands_leave_every_value_as_one_pass_makes_it(
    shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A band of positions at a time (here 2 positions of 12 values): each position's float64 arithmetic is the
    whole-array formula's, bit for bit."""
    from featmap.net.layers import channels

    monkeypatch.setattr(channels, "_LAYERNORM_BAND_VALUES", 24)
    x = (RNG.standard_normal(shape) * 4 + 2).astype(np.float32)
    w = {"weight": RNG.standard_normal(shape[-1]), "bias": RNG.standard_normal(shape[-1])}
    wide = x.astype(np.float64)
    centred = wide - wide.mean(axis=-1, keepdims=True)
    whole = centred / np.sqrt(np.mean(centred * centred, axis=-1, keepdims=True) + 1e-6) * w["weight"] + w["bias"]
    out = _run(LayerNorm(eps=1e-6), x, w)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, whole.astype(np.float32))


def test_layerscale_softmax_droppath() -> None:
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    gamma = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_allclose(_run(LayerScale(), x, {"weight": gamma}), x * gamma)
    assert LayerScale().plan((3, 4, 5)).params == 5
    probs = _run(Softmax(), x)
    np.testing.assert_allclose(probs.sum(axis=-1), 1, rtol=1e-6)
    np.testing.assert_allclose(_run(Softmax(), np.array([0.0, np.log(3.0)], np.float32)), [0.25, 0.75], rtol=1e-6)
    assert _run(DropPath(0.2), x) is x
    assert DropPath(0.2).plan((3, 4, 5)).params == 0
    with pytest.raises(SpecError, match="rate"):
        DropPath(1.0)


def test_split_chunks_as_torch_chunk() -> None:
    x = np.arange(7, dtype=np.float32).reshape(1, 1, 7)
    # torch.chunk(7 channels, 3) gives 3, 3, 1
    assert [_run(Split(i, chunks=3), x)[0, 0].tolist() for i in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert _run(Split(1, sizes=(2, 5)), x)[0, 0].tolist() == [2, 3, 4, 5, 6]
    with pytest.raises(ShapeError, match="add up"):
        Split(0, sizes=(2, 2)).plan((1, 1, 7))
    with pytest.raises(ShapeError, match="only 2 chunks"):
        Split(2, chunks=3).plan((1, 1, 2))  # torch.chunk(2 channels, 3) gives 2 chunks
    with pytest.raises(SpecError, match="index"):
        Split(2, chunks=2)


def test_channel_shuffle_hand_worked_and_inverse() -> None:
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 6)
    assert _run(ChannelShuffle(2), x)[0, 0].tolist() == [0, 3, 1, 4, 2, 5]
    assert _run(ChannelShuffle(3), x)[0, 0].tolist() == [0, 2, 4, 1, 3, 5]
    y = RNG.standard_normal((2, 3, 12)).astype(np.float32)
    np.testing.assert_array_equal(_run(ChannelShuffle(4), _run(ChannelShuffle(3), y)), y)  # 3×4 then 4×3
    with pytest.raises(ShapeError, match="divide"):
        ChannelShuffle(4).plan((2, 2, 6))


def test_gate_multiplies_broadcast_over_positions() -> None:
    gate = Parallel((Sequential(), Sequential((GlobalPool2d(),))), "mul")
    x = RNG.random((4, 5, 3)).astype(np.float32)
    assert gate.merge_shape([(4, 5, 3), (1, 1, 3)]) == (4, 5, 3)
    np.testing.assert_allclose(gate.merge([x, x.mean(axis=(0, 1), keepdims=True)]), x * x.mean(axis=(0, 1)))
    with pytest.raises(ShapeError, match="cannot multiply"):
        gate.merge_shape([(4, 5, 3), (1, 1, 2)])


def test_squeeze_excitation_summary_and_run() -> None:
    se = Parallel(
        (
            Sequential(),
            Sequential((GlobalPool2d(), Conv2d(2, 1), Act("relu"), Conv2d(8, 1), Act("hardsigmoid"))),
        ),
        "mul",
    )
    s = summarize((Conv2d(8, 3, padding=1), se), (6, 6, 3))
    assert s.totals.trainable == (27 * 8 + 8) + (8 * 2 + 2) + (2 * 8 + 8)
    assert s.totals.macs == 27 * 8 * 36 + 16 + 16  # conv weights only; the multiply counts nothing
    gate_row = next(r for r in s.layers if r.kind == "Multiply")
    assert gate_row.out_shape == (6, 6, 8)
    assert gate_row.receptive_field is not None and gate_row.receptive_field.size == (3, 3)  # the main path's
    pytest.importorskip("featmap.net.weights")  # the executor's weight initialisation (another change)
    x = RNG.random((6, 6, 3)).astype(np.float32)
    result = run_network((Conv2d(8, 3, padding=1), se), x, WeightSource(init="kaiming", seed=1))
    main, gated = result.outputs[0].values, result.outputs[-1].values
    ratio = gated / np.where(main == 0, 1, main)
    # one factor per channel, the same at every position, in [0, 1] (hard sigmoid)
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:1, :1], ratio.shape), atol=1e-5)
    assert 0 <= ratio.min() and ratio.max() <= 1


def test_aux_branch_feeds_nothing_and_counts_apart() -> None:
    head = Sequential((Flatten(), Dense(10)), "head")
    net = (Conv2d(4, 3), Parallel((Sequential(), head), "aux"), GlobalPool2d())
    s = summarize(net, (8, 8, 1))
    assert s.layers[-1].out_shape == (1, 1, 4)
    assert s.totals.aux_params == 6 * 6 * 4 * 10 + 10
    assert s.totals.trainable == 40 + s.totals.aux_params
    stripped = summarize(without_aux(net), (8, 8, 1))
    assert stripped.totals.trainable == 40 and stripped.totals.aux_params == 0
    pytest.importorskip("featmap.net.weights")
    x = RNG.random((8, 8, 1)).astype(np.float32)
    result = run_network(net, x, WeightSource(init="kaiming", seed=0))
    assert result.logits.shape == (1, 1, 4)


def test_tokens_for_the_new_kinds() -> None:
    layers = parse_tokens(
        ["swish", "hardswish", "gelu", "softmax", "layernorm:eps=1e-6", "layerscale", "chunk:2/1", "shuffle:2"]
    )
    assert [type(x).__name__ for x in layers] == [
        "Act",
        "Act",
        "Act",
        "Softmax",
        "LayerNorm",
        "LayerScale",
        "Split",
        "ChannelShuffle",
    ]
    assert layers[0].kind.value == "silu" and layers[4].eps == 1e-6
    s = summarize(parse_tokens(["conv:8@3x3", "layernorm", "dense:16/pointwise", "gelu", "split:4,12/1"]), (5, 5, 2))
    assert [r.out_shape for r in s.layers] == [(3, 3, 8), (3, 3, 8), (3, 3, 16), (3, 3, 16), (3, 3, 12)]
    assert not s.warnings  # /pointwise: a per-position linear layer is meant
    assert s.layers[2].receptive_field is not None and s.layers[2].receptive_field.size == (3, 3)


@pytest.mark.parametrize(
    ("token", "problem"),
    [("chunk:2", "slash"), ("split:4,4", "slash"), ("shuffle:x", "shuffle:GROUPS"), ("layernorm:3", "eps")],
)
def test_token_errors(token: str, problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        parse_tokens([token])


def test_against_torch() -> None:
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((5, 6, 12)).astype(np.float32)
    t = torch.from_numpy(np.moveaxis(x, -1, 0)[None].copy())  # NCHW
    weight, bias = RNG.standard_normal(12).astype(np.float32), RNG.standard_normal(12).astype(np.float32)
    ln = torch.nn.functional.layer_norm(t.permute(0, 2, 3, 1), (12,), torch.from_numpy(weight), torch.from_numpy(bias))
    ours = _run(LayerNorm(), x, {"weight": weight, "bias": bias})
    np.testing.assert_allclose(ours, ln[0].numpy(), atol=1e-5)
    shuffled = torch.nn.functional.channel_shuffle(t, 3)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(_run(ChannelShuffle(3), x), shuffled)
    np.testing.assert_allclose(_run(Softmax(), x), torch.softmax(t, dim=1)[0].permute(1, 2, 0).numpy(), atol=1e-6)
    for name, fn in [
        ("silu", torch.nn.functional.silu),
        ("hardswish", torch.nn.functional.hardswish),
        ("hardsigmoid", torch.nn.functional.hardsigmoid),
        ("gelu", torch.nn.functional.gelu),
    ]:
        np.testing.assert_allclose(activate(x, name), fn(torch.from_numpy(x)).numpy(), atol=1e-6)
