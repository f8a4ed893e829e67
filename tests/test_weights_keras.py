"""Keras 3 weights files (`featmap.net.weights.keras`) against Keras itself (torch back end): a small
Conv2D/MaxPooling2D/BatchNormalization/Dense model saved with ``save_weights`` and ``save`` gives the same logits
through featmap's spec named as the Keras layers."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import featmap
from featmap.errors import SpecError
from featmap.net.weights import is_keras_file, load_weights

os.environ.setdefault("KERAS_BACKEND", "torch")
# Keras' variables warn under numpy 2's copy keyword; that is Keras' business, not featmap's.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

SPEC = """
name: small-keras
input: 20x18x3
layers:
  - {conv: "6@3x3", name: c1}
  - relu
  - {maxpool: 2, name: pool}
  - {conv: "8@3x3/same", name: c2}
  - {bn: {eps: 0.001}, name: bn}
  - relu
  - {maxpool: "2/same", name: pool2}
  - flatten
  - {dense: 16, name: fc1}
  - relu
  - {dense: 5, name: logits}
"""


def _keras() -> Any:
    try:
        import keras
    except Exception as exc:  # ImportError, or a back end that cannot start
        pytest.skip(f"keras with the torch back end cannot be imported ({type(exc).__name__}: {exc})")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras runs on the {keras.backend.backend()} back end here; these tests use torch")
    return keras


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    keras = _keras()
    layers = keras.layers
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((20, 18, 3)),
            layers.Conv2D(6, 3, activation="relu", name="c1"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Conv2D(8, 3, padding="same", name="c2"),
            layers.BatchNormalization(name="bn"),
            layers.ReLU(),
            layers.MaxPooling2D(2, padding="same", name="pool2"),
            layers.Flatten(),
            layers.Dense(16, activation="relu", name="fc1"),
            layers.Dense(5, name="logits"),
        ]
    )
    rng = np.random.default_rng(7)
    bn = model.get_layer("bn")  # trained-looking statistics, not the fresh 0 / 1
    bn.set_weights(
        [
            rng.uniform(0.5, 1.5, 8).astype("float32"),
            rng.normal(0, 0.2, 8).astype("float32"),
            rng.normal(0, 0.3, 8).astype("float32"),
            rng.uniform(0.5, 2.0, 8).astype("float32"),
        ]
    )
    for name in ("c1", "c2", "fc1", "logits"):  # non-zero biases
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype("float32")])
    folder = tmp_path_factory.mktemp("keras")
    model.save_weights(folder / "small.weights.h5")
    model.save(folder / "small.keras")
    (folder / "small.yaml").write_text(SPEC)
    image = rng.uniform(0, 1, (20, 18, 3)).astype("float32")
    logits = np.asarray(model(image[None], training=False).detach().cpu().numpy())[0]
    return {"folder": folder, "image": image, "logits": logits, "model": model}


@pytest.mark.parametrize("file", ["small.weights.h5", "small.keras"])
def test_keras_file_gives_keras_logits(saved: dict[str, Any], file: str) -> None:
    folder = saved["folder"]
    result = featmap.forward(saved["image"], str(folder / "small.yaml"), weights=folder / file)
    got, want = result.logits, saved["logits"]
    assert got.shape == (5,)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    assert not result.warnings  # every tensor of the file used


def test_tensors_come_back_in_keras_names_and_layout(saved: dict[str, Any]) -> None:
    folder, model = saved["folder"], saved["model"]
    tensors = load_weights(folder / "small.weights.h5")
    assert sorted(tensors) == sorted(
        ["c1.kernel", "c1.bias", "c2.kernel", "c2.bias", "bn.gamma", "bn.beta", "bn.moving_mean", "bn.moving_variance"]
        + ["fc1.kernel", "fc1.bias", "logits.kernel", "logits.bias"]
    )
    assert tensors["c1.kernel"].shape == (3, 3, 3, 6)  # HWIO, as Keras holds it
    np.testing.assert_array_equal(tensors["c2.kernel"], model.get_layer("c2").get_weights()[0])
    np.testing.assert_array_equal(tensors["bn.moving_variance"], model.get_layer("bn").get_weights()[3])
    from_zip = load_weights(folder / "small.keras")
    assert all(np.array_equal(from_zip[k], tensors[k]) for k in tensors)
    assert is_keras_file(folder / "small.keras") and is_keras_file(folder / "small.weights.h5")


def test_every_layer_matches_keras(saved: dict[str, Any]) -> None:
    """Layer by layer, not only the logits: the flatten order (channel-last) and the conv layout are Keras'."""
    keras = _keras()
    folder, model, image = saved["folder"], saved["model"], saved["image"]
    result = featmap.forward(image, str(folder / "small.yaml"), weights=folder / "small.keras")
    by_name = {out.node.plan.name: out.values for out in result.outputs}
    for name in ("c2", "bn", "fc1"):
        probe = keras.Model(model.inputs, model.get_layer(name).output)
        want = np.asarray(probe(image[None], training=False).detach().cpu().numpy())[0]
        got = next(v for k, v in by_name.items() if k.startswith(name) or name in k)
        if name == "fc1":  # Keras' Dense holds its relu; featmap's relu is the next layer
            got = np.maximum(got, 0)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_batch_norm_without_scale_reads_from_config(tmp_path: Path) -> None:
    """``scale=False``: the .keras config says the three variables are beta, mean, variance; gamma is ones."""
    keras = _keras()
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((6, 6, 2)), keras.layers.BatchNormalization(scale=False, name="norm"), keras.layers.Flatten()]
    )
    rng = np.random.default_rng(2)
    model.get_layer("norm").set_weights([rng.normal(size=2), rng.normal(size=2), rng.uniform(1, 2, 2)])
    model.save(tmp_path / "bn.keras")
    model.save_weights(tmp_path / "bn.weights.h5")
    tensors = load_weights(tmp_path / "bn.keras")
    np.testing.assert_array_equal(tensors["norm.gamma"], np.ones(2))
    image = rng.uniform(size=(6, 6, 2)).astype("float32")
    want = np.asarray(model(image[None], training=False).detach().cpu().numpy())[0]
    from featmap.net.layers import BatchNorm, Flatten

    got = featmap.forward(image, [BatchNorm(eps=0.001, name="norm"), Flatten()], weights=tmp_path / "bn.keras")
    np.testing.assert_allclose(got.logits, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(SpecError, match="give the .keras file"):
        load_weights(tmp_path / "bn.weights.h5")


def test_not_keras_files_are_refused_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    import h5py

    legacy = tmp_path / "old.h5"
    with h5py.File(legacy, "w") as f:
        f.create_group("model_weights")
    with pytest.raises(SpecError, match="Keras 2"):
        load_weights(legacy)
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\nnot really")
    with pytest.raises(SpecError, match="cannot be read as a Keras file"):
        load_weights(broken)


def test_nested_model_and_the_command_line(tmp_path: Path) -> None:
    """A model inside a model is ``outer.inner`` (a named ``sequential:`` holding named layers); `featmap apply`
    takes the .keras file with no --layout and predicts what Keras does."""
    keras = _keras()
    from PIL import Image

    from featmap.cli import cli as cli_main

    keras.utils.set_random_seed(5)
    inner = keras.Sequential([keras.Input((10, 10, 1)), keras.layers.Conv2D(3, 3, name="conv")], name="stem")
    model = keras.Sequential(
        [keras.Input((10, 10, 1)), inner, keras.layers.Flatten(), keras.layers.Dense(4, name="head")]
    )
    model.save(tmp_path / "nested.keras")
    (tmp_path / "nested.yaml").write_text(
        "input: 10x10x1\nlayers:\n  - name: stem\n    sequential:\n      - {conv: '3@3x3', name: conv}\n"
        "  - flatten\n  - {dense: 4, name: head}\n"
    )
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, (10, 10), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "in.png")
    image = (gray.astype(np.float32) / 255)[:, :, None]
    want = np.asarray(model(image[None], training=False).detach().cpu().numpy())[0]
    assert sorted(load_weights(tmp_path / "nested.keras")) == [
        "head.bias",
        "head.kernel",
        "stem.conv.bias",
        "stem.conv.kernel",
    ]
    got = featmap.forward(image, str(tmp_path / "nested.yaml"), weights=tmp_path / "nested.keras").logits
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    import json

    from click.testing import CliRunner

    args = ["apply", str(tmp_path / "in.png"), "--spec", str(tmp_path / "nested.yaml")]
    args += ["--weights", str(tmp_path / "nested.keras"), "-o", str(tmp_path / "out"), "--json"]
    run = CliRunner().invoke(cli_main, args)
    assert run.exit_code == 0, run.output
    top = json.loads(run.stdout)["top"]
    assert top[0]["index"] == int(np.argmax(want))
