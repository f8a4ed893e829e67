"""The model's input transform (`featmap.net.preprocess`): resize + centre crop + normalise against torch's
antialiased bilinear resize and PIL's 8-bit path (torchvision's), pad and stretch by hand, gray repeated to RGB,
LeNet-5's inverted digits, and the spec / ONNX-metadata declarations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

import featmap
from featmap.cli import cli
from featmap.errors import OptionError, SpecError
from featmap.net.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, from_metadata, prepare, resolve
from featmap.net.spec import load_model, parse_file

DIGITS = Path(__file__).resolve().parent.parent / "samples" / "digits"


def _image(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth random picture (a random field, blurred), so resampling differences stay small and honest."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (h // 4 + 2, w // 4 + 2, c)).astype(np.float32)
    return np.stack(
        [np.asarray(Image.fromarray(coarse[:, :, i], "F").resize((w, h), Image.BICUBIC)) for i in range(c)], 2
    ).clip(0, 1)


def test_crop_transform_matches_torch_antialiased_bilinear() -> None:
    """Shorter side 37 → 24 (long side int(24·53/37) = 34), centre crop 20×20 at (2, 7), then (x - mean) / std:
    torch.nn.functional.interpolate(bilinear, antialias=True) on the same float image agrees within 1e-4 in
    [0, 1] units (both are the antialiased triangle filter; measured 9e-7 here, 1.2e-5 at 300×410 → 256)."""
    torch = pytest.importorskip("torch")
    image = _image(37, 53)
    pre = Preprocess("t", "crop", 24, IMAGENET_MEAN, IMAGENET_STD)
    out = prepare(image, (20, 20, 3), pre)
    assert out.tensor.shape == (20, 20, 3)
    t = torch.from_numpy(image).permute(2, 0, 1)[None]
    resized = torch.nn.functional.interpolate(t, size=(24, 34), mode="bilinear", antialias=True, align_corners=False)
    top, left = round((24 - 20) / 2), round((34 - 20) / 2)
    crop = resized[0, :, top : top + 20, left : left + 20].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out.shown, crop, atol=1e-4)
    want = (crop - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    np.testing.assert_allclose(out.tensor, want, atol=1e-4 / min(IMAGENET_STD))
    assert "shorter side to 24" in out.notes[0]


def test_imagenet_preset_matches_torchvision_recipe_on_8_bit_pil() -> None:
    """torchvision's ImageNet recipe on a PIL image: Resize(256) (bilinear, antialiased, 8-bit), CenterCrop(224),
    ToTensor, Normalize. featmap resamples the float image without rounding to 8 bits: within 1/255 before
    normalisation."""
    rgb = (_image(300, 410, seed=1) * 255).round().astype(np.uint8)
    pil = Image.fromarray(rgb).resize((int(256 * 410 / 300), 256), Image.BILINEAR)
    left, top = int(round((pil.width - 224) / 2)), int(round((pil.height - 224) / 2))
    want = np.asarray(pil.crop((left, top, left + 224, top + 224)), np.float32) / 255
    out = prepare(rgb.astype(np.float32) / 255, (224, 224, 3), resolve("imagenet"))
    np.testing.assert_allclose(out.shown, want, atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(out.tensor, (out.shown - IMAGENET_MEAN) / np.array(IMAGENET_STD), rtol=1e-6, atol=1e-6)


def test_pad_and_stretch_by_hand() -> None:
    image = np.ones((10, 20, 1), np.float32)
    padded = prepare(image, (8, 8, 1), resolve(None, resize="pad"))
    # 20×10 fits 8×8 as 8×4, centred: rows 2-5 are the image, the rest black
    assert padded.tensor[:, :, 0].sum(axis=1).tolist() == [0, 0, 8, 8, 8, 8, 0, 0]
    stretched = prepare(image, (8, 8, 1), resolve("none"))
    assert stretched.tensor.shape == (8, 8, 1) and np.allclose(stretched.tensor, 1)
    assert "resized 20×10 to the network's input 8×8" in stretched.notes


def test_gray_is_repeated_for_an_rgb_network() -> None:
    gray = _image(224, 224, c=1, seed=2)
    out = prepare(gray, (224, 224, 3), resolve("none"))
    assert out.tensor.shape == (224, 224, 3)
    assert np.array_equal(out.tensor[:, :, 0], out.tensor[:, :, 2])
    assert any("gray image" in n for n in out.notes)


def test_an_inverted_digit_is_inverted_and_classified(tmp_path: Path) -> None:
    """Every sample digit, inverted (dark ink on a light page), is put back and classified as itself, with a
    note; the samples as they are are left alone."""
    for k in range(10):
        source = DIGITS / f"digit_{k}.png"
        dark = tmp_path / f"dark_{k}.png"
        ImageOps.invert(Image.open(source).convert("L")).save(dark)
        plain = featmap.forward(source, "lenet5-digits")
        assert not any("inverted" in w for w in plain.warnings)
        result = featmap.forward(dark, "lenet5-digits")
        assert any(w.startswith("inverted:") for w in result.warnings)
        assert int(np.argmax(result.logits)) == k
        np.testing.assert_allclose(result.logits, plain.logits, atol=1e-5)  # 1 - (1 - x) == x
    raw = featmap.forward(tmp_path / "dark_3.png", "lenet5-digits", preprocess="none")  # the old behaviour
    assert int(np.argmax(raw.logits)) != 3


def test_cli_sheet_shows_what_the_network_saw(tmp_path: Path) -> None:
    """The inversion note goes to stderr; the run result carries the tensor; --json still valid."""
    dark = tmp_path / "dark.png"
    ImageOps.invert(Image.open(DIGITS / "digit_5.png").convert("L")).save(dark)
    run = CliRunner().invoke(cli, ["apply", str(dark), "--model", "lenet5-digits", "-o", str(tmp_path / "o"), "--json"])
    assert run.exit_code == 0, run.output
    assert "inverted: the digit looks dark on a light page" in run.stderr
    assert json.loads(run.stdout)["top"][0]["label"] == "5"
    from featmap.io.discover import InputImage
    from featmap.run.netjob import make_network_job, process_network_image

    job = make_network_job(load_model("lenet5-digits"), output=_output(tmp_path / "p"))
    result = process_network_image(InputImage(dark, Path(), "dark"), job)
    assert result.network_input is not None and result.shown_input is not None
    expected = 1 - np.asarray(Image.open(dark), np.float32) / 255
    np.testing.assert_allclose(result.shown_input[:, :, 0], expected, atol=1e-6)


def _output(folder: Path):  # type: ignore[no-untyped-def]
    from featmap.run.jobs import make_output

    return make_output(out_dir=folder)


def test_presets_declare_torchvision_transforms() -> None:
    assert resolve(load_model("resnet18").preprocess) == Preprocess(
        "imagenet", "crop", 256, IMAGENET_MEAN, IMAGENET_STD
    )
    assert resolve(load_model("inception_v3").preprocess).resize == 342
    assert resolve(load_model("lenet5-digits").preprocess).ink == "white-on-black"
    assert resolve(load_model("resnet18").preprocess, "none").mean is None  # --preprocess none
    assert resolve(load_model("resnet18").preprocess, resize="stretch").mode == "stretch"  # --resize


def test_spec_and_metadata_declarations(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "input: 16x16x3\npreprocess: {resize: 20, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\nlayers: [relu]\n"
    )
    pre = resolve(parse_file(spec).preprocess)
    assert (pre.mode, pre.resize, pre.mean, pre.std) == ("crop", 20, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    out = featmap.forward(np.full((16, 16, 3), 0.75, np.float32), str(spec))
    assert np.allclose(out.logits, 1.0)  # (0.75 - 0.5) / 0.25, then relu
    spec.write_text("preprocess: {size: 3}\nlayers: [relu]\n")
    with pytest.raises(SpecError, match="unknown key 'size'"):
        parse_file(spec)
    assert from_metadata({"featmap.preprocess": "imagenet"}) == "imagenet"
    assert resolve(from_metadata({"featmap.preprocess": '{"name": "imagenet", "resize": 232}'})).resize == 232
    assert from_metadata({}) is None
    with pytest.raises(OptionError, match="no transform named 'imagenett'"):
        resolve(None, "imagenett")


def _relu_onnx(path: Path, preprocess: str) -> None:
    """Save at ``path`` an ONNX model of one Relu on 1×3×8×8 whose metadata ``featmap.preprocess`` is ``preprocess``
    (skips the test without the onnx package)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    helper.set_model_props(model, {"featmap.preprocess": preprocess})
    onnx.save(model, path)


def test_onnx_metadata_declares_the_transform(tmp_path: Path) -> None:
    """An ONNX file whose metadata holds ``featmap.preprocess`` runs with that transform."""
    _relu_onnx(tmp_path / "m.onnx", '{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}')
    from featmap.net.onnx import load_onnx

    assert resolve(load_onnx(tmp_path / "m.onnx").preprocess).std == (0.25, 0.25, 0.25)
    out = featmap.forward(np.full((8, 8, 3), 0.75, np.float32), str(tmp_path / "m.onnx"))
    assert np.allclose(out.logits, 1.0)  # (0.75 - 0.5) / 0.25 through the Relu


@pytest.mark.parametrize("shape", [(1, 1), (7, 9), (28, 28), (5, 4, 3), (2, 2)])
def test_ink_median_is_numpys_median(shape: tuple[int, ...]) -> None:
    """The digit check's median (partition + mean, no numpy.ma import) equals np.median bit for bit, odd and
    even counts, with ties."""
    from featmap.net.preprocess import _median

    rng = np.random.default_rng(sum(shape))
    for values in (rng.random(shape, dtype=np.float32), rng.integers(0, 3, shape).astype(np.float32)):
        assert _median(values) == float(np.median(values))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            "{mean: [a, b, c], std: [1, 1, 1]}",
            r"preprocess.mean: must be a list of numbers, one per channel; got \['a",
        ),
        ("{mean: 0.5, std: 0.5}", r"preprocess.mean: must be a list of numbers, one per channel; got 0.5"),
        ("{mean: [.nan, 0, 0], std: [1, 1, 1]}", r"preprocess.mean: must be finite; got \[nan, 0.0, 0.0\]"),
        ("{mean: [0, 0, 0], std: [1, .inf, 1]}", r"preprocess.std: must be finite; got \[1.0, inf, 1.0\]"),
        ("{mean: [0, 0, 0], std: [1e-300, 1, 1]}", r"preprocess.std: with this mean takes \[0, 1\] beyond float32"),
        ("{mean: [-3e38, 0, 0], std: [0.1, 1, 1]}", r"preprocess.std: with this mean takes \[0, 1\] beyond float32"),
    ],
)
def test_a_spec_mean_and_std_are_finite_lists_of_numbers(tmp_path: Path, fields: str, message: str) -> None:
    """A mean or std that is not a list of numbers was a bug (exit 70: ValueError) or a riddle ("'float' object is not
    iterable"); a NaN, an infinity or a std so small that (x − mean) / std overflows float32 ran, and the first layer
    then stopped with "a non-finite value; check the weights". Each is now refused with the spec, exit 2."""
    spec = tmp_path / "net.yaml"
    spec.write_text(f"input: 8x8x3\npreprocess: {fields}\nlayers: [relu]\n")
    with pytest.raises(SpecError, match="net.yaml: " + message):
        parse_file(spec)
    result = CliRunner().invoke(cli, ["shape", "--spec", str(spec)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("imagenett", "no transform named 'imagenett'"),
        ('{"mean": [0.5], "std": [0]}', r"preprocess.std: must be > 0"),
        ('{"resize": 256', "is not valid JSON"),
    ],
)
def test_onnx_metadata_is_checked_when_the_file_is_read(tmp_path: Path, value: str, message: str) -> None:
    """A bad ``featmap.preprocess`` in an ONNX file's metadata was found at the first image, as if the user had
    given ``--preprocess`` (`` `preprocess`: no transform named …``, no file named); now reading the file refuses it,
    naming the file and the metadata key, as a spec's ``preprocess:`` is refused."""
    _relu_onnx(tmp_path / "m.onnx", value)
    from featmap.net.onnx import load_onnx

    with pytest.raises(SpecError, match=r"m.onnx: metadata featmap.preprocess: .*" + message):
        load_onnx(tmp_path / "m.onnx")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    result = CliRunner().invoke(cli, ["apply", str(image), "--spec", str(tmp_path / "m.onnx"), "-o", str(tmp_path)])
    assert result.exit_code != 0 and "m.onnx: metadata featmap.preprocess" in result.stderr, result.stderr


def test_a_strip_is_cropped_before_it_is_resized(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 5000×3 strip through the ``imagenet`` crop was resized whole to 426,666×256 (1.3 GB of floats, a 3.9 GB peak
    and 19 s for a 15 KB PNG; 1×20000 ran out of memory): past `WHOLE_RESIZE_PIXELS` only the centre crop's region is
    resampled, at the whole resize's scale, its filter reading the pixels around the region. Compared with the whole
    resize then the crop on a strip small enough to resize whole (3×600 → 256×51,200): equal to float32 rounding."""
    from featmap.net import fitting

    strip = _image(3, 600, seed=4)
    pre = Preprocess("t", "crop", 256, IMAGENET_MEAN, IMAGENET_STD)
    whole = prepare(strip, (224, 224, 3), pre)
    sizes: list[tuple[int, int]] = []
    real = fitting.resample
    monkeypatch.setattr(fitting, "WHOLE_RESIZE_PIXELS", 1 << 20)  # 256 × 51,200 is over it
    monkeypatch.setattr(fitting, "resample", lambda x, size, box=None: sizes.append(size) or real(x, size, box))
    monkeypatch.setattr(fitting.fit_image, "__defaults__", (fitting.resample,))
    region = prepare(strip, (224, 224, 3), pre)
    assert sizes == [(224, 224)]  # the region alone, never the 256×51,200 image
    np.testing.assert_allclose(region.tensor, whole.tensor, rtol=0, atol=1e-5)
    assert region.notes == whole.notes
    photo = _image(300, 410, seed=5)  # a photo's whole resize (256×349) is far under the default
    sizes.clear()
    monkeypatch.setattr(fitting, "WHOLE_RESIZE_PIXELS", 1 << 24)
    prepare(photo, (224, 224, 3), pre)
    assert sizes == [(256, 349)]
