"""A URL batch's pages and JSON name the URLs the user gave, never the temporary folder a helper fetched the
input into or staged the outputs in (issue 19's leftover): kernel and network reports alike."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from featmap.cli import cli
from tests.conftest import SAMPLES

fsspec = pytest.importorskip("fsspec", reason="the dask extra is not installed: pip install '.[dask]'")

#: The staging folders of `featmap.run.work.work_url` (``tempfile.TemporaryDirectory(prefix="featmap-")``).
STAGED = re.compile(r"featmap-[A-Za-z0-9_]{8}")


def _upload(memory: str, names: list[Path]) -> str:
    fs = fsspec.filesystem("memory")
    for path in names:
        fs.pipe_file(f"{memory[len('memory://') :]}/in/{path.name}", path.read_bytes())
    return f"{memory}/in/"


def _remote(url: str) -> dict[str, bytes]:
    fs, root = fsspec.core.url_to_fs(url)
    return {p[len(root.rstrip("/")) + 1 :]: fs.cat_file(p) for p in sorted(fs.find(root))}


def _run(args: list[str]) -> tuple[str, str]:
    result = CliRunner().invoke(cli, [*args, "-j", "1", "--json"])
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def test_a_kernel_url_batchs_reports_name_the_url(memory: str) -> None:
    source = _upload(memory, [SAMPLES / "camera.png", SAMPLES / "shapes.png"])
    out = f"{memory}/maps"
    stdout, stderr = _run(["apply", source, "-k", "sobel_x", "--report", "-o", out])
    assert not STAGED.search(stdout + stderr)
    remote = _remote(out)
    for stem in ("camera", "shapes"):
        page = remote[f"{stem}/report.html"].decode()
        assert f"{source}{stem}.png" in page
        assert not STAGED.search(page), STAGED.search(page)


def test_a_network_url_batchs_reports_and_json_name_the_urls(memory: str) -> None:
    digits = sorted((SAMPLES / "digits").glob("digit_*.png"))[:2]
    source = _upload(memory, digits)
    out = f"{memory}/nets"
    stdout, stderr = _run(["apply", source, "--model", "lenet5-digits", "--report", "-o", out])
    assert not STAGED.search(stdout + stderr), STAGED.search(stdout + stderr)
    doc = json.loads(stdout)
    files = [f for image in doc["processed"] for layer in image["layers"] for f in layer["files"]]
    assert files and all(not f.startswith("/") for f in files)  # relative to the output folder, as a kernel's
    remote = _remote(out)
    assert set(files) <= set(remote)
    for digit in digits:
        page = remote[f"{digit.stem}/report.html"].decode()
        assert f"{source}{digit.name}" in page and not STAGED.search(page)


def test_local_inputs_give_the_same_report_to_a_url_as_to_a_folder(memory: str, tmp_path: Path) -> None:
    """A local input's page does not depend on where the outputs go: the same bytes under a URL as in a folder."""
    photo = tmp_path / "in" / "camera.png"
    photo.parent.mkdir()
    shutil.copy(SAMPLES / "camera.png", photo)
    _run(["apply", str(photo), str(SAMPLES / "shapes.png"), "-k", "sobel_x", "--report", "-o", str(tmp_path / "o")])
    _run(["apply", str(photo), str(SAMPLES / "shapes.png"), "-k", "sobel_x", "--report", "-o", f"{memory}/o"])
    remote = _remote(f"{memory}/o")
    assert remote["camera/report.html"] == (tmp_path / "o" / "camera" / "report.html").read_bytes()
