"""featmap.run.groups: a conv layer and its per-channel layers run one channel group at a time, and a `-k` bank as
that layer stack: the same values as the whole-layer executor and as the bank pipeline, bit for bit, and a big
bank's run holds one map at a time."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from featmap.errors import SpecError
from featmap.kernels import Kernel, KernelBank, KernelLibrary
from featmap.net.layers import Act, BatchNorm, CombineMaps, Conv2d, Dense, Flatten, Pool2d
from featmap.net.plan import plan_layers
from featmap.run import fused
from featmap.run.executor import WeightSource, iter_channel_groups, iter_network
from featmap.run.groups import ChannelGroup, channel_groups, channel_span, commutes
from featmap.run.pipeline import bank_layers, iter_feature_maps

LIB = KernelLibrary(use_env=False)


def _photo(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    ramp = np.cumsum(rng.random(shape, dtype=np.float32), axis=1)
    return (ramp / ramp.max() * 0.7 + rng.random(shape, dtype=np.float32) * 0.3).astype(np.float32)


def _last(nodes, image, weights) -> np.ndarray:
    return list(iter_network(nodes, image, weights))[-1].values


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("act", "pool"), [("relu", Pool2d("max", 2)), ("tanh", Pool2d("avg", 3, 2)), ("abs", None)])
def test_a_bank_through_iter_network_equals_iter_feature_maps(channels: int, act: str, pool, rng) -> None:
    image = _photo(rng, (150, 97, channels))
    bank = LIB.bank(["sobel_x", "sobel_y", "laplacian_4"])
    conv = Conv2d(padding="same", pad_mode="reflect")
    maps = list(iter_feature_maps(image, bank, conv, Act(act), pool))
    (layer,) = bank_layers(bank, conv, Act(act), pool, channels)  # one kernel size: one conv layer
    nodes = plan_layers(layer.layers, image.shape)
    assert nodes[0].plan.out_shape[-1] == 3 * channels  # the bank's filters (depthwise on colour: 3 per kernel)
    whole = _last(nodes, image, WeightSource())
    for fmap, group in zip(maps, layer.groups, strict=True):
        np.testing.assert_array_equal(fmap.values, whole[..., group.channels])
        assert fmap.info.name == group.name


def test_a_bank_of_two_sizes_is_two_conv_layers_and_keeps_bank_order(rng) -> None:
    bank = KernelBank((*LIB.bank(["sobel_x"]), Kernel("g5", rng.random((5, 5)), bias=0.25), *LIB.bank(["box_3"])))
    layers = bank_layers(bank, Conv2d(), Act("relu"), None, 1)
    assert [[k.name for k in layer.kernels] for layer in layers] == [["sobel_x"], ["g5"], ["box_3"]]
    assert [g.bias for layer in layers for g in layer.groups] == [False, True, False]
    image = _photo(rng, (40, 30, 1))
    maps = list(iter_feature_maps(image, bank, Conv2d(), Act("relu")))
    assert [m.values.shape for m in maps] == [(38, 28, 1), (36, 26, 1), (38, 28, 1)]
    for fmap, layer in zip(maps, layers, strict=True):
        np.testing.assert_array_equal(fmap.values, _last(plan_layers(layer.layers, image.shape), image, WeightSource()))


def test_the_combined_map_is_the_combine_layer_over_the_conv_layer(rng) -> None:
    image = _photo(rng, (60, 50, 1))
    bank = LIB.bank(["sobel_x", "sobel_y"])
    maps = list(
        iter_feature_maps(image, bank, Conv2d(padding="same"), Act("relu"), Pool2d("max", 2), combine="magnitude")
    )
    (layer,) = bank_layers(bank, Conv2d(padding="same"), Act("relu"), Pool2d("max", 2), 1)
    stack = (layer.layers[0], CombineMaps("magnitude", 2), Act("relu"), Pool2d("max", 2))
    whole = _last(plan_layers(stack, image.shape), image, WeightSource())
    np.testing.assert_array_equal(maps[-1].values, whole)
    gx, gy = (np.asarray(m, np.float64) for m in _conv_maps(image, bank))  # an independent magnitude, in float64
    expected = np.sqrt(gx**2 + gy**2)
    expected = expected.reshape(30, 2, 25, 2, 1).max(axis=(1, 3))
    np.testing.assert_allclose(maps[-1].values, expected, rtol=1e-6)
    assert maps[-1].info.combined_from == ("sobel_x", "sobel_y")


def _conv_maps(image: np.ndarray, bank: KernelBank) -> list[np.ndarray]:
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    return [scipy_ndimage.correlate(image[..., 0], k.weights, mode="constant")[..., None] for k in bank]


def test_combine_layer_plan_and_forward() -> None:
    layer = CombineMaps("max", 3)
    x = np.array([[[1.0, -2.0, 5.0, 0.0, 4.0, -1.0]]], np.float32)  # 3 maps of 2 channels
    plan = layer.plan(x.shape)
    assert (plan.kind, plan.out_shape, plan.params) == ("Combine", (1, 1, 2), 0)
    assert layer.forward(x, plan, {}).tolist() == [[[5.0, 0.0]]]
    magnitude = CombineMaps("magnitude", 2)
    assert magnitude.forward(x[..., :4], magnitude.plan((1, 1, 4)), {}).tolist() == [
        [[float(np.float32(np.sqrt(26.0))), 2.0]]
    ]
    with pytest.raises(Exception, match="multiples of 3"):
        layer.plan((4, 4, 4))


def _network(image_shape, tail, filters: int = 4, seed: int = 0):
    layers = (Conv2d(filters, 3, padding="same"), *tail)
    return plan_layers(layers, image_shape), WeightSource(init="kaiming", seed=seed)


@pytest.mark.parametrize(
    "tail",
    [
        (Act("relu"), Pool2d("max", 2)),
        (Act("leaky_relu", (("slope", 0.1),)), Pool2d("min", 4)),
        (Act("sigmoid"),),
        (Pool2d("avg", 2),),
    ],
)
def test_a_network_conv_group_through_the_fused_path_equals_the_whole_layer(tail, rng) -> None:
    image = _photo(rng, (301, 250, 1))
    nodes, weights = _network(image.shape, tail)
    pool = next((layer for layer in tail if isinstance(layer, Pool2d)), None)
    assert fused.fits(image, nodes[0].layer, pool, None)
    whole = _last(nodes, image, weights)
    groups = list(iter_channel_groups(nodes, image, weights))
    assert [g.group.channels for g in groups] == [slice(c, c + 1) for c in range(4)]
    for out in groups:
        np.testing.assert_array_equal(out.values, whole[..., out.group.channels])
    pairs = list(iter_channel_groups(nodes, image, weights, channel_groups(nodes[0], 2)))
    np.testing.assert_array_equal(np.concatenate([p.values for p in pairs], axis=-1), whole)


def test_per_channel_layers_with_weights_take_their_channels(rng) -> None:
    image = _photo(rng, (40, 36, 3))
    layers = (Conv2d(2, 3, depthwise=True), BatchNorm(), Act("relu6"), Pool2d("max", 2))
    nodes = plan_layers(layers, image.shape)
    tensors = {
        "0.weight": rng.standard_normal((6, 1, 3, 3)).astype(np.float32),
        "0.bias": rng.standard_normal(6).astype(np.float32),
        "1.weight": rng.random(6).astype(np.float32) + 0.5,
        "1.bias": rng.standard_normal(6).astype(np.float32),
        "1.running_mean": rng.standard_normal(6).astype(np.float32),
        "1.running_var": rng.random(6).astype(np.float32) + 0.1,
    }
    whole = _last(nodes, image, WeightSource(tensors))
    assert channel_span(nodes) == 4
    for size in (1, 2, 4):  # depthwise ×2: whole conv groups of 2 filters, one input channel each
        outs = list(iter_channel_groups(nodes, image, WeightSource(tensors), channel_groups(nodes[0], size)))
        np.testing.assert_array_equal(np.concatenate([o.values for o in outs], axis=-1), whole)
    strided = list(iter_channel_groups(nodes, image, WeightSource(tensors), [ChannelGroup(slice(1, None, 2))]))
    np.testing.assert_array_equal(strided[0].values, whole[..., 1::2])  # filter 1 of every channel


def test_a_run_of_groups_is_a_conv_and_per_channel_layers_only(rng) -> None:
    nodes = plan_layers((Conv2d(2, 3), Flatten(), Dense(3)), (8, 8, 1))
    assert channel_span(nodes) == 1
    with pytest.raises(SpecError, match="per-channel"):
        list(iter_channel_groups(nodes, np.zeros((8, 8, 1), np.float32), WeightSource(init="kaiming")))
    assert commutes(Act("relu"), Pool2d("max", 2)) and not commutes(Act("relu"), Pool2d("avg", 2))
    assert not commutes(Act("leaky_relu", (("slope", -1.0),)), Pool2d("max", 2))


@pytest.mark.parametrize("fused_path", ["1", "0"])
@pytest.mark.parametrize("channels", [1, 3])
def test_a_big_bank_holds_one_map_at_a_time(fused_path: str, channels: int, monkeypatch) -> None:
    monkeypatch.setenv("FEATMAP_FUSED", fused_path)
    image = np.random.default_rng(1).random((900, 700, channels), dtype=np.float32)
    bank = KernelBank(tuple(Kernel(f"k{i}", np.full((3, 3), i + 1.0)) for i in range(8)))
    map_bytes = image.nbytes  # same padding, no pool: each map is the image's size
    tracemalloc.start()
    try:
        shapes = []
        for fmap in iter_feature_maps(image, bank, Conv2d(padding="same"), Act("relu")):
            shapes.append(fmap.values.shape)
            del fmap
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert shapes == [image.shape] * 8
    # one map and what making it takes (the engine's padded plane, the fused path's bands: measured 2.0-3.2 maps);
    # the bank's maps held together would be 8
    assert peak < 3.5 * map_bytes, f"peak {peak / map_bytes:.2f} maps"
