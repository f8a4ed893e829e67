"""A JPEG whose scan was cut short and then given its end marker (a download padded to its length, a copy that
stopped half-way and was closed cleanly): libjpeg says ``Corrupt JPEG data: premature end of data segment``,
Pillow decodes it without a word and fills the missing rows with gray. featmap reads it as Pillow does (as
ImageMagick, it does not refuse a picture a viewer shows) and says so: one warning naming the file, alone or in a
batch, in this process or a helper."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from featmap.core.cvfilter import opencv
from featmap.errors import DamagedImageWarning
from featmap.io.images import load_image
from tests.conftest import REPO, SAMPLES

pytestmark = pytest.mark.skipif(opencv() is None, reason="the damage is seen by OpenCV's decode")


def _cut(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.open(SAMPLES / "coffee.png").convert("RGB").save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    return path


def _featmap(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "featmap", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_pillow_fills_the_missing_half_with_gray(tmp_path: Path) -> None:
    """What happens today, as the facts the test below rests on: the lower rows are one flat value."""
    path = _cut(tmp_path / "cut.jpg")
    with pytest.warns(DamagedImageWarning, match="premature end of data segment"):
        pixels = load_image(path, color=True).pixels
    assert pixels.shape == (400, 600, 3)
    assert float(pixels[-50:].std()) < 1e-6 and float(pixels[:50].std()) > 0.05


def test_a_cut_scan_is_not_made_into_maps_without_a_word(tmp_path: Path) -> None:
    _cut(tmp_path / "cut.jpg")
    done = _featmap("apply", "cut.jpg", "-k", "sobel_x", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("featmap: warning: DamagedImageWarning: cut.jpg: damaged JPEG data (libjpeg: Corrupt JPEG")


def test_a_batch_says_which_image_was_cut(tmp_path: Path) -> None:
    """In a batch the warning comes back from the helper that read the file, once, naming it; the rest are quiet."""
    folder = tmp_path / "in"
    folder.mkdir()
    _cut(folder / "a_cut.jpg")
    for name in ("b.jpg", "c.jpg", "d.jpg"):
        Image.open(SAMPLES / "camera.png").save(folder / name, quality=90)
    done = _featmap("apply", "in", "-k", "sobel_x", "-o", "out", "-j", "2", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line]
    assert line.startswith(f"featmap: warning: DamagedImageWarning: {Path('in') / 'a_cut.jpg'}: damaged JPEG data")
    assert line.endswith("(1 image)")
