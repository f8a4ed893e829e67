"""A JPEG's gray is its decoder's own luma plane (featmap.io.images.load_image), checked against independent
decoders: Pillow's ``draft("L")`` and OpenCV's ``IMREAD_GRAYSCALE`` called here directly, and identities."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

import featmap.errors
import featmap.io.jpeg
from featmap.io.images import GRAY_BT601, GRAY_JPEG_PLANE, LUMA_BT601, load_image
from featmap.io.jpeg import jpeg_luma_plane

SAVES = {
    "420": {"quality": 90},
    "444": {"quality": 75, "subsampling": 0},
    "422": {"quality": 85, "subsampling": 1},
    "progressive": {"quality": 95, "progressive": True},
}


def _photo(seed: int, shape: tuple[int, int] = (40, 56)) -> np.ndarray:
    """Smooth colour with hard colour edges: where chroma upsampling moves the decoded RGB's luma off the Y plane."""
    rng = np.random.default_rng(seed)
    rgb = np.cumsum(rng.integers(0, 12, (*shape, 3)), axis=1) % 256
    rgb[shape[0] // 2 :, shape[1] // 3 :] = (230, 20, 40)  # a saturated block
    return rgb.astype(np.uint8)


def _pillow_plane(path: Path) -> np.ndarray:
    """The luma plane by Pillow alone: libjpeg's Y samples, EXIF orientation applied, over 255 in float32."""
    with Image.open(path) as im:
        im.draft("L", im.size)
        assert im.mode == "L"
        plane = np.asarray(ImageOps.exif_transpose(im))
    return np.multiply(plane, np.float32(1 / 255), dtype=np.float32)


def _without_opencv(path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> np.ndarray:
    with monkeypatch.context() as patch:
        patch.setattr(featmap.io.jpeg, "opencv", lambda: None)
        return load_image(path, **kwargs).pixels  # type: ignore[arg-type]


@pytest.mark.parametrize("save", list(SAVES.values()), ids=list(SAVES))
def test_gray_is_the_decoders_luma_plane(
    tmp_path: Path, save: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.jpg"
    Image.fromarray(_photo(1)).save(path, **save)
    loaded = load_image(path)
    assert loaded.info.gray == GRAY_JPEG_PLANE and loaded.info.mode == "RGB" and loaded.pixels.shape == (40, 56, 1)
    by_pillow = _pillow_plane(path)
    by_opencv = np.multiply(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), np.float32(1 / 255), dtype=np.float32)
    np.testing.assert_array_equal(by_pillow, by_opencv)  # the two libjpeg builds agree bit for bit
    np.testing.assert_array_equal(loaded.pixels[..., 0], by_pillow)
    np.testing.assert_array_equal(_without_opencv(path, monkeypatch), loaded.pixels)  # Pillow's draft path


def test_plane_is_luma_of_the_decoded_rgb_within_its_rounding(tmp_path: Path) -> None:
    """Where no decoded channel clips, libjpeg's R, G, B are Y plus chroma terms, each rounded to a level: their
    BT.601 luma is off the Y plane by at most half a level (the weights sum to 1). Clipping at 0 or 255 next to
    saturated colour moves the RGB's luma further (up to 12 levels on the photo crops), the plane not."""
    rng = np.random.default_rng(2)
    small = Image.fromarray(rng.integers(60, 190, (5, 7, 3)).astype(np.uint8))
    path = tmp_path / "c.jpg"
    small.resize((56, 40), Image.Resampling.BICUBIC).save(path, quality=90)
    plane = load_image(path).pixels[..., 0].astype(np.float64) * 255
    rgb = load_image(path, color=True).pixels.astype(np.float64) * 255
    assert 0 < rgb.min() and rgb.max() < 255  # nothing clipped
    difference = np.abs(plane - rgb @ np.array(LUMA_BT601))
    assert difference.max() <= 0.5 + 1e-4
    assert difference.max() > 0.1  # not the RGB's luma: the old conversion would give 0


def test_a_gray_jpegs_pixels_are_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gray = _photo(3)[..., 1]
    path = tmp_path / "g.jpg"
    Image.fromarray(gray).save(path, quality=90)
    with Image.open(path) as im:
        samples = np.asarray(im)
    expect = np.multiply(samples, np.float32(1 / 255), dtype=np.float32)
    for color in (False, True):
        loaded = load_image(path, color=color)
        np.testing.assert_array_equal(loaded.pixels[..., 0], expect)
        assert loaded.info.gray == GRAY_BT601 and loaded.pixels.shape[2] == 1  # a gray file is gray as it was
        np.testing.assert_array_equal(_without_opencv(path, monkeypatch, color=color), loaded.pixels)


@pytest.mark.parametrize("save", list(SAVES.values()), ids=list(SAVES))
def test_colour_jpeg_of_a_gray_picture_has_the_gray_jpegs_plane(tmp_path: Path, save: dict[str, object]) -> None:
    """Identity: R = G = B encodes to Y = that gray exactly (JFIF's weights sum to 1 in libjpeg's fixed point),
    coded with the same luminance tables as a one-channel JPEG of the same picture: the same decoded plane."""
    gray = _photo(4)[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.jpg", **save)
    Image.fromarray(np.stack([gray] * 3, axis=2)).save(tmp_path / "c.jpg", **save)
    np.testing.assert_array_equal(load_image(tmp_path / "c.jpg").pixels, load_image(tmp_path / "g.jpg").pixels)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_plane_follows_exif_orientation(tmp_path: Path, orientation: int, monkeypatch: pytest.MonkeyPatch) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.fromarray(_photo(5, (30, 50))).save(path, exif=exif, quality=90)
    loaded = load_image(path).pixels
    assert loaded.shape == ((50, 30, 1) if orientation >= 5 else (30, 50, 1))
    np.testing.assert_array_equal(loaded[..., 0], _pillow_plane(path))
    np.testing.assert_array_equal(_without_opencv(path, monkeypatch), loaded)


def test_jpeg_stored_as_rgb_keeps_luma_in_float(tmp_path: Path) -> None:
    """An RGB-stored JPEG (Adobe transform 0, ids "R", "G", "B") has no luma plane: its gray is BT.601 of its RGB."""
    path = tmp_path / "rgb.jpg"
    Image.fromarray(_photo(6)).save(path, quality=90, keep_rgb=True)
    with Image.open(path) as im:
        assert not jpeg_luma_plane(im)
        rgb = np.asarray(im.convert("RGB"))
    loaded = load_image(path)
    assert loaded.info.gray == GRAY_BT601
    np.testing.assert_allclose(loaded.pixels[..., 0], (rgb / 255) @ np.array(LUMA_BT601), atol=1e-6)


def test_which_jpegs_have_a_luma_plane(tmp_path: Path) -> None:
    picture = _photo(7)
    Image.fromarray(picture).save(tmp_path / "ycc.jpg")
    Image.fromarray(picture[..., 0]).save(tmp_path / "l.jpg")
    Image.fromarray(picture).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(picture).save(tmp_path / "p.png")
    found = {}
    for name in ("ycc.jpg", "l.jpg", "cmyk.jpg", "p.png"):
        with Image.open(tmp_path / name) as im:
            found[name] = jpeg_luma_plane(im)
    assert found == {"ycc.jpg": True, "l.jpg": True, "cmyk.jpg": False, "p.png": False}
    assert load_image(tmp_path / "cmyk.jpg").info.gray == GRAY_BT601


def test_truncated_jpeg_is_refused_in_gray(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(_photo(8, (64, 64))).save(path, quality=90)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(featmap.errors.ImageReadError, match="corrupt or truncated"):
        load_image(path)


def test_mpo_reads_its_first_picture_as_a_jpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MPO (a JPEG whose MPF segment lists more pictures after it: phones' depth maps, HDR gain maps) gives its
    first picture, decoded as that picture saved alone as a JPEG is: the same luma plane, the same RGB."""
    first, second = _photo(9), _photo(10)
    Image.fromarray(first).save(tmp_path / "a.mpo", save_all=True, append_images=[Image.fromarray(second)])
    Image.fromarray(first).save(tmp_path / "a.jpg")
    with Image.open(tmp_path / "a.mpo") as im:
        assert im.format == "MPO" and getattr(im, "n_frames", 1) == 2 and jpeg_luma_plane(im)
    for color in (False, True):
        mpo, alone = load_image(tmp_path / "a.mpo", color=color), load_image(tmp_path / "a.jpg", color=color)
        np.testing.assert_array_equal(mpo.pixels, alone.pixels)
        assert mpo.info.gray == alone.info.gray and mpo.info.format == "MPO"
        np.testing.assert_array_equal(_without_opencv(tmp_path / "a.mpo", monkeypatch, color=color), mpo.pixels)
    assert load_image(tmp_path / "a.mpo").info.gray == GRAY_JPEG_PLANE
