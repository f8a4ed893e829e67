"""The shipped LeNet-5 digits network: weights, held-out data, sample PNGs and torch reference outputs.

Checked with the independent numpy forward of ``tools/lenet5_numpy.py`` (featmap's own executor is
checked against the same files in the network tests).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featmap.io.images import load_image
from featmap.net.spec import load_model
from featmap.net.summary import summarize
from featmap.net.weights import load_weights, match_weights

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "featmap" / "net" / "models"
DATA = ROOT / "tests" / "data"


def _numpy_reference():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("lenet5_numpy", ROOT / "tools" / "lenet5_numpy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REF = _numpy_reference()
EXPECTED = {
    "C1.weight": (6, 1, 5, 5),
    "C1.bias": (6,),
    "C3.weight": (16, 6, 5, 5),
    "C3.bias": (16,),
    "C5.weight": (120, 16, 5, 5),
    "C5.bias": (120,),
    "F6.weight": (84, 120),
    "F6.bias": (84,),
    "output.weight": (10, 84),
    "output.bias": (10,),
}


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    path = MODELS / "lenet5-digits.npz"
    assert path.stat().st_size < 1 << 20
    matched, warnings = match_weights(EXPECTED, load_weights(path), source=path.name)
    assert warnings == []
    return matched


def test_weights_fit_the_lenet5_preset(weights: dict[str, np.ndarray]) -> None:
    summary = summarize(load_model("lenet5").layers, (32, 32, 1))
    per_layer = {row.name: row.params for row in summary.layers if row.params}
    assert per_layer == {k: weights[f"{k}.weight"].size + weights[f"{k}.bias"].size for k in per_layer}
    assert sum(w.size for w in weights.values()) == summary.totals.params == 61_706
    assert all(w.dtype == np.float32 for w in weights.values())


def test_held_out_accuracy(weights: dict[str, np.ndarray]) -> None:
    with np.load(DATA / "digits_heldout.npz", allow_pickle=False) as held:
        images, labels = held["images"], held["labels"]
    assert images.shape == (360, 32, 32) and images.dtype == np.uint8
    assert np.bincount(labels).min() >= 35  # stratified: every digit is there
    x = np.multiply(images, np.float32(1 / 255), dtype=np.float32)[..., None]
    accuracy = np.mean(REF.forward(weights, x)["output"].argmax(1) == labels)
    assert accuracy >= 0.97


def test_reference_outputs_follow_from_the_weights(weights: dict[str, np.ndarray]) -> None:
    summary = summarize(load_model("lenet5").layers, (32, 32, 1))
    with np.load(DATA / "lenet5_digits_reference.npz", allow_pickle=False) as ref:
        stored = {k: ref[k] for k in ref.files}
    ours = REF.forward(weights, stored["input"])
    assert [key for key, _ in REF.LAYERS] == list(ours)
    for (key, _), row in zip(REF.LAYERS, summary.layers, strict=True):
        assert stored[key].shape[1:] == row.out_shape  # what `featmap shape` prints
        scale = max(1.0, float(np.abs(stored[key]).max()))
        np.testing.assert_allclose(ours[key], stored[key], rtol=0, atol=1e-5 * scale, err_msg=key)
    assert stored["output"].argmax(1).tolist() == stored["labels"].tolist() == list(range(10))


def test_sample_pngs_are_held_out_digits_read_as_trained() -> None:
    with np.load(DATA / "lenet5_digits_reference.npz", allow_pickle=False) as ref:
        inputs, index = ref["input"], ref["index"]
    with np.load(DATA / "digits_heldout.npz", allow_pickle=False) as held:
        by_index = dict(zip(held["index"].tolist(), held["images"], strict=True))
        labels = dict(zip(held["index"].tolist(), held["labels"].tolist(), strict=True))
    for digit in range(10):
        image = load_image(ROOT / "samples" / "digits" / f"digit_{digit}.png")
        assert image.pixels.shape == (32, 32, 1)
        np.testing.assert_array_equal(image.pixels, inputs[digit])  # bit-identical to the training input
        np.testing.assert_array_equal(np.rint(image.pixels[..., 0] * 255), by_index[int(index[digit])])
        assert labels[int(index[digit])] == digit


def test_preset_file() -> None:
    model, base = load_model("lenet5-digits"), load_model("lenet5")
    assert model.layers == base.layers and model.input_shape == base.input_shape == (32, 32, 1)
    assert model.weights == (MODELS / "lenet5-digits.npz").resolve()
    assert model.labels == tuple(str(d) for d in range(10))


@functools.cache
def _featmap_network() -> tuple[tuple[Any, ...], dict[str, np.ndarray]]:
    """The preset planned once on 32×32×1 and its weights file, read once."""
    from featmap.net.plan import plan_layers

    model = load_model("lenet5-digits")
    assert model.weights is not None
    return plan_layers(model.layers, (32, 32, 1)), load_weights(model.weights)


def _featmap_outputs(image: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output from featmap's executor, by weights key."""
    from featmap.run.executor import WeightSource, iter_network

    nodes, tensors = _featmap_network()
    return {out.node.key: out.values for out in iter_network(nodes, image, WeightSource(tensors=tensors))}


def test_featmap_executor_accuracy_on_held_out_digits() -> None:
    with np.load(DATA / "digits_heldout.npz", allow_pickle=False) as held:
        images, labels = held["images"], held["labels"]
    x = np.multiply(images, np.float32(1 / 255), dtype=np.float32)[..., None]
    predicted = np.array([_featmap_outputs(image)["output"].argmax() for image in x])
    assert np.mean(predicted == labels) >= 0.97


def test_featmap_executor_matches_stored_torch_outputs() -> None:
    """Every layer against torch's outputs stored at training time (see tests/data/README.md)."""
    with np.load(DATA / "lenet5_digits_reference.npz", allow_pickle=False) as ref:
        stored = {k: ref[k] for k in ref.files}
    for digit in range(10):
        ours = _featmap_outputs(stored["input"][digit])
        assert list(ours) == [key for key, _ in REF.LAYERS]
        for key, values in ours.items():
            want = stored[key][digit]
            np.testing.assert_allclose(values, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))


def test_featmap_executor_matches_live_torch() -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )  # fmt: skip
    tensors = load_weights(MODELS / "lenet5-digits.npz")
    index_of = {"C1": 0, "C3": 3, "C5": 6, "F6": 9, "output": 11}  # the same stack, unnamed
    state = {f"{index_of[k.split('.')[0]]}.{k.split('.')[1]}": torch.from_numpy(v) for k, v in tensors.items()}
    model.load_state_dict(state)
    for digit in range(10):
        image = load_image(ROOT / "samples" / "digits" / f"digit_{digit}.png").pixels
        with torch.no_grad():
            logits = model(torch.from_numpy(image.transpose(2, 0, 1).copy())[None])[0].numpy()
        ours = _featmap_outputs(image)["output"]
        np.testing.assert_allclose(ours, logits, rtol=0, atol=1e-5 * max(1.0, float(np.abs(logits).max())))
        assert ours.argmax() == digit
