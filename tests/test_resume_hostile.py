"""``--skip-existing`` over a damaged or hand-edited manifest and index: a resume never crashes (exit 70) and never
skips an image whose record it cannot trust. The index and the manifest reader are `featmap.io.manifest_index`'s;
a damaged name in the index and a line nested past the JSON parser's depth are handled too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import featmap.io.manifest_index as manifest_index
from featmap.cli import cli

IMAGES = 4


@pytest.fixture
def done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path]:
    """A finished batch of 4 images with an index beside its manifest (written from the first byte here)."""
    monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 0)
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        Image.fromarray(rng.integers(0, 256, (24, 30), dtype=np.uint8)).save(folder / f"p{i}.png")
    out = tmp_path / "out"
    args = ["apply", str(folder), "-k", "sobel_x", "-k", "box_3", "-o", str(out), "-j", "1", "--json"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert (out / manifest_index.INDEX_NAME).is_file()
    return args, out


def _resume(args: list[str]) -> Any:
    result = CliRunner().invoke(cli, [*args, "--skip-existing"])
    assert result.exit_code != 70, result.stderr
    return result


def test_an_intact_index_resumes_everything(done: tuple[list[str], Path]) -> None:
    args, _ = done
    result = _resume(args)
    assert result.exit_code == 0 and len(json.loads(result.stdout)["skipped"]) == IMAGES


@pytest.mark.parametrize("position", [0, 5, -1])
def test_a_truncated_index_is_read_again_from_the_manifest(done: tuple[list[str], Path], position: int) -> None:
    args, out = done
    index = out / manifest_index.INDEX_NAME
    data = index.read_bytes()
    index.write_bytes(data[: position % len(data)])
    result = _resume(args)
    assert result.exit_code == 0 and len(json.loads(result.stdout)["skipped"]) == IMAGES


def test_an_index_with_a_damaged_name_is_read_again_from_the_manifest(done: tuple[list[str], Path]) -> None:
    args, out = done
    index = out / manifest_index.INDEX_NAME
    data = bytearray(index.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the names: no longer UTF-8
    index.write_bytes(bytes(data))
    result = _resume(args)
    assert result.exit_code == 0 and len(json.loads(result.stdout)["skipped"]) == IMAGES


@pytest.mark.parametrize(
    "line",
    ["this is not json", "[1, 2, 3]", '{"input": 12}', "\0\0\0", '{"input": "a", "png": "b", "options": 1e999}'],
)
def test_a_manifest_line_that_is_not_a_record_is_passed_over(done: tuple[list[str], Path], line: str) -> None:
    args, out = done
    with open(out / "manifest.jsonl", "a") as manifest:
        manifest.write(line + "\n")
    result = _resume(args)
    assert result.exit_code == 0 and len(json.loads(result.stdout)["skipped"]) == IMAGES


def test_a_deeply_nested_manifest_line_is_passed_over(done: tuple[list[str], Path]) -> None:
    args, out = done
    with open(out / "manifest.jsonl", "a") as manifest:
        manifest.write("[" * 100_000 + "]" * 100_000 + "\n")
    result = _resume(args)
    assert result.exit_code == 0 and len(json.loads(result.stdout)["skipped"]) == IMAGES


def test_a_record_edited_to_other_options_is_not_skipped(done: tuple[list[str], Path]) -> None:
    """A hand-edited options hash: the image is not taken as done (refused as another run's, or done again)."""
    args, out = done
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(line.replace('"options": "', '"options": "0', 1) for line in lines))
    result = _resume(args)
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    again = CliRunner().invoke(cli, [*args, "--skip-existing", "--overwrite"])
    assert again.exit_code == 0 and len(json.loads(again.stdout)["processed"]) == IMAGES
