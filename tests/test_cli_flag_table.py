"""Every row of README's ``featmap apply`` flag table, run on the command line and checked against an
independent computation (scipy) or the file it promises. A README row without a case here fails
`test_every_readme_row_has_a_case`, so the table and the tests stay one list."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage, signal

from featmap.cli import cli
from featmap.kernels import KernelLibrary
from tests.conftest import REPO

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
SOBEL_Y = SOBEL_X.T.copy()


def _readme_rows() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("| `-k NAME` |")
    rows = []
    for line in text[start:].splitlines():
        if not line.startswith("|"):
            break
        rows.append(re.split(r"(?<!\\)\|", line)[1].strip())  # `\|` inside a cell is not a border
    return rows


@pytest.fixture
def gray(tmp_path: Path) -> tuple[Path, np.ndarray]:
    pixels = (np.arange(18 * 22).reshape(18, 22) * 37 % 256).astype(np.uint8)
    path = tmp_path / "g.png"
    Image.fromarray(pixels).save(path)
    return path, pixels.astype(np.float64) / 255


class Run:
    def __init__(self, tmp_path: Path, image: Path) -> None:
        self.out = tmp_path / "out"
        self.image = image

    def __call__(self, *args: str, code: int = 0, raw: bool = True) -> str:
        argv = ["apply", str(self.image), "-o", str(self.out), *args, *(["--raw", "npy"] if raw else [])]
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == code, result.stderr
        return result.stdout + result.stderr

    def map(self, name: str) -> np.ndarray:
        return np.load(self.out / self.image.stem / f"{name}.npy").astype(np.float64).squeeze(-1)


def _png(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im


def _valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    return signal.correlate2d(x, k, mode="valid")


def case_k_name(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x")
    np.testing.assert_allclose(run.map("sobel_x"), _valid(x, SOBEL_X), atol=1e-5)


def case_k_tag(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel")
    names = sorted(KernelLibrary(use_env=False).tags()["sobel"])
    assert sorted(p.stem for p in (run.out / "g").glob("*.npy")) == names and len(names) >= 2


def case_k_file(run: Run, x: np.ndarray, tmp: Path) -> None:
    path = tmp / "mine.yaml"
    path.write_text("kernels:\n  - {name: one, weights: [[1, 2]]}\n  - {name: two, weights: [[3], [4]]}\n")
    run("-k", str(path))
    np.testing.assert_allclose(run.map("two"), 3 * x[:-1] + 4 * x[1:], atol=1e-5)
    run("-k", f"{path}:one", "--overwrite")
    np.testing.assert_allclose(run.map("one"), x[:, :-1] + 2 * x[:, 1:], atol=1e-5)


def case_k_parametric(run: Run, x: np.ndarray, tmp: Path) -> None:
    out = run("-k", "gaussian:size=5,sigma=1.2", "--json")
    name = json.loads(out[: out.rindex("}") + 1])["maps"][0]["name"]
    g = np.exp(-(np.arange(-2, 3) ** 2) / (2 * 1.2**2))
    k = np.outer(g, g) / np.outer(g, g).sum()
    np.testing.assert_allclose(run.map(name), _valid(x, k), atol=1e-5)


def case_kernel_dir(run: Run, x: np.ndarray, tmp: Path) -> None:
    folder = tmp / "kernels"
    folder.mkdir()
    (folder / "k.yaml").write_text("name: sobel_x\nweights: [[0, 1], [0, 0]]\n")  # hides the built-in
    run("-k", "sobel_x", "--kernel-dir", str(folder))
    np.testing.assert_allclose(run.map("sobel_x"), x[:-1, 1:], atol=1e-6)


def case_stride(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--stride", "2,3")
    np.testing.assert_allclose(run.map("sobel_x"), _valid(x, SOBEL_X)[::2, ::3], atol=1e-5)


def case_padding(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--padding", "1,2")
    padded = np.pad(x, ((1, 1), (2, 2)))
    np.testing.assert_allclose(run.map("sobel_x"), _valid(padded, SOBEL_X), atol=1e-5)


def case_pad_mode(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--padding", "same", "--pad-mode", "symmetric")
    np.testing.assert_allclose(run.map("sobel_x"), ndimage.correlate(x, SOBEL_X, mode="reflect"), atol=1e-5)


def case_dilation(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--dilation", "2")
    dilated = np.zeros((5, 5))
    dilated[::2, ::2] = SOBEL_X
    np.testing.assert_allclose(run.map("sobel_x"), _valid(x, dilated), atol=1e-5)


def case_flip(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--flip")
    np.testing.assert_allclose(run.map("sobel_x"), signal.convolve2d(x, SOBEL_X, mode="valid"), atol=1e-5)


def case_activation(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--activation", "leaky_relu", "--slope", "0.25")
    y = _valid(x, SOBEL_X)
    np.testing.assert_allclose(run.map("sobel_x"), np.where(y > 0, y, 0.25 * y), atol=1e-5)


def case_pool(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--pool", "max", "--pool-size", "2")
    y = _valid(x, SOBEL_X)  # 16×20
    np.testing.assert_allclose(run.map("sobel_x"), y.reshape(8, 2, 10, 2).max(axis=(1, 3)), atol=1e-5)


def case_combine(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "-k", "sobel_y", "--combine", "magnitude")
    want = np.hypot(_valid(x, SOBEL_X), _valid(x, SOBEL_Y))
    np.testing.assert_allclose(run.map("magnitude"), want, atol=1e-5)


def case_strict(run: Run, x: np.ndarray, tmp: Path) -> None:
    warned = run("-k", "sobel_x", "--stride", "3")  # 18 rows: (18 - 3) / 3 leaves none, 22 columns leave one
    assert "unused" in warned
    refused = run("-k", "sobel_x", "--stride", "3", "--strict", "--overwrite", code=1)
    assert "unused" in refused


def case_color(run: Run, x: np.ndarray, tmp: Path) -> None:
    rgb = np.stack([(x * 255).astype(np.uint8), (255 - x * 255).astype(np.uint8), np.full(x.shape, 9, np.uint8)], -1)
    Image.fromarray(rgb).save(run.image)
    path = tmp / "rgb.yaml"
    path.write_text("name: rgb3\nweights:\n  - [[1, 0], [0, -1]]\n  - [[0, 2], [0, 0]]\n  - [[1, 1], [1, 1]]\n")
    run("-k", str(path), "--color")  # per-channel kernel: one map, the sum over channels
    chans = rgb.astype(np.float64) / 255
    weights = [np.array([[1, 0], [0, -1]]), np.array([[0, 2], [0, 0]]), np.ones((2, 2))]
    want = sum(_valid(chans[..., c], weights[c]) for c in range(3))
    np.testing.assert_allclose(run.map("rgb3"), want, atol=1e-5)
    run("-k", "box_3", "--color", "--overwrite", raw=False)  # a 2-D kernel filters each channel: an RGB PNG
    assert _png(run.out / "g" / "box_3.png").mode == "RGB"


def case_background(run: Run, x: np.ndarray, tmp: Path) -> None:
    rgba = np.zeros((*x.shape, 4), np.uint8)
    rgba[..., 3] = 0  # all transparent: the background shows
    Image.fromarray(rgba).save(run.image)
    run("-k", "identity" if "identity" in KernelLibrary(use_env=False) else "box_3", "--background", "#808080")
    (npy,) = (run.out / "g").glob("*.npy")
    np.testing.assert_allclose(np.load(npy), 128 / 255 * np.load(npy).size / np.load(npy).size, atol=1e-5)


def case_out_name(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--name", "{kernel}-{stem}.{ext}", raw=False)
    assert (run.out / "sobel_x-g.png.png").is_file()


def case_normalize(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--normalize", "clip", raw=False)
    png = np.asarray(_png(run.out / "g" / "sobel_x.png"), dtype=np.float64)
    want = np.clip(_valid(x, SOBEL_X), 0, 1) * 255
    assert np.abs(png - want).max() <= 0.5 + 1e-6


def case_pictures(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--colormap", "viridis", "--sheet", "--report", raw=False)
    assert _png(run.out / "g" / "sobel_x.png").mode == "RGB"
    assert (run.out / "g" / "sheet.png").is_file()
    assert list(run.out.rglob("report.html"))


def case_bit_depth_raw(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--bit-depth", "16", "--raw", "tiff", raw=False)
    png = np.asarray(_png(run.out / "g" / "sobel_x.png"))
    assert png.dtype == np.uint16 or _png(run.out / "g" / "sobel_x.png").mode.startswith("I")
    tiff = np.asarray(_png(run.out / "g" / "sobel_x.tiff"), dtype=np.float64)
    np.testing.assert_allclose(tiff, _valid(x, SOBEL_X), atol=1e-5)


def case_png_compress(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "--png-compress", "0", raw=False)
    stored = (run.out / "g" / "sobel_x.png").read_bytes()
    run("-k", "sobel_x", "--png-compress", "9", "--overwrite", raw=False)
    packed = (run.out / "g" / "sobel_x.png").read_bytes()
    assert len(packed) < len(stored)
    (tmp / "a.png").write_bytes(stored)
    assert np.array_equal(np.asarray(_png(tmp / "a.png")), np.asarray(_png(run.out / "g" / "sobel_x.png")))


def case_overwrite(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x")
    assert "--overwrite" in run("-k", "sobel_x", "--flip", code=1)
    run("-k", "sobel_x", "--flip", "--overwrite")
    np.testing.assert_allclose(run.map("sobel_x"), signal.convolve2d(x, SOBEL_X, mode="valid"), atol=1e-5)


def case_max_pixels(run: Run, x: np.ndarray, tmp: Path) -> None:
    out = run("-k", "sobel_x", "--max-pixels", "100", code=1)
    assert "396" in out.replace(",", "")  # 18 × 22 pixels named


def case_json(run: Run, x: np.ndarray, tmp: Path) -> None:
    doc = json.loads(run("-k", "sobel_x", "--json", raw=False).split("\nfeatmap:")[0])
    (m,) = doc["maps"]
    assert m["name"] == "sobel_x" and m["stats"]["max"] == pytest.approx(_valid(x, SOBEL_X).max(), abs=1e-5)


def case_scheduler(run: Run, x: np.ndarray, tmp: Path) -> None:
    pytest.importorskip("distributed")
    second = tmp / "h.png"
    second.write_bytes(run.image.read_bytes())
    result = CliRunner().invoke(
        cli,
        ["apply", str(run.image), str(second), "-k", "sobel_x", "-o", str(run.out), "--raw", "npy"]
        + ["--scheduler", "local", "-j", "1", "--chunk", "1", "-q"],
    )
    assert result.exit_code == 0, result.stderr
    for stem in ("g", "h"):
        np.testing.assert_allclose(np.load(run.out / stem / "sobel_x.npy")[..., 0], _valid(x, SOBEL_X), atol=1e-5)


def case_sheet_scale(run: Run, x: np.ndarray, tmp: Path) -> None:
    run("-k", "sobel_x", "-k", "box_3", "--sheet", "--sheet-width", "800", "--scale", "per-channel", raw=False)
    assert _png(run.out / "g" / "sheet.png").size[0] == 800
    digit = REPO / "samples" / "digits" / "digit_7.png"
    args = ["apply", str(digit), "--model", "lenet5-digits", "--sheet", "--channels", "2", "-o", str(tmp / "n")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.stderr
    assert list((tmp / "n").rglob("sheet.png"))


CASES: dict[str, Callable[[Run, np.ndarray, Path], None]] = {
    "`-k NAME`": case_k_name,
    "`-k TAG`": case_k_tag,
    "`-k FILE.yaml` / `-k FILE.yaml:NAME`": case_k_file,
    "`-k gaussian:size=5,sigma=1.2`": case_k_parametric,
    "`--kernel-dir DIR`": case_kernel_dir,
    "`--stride N` or `R,C`": case_stride,
    "`--padding`": case_padding,
    "`--pad-mode`": case_pad_mode,
    "`--dilation N` or `R,C`": case_dilation,
    "`--flip`": case_flip,
    "`--activation`": case_activation,
    "`--pool`": case_pool,
    "`--combine magnitude` / `max`": case_combine,
    "`--strict`": case_strict,
    "`--color`": case_color,
    "`--background`": case_background,
    "`-o DIR`, `--name PATTERN`": case_out_name,
    "`--normalize`": case_normalize,
    "`--colormap NAME\\|auto`, `--sheet`, `--report`": case_pictures,
    "`--scale per-layer\\|per-channel`, `--sheet-width PX`, `--channels K`": case_sheet_scale,
    "`--bit-depth 8/16`, `--raw npy/tiff`": case_bit_depth_raw,
    "`--png-compress 0-9`": case_png_compress,
    "`--overwrite`": case_overwrite,
    "`--max-pixels N`": case_max_pixels,
    "`--json`": case_json,
    "`--scheduler ADDRESS`, `--chunk N`": case_scheduler,
}


def test_every_readme_row_has_a_case() -> None:
    rows = _readme_rows()
    assert [r for r in rows if r not in CASES] == [], "README rows without a test case: add one to CASES here"
    assert [c for c in CASES if c not in rows] == [], "cases for rows README no longer has"


@pytest.mark.parametrize("row", list(CASES))
def test_readme_flag_row(row: str, gray: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    image, x = gray
    CASES[row](Run(tmp_path, image), x, tmp_path)
