"""A JPEG whose entropy-coded data is damaged but whose end marker is intact (a bad sector, a broken download that
was padded): OpenCV's fast decode fills in garbage and libjpeg writes ``Corrupt JPEG data: …`` on the process's
stderr. featmap then decodes it as Pillow does, so it is refused in one line where Pillow refuses it, and no
stray line of the decoder's reaches the user, in gray (the luma plane), in colour, and in a batch's helpers."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featmap.core.cvfilter import opencv
from featmap.errors import DamagedImageWarning, ImageReadError
from featmap.io.images import load_image
from tests.conftest import REPO, SAMPLES

pytestmark = pytest.mark.skipif(opencv() is None, reason="the fast decode is OpenCV's")


def _damaged(seed: int) -> bytes:
    """The coffee photo as a JPEG with 600 bytes in the middle of its scan replaced (its end marker kept)."""
    buffer = io.BytesIO()
    Image.open(SAMPLES / "coffee.png").convert("RGB").save(buffer, "JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    start = len(data) // 3
    data[start : start + 600] = np.random.default_rng(seed).integers(0, 256, 600, dtype=np.uint8).tobytes()
    assert data[-2:] == b"\xff\xd9"
    return bytes(data)


def _featmap(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "featmap", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


@pytest.mark.parametrize("color", [False, True])
def test_damaged_data_is_refused_as_pillow_refuses_it(tmp_path: Path, color: bool) -> None:
    path = tmp_path / "damaged.jpg"
    path.write_bytes(_damaged(0))
    with pytest.raises(OSError, match="broken data stream"):  # Pillow's own verdict on this file
        Image.open(path).load()
    with pytest.raises(ImageReadError, match="is corrupt or truncated"):
        load_image(path, color=color)


@pytest.mark.parametrize("flags", [[], ["--color"]])
def test_the_command_says_one_line_and_no_decoder_message(tmp_path: Path, flags: list[str]) -> None:
    (tmp_path / "damaged.jpg").write_bytes(_damaged(0))
    done = _featmap("apply", "damaged.jpg", "-k", "sobel_x", *flags, "-o", "out", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "featmap: error: damaged.jpg: is corrupt or truncated (broken data stream when reading image file); "
        "re-export or re-download the file"
    ]


def test_damage_pillow_decodes_anyway_is_read_as_pillow_reads_it(tmp_path: Path) -> None:
    """Damage libjpeg only warns about, and Pillow decodes: the same pixels as Pillow's, and one warning line
    naming the file and libjpeg's complaint (never the decoder's own stray line)."""
    path = tmp_path / "damaged.jpg"
    path.write_bytes(_damaged(1))
    with Image.open(path) as opened:
        expected = np.asarray(opened.convert("RGB"))
    with pytest.warns(DamagedImageWarning, match=r"damaged\.jpg: damaged JPEG data \(libjpeg: Corrupt JPEG data"):
        loaded = load_image(path, color=True)
    assert np.array_equal(np.rint(loaded.pixels * 255).astype(np.uint8), expected)
    done = _featmap("apply", "damaged.jpg", "-k", "sobel_x", "--color", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("featmap: warning: DamagedImageWarning: damaged.jpg: damaged JPEG data (libjpeg: Corrupt")
    assert line.endswith("re-export or re-download the file")


def test_a_batch_names_the_damaged_file_and_does_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_damaged.jpg").write_bytes(_damaged(0))
    for name in ("b.jpg", "c.jpg", "d.jpg"):
        Image.open(SAMPLES / "camera.png").save(folder / name, quality=90)
    done = _featmap("apply", "in", "-k", "sobel_x", "-o", "out", "-j", "2", "-q", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert [line for line in done.stderr.splitlines() if line] == [
        f"featmap: error: {Path('in') / 'a_damaged.jpg'}: is corrupt or truncated (broken data stream when reading "
        "image file); re-export or re-download the file"
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b", "c", "d", "manifest.jsonl"]
