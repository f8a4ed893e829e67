"""predictions.csv and the per-class counts from every batch path: the local loop, a Dask LocalCluster
(``--scheduler``) and the URL path (``memory://`` and ``file://`` outputs) give the same bytes and counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from featmap.cli import cli

fsspec = pytest.importorskip("fsspec", reason="the dask extra is not installed: pip install '.[dask]'")
DIGITS = Path(__file__).resolve().parent.parent / "samples" / "digits"


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for k in (3, 7, 8):
        shutil.copy(DIGITS / f"digit_{k}.png", folder / f"digit_{k}.png")
    return folder


def run(args: list[str]) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["apply", *args, "--model", "lenet5-digits", "-q", "--json"])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def local_csv(digits: Path, out: Path) -> tuple[bytes, dict[str, Any]]:
    report = run([str(digits), "-o", str(out), "-j", "1"])
    return (out / "predictions.csv").read_bytes(), report


def test_dask_batch_writes_the_same_predictions(tmp_path: Path, digits: Path, dask_cluster: Any) -> None:
    expected, local = local_csv(digits, tmp_path / "local")
    assert expected.decode().splitlines()[1].startswith(f"{digits / 'digit_3.png'},3,3,")
    assert local["predictions"] == [{"label": k, "images": 1} for k in ("3", "7", "8")]
    report = run([str(digits), "-o", str(tmp_path / "dask"), "--scheduler", dask_cluster.scheduler_address])
    assert (tmp_path / "dask" / "predictions.csv").read_bytes() == expected
    assert report["predictions"] == local["predictions"]
    assert report["predictions_file"] == str(tmp_path / "dask" / "predictions.csv")


def test_url_batch_writes_the_same_predictions_and_keeps_them_on_resume(
    tmp_path: Path, digits: Path, memory: str
) -> None:
    expected, local = local_csv(digits, tmp_path / "local")
    report = run([str(digits), "-o", f"{memory}/maps"])
    fs = fsspec.filesystem("memory")
    assert fs.cat_file("/featmap-test/maps/predictions.csv") == expected
    assert report["predictions"] == local["predictions"]
    assert report["predictions_file"] == f"{memory}/maps/predictions.csv"
    fs.rm_file("/featmap-test/maps/predictions.csv")
    again = run([str(digits), "-o", f"{memory}/maps", "--skip-existing"])
    assert len(again["skipped"]) == 3 and again["processed"] == []
    assert fs.cat_file("/featmap-test/maps/predictions.csv") == expected  # rows read back from the manifest
    assert again["predictions"] == local["predictions"]


def test_url_inputs_to_a_local_folder_write_the_same_predictions(tmp_path: Path, digits: Path, memory: str) -> None:
    """memory:// inputs and a local (file://) output folder: the URL path with the local manifest; rows name
    the inputs by URL, otherwise the same bytes."""
    expected, local = local_csv(digits, tmp_path / "local")
    fs = fsspec.filesystem("memory")
    for path in sorted(digits.iterdir()):
        fs.pipe_file(f"/featmap-test/in/{path.name}", path.read_bytes())
    report = run([f"{memory}/in", "-o", f"file://{tmp_path / 'viaurl'}"])
    wanted = expected.decode().replace(str(digits), f"{memory}/in").encode()
    assert wanted != expected and (tmp_path / "viaurl" / "predictions.csv").read_bytes() == wanted
    assert report["predictions"] == local["predictions"]
