"""featmap.net.weights.binding: a network's tensors matched once per plan and arrays; a new array, name, shape,
plan or layout matches again; no caller's weights kept alive; and `featmap.run.logits`' limits worked out once per
plan but checked against the limits in force on each run."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from featmap.errors import LimitError
from featmap.net.plan import plan_layers
from featmap.net.spec import parse_tokens
from featmap.net.weights import binding, match_weights
from featmap.net.weights.matching import NetworkTensors
from featmap.run.executor import WeightSource
from featmap.run.logits import final_output


def network() -> tuple[list, dict[str, np.ndarray]]:  # type: ignore[type-arg]
    nodes = plan_layers(parse_tokens(["conv:4@3x3", "bn", "relu", "flatten", "dense:3"]), (6, 6, 2))
    rng = np.random.default_rng(0)
    tensors = {
        "0.weight": rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
        "0.bias": rng.standard_normal(4).astype(np.float32),
        "1.weight": np.ones(4, np.float32),
        "1.bias": np.zeros(4, np.float32),
        "1.running_mean": np.zeros(4, np.float32),
        "1.running_var": np.ones((4, 1, 1), np.float32),  # read as (4,): a view, and a warning-free match
        "4.weight": rng.standard_normal((3, 64)).astype(np.float32),
        "4.bias": np.zeros(3, np.float32),
        "extra": np.zeros(2, np.float32),  # unused: a warning
    }
    return nodes, tensors


def test_bound_weights_equal_match_weights_and_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes, tensors = network()
    wanted = NetworkTensors.of(nodes)
    want, want_warnings = match_weights(
        wanted.expected, tensors, kinds=wanted.kinds, labels=wanted.labels, source="w.npz"
    )
    got, warnings = binding.bound_weights(nodes, tensors, "torch", "w.npz")
    assert got.keys() == want.keys() and warnings == want_warnings and any("extra" in w for w in warnings)
    assert all(np.shares_memory(got[k], want[k]) and got[k].shape == want[k].shape for k in want)
    calls: list[int] = []
    from featmap.net.weights import matching

    monkeypatch.setattr(matching, "match_weights", lambda *a, **k: calls.append(1) or match_weights(*a, **k))
    again, again_warnings = binding.bound_weights(nodes, tensors, "torch", "w.npz")
    assert calls == [] and again_warnings == warnings and again.keys() == got.keys()
    assert all(again[k] is tensors[k] for k in got if k != "1.running_var")  # the caller's arrays themselves
    assert again["1.running_var"].base is tensors["1.running_var"] and again["1.running_var"].shape == (4,)
    again.clear()  # the caller's copy: the memo's is untouched
    assert binding.bound_weights(nodes, tensors, "torch", "w.npz")[0].keys() == got.keys() and calls == []
    # another array under a name, another shape, another plan, another source: matched again
    tensors["0.bias"] = tensors["0.bias"].copy()
    assert binding.bound_weights(nodes, tensors, "torch", "w.npz")[0]["0.bias"] is tensors["0.bias"]
    assert calls == [1]
    tensors["1.running_var"].shape = (4,)
    binding.bound_weights(nodes, tensors, "torch", "w.npz")
    assert calls == [1, 1]
    binding.bound_weights(plan_layers(parse_tokens(["conv:4@3x3", "bn", "relu", "flatten", "dense:3"]), (6, 6, 2)),
                          tensors, "torch", "w.npz")  # fmt: skip
    binding.bound_weights(nodes, tensors, "torch", "other.npz")
    assert calls == [1, 1, 1, 1]


def test_a_missing_tensor_raises_on_every_bind_and_no_weights_are_kept_alive() -> None:
    nodes, tensors = network()
    del tensors["4.bias"]
    for _ in range(2):
        with pytest.raises(Exception, match="4.bias"):
            WeightSource(tensors).bind(nodes)
    nodes, tensors = network()
    WeightSource(tensors).bind(nodes)
    ref = weakref.ref(tensors["0.weight"])
    del tensors
    gc.collect()
    assert ref() is None


def test_a_negative_variance_is_refused_on_every_run_even_when_the_match_is_remembered() -> None:
    nodes, tensors = network()
    image = np.ones((6, 6, 2), np.float32)
    final_output(nodes, image, WeightSource(tensors))
    tensors["1.running_var"][0] = -1.0  # the same array, its values changed in place
    with pytest.raises(Exception, match="negative variance"):
        final_output(nodes, image, WeightSource(tensors))


def test_the_limits_are_those_in_force_on_each_run(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes, tensors = network()
    image = np.ones((6, 6, 2), np.float32)
    final_output(nodes, image, WeightSource(tensors))
    monkeypatch.setenv("FEATMAP_MAX_OUTPUT_PIXELS", "100")  # the conv's 4×4×4 = 64 values pass, 144 inputs...
    final_output(nodes, image, WeightSource(tensors))
    monkeypatch.setenv("FEATMAP_MAX_OUTPUT_PIXELS", "50")
    with pytest.raises(LimitError, match=r"layer 1 \(conv2d\)"):
        final_output(nodes, image, WeightSource(tensors))
    monkeypatch.setenv("FEATMAP_MAX_OUTPUT_PIXELS", "100")
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "100")
    with pytest.raises(LimitError, match="memory"):
        final_output(nodes, image, WeightSource(tensors))
