"""featmap.explain.matrices: inline matrices, CSV/NPY files and image crops for explain, with their limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from featmap.errors import ImageReadError, ShapeError, SpecError
from featmap.explain.matrices import MAX_FILE_BYTES, crop_image, looks_like_matrix, parse_matrix, read_matrix


def test_parse_rows_values_and_channels() -> None:
    assert parse_matrix("1 2 3; 4 5 6").tolist() == [[1, 2, 3], [4, 5, 6]]
    assert parse_matrix(" 1,2 ;3 ,  -4.5 ;").tolist() == [[1, 2], [3, -4.5]]
    assert parse_matrix("1 2\n3 4\n# a comment\n").tolist() == [[1, 2], [3, 4]]
    rgb = parse_matrix("1 2; 3 4 | 5 6; 7 8 | 0 0; 0 1")
    assert rgb.shape == (2, 2, 3)
    assert rgb[1, 0].tolist() == [3, 7, 0]


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("1 2 3; 4 5", SpecError, "--input row 2: has 2 values but row 1 has 3; give every row the same number"),
        ("1 2; x 4", SpecError, "--input row 2: 'x' is not a number"),
        ("1 nan", SpecError, "'nan' is not finite"),
        ("", SpecError, "--input: is empty"),
        (" ; ;", SpecError, "--input: is empty"),
        ("1 2; 3 4 | 1 2 3; 4 5 6", SpecError, "channel 2: is 2×3 but channel 1 is 2×2"),
        ("; ".join(["1"] * 65), ShapeError, "has 65 rows, over explain's limit of 64"),
        (" ".join(["1"] * 65), ShapeError, "row 1: has 65 values, over explain's limit of 64"),
        ("|".join(["1"] * 5), ShapeError, "has 5 channels, over explain's limit of 4"),
        ("1 " * (1 << 20), ShapeError, "characters, over explain's limit of 1,048,576"),
    ],
)
def test_parse_errors(text: str, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        parse_matrix(text, "--input")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_looks_like_matrix() -> None:
    assert looks_like_matrix("1 0 -1; 2 0 -2") and looks_like_matrix("0.5") and looks_like_matrix("1e-3, 2")
    assert not looks_like_matrix("sobel_x") and not looks_like_matrix("gaussian:size=3") and not looks_like_matrix(";")


def test_read_csv_and_npy(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("1,2,3\n4,5,6\n")
    assert read_matrix(csv).tolist() == [[1, 2, 3], [4, 5, 6]]
    tsv = tmp_path / "m.tsv"
    tsv.write_text("1\t2\n3\t4\n")
    assert read_matrix(tsv).tolist() == [[1, 2], [3, 4]]
    npy = tmp_path / "m.npy"
    values = np.arange(12, dtype=np.int16).reshape(2, 3, 2)
    np.save(npy, values)
    np.testing.assert_array_equal(read_matrix(npy), values)


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        read_matrix(tmp_path / "missing.csv")
    big = tmp_path / "big.csv"
    big.write_bytes(b"1," * (MAX_FILE_BYTES // 2 + 1))
    with pytest.raises(ShapeError, match="over explain's limit"):
        read_matrix(big)
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((2, 100)))
    with pytest.raises(ShapeError, match="100 columns, over explain's limit of 64"):
        read_matrix(wide)
    cube = tmp_path / "cube.npy"
    np.save(cube, np.zeros((2, 2, 2, 2)))
    with pytest.raises(ShapeError, match=r"shape \(2, 2, 2, 2\)"):
        read_matrix(cube)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not an array")
    with pytest.raises(SpecError, match="not a readable NPY array"):
        read_matrix(junk)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2\n3\n")
    with pytest.raises(SpecError, match="row 2: has 1 values but row 1 has 2"):
        read_matrix(ragged)


def test_crop_values_0_255_and_0_1(gray_png: Path) -> None:
    # gray_png: 24×32, 40 everywhere, 200 on rows 6–17 and columns 8–19.
    piece = crop_image(gray_png, (6, 4, 4, 3))  # columns 6–9, rows 4–6
    assert piece.tolist() == [[40, 40, 40, 40], [40, 40, 40, 40], [40, 40, 200, 200]]
    unit = crop_image(gray_png, (6, 4, 4, 3), scale=1.0)
    assert unit[2, 3] == pytest.approx(200 / 255, abs=1e-7)


def test_crop_colour_keeps_channels(make_image: Callable[..., Path]) -> None:
    rgb = np.zeros((5, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    path = make_image("rgb.png", rgb)
    assert crop_image(path, (1, 1, 2, 2), color=True)[0, 0].tolist() == [10, 20, 30]
    # gray: BT.601 luma 0.299·10 + 0.587·20 + 0.114·30 = 2.99 + 11.74 + 3.42 = 18.15
    assert crop_image(path, None)[0, 0] == pytest.approx(18.15, abs=1e-3)


@pytest.mark.parametrize(
    ("crop", "message"),
    [
        ((30, 0, 4, 4), "is outside the 32×24 image"),
        ((0, 22, 4, 4), "is outside the 32×24 image"),
        ((0, 0, 0, 4), "has width 0 and height 4; give a width and height >= 1"),
    ],
)
def test_crop_outside_the_image(gray_png: Path, crop: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        crop_image(gray_png, crop)


def test_large_image_needs_a_crop(make_image: Callable[..., Path], tmp_path: Path) -> None:
    path = make_image("big.png", np.zeros((80, 70), dtype=np.uint8))
    with pytest.raises(ShapeError, match="is 70×80 pixels, over explain's limit of 64×64; pick a piece with `crop`"):
        crop_image(path, None)
    with pytest.raises(ShapeError, match="over explain's limit of 64"):
        crop_image(path, (0, 0, 65, 65))
    with pytest.raises(ImageReadError, match="no such file"):
        crop_image(tmp_path / "missing.png", (0, 0, 2, 2))
