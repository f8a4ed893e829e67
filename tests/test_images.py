"""featmap.io.images: every common format and mode to float32, bad files, and atomic writers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from featmap.errors import ImageReadError, SpecError
from featmap.io.images import LUMA_BT601, atomic_write, load_image, parse_color
from featmap.io.writers.png import save_png
from featmap.io.writers.raw import save_raw

Maker = Callable[..., Path]


def luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float64) / 255) @ np.array(LUMA_BT601)


@pytest.fixture
def rgb(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_png_8bit_gray_exact(make_image: Maker) -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    loaded = load_image(make_image("g.png", pixels))
    assert loaded.pixels.dtype == np.float32 and loaded.pixels.shape == (16, 16, 1)
    np.testing.assert_allclose(loaded.pixels[..., 0], pixels / 255, rtol=1e-7)
    assert (loaded.info.width, loaded.info.height, loaded.info.mode, loaded.info.format) == (
        16,
        16,
        "L",
        "PNG",
    )


def test_png_16bit_divides_by_65535(make_image: Maker) -> None:
    pixels = np.array([[0, 1, 32768, 65535]], dtype=np.uint16)
    loaded = load_image(make_image("g16.png", pixels))
    assert loaded.info.mode.startswith("I")
    np.testing.assert_allclose(loaded.pixels[0, :, 0], pixels[0] / 65535, rtol=1e-6)


@pytest.mark.parametrize(
    ("suffix", "kwargs"), [(".png", {}), (".bmp", {}), (".tif", {}), (".webp", {"lossless": True})]
)
def test_lossless_rgb_formats_give_bt601_luma(
    make_image: Maker, rgb: np.ndarray, suffix: str, kwargs: dict[str, object]
) -> None:
    path = make_image("c" + suffix, rgb, **kwargs)
    gray = load_image(path)
    np.testing.assert_allclose(gray.pixels[..., 0], luma(rgb), atol=1e-6)
    colour = load_image(path, color=True)
    assert colour.pixels.shape == (12, 10, 3)
    np.testing.assert_allclose(colour.pixels, rgb / 255, atol=1e-7)


def test_luma_without_opencv_matches(make_image: Maker, rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_image("c.png", rgb)
    with_opencv = load_image(path).pixels
    import featmap.io.decoded

    monkeypatch.setattr(featmap.io.decoded, "mix_channels", lambda data, weights: None)  # the numpy fallback
    without = load_image(path).pixels
    np.testing.assert_allclose(without[..., 0], luma(rgb), atol=1e-6)
    np.testing.assert_allclose(without, with_opencv, rtol=0, atol=2e-7)  # a float32 rounding apart at most


def test_jpeg_is_close(make_image: Maker) -> None:
    smooth = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    loaded = load_image(make_image("s.jpg", np.stack([smooth] * 3, axis=2), quality=95))
    assert loaded.info.format == "JPEG"
    np.testing.assert_allclose(loaded.pixels[..., 0], smooth / 255, atol=0.03)


def test_float_tiff_keeps_values(tmp_path: Path) -> None:
    values = np.array([[-1.5, 0.25], [2.0, 0.0]], dtype=np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(values).save(path)
    np.testing.assert_array_equal(load_image(path).pixels[..., 0], values)


def test_palette_and_bilevel(tmp_path: Path, rgb: np.ndarray) -> None:
    im = Image.fromarray(rgb).quantize(colors=16)
    path = tmp_path / "p.png"
    im.save(path)
    expect = luma(np.asarray(im.convert("RGB")))
    np.testing.assert_allclose(load_image(path).pixels[..., 0], expect, atol=1e-6)
    bilevel = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).convert("1")
    bilevel.save(tmp_path / "b.png")
    np.testing.assert_array_equal(load_image(tmp_path / "b.png").pixels[..., 0], [[0, 1], [1, 0]])


def test_alpha_composited_on_background(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red
    rgba[0, 0, 3] = 255  # opaque
    rgba[0, 1, 3] = 0  # fully transparent
    rgba[1, :, 3] = 51  # 20 % opaque
    path = tmp_path / "a.png"
    Image.fromarray(rgba).save(path)
    on_white = load_image(path, color=True).pixels
    np.testing.assert_allclose(on_white[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(on_white[0, 1], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(on_white[1, 0], [1, 0.8, 0.8], atol=1e-6)
    on_black = load_image(path, color=True, background=(0, 0, 0)).pixels
    np.testing.assert_allclose(on_black[1, 0], [0.2, 0, 0], atol=1e-6)
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8))
    la.save(tmp_path / "la.png")
    np.testing.assert_allclose(load_image(tmp_path / "la.png").pixels[0, :, 0], [1, 0], atol=1e-6)


def test_cmyk_and_gif_first_frame(tmp_path: Path, rgb: np.ndarray) -> None:
    cmyk = Image.fromarray(rgb).convert("CMYK")
    cmyk.save(tmp_path / "c.tif")
    np.testing.assert_allclose(
        load_image(tmp_path / "c.tif").pixels[..., 0], luma(np.asarray(cmyk.convert("RGB"))), atol=1e-6
    )
    frames = [Image.fromarray(np.full((4, 4), v, dtype=np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "a.gif").pixels[0, 0, 0] == pytest.approx(10 / 255, abs=1e-6)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40), dtype=np.uint8)
    pixels[:, :10] = 255  # bright left band
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(pixels).save(tmp_path / "o.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "o.jpg")
    assert loaded.pixels.shape == (40, 20, 1)
    assert loaded.pixels[:10].mean() > 0.9 and loaded.pixels[-10:].mean() < 0.1  # band now on top


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"this is not an image at all", "is not an image Pillow can read"),
        (b"", "is not an image Pillow can read"),
    ],
)
def test_not_an_image(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=match) as info:
        load_image(path)
    assert str(info.value).startswith(str(path))


def test_truncated_png(tmp_path: Path, rng: np.random.Generator) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:600])
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        load_image(cut)


def test_decompression_bomb_guard(make_image: Maker) -> None:
    path = make_image("big.png", np.zeros((100, 100), dtype=np.uint8))
    with pytest.raises(ImageReadError, match="too large.*--max-pixels"):
        load_image(path, max_pixels=1000)
    with pytest.raises(ImageReadError, match="too large"):
        load_image(path, max_pixels=4000)  # between 1x and 2x the limit Pillow only warns
    assert load_image(path, max_pixels=10_000).pixels.shape == (100, 100, 1)


def test_float_tiff_with_nan_is_refused(tmp_path: Path) -> None:
    values = np.array([[0.5, np.nan], [0.25, 1.0]], dtype=np.float32)
    path = tmp_path / "nan.tiff"
    Image.fromarray(values, mode="F").save(path)
    with pytest.raises(ImageReadError, match="NaN or infinite"):
        load_image(path)
    Image.fromarray(np.nan_to_num(values), mode="F").save(path)
    np.testing.assert_array_equal(load_image(path).pixels[..., 0], [[0.5, 0.0], [0.25, 1.0]])


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a folder"):
        load_image(tmp_path)


def test_png_writer_quantises_and_round_trips(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5, 1.0, 1.7, -0.2]])
    eight = np.asarray(Image.open(save_png(tmp_path / "a.png", values)))
    np.testing.assert_array_equal(eight, [[0, 128, 255, 255, 0]])
    sixteen = Image.open(save_png(tmp_path / "b.png", values, bit_depth=16))
    assert sixteen.mode.startswith("I")
    np.testing.assert_array_equal(np.asarray(sixteen), [[0, 32768, 65535, 65535, 0]])
    colour = np.asarray(Image.open(save_png(tmp_path / "c.png", np.ones((2, 2, 3)) * [1, 0, 0.5])))
    np.testing.assert_array_equal(colour[0, 0], [255, 0, 128])
    deep = cv2.imread(str(save_png(tmp_path / "d.png", np.ones((2, 2, 3)) * [1, 0, 0.5], bit_depth=16)), -1)
    np.testing.assert_array_equal(deep[0, 0], [32768, 0, 65535])  # OpenCV reads 16-bit colour, as BGR


def test_raw_writers(tmp_path: Path, rng: np.random.Generator) -> None:
    values = rng.standard_normal((5, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.load(save_raw(tmp_path / "a.npy", values)), values)
    tiff = save_raw(tmp_path / "a.tiff", values, "tiff")
    with Image.open(tiff) as im:
        assert im.n_frames == 3 and im.mode == "F"
        im.seek(2)
        np.testing.assert_array_equal(np.asarray(im), values[..., 2])


def test_atomic_write_keeps_old_content_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def explode(handle: object) -> None:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, explode)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_write_makes_missing_folders_and_names_a_file_in_the_way(tmp_path: Path) -> None:
    # the folder is made only when the temporary file cannot be created without it
    made = atomic_write(tmp_path / "a" / "b" / "map.png", lambda handle: handle.write(b"\x89PNG"))
    assert made.read_bytes() == b"\x89PNG" and sorted(p.name for p in made.parent.iterdir()) == ["map.png"]
    again = atomic_write(made, lambda handle: handle.write(b"new"))  # the folder exists now: replaced in place
    assert again.read_bytes() == b"new" and sorted(p.name for p in made.parent.iterdir()) == ["map.png"]
    (tmp_path / "file").write_bytes(b"in the way")
    with pytest.raises(FileExistsError) as caught:  # as before: the error names the folder that is a file
        atomic_write(tmp_path / "file" / "map.png", lambda handle: handle.write(b"x"))
    assert caught.value.filename == str(tmp_path / "file")
    assert (tmp_path / "file").read_bytes() == b"in the way"


def test_parse_color() -> None:
    assert parse_color("black") == (0.0, 0.0, 0.0)
    assert parse_color("#ff0000") == (1.0, 0.0, 0.0)
    with pytest.raises(SpecError, match="unknown colour"):
        parse_color("blurple")
    with pytest.raises(SpecError, match="unknown colour"):
        parse_color("1,2,300")


def _both_decoders(path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
    """The image through OpenCV's JPEG path and through Pillow's."""
    import featmap.io.images

    fast = load_image(path, **kwargs).pixels  # type: ignore[arg-type]
    with monkeypatch.context() as patch:
        patch.setattr(featmap.io.images, "opencv_jpeg", lambda path, opened, gray, complaints=None: None)
        slow = load_image(path, **kwargs).pixels  # type: ignore[arg-type]
    return fast, slow


@pytest.mark.parametrize(
    "save",
    [{"quality": 90}, {"quality": 75, "subsampling": 0}, {"quality": 95, "progressive": True}],
    ids=["420", "444", "progressive"],
)
def test_opencv_jpeg_path_gives_pillows_pixels(
    tmp_path: Path, save: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from featmap.io.jpeg import opencv_jpeg

    rng = np.random.default_rng(5)
    smooth = np.cumsum(rng.integers(0, 9, (48, 40, 3)), axis=1).astype(np.uint8)
    for mode, pixels in (("RGB", smooth), ("L", smooth[..., 0])):
        path = tmp_path / f"{mode}.jpg"
        Image.fromarray(pixels, mode).save(path, **save)
        with Image.open(path) as opened:
            assert opencv_jpeg(path, opened, gray=True) is not None  # the fast path is taken
        for color in (False, True):
            fast, slow = _both_decoders(path, monkeypatch, color=color)
            np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_opencv_jpeg_path_applies_exif_orientation(
    tmp_path: Path, orientation: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixels = np.zeros((30, 50, 3), dtype=np.uint8)
    pixels[:5, :10] = 255  # a bright corner shows where the top-left went
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "turned.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    fast, slow = _both_decoders(path, monkeypatch, color=True)
    assert fast.shape == slow.shape == ((50, 30, 3) if orientation >= 5 else (30, 50, 3))
    np.testing.assert_array_equal(fast, slow)


def test_truncated_or_padded_jpeg_goes_to_pillow(tmp_path: Path) -> None:
    from featmap.io.jpeg import opencv_jpeg

    rng = np.random.default_rng(6)
    path = tmp_path / "a.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        load_image(path)
    path.write_bytes(whole + b"\\0" * 16)  # bytes after the end marker: Pillow reads it, OpenCV is not asked
    with Image.open(path) as opened:
        assert opencv_jpeg(path, opened, gray=True) is None
    assert load_image(path).pixels.shape == (64, 64, 1)


def test_a_jpeg_is_opened_once_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The end-marker check reads through the handle Pillow opened (and puts it back where it was, so Pillow can
    still decode a file OpenCV is not asked about): Python opens each JPEG once, whichever decoder reads it."""
    import builtins

    rng = np.random.default_rng(7)
    whole_path, padded_path = tmp_path / "whole.jpg", tmp_path / "padded.jpg"
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(whole_path, quality=90)
    padded_path.write_bytes(whole_path.read_bytes() + b"\0" * 8)  # not ending with the marker: Pillow decodes it
    luma = cv2.imread(str(whole_path), cv2.IMREAD_GRAYSCALE)  # libjpeg's Y plane, which both decoders give
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    for path in (whole_path, padded_path):
        image = load_image(path)
        assert opened.count(str(path)) == 1
        assert image.pixels.shape == (40, 48, 1)
        np.testing.assert_array_equal(np.rint(image.pixels[:, :, 0] * 255), luma)


def test_a_path_with_a_nul_character_is_named_as_such() -> None:
    with pytest.raises(ImageReadError, match=r"not a valid path \(it holds a NUL character\); check the path"):
        load_image("photo\x00.png")
