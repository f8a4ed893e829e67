"""featmap.run.executor: the executor runs the plans the calculator prints — same shapes on random stacks and on
the presets — with weights from kernels, tensors or seeded init, and refuses what cannot run."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from featmap.errors import FeatmapError, ShapeError, SpecError
from featmap.kernels import KernelLibrary
from featmap.net.layers import (
    Act,
    BatchNorm,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GlobalPool2d,
    Parallel,
    Pool2d,
    Sequential,
    without_aux,
)
from featmap.net.plan import plan_layers
from featmap.net.spec import list_models, parse_tokens
from featmap.net.summary import summarize
from featmap.run.executor import WeightSource, iter_network, run_network, top_classes

LIB = KernelLibrary()


def _conv():
    return st.builds(
        Conv2d,
        filters=st.integers(1, 4),
        kernel=st.integers(1, 3),
        stride=st.integers(1, 2),
        padding=st.sampled_from(["valid", "same", 1, (0, 1, 1, 0)]),
        dilation=st.integers(1, 2),
        bias=st.booleans(),
    )


def _pool():
    return st.builds(
        Pool2d,
        kind=st.sampled_from(["max", "avg", "min"]),
        size=st.integers(1, 3),
        stride=st.integers(1, 2),
        padding=st.sampled_from(["valid", "same"]),
        ceil_mode=st.booleans(),
    )


def _residual(channels: int):
    main = Sequential((Conv2d(channels, 3, padding="same"), BatchNorm(), Act("relu")))
    return Parallel((main, Sequential()), "add")


LEAVES = st.one_of(
    _conv(),
    _pool(),
    st.sampled_from([Act("relu"), Act("tanh"), Act("leaky_relu", (("slope", 0.2),)), BatchNorm(), Dropout(0.1)]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hw=st.tuples(st.integers(5, 14), st.integers(5, 14)),
    channels=st.integers(1, 3),
    body=st.lists(LEAVES, min_size=1, max_size=4),
    residual=st.booleans(),
    head=st.sampled_from(["none", "gap", "dense"]),
    seed=st.integers(0, 3),
)
def test_executor_shapes_equal_the_calculators_on_random_stacks(hw, channels, body, residual, head, seed):
    layers = list(body)
    if residual:
        layers.insert(0, _residual(channels))
    if head == "gap":
        layers += [GlobalPool2d("avg"), Flatten(), Dense(3)]
    elif head == "dense":
        layers += [Flatten(), Dense(5)]
    shape = (*hw, channels)
    try:
        summary = summarize(layers, shape)
    except FeatmapError:
        assume(False)  # a stack whose geometry cannot work: the calculator refuses it, nothing to run
        return
    x = np.random.default_rng(seed).random(shape, dtype=np.float32)
    result = run_network(layers, x, WeightSource(init="kaiming", seed=seed))
    by_path = {row.path: row.out_shape for row in summary.layers}
    assert result.outputs, "at least one layer ran"
    for out in result.outputs:
        assert out.values.shape == by_path[out.node.path], out.node.path
        assert np.isfinite(out.values).all()


SMALL_INPUTS = {"alexnet": (71, 71, 3), "googlenet": (64, 64, 3), "inception_v3": (96, 96, 3)}


@pytest.mark.parametrize("model", [m for m in list_models() if not m.name.startswith("vgg")], ids=lambda m: m.name)
def test_presets_run_with_the_shapes_shape_prints(model):
    """Every preset runs (at its own input where small, else a smaller one that its geometry admits): each
    layer's output has the shape `featmap shape` prints for that input."""
    shape = (
        model.input_shape
        if model.input_shape and model.input_shape[0] <= 64
        else SMALL_INPUTS.get(model.name, (32, 32, 3))
    )
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    layers = without_aux(model.layers)  # Inception's auxiliary head needs a 299×299 input
    summary = summarize(layers, shape)
    expected = {row.path: row.out_shape for row in summary.layers}
    seen = 0
    for out in iter_network(plan_layers(layers, shape), x, WeightSource(init="kaiming", seed=1)):
        assert out.values.shape == expected[out.node.path], out.node.path
        seen += 1
    merges = ("Add", "Concat", "Multiply", "Aux")
    assert seen == sum(1 for row in summary.layers if not row.container or row.kind in merges)


def test_vgg_first_blocks_upto_a_named_layer():
    from featmap.net.spec import load_model

    model = load_model("vgg11")
    x = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    outs = list(iter_network(plan_layers(model.layers, x.shape), x, WeightSource(init="glorot"), upto="features.5"))
    assert [o.node.path for o in outs] == ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6"]
    assert [o.node.key for o in outs] == [f"features.{i}" for i in range(6)]  # torchvision's flat features
    assert outs[-1].values.shape == (8, 8, 128)


def test_spec_kernels_supply_the_weights():
    from featmap.net.layers import Conv2d as C

    bank = LIB.bank(["sobel_x", "sobel_y"])
    layers = [C(bank=bank, padding="same"), Act("abs")]
    x = np.zeros((6, 6, 1), np.float32)
    x[:, 3:] = 1.0  # a vertical edge
    result = run_network(layers, x, WeightSource())  # no init, no file: the kernels are the weights
    conv = result.outputs[0].values
    assert conv[2, 2, 0] == pytest.approx(4.0) and conv[2, 2, 1] == pytest.approx(0.0)


def test_tensors_by_key_and_errors_name_the_layer():
    layers = parse_tokens(["conv:2@3x3", "flatten", "dense:2"])
    x = np.random.default_rng(0).random((5, 5, 1), dtype=np.float32)
    tensors = {
        "0.weight": np.ones((2, 1, 3, 3), np.float32),
        "0.bias": np.zeros(2, np.float32),
        "2.weight": np.ones((2, 18), np.float32),
        "2.bias": np.array([0.0, 1.0], np.float32),
        "9.weight": np.zeros(1, np.float32),
    }
    result = run_network(layers, x, WeightSource(tensors))
    total = result.outputs[0].values.sum()
    np.testing.assert_allclose(result.logits, [total, total + 1], rtol=1e-5)
    assert any("9.weight" in w for w in result.warnings)
    del tensors["2.bias"]
    with pytest.raises(FeatmapError, match=r"2\.bias"):
        run_network(layers, x, WeightSource(tensors))


def test_non_finite_output_stops_with_the_layer_named():
    layers = parse_tokens(["conv:1@1x1", "relu"])
    tensors = {"0.weight": np.full((1, 1, 1, 1), np.float32(3e38)), "0.bias": np.zeros(1, np.float32)}
    with pytest.raises(ShapeError, match=r"layer 1 .*non-finite"):
        run_network(layers, np.full((2, 2, 1), 10.0, np.float32), WeightSource(tensors))


def test_input_shape_must_match_the_plan():
    nodes = plan_layers(parse_tokens(["relu"]), (4, 4, 1))
    with pytest.raises(ShapeError, match="planned for"):
        list(iter_network(nodes, np.zeros((4, 4, 3), np.float32), WeightSource()))


def test_unknown_init_is_refused():
    with pytest.raises(SpecError, match="init"):
        WeightSource(init="xavier_normal")


def test_seeded_init_is_reproducible():
    layers = parse_tokens(["conv:3@3x3", "flatten", "dense:4"])
    x = np.random.default_rng(0).random((6, 6, 2), dtype=np.float32)
    a = run_network(layers, x, WeightSource(init="kaiming", seed=5)).logits
    b = run_network(layers, x, WeightSource(init="kaiming", seed=5)).logits
    c = run_network(layers, x, WeightSource(init="kaiming", seed=6)).logits
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_top_classes_softmax_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]
    top = top_classes(np.array([0.0, np.log(3.0)]), 2, ["cat", "dog"])
    assert [(i, label) for i, label, _ in top] == [(1, "dog"), (0, "cat")]
    assert [p for _, _, p in top] == pytest.approx([0.75, 0.25])
