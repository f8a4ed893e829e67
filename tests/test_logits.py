"""featmap.run.logits and featmap.net.fold: the final output alone (batch norms folded into convolutions,
activations in place, no statistics) equals the executor's last output within 1e-5 of its scale, on presets with
batch norm, residuals, depthwise convolutions and concatenations; ``upto``; a non-finite value still stops the
run naming the layer; the fold against torch's own conv-then-bn."""

from __future__ import annotations

import numpy as np
import pytest

import featmap
from featmap.errors import ShapeError, SpecError
from featmap.net.fold import bn_affine, fold_into_conv
from featmap.net.plan import plan_layers
from featmap.net.spec import load_model, parse_tokens
from featmap.run.executor import WeightSource, iter_network
from featmap.run.logits import final_output


def relative(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def bn_tensors(rng: np.random.Generator, channels: int) -> dict[str, np.ndarray]:
    return {
        "weight": (rng.random(channels) + 0.5).astype(np.float32),
        "bias": rng.standard_normal(channels).astype(np.float32),
        "running_mean": rng.standard_normal(channels).astype(np.float32),
        "running_var": (rng.random(channels) + 0.5).astype(np.float32),
    }


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "squeezenet1_1", "shufflenet_v2_x1_0"])
def test_final_output_equals_the_executors_last_output(name: str) -> None:
    """Seeded weights with batch-norm statistics that are not the initial ones (so that folding shows)."""
    model = load_model(name)
    shape = (64, 64, 3)
    nodes = plan_layers(model.layers, shape)
    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    rng = np.random.default_rng(2)
    source = WeightSource(init="kaiming", seed=3)
    source.bind(nodes)
    tensors: dict[str, np.ndarray] = {}
    from featmap.net.plan import iter_leaves

    for node in iter_leaves(nodes):
        made = source.for_node(node)
        if node.plan.kind == "BatchNorm":
            made = bn_tensors(rng, node.plan.in_shape[-1])
        tensors.update({f"{node.key}.{k}": v for k, v in made.items()})
    reference = list(iter_network(nodes, image, WeightSource(tensors)))[-1]
    node, values = final_output(nodes, image, WeightSource(tensors))
    assert node.path == reference.node.path and values.shape == reference.values.shape
    assert relative(values, reference.values) < 1e-5
    again = final_output(nodes, image, WeightSource(tensors))[1]  # the folded weights remembered: same values
    np.testing.assert_array_equal(again, values)


def test_a_final_output_run_sums_large_convolutions_by_kernel_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stride-1 convolutions over 64 channels take `kernelrows.kernel_row_conv` in the final-output run (not in the
    executor's): the same output within 1e-5 of its scale, and the same again on a second run."""
    from featmap.core import blas, kernelrows

    layers = parse_tokens(["conv:64@3x3/same", "bn", "relu", "conv:64@3x3/same", "bn", "relu", "conv:8@3x3"])
    nodes = plan_layers(layers, (24, 24, 64))
    image = np.random.default_rng(4).random((24, 24, 64), dtype=np.float32)
    rng, tensors = np.random.default_rng(5), {}
    for key, bn in (("0", "1"), ("3", "4")):
        tensors[f"{key}.weight"] = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
        tensors[f"{key}.bias"] = rng.standard_normal(64).astype(np.float32)
        tensors.update({f"{bn}.{k}": v for k, v in bn_tensors(rng, 64).items()})
    tensors["6.weight"] = (rng.standard_normal((8, 64, 3, 3)) * 0.05).astype(np.float32)
    tensors["6.bias"] = np.zeros(8, np.float32)
    calls: list[tuple[int, ...]] = []
    real = kernelrows.kernel_row_conv
    monkeypatch.setattr(kernelrows, "kernel_row_conv", lambda x, *a: calls.append(x.shape) or real(x, *a))
    reference = list(iter_network(nodes, image, WeightSource(tensors)))[-1].values
    assert calls == []  # the executor keeps im2col's sums (every layer output, the pictures, as before)
    values = final_output(nodes, image, WeightSource(tensors))[1]
    if blas._sgemm() is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose cblas_sgemm featmap can call")
    assert calls == [(24, 24, 64)] * 3
    assert relative(values, reference) < 1e-5
    np.testing.assert_array_equal(final_output(nodes, image, WeightSource(tensors))[1], values)


def fused_network() -> tuple[list, dict[str, np.ndarray]]:  # type: ignore[type-arg]
    """conv (64 → 64, 3×3, same), bn, relu, global average, on 24×24×64: kernel rows with a band epilogue."""
    layers = parse_tokens(["conv:64@3x3/same", "bn", "relu", "gap"])
    rng = np.random.default_rng(8)
    tensors = {"0.weight": (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)}
    tensors["0.bias"] = rng.standard_normal(64).astype(np.float32)
    tensors.update({f"1.{k}": v for k, v in bn_tensors(rng, 64).items()})
    return plan_layers(layers, (24, 24, 64)), tensors


def test_the_activation_after_a_folded_conv_runs_on_its_bands_as_they_are_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """The conv's output is checked and activated band by band (no `_finite` pass, no activation pass): the same
    bits as checking and activating after; ``upto`` the batch norm stops before the activation."""
    from featmap.run import logits

    nodes, tensors = fused_network()
    image = np.random.default_rng(9).standard_normal((24, 24, 64)).astype(np.float32)
    checks: list[int] = []
    real = logits._finite
    monkeypatch.setattr(logits, "_finite", lambda values: checks.append(values.size) or real(values))
    fused = final_output(nodes, image, WeightSource(tensors), upto="relu")[1].copy()
    assert checks == []  # the bands were checked instead
    monkeypatch.setattr(logits, "_band_activation", lambda node: None)
    apart = final_output(nodes, image, WeightSource(tensors), upto="relu")[1]
    assert checks == [24 * 24 * 64]
    assert fused.min() == 0 and fused.tobytes() == apart.tobytes()
    before = final_output(nodes, image, WeightSource(tensors), upto="bn")[1]
    assert before.min() < 0  # the batch norm's output, not activated


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_a_non_finite_value_in_a_band_names_the_layer(value: float) -> None:
    """-inf under the ReLU that would make it 0 included: the band's check sees it before the activation."""
    nodes, tensors = fused_network()
    tensors["0.weight"] = np.abs(tensors["0.weight"])  # a -inf input stays -inf through the sum
    image = np.ones((24, 24, 64), np.float32)
    image[5, 7, 3] = value
    with pytest.raises(ShapeError, match=r"layer 1 \(conv2d\).*non-finite"):  # the executor, run again
        final_output(nodes, image, WeightSource(tensors))


def test_upto_stops_at_a_folded_convolution_and_leaves_the_input_alone() -> None:
    layers = parse_tokens(["conv:4@3x3/same", "bn", "relu", "conv:3@3x3", "bn", "relu"])
    shape = (9, 9, 2)
    nodes = plan_layers(layers, shape)
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    kept = image.copy()
    rng = np.random.default_rng(4)
    tensors = {
        "0.weight": rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
        "0.bias": rng.standard_normal(4).astype(np.float32),
        "3.weight": rng.standard_normal((3, 4, 3, 3)).astype(np.float32),
        "3.bias": rng.standard_normal(3).astype(np.float32),
        **{f"1.{k}": v for k, v in bn_tensors(rng, 4).items()},
        **{f"4.{k}": v for k, v in bn_tensors(rng, 3).items()},
    }
    for upto in ("1", "2", "4", "5", "6"):
        ref = list(iter_network(nodes, image, WeightSource(tensors), upto=upto))[-1]
        node, values = final_output(nodes, image, WeightSource(tensors), upto=upto)
        assert node.path == upto == ref.node.path
        assert relative(values, ref.values) < 1e-5
    # stopping at the first convolution itself: not folded, the executor's very values
    node, values = final_output(nodes, image, WeightSource(tensors), upto="1")
    np.testing.assert_array_equal(values, list(iter_network(nodes, image, WeightSource(tensors), upto="1"))[-1].values)
    np.testing.assert_array_equal(image, kept)


def test_a_non_finite_value_names_the_layer() -> None:
    layers = parse_tokens(["conv:2@1x1", "bn", "relu", "flatten", "dense:2"])
    nodes = plan_layers(layers, (2, 2, 1))
    rng = np.random.default_rng(0)
    bn = bn_tensors(rng, 2)
    bn["weight"] = np.array([np.inf, 1.0], np.float32)
    tensors = {
        "0.weight": np.ones((2, 1, 1, 1), np.float32),
        "0.bias": np.zeros(2, np.float32),
        **{f"1.{k}": v for k, v in bn.items()},
        "4.weight": np.ones((2, 8), np.float32),
        "4.bias": np.zeros(2, np.float32),
    }
    with pytest.raises(ShapeError, match=r"layer 2 \(bn\).*non-finite"):
        final_output(nodes, np.ones((2, 2, 1), np.float32), WeightSource(tensors))


@pytest.mark.parametrize(("activation", "checks"), [("relu6", 1), ("sigmoid", 1), ("act:leaky_relu,slope=1000", 2)])
def test_an_infinity_an_activation_would_hide_is_still_found(
    activation: str, checks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """relu6 and sigmoid turn an infinity into 6 and 1: the folded conv's output is checked before them (and they,
    bounded, on a checked input, are not checked after); a leaky ReLU with a slope over 1 can overflow: checked."""
    from featmap.run import logits

    layers = parse_tokens(["conv:2@1x1", "bn", activation])
    nodes = plan_layers(layers, (2, 2, 1))
    bn = bn_tensors(np.random.default_rng(1), 2)
    tensors = {"0.weight": np.ones((2, 1, 1, 1), np.float32), "0.bias": np.zeros(2, np.float32)}
    tensors.update({f"1.{k}": v for k, v in bn.items()})
    with pytest.raises(ShapeError, match=r"non-finite"):  # the executor, run again, names the layer
        final_output(nodes, np.full((2, 2, 1), np.inf, np.float32), WeightSource(tensors))
    seen: list[int] = []
    real = logits._finite
    monkeypatch.setattr(logits, "_finite", lambda values: seen.append(1) or real(values))
    final_output(nodes, np.ones((2, 2, 1), np.float32), WeightSource(tensors))
    assert len(seen) == checks  # the folded conv + bn, then the activation only when it can overflow


def test_the_fold_equals_torchs_conv_then_batch_norm() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install '.[torch]')")
    rng = np.random.default_rng(7)
    conv = {"weight": rng.standard_normal((6, 2, 3, 3)).astype(np.float32)}  # no bias: the fold gives one
    bn = bn_tensors(rng, 6)
    x = rng.standard_normal((1, 4, 10, 10)).astype(np.float32)
    t = {k: torch.from_numpy(v) for k, v in bn.items()}
    groups = 2
    ref = torch.nn.functional.batch_norm(
        torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(conv["weight"]), groups=groups),
        t["running_mean"],
        t["running_var"],
        t["weight"],
        t["bias"],
        training=False,
        eps=1e-3,
    ).numpy()
    folded = fold_into_conv(conv, bn, 1e-3)
    assert not folded["weight"].flags.writeable and not folded["bias"].flags.writeable  # memo need not re-read them
    weight, bias = (torch.from_numpy(folded[k].copy()) for k in ("weight", "bias"))  # torch wants writeable arrays
    got = torch.nn.functional.conv2d(torch.from_numpy(x), weight, bias, groups=groups).numpy()
    assert folded["weight"].dtype == folded["bias"].dtype == np.float32
    assert relative(got, ref) < 1e-5


def test_bn_affine_by_hand() -> None:
    scale, shift = bn_affine(
        {
            "weight": np.array([3.0]),
            "bias": np.array([0.5]),
            "running_mean": np.array([2.0]),
            "running_var": np.array([9.0]),
        },
        0.0,
    )
    assert scale.tolist() == [1.0] and shift.tolist() == [-1.5]


def test_forward_outputs_final_keeps_the_last_output_only() -> None:
    digit = np.random.default_rng(0).random((32, 32, 1), dtype=np.float32)
    every = featmap.forward(digit, "lenet5-digits")
    final = featmap.forward(digit, "lenet5-digits", outputs="final")
    assert len(final.outputs) == 1 and final.outputs[0].node.path == every.outputs[-1].node.path
    assert relative(final.logits, every.logits) < 1e-5
    assert final.summary == every.summary
    assert final.outputs[0].stats.max == pytest.approx(float(final.logits.max()))
    with pytest.raises(SpecError, match="outputs"):
        featmap.forward(digit, "lenet5-digits", outputs="some")


def residual_network(main_first: bool = True, shortcut: tuple[str, ...] = ()) -> tuple[list, dict[str, np.ndarray]]:  # type: ignore[type-arg]
    """conv (64 → 64, 3×3) + bn + relu, then a residual add of [conv, bn, relu, conv, bn] and ``shortcut``
    (identity, or a 1×1 conv and bn), then relu and a global average, on 20×20×64: the stride-1 convs take kernel
    rows with a band epilogue, so the second conv of the main branch may add the shortcut in its bands."""
    from featmap.net.layers import Parallel, Sequential

    main = Sequential(tuple(parse_tokens(["conv:64@3x3/same", "bn", "relu", "conv:64@3x3/same", "bn"])))
    side = Sequential(tuple(parse_tokens(list(shortcut))))
    merge = Parallel((main, side) if main_first else (side, main), "add")
    layers = [*parse_tokens(["conv:64@3x3/same", "bn", "relu"]), merge, *parse_tokens(["relu", "gap"])]
    nodes = plan_layers(layers, (20, 20, 64))
    rng, tensors = np.random.default_rng(21), {}
    from featmap.net.plan import iter_leaves

    for node in iter_leaves(nodes):
        for name, shape in node.plan.weights:
            if node.plan.kind == "BatchNorm":
                tensors.update({f"{node.key}.{k}": v for k, v in bn_tensors(rng, shape[0]).items()})
                break
            tensors[f"{node.key}.{name}"] = (rng.standard_normal(shape) * (0.05 if len(shape) > 1 else 1)).astype(
                np.float32
            )
    return nodes, tensors


@pytest.mark.parametrize(("main_first", "shortcut"), [(True, ()), (False, ()), (True, ("conv:64@1x1", "bn"))])
def test_a_residual_add_and_its_relu_run_on_the_last_convolutions_bands(
    monkeypatch: pytest.MonkeyPatch, main_first: bool, shortcut: tuple[str, ...]
) -> None:
    """The main branch's last conv adds the shortcut's output to each band, then the ReLU after the merge and the
    check: no merge and no ReLU pass of their own, the same bits as merging and activating after (IEEE addition is
    commutative), within 1e-5 of the executor's output; ``upto`` the merge keeps the merge as a layer."""
    from featmap.net.layers import Parallel
    from featmap.run import logits

    nodes, tensors = residual_network(main_first, shortcut)
    image = np.random.default_rng(22).standard_normal((20, 20, 64)).astype(np.float32)
    merges: list[int] = []
    real_merge = Parallel.merge
    monkeypatch.setattr(Parallel, "merge", lambda self, outs: merges.append(len(outs)) or real_merge(self, outs))
    fused = final_output(nodes, image, WeightSource(tensors))[1].copy()
    assert merges == []  # the add happened in the conv's bands
    monkeypatch.setattr(logits._Runner, "_branches", lambda self, node, x, after: (
        [self.walk(b.children, x, False)[0] for b in node.children], None))  # fmt: skip
    apart = final_output(nodes, image, WeightSource(tensors))[1]
    assert merges == [2] and fused.tobytes() == apart.tobytes()
    reference = list(iter_network(nodes, image, WeightSource(tensors)))[-1].values
    assert relative(fused, reference) < 1e-5
    merges.clear()
    monkeypatch.undo()
    monkeypatch.setattr(Parallel, "merge", lambda self, outs: merges.append(len(outs)) or real_merge(self, outs))
    merged = final_output(nodes, image, WeightSource(tensors), upto="4")[1]  # the merge's own output (path 4)
    assert merges == [2] and merged.min() < 0


def test_an_infinity_the_relu_after_a_residual_add_would_hide_names_the_layer() -> None:
    """-inf out of the main branch (its batch norm's shift): the sum with the shortcut is -inf and the ReLU after the
    merge would make it 0; the band's check sees it before the activation and the executor names the batch norm."""
    nodes, tensors = residual_network()
    tensors["3.0.4.bias"] = np.full_like(tensors["3.0.4.bias"], -np.inf)
    image = np.random.default_rng(23).standard_normal((20, 20, 64)).astype(np.float32)
    with pytest.raises(ShapeError, match=r"layer 4\.1\.5 \(bn\).*non-finite"):
        final_output(nodes, image, WeightSource(tensors))
