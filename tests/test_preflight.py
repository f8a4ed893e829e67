"""A batch's mistakes that no pixel decides are found for the whole batch before any work (issue 23 item 1):
one message, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli


@pytest.fixture
def album(tmp_path: Path) -> Path:
    folder = tmp_path / "album"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(8):
        size = (20, 24) if i % 2 else (31, 17)  # two sizes
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"p{i}.png")
    (folder / "broken.png").write_text("not a picture")  # its own error, later: not the batch's
    return folder


def _files(folder: Path) -> dict[str, int]:
    return (
        {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}
    )


def test_combine_of_maps_that_differ_is_one_error_before_any_work(album: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["apply", str(album), "-k", "sobel_x", "-k", "sobel_y", "-k", "gaussian_5", "--combine", "magnitude"]
    result = CliRunner().invoke(cli, [*args, "-o", str(out), "-j", "2"])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "maps differ in shape on 8 of 9 images" in lines[0]
    assert "sobel_x 18×22×1" in lines[0] or "sobel_x 29×15×1" in lines[0]
    assert not out.exists()
    same = CliRunner().invoke(cli, [*args, "--padding", "same", "-o", str(out), "-j", "1"])
    assert same.exit_code == 3, same.stderr  # the broken file fails on its own; the rest are written
    assert len(list(out.rglob("magnitude.png"))) == 8


def test_skip_existing_with_other_options_is_one_error(album: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = CliRunner().invoke(cli, ["apply", str(album), "-k", "sobel_x", "-o", str(out), "-j", "1"])
    assert first.exit_code == 3, first.stderr
    before = _files(out)
    again = ["apply", str(album), "-k", "sobel_x", "-o", str(out), "-j", "1", "--skip-existing"]
    changed = CliRunner().invoke(cli, [*again, "--flip"])
    assert changed.exit_code == 2, changed.stderr
    (line,) = changed.stderr.strip().splitlines()
    assert "8 of 9 images have outputs made from another input or with other options" in line
    assert "pass --overwrite to replace them" in line
    assert _files(out) == before  # nothing written, nothing touched
    same = CliRunner().invoke(cli, again)  # the same options: a resume, not an error
    assert same.exit_code == 3, same.stderr  # the broken file again
    pngs = {k: v for k, v in _files(out).items() if k.endswith(".png")}
    assert pngs == {k: v for k, v in before.items() if k.endswith(".png")}  # skipped, not rewritten
    replaced = CliRunner().invoke(cli, [*again, "--flip", "--overwrite"])
    assert replaced.exit_code == 3, replaced.stderr
    assert _files(out) != before


def test_one_image_with_maps_that_differ(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(image)
    result = CliRunner().invoke(
        cli, ["apply", str(image), "-k", "sobel_x", "-k", "gaussian_5", "--combine", "max", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "maps differ in shape a.png (12×12): sobel_x 10×10×1, gaussian_5 8×8×1" in result.stderr
    assert not (tmp_path / "o").exists()
