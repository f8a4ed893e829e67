"""URLs on the command line (issue 23 item 3): ``file://`` wherever a path goes, object-storage credential
and endpoint errors as one line naming the settings (exit 1), and one image's own summary for a URL output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli


@pytest.fixture
def album(tmp_path: Path) -> Path:
    folder = tmp_path / "my album"  # a space: written %20 in a URL
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (14, 18), dtype=np.uint8)).save(folder / name)
    return folder


def _url(path: Path) -> str:
    return path.resolve().as_uri()  # file:///…/my%20album/…


def _ok(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("form", ["file", "folder", "glob"])
def test_file_urls_as_inputs_give_the_same_maps_as_paths(album: Path, tmp_path: Path, form: str) -> None:
    target = {"file": album / "a.png", "folder": album, "glob": album / "*.png"}[form]
    url = _url(album / "a.png") if form == "file" else _url(album) + ("/*.png" if form == "glob" else "")
    _ok(["apply", str(target), "-k", "sobel_x", "-o", str(tmp_path / "plain"), "-q"])
    _ok(["apply", url, "-k", "sobel_x", "-o", _url(tmp_path) + "/url", "-q"])
    plain = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*.png"))
    assert plain and plain == sorted(p.relative_to(tmp_path / "url") for p in (tmp_path / "url").rglob("*.png"))
    for rel in plain:
        assert (tmp_path / "plain" / rel).read_bytes() == (tmp_path / "url" / rel).read_bytes()


def test_file_urls_for_kernel_files_specs_and_explain(album: Path, tmp_path: Path) -> None:
    kernels = tmp_path / "k.yaml"
    kernels.write_text("name: diff\nweights: [[1, -1]]\n")
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 14x18x1\nlayers: [{conv: {kernels: [sobel_x]}}]\n")
    out = _ok(["apply", _url(album / "a.png"), "-k", _url(kernels) + ":diff", "--json", "-o", str(tmp_path / "k")])
    assert json.loads(out)["maps"][0]["name"] == "diff"
    _ok(["apply", _url(album / "a.png"), "--spec=" + _url(spec), "-o", str(tmp_path / "s"), "--json"])
    folder = tmp_path / "kd"
    folder.mkdir()
    (folder / "mine.yaml").write_text("name: mine\nweights: [[2]]\n")
    _ok(["apply", str(album / "a.png"), "-k", "mine", "--kernel-dir", _url(folder), "-o", str(tmp_path / "d")])
    matrix = tmp_path / "m.csv"
    matrix.write_text("1,2\n3,4\n")
    assert "4" in _ok(["explain", "--input", _url(matrix), "-k", "1", "--steps", "1"])


def _no_credentials_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",  # no instance-metadata lookups: fast, no network
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


def test_s3_without_credentials_is_one_line_naming_the_settings(album: Path, tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    env = _no_credentials_env()
    args = [sys.executable, "-m", "featmap", "apply", "s3://featmap-test/a.png", "-k", "sobel_x", "-o", str(tmp_path)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("featmap: error: s3://featmap-test/a.png: no credentials for object storage")
    assert "AWS_ACCESS_KEY_ID" in line and "AWS_ENDPOINT_URL" in line


def test_s3_with_an_unreachable_endpoint_is_one_line(album: Path, tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    env = _no_credentials_env()
    env.update(
        AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_MAX_ATTEMPTS="1"
    )
    out = "s3://featmap-test/out/"
    args = [sys.executable, "-m", "featmap", "apply", str(album / "a.png"), "-k", "sobel_x", "-o", out]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "cannot reach the object storage endpoint" in line and "check AWS_ENDPOINT_URL" in line


def test_one_image_to_a_url_prints_its_own_summary(album: Path) -> None:
    pytest.importorskip("fsspec")
    out = _ok(["apply", str(album / "a.png"), "-k", "sobel_x", "-o", "memory://one/"])
    assert "maps written under memory://one" in out and "a/sobel_x.png" in out and "images/s" not in out
    doc = json.loads(_ok(["apply", str(album / "b.png"), "-k", "sobel_x", "-o", "memory://one/", "--json"]))
    assert doc["maps"][0]["name"] == "sobel_x"
    two = _ok(["apply", str(album / "a.png"), str(album / "b.png"), "-k", "sobel_x", "-o", "memory://two/"])
    assert "(manifest: memory://two/manifest.jsonl)" in two
