"""A Keras 3 ``.keras`` file as a spec of its own (`featmap.net.spec.keras`): Sequential and Functional models
saved by Keras (torch back end) in the test, run with no hand-written spec and compared with Keras' own
``predict``, layer by layer where names allow; ``featmap shape model.keras``; the refusals."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import featmap
import featmap.net.spec.keras
from featmap.cli import cli as cli_main
from featmap.errors import LimitError, ModelMappingError, SpecError

from .test_weights_keras import _keras

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _predict(model: Any, image: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(image[None], verbose=0))[0]


def _randomise(model: Any, seed: int) -> None:
    """Trained-looking batch-norm statistics and non-zero biases (Keras starts them at 0 / 1)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":
            n = weights[0].shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.3, n), rng.uniform(0.5, 2, n)]
            )
        elif len(weights) == 2:
            layer.set_weights([weights[0], rng.normal(0, 0.1, weights[1].shape)])


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    keras = _keras()
    layers = keras.layers
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((20, 18, 3)),
            layers.Conv2D(6, 3, activation="relu", name="c1"),
            layers.MaxPooling2D(2, name="pool"),
            layers.DepthwiseConv2D(3, padding="same", name="dw"),
            layers.Conv2D(8, 3, padding="same", strides=2, name="c2"),
            layers.BatchNormalization(name="bn"),
            layers.ReLU(max_value=6.0, name="r6"),
            layers.AveragePooling2D(2, padding="same", name="pool2"),
            layers.Flatten(name="flat"),
            layers.Dropout(0.3, name="drop"),
            layers.Dense(16, activation="swish", name="fc1"),
            layers.Dense(5, activation="softmax", name="probs"),
        ],
        name="small",
    )
    _randomise(model, 7)
    folder = tmp_path_factory.mktemp("keras-spec")
    model.save(folder / "small.keras")
    image = np.random.default_rng(8).uniform(0, 1, (20, 18, 3)).astype("float32")
    return {"file": folder / "small.keras", "model": model, "image": image, "want": _predict(model, image)}


def test_a_sequential_keras_file_is_a_spec_of_its_own(sequential: dict[str, Any]) -> None:
    """Layers from config.json (activations as layers, batch norm's epsilon 1e-3, ReLU(6) as relu6), weights
    from the file: Keras' predict to float32 precision, every tensor used."""
    from featmap.net.spec.keras import load_keras_model

    model = load_keras_model(sequential["file"])
    assert model.input_shape == (20, 18, 3) and model.input_dims == ()
    assert model.name == "small" and model.weights == sequential["file"].resolve()
    result = featmap.forward(sequential["image"], str(sequential["file"]))
    want = sequential["want"]
    np.testing.assert_allclose(result.logits, want, rtol=1e-5, atol=1e-6)
    assert not result.warnings
    names = [o.node.plan.name for o in result.outputs]
    assert names[:3] == ["c1", "relu", "pool"] and "relu6" in [o.node.plan.kind for o in result.outputs]


def test_every_named_layer_matches_keras(sequential: dict[str, Any]) -> None:
    keras = _keras()
    model, image = sequential["model"], sequential["image"]
    result = featmap.forward(image, str(sequential["file"]))
    by_name = {o.node.plan.name: o.values for o in result.outputs}
    for name in ("pool", "dw", "c2", "bn", "r6", "pool2", "flat"):
        probe = keras.Model(model.inputs, model.get_layer(name).output)
        np.testing.assert_allclose(by_name[name], _predict(probe, image), rtol=1e-5, atol=1e-5, err_msg=name)


def test_apply_and_shape_take_a_keras_file(sequential: dict[str, Any], tmp_path: Path) -> None:
    """``featmap apply --spec model.keras`` predicts Keras' class; ``featmap shape model.keras`` (and ``--spec``)
    counts Keras' parameters."""
    from PIL import Image

    rgb = (sequential["image"] * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    args = ["apply", str(tmp_path / "in.png"), "--spec", str(sequential["file"]), "-o", str(tmp_path / "o"), "--json"]
    run = CliRunner().invoke(cli_main, args)
    assert run.exit_code == 0, run.output
    want = _predict(sequential["model"], rgb.astype(np.float32) / 255)
    top = json.loads(run.stdout)["top"]
    assert top[0]["index"] == int(np.argmax(want))
    assert top[0]["probability"] == pytest.approx(float(want.max()), rel=1e-4)
    for args in (["shape", str(sequential["file"]), "--json"], ["shape", "--spec", str(sequential["file"]), "--json"]):
        run = CliRunner().invoke(cli_main, args)
        assert run.exit_code == 0, run.output
        data = json.loads(run.stdout)
        assert data["model"] == "small" and data["input"] == [20, 18, 3]
        assert data["totals"]["params"] == sequential["model"].count_params()
        assert data["layers"][-1]["out_shape"] == [5]
    table = CliRunner().invoke(cli_main, ["shape", str(sequential["file"])])
    assert table.exit_code == 0 and "c1" in table.stdout and "probs" in table.stdout


def _functional(keras: Any) -> Any:
    """A stem, a residual block with a projection, an Inception-like concat holding a nested Sequential, a
    squeeze-and-excitation gate (Multiply), a dense head."""
    L = keras.layers
    x = keras.Input((16, 14, 3), name="img")
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(x)
    a = L.Conv2D(8, 3, padding="same", name="res_a")(y)
    a = L.BatchNormalization(name="res_bn")(a)
    y = L.Activation("relu", name="res_out")(L.Add(name="res_add")([y, a]))
    p = L.Conv2D(6, 1, strides=2, name="proj")(y)
    b1 = L.Conv2D(4, 1, strides=2, name="b1")(y)
    inner = keras.Sequential(
        [keras.Input((16, 14, 8)), L.MaxPooling2D(3, 2, "same", name="mp"), L.Conv2D(2, 1, name="pc")], name="pooled"
    )
    cat = L.Concatenate(name="cat")([b1, inner(y)])
    y = L.Add(name="proj_add")([p, cat])
    s = L.GlobalAveragePooling2D(keepdims=True, name="se_pool")(y)
    s = L.Conv2D(6, 1, activation="sigmoid", name="se_fc")(s)
    y = L.Multiply(name="gate")([y, s])
    y = L.GlobalMaxPooling2D(name="gmp")(y)
    out = L.Dense(4, name="head")(y)
    return keras.Model(x, out, name="branchy")


def test_a_functional_model_with_branches(tmp_path: Path) -> None:
    """Residual adds, a concat (with a nested Sequential as one branch) and a gate become `Parallel` merges keyed
    by the Keras names: the same output as Keras' predict, and the same intermediate maps."""
    keras = _keras()
    keras.utils.set_random_seed(11)
    model = _functional(keras)
    _randomise(model, 12)
    model.save(tmp_path / "branchy.keras")
    image = np.random.default_rng(13).uniform(0, 1, (16, 14, 3)).astype("float32")
    result = featmap.forward(image, str(tmp_path / "branchy.keras"))
    np.testing.assert_allclose(result.logits, _predict(model, image), rtol=1e-5, atol=1e-5)
    assert [w.split(":")[0] for w in result.warnings] == ["layer 5.1.1 (proj)", "layer 5.2.1.1.1 (b1)"]  # 1×1 /2
    kinds = [o.node.plan.kind for o in result.outputs]
    assert {"Add", "Concat", "Multiply"} <= set(kinds)
    by_name = {o.node.plan.name: o.values for o in result.outputs}
    for merge in ("res_add", "cat", "gate"):
        probe = keras.Model(model.inputs, model.get_layer(merge).output)
        np.testing.assert_allclose(by_name[merge], _predict(probe, image), rtol=1e-5, atol=1e-5, err_msg=merge)


def test_open_input_sizes_run_each_image_at_its_own(tmp_path: Path) -> None:
    """``Input((None, None, 3))``: no fixed input shape, three channels; images of two sizes each give Keras'
    answer at their size, and ``featmap shape`` takes ``--input`` for the open sizes."""
    keras = _keras()
    L = keras.layers
    keras.utils.set_random_seed(21)
    model = keras.Sequential(
        [keras.Input((None, None, 3)), L.Conv2D(4, 3, strides=2, name="c"), L.GlobalAveragePooling2D(), L.Dense(3)]
    )
    _randomise(model, 22)
    model.save(tmp_path / "open.keras")
    from featmap.net.spec.keras import load_keras_model

    loaded = load_keras_model(tmp_path / "open.keras")
    assert loaded.input_shape is None and loaded.input_dims == ("H", "W", 3) and loaded.channels == 3
    rng = np.random.default_rng(23)
    for size in ((9, 13), (20, 11)):
        image = rng.uniform(0, 1, (*size, 3)).astype("float32")
        got = featmap.forward(image, str(tmp_path / "open.keras")).logits
        np.testing.assert_allclose(got, _predict(model, image), rtol=1e-5, atol=1e-6)
    run = CliRunner().invoke(cli_main, ["shape", str(tmp_path / "open.keras"), "--input", "9x13x3", "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["layers"][0]["out_shape"] == [4, 6, 4]


def _refusal(tmp_path: Path, model: Any, name: str) -> str:
    from featmap.net.spec.keras import load_keras_model

    model.save(tmp_path / f"{name}.keras")
    with pytest.raises(ModelMappingError) as caught:
        load_keras_model(tmp_path / f"{name}.keras")
    run = CliRunner().invoke(cli_main, ["shape", str(tmp_path / f"{name}.keras")])
    assert run.exit_code == 2 and run.stdout == ""
    assert run.stderr.startswith(f"featmap: error: {tmp_path / name}.keras: ")
    return str(caught.value)


def test_branches_featmap_cannot_merge_are_refused_in_one_line_naming_the_layer(tmp_path: Path) -> None:
    keras = _keras()
    L = keras.layers
    x = keras.Input((8, 8, 1))
    a, b = L.Conv2D(2, 1, name="a")(x), L.Conv2D(2, 1, name="b")(x)
    text = _refusal(tmp_path, keras.Model(x, L.Subtract(name="minus")([a, b])), "sub")
    assert "layer 'minus' (Subtract) joins branches" in text and "\n" not in text
    assert text.count("Add, Concatenate and Multiply") == 1  # said once, then the fix: what to do instead
    assert text.endswith("write the layers as a spec and give this file as its weights (README, 'From Keras')")
    two = keras.Model([x, keras.Input((8, 8, 1))], L.Add()([x, x]))
    assert "has 2 inputs and 1 outputs" in _refusal(tmp_path, two, "two")
    shared = L.Conv2D(1, 1, name="shared")
    twice = keras.Model(x, shared(shared(x)))
    assert "layer 'shared' (Conv2D) is called 2 times (a shared layer)" in _refusal(tmp_path, twice, "twice")


def test_layers_without_a_featmap_kind_are_listed_one_a_line(tmp_path: Path) -> None:
    keras = _keras()
    L = keras.layers
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), L.Rescaling(1 / 255, name="scale"), L.Conv2D(2, 3, activation="elu", name="c")]
    )
    _refusal(tmp_path, model, "odd")
    from featmap.net.spec.keras import load_keras_model

    with pytest.raises(ModelMappingError) as caught:
        load_keras_model(tmp_path / "odd.keras")
    assert "2 layer(s) have no featmap layer" in caught.value.problem
    assert caught.value.details[0] == "scale (Rescaling): no featmap layer for this Keras layer"
    assert caught.value.details[1].startswith("c (Conv2D): activation 'elu' (featmap has ")


def test_files_that_are_not_keras_models(tmp_path: Path) -> None:
    from featmap.net.spec.keras import is_keras_model, load_keras_model

    (tmp_path / "text.keras").write_text("not a zip")
    with pytest.raises(SpecError, match="is not a Keras model file"):
        load_keras_model(tmp_path / "text.keras")
    assert not is_keras_model(tmp_path / "text.keras")
    run = CliRunner().invoke(cli_main, ["shape", str(tmp_path / "missing.keras")])
    assert run.exit_code != 0 and "no such file" in run.stderr and "Traceback" not in run.output


def test_zero_padding_is_folded_into_the_conv_after_it(tmp_path: Path) -> None:
    """Keras' ResNet stem pads with ``ZeroPadding2D`` then convolves ``valid``: one featmap conv with that padding
    per side (uneven too), Keras' answer; a padding before anything but such a conv is refused by name."""
    keras = _keras()
    L = keras.layers
    keras.utils.set_random_seed(31)
    x = keras.Input((17, 15, 3))
    y = L.Conv2D(4, 7, strides=2, name="conv1")(L.ZeroPadding2D(3, name="pad1")(x))
    y = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(y))
    y = L.DepthwiseConv2D(3, name="dw")(L.ZeroPadding2D(((0, 1), (1, 0)), name="pad2")(y))
    model = keras.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(y)))
    _randomise(model, 32)
    model.save(tmp_path / "stem.keras")
    from featmap.net.spec.keras import load_keras_model

    convs = [layer for layer in load_keras_model(tmp_path / "stem.keras").layers if type(layer).__name__ == "Conv2d"]
    assert [(c.name, c.padding) for c in convs] == [("conv1", (3, 3, 3, 3)), ("dw", (0, 1, 1, 0))]
    image = np.random.default_rng(33).uniform(0, 1, (17, 15, 3)).astype("float32")
    result = featmap.forward(image, str(tmp_path / "stem.keras"))
    np.testing.assert_allclose(result.logits, _predict(model, image), rtol=1e-5, atol=1e-6)
    bad = keras.Sequential([keras.Input((8, 8, 1)), L.ZeroPadding2D(1, name="zp"), L.MaxPooling2D(2, name="mp")])
    bad.save(tmp_path / "bad.keras")
    with pytest.raises(ModelMappingError) as caught:
        load_keras_model(tmp_path / "bad.keras")
    assert caught.value.details == ("zp (ZeroPadding2D): no Conv2D with valid padding right after it to fold it into",)


@pytest.mark.parametrize("depth", [200, 100_000])
def test_a_deeply_nested_config_is_refused_by_the_depth_limit(tmp_path: Path, depth: int) -> None:
    # a hostile .keras file: config.json nests past the depth limit (and, at 100,000, past Python's stack)
    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", '{"config": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(LimitError, match="nesting"):
        featmap.net.spec.keras.read_config(path)
