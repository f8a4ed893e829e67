"""README's exit-code table is the command line's: one test per code, and the table equals `ExitCode`
(the one place, with `exit_code_for`, that assigns codes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import ExitCode, cli
from featmap.errors import (
    FeatmapError,
    ImageReadError,
    KernelFileError,
    LimitError,
    MissingExtraError,
    NothingToDoError,
    OptionError,
    OutputBusyError,
    OutputExistsError,
    ShapeError,
    SpecError,
)
from tests.conftest import REPO


def _readme_codes() -> dict[int, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text[text.index("Exit codes (every command):") :].split("\n\n")[1]
    codes: dict[int, str] = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for number in re.findall(r"\d+", cells[0]):
            codes[int(number)] = cells[1]
    return codes


def test_readme_table_is_the_exit_code_enum() -> None:
    assert set(_readme_codes()) == {int(code) for code in ExitCode}


def test_every_error_class_maps_to_a_code_in_the_table() -> None:
    from featmap.cli._common import exit_code_for

    classes = [
        FeatmapError, ImageReadError, KernelFileError, LimitError, MissingExtraError, NothingToDoError,
        OptionError, OutputBusyError, OutputExistsError, ShapeError, SpecError,
    ]  # fmt: skip
    table = _readme_codes()
    for cls in classes:
        for command in ("apply", "shape", "explain", "kernels"):
            assert int(exit_code_for(cls("x", "y"), command)) in table, cls


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args)
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stderr


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.arange(16 * 20, dtype=np.uint8).reshape(16, 20)).save(path)
    return path


def test_0_success(png: Path, tmp_path: Path) -> None:
    code, _ = _run(["apply", str(png), "-k", "sobel_x", "-o", str(tmp_path / "out")])
    assert code == 0 and (tmp_path / "out" / "in" / "sobel_x.png").is_file()


def test_1_an_input_that_cannot_work(png: Path, tmp_path: Path) -> None:
    code, err = _run(["apply", str(png), "-k", "gaussian:size=41,sigma=3", "-o", str(tmp_path / "out")])
    assert code == 1 and err.startswith("featmap: error: ")


@pytest.mark.parametrize("module", ["distributed", "onnx"])
def test_1_a_missing_extra_under_every_command(
    png: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    if module == "distributed":
        args = ["apply", str(png), str(png), "-k", "sobel_x", "--scheduler", "local", "-o", str(tmp_path / "out")]
    else:
        (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
        args = ["shape", str(tmp_path / "m.onnx")]
    code, err = _run(args)
    assert code == 1, err
    assert f"(in a clone: pip install '.[{'dask' if module == 'distributed' else 'onnx'}]')" in err


@pytest.mark.parametrize(
    "extra",
    [
        ["--bogus"],
        ["--percentiles", "99,1"],
        ["--percentiles", "x"],
        ["-o", "{afile}"],
        ["-o", "{afile}/sub"],
        ["--pool-size", "3"],
    ],
)
def test_2_usage_errors(png: Path, tmp_path: Path, extra: list[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    extra = [e.format(afile=afile) for e in extra]
    args = ["apply", str(png), "-k", "sobel_x", "-o", str(tmp_path / "out"), *extra]
    code, err = _run(args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("featmap: error: ")
    assert not (tmp_path / "out").exists()


def test_3_a_batch_with_a_failed_file(png: Path, tmp_path: Path) -> None:
    folder = tmp_path / "album"
    folder.mkdir()
    (folder / "a.png").write_bytes(png.read_bytes())
    (folder / "b.png").write_text("not a picture")
    code, err = _run(["apply", str(folder), "-k", "sobel_x", "-o", str(tmp_path / "out"), "-j", "1"])
    assert code == 3 and "b.png" in err and (tmp_path / "out" / "a" / "sobel_x.png").is_file()


def test_4_nothing_to_do(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _ = _run(["apply", str(tmp_path / "empty"), "-k", "sobel_x", "-o", str(tmp_path / "out")])
    assert code == 4


def test_5_output_folder_busy(png: Path, tmp_path: Path) -> None:
    from featmap.io.outputs import OutputLock

    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out):
        code, err = _run(["apply", str(png), str(png), "-k", "sobel_x", "-o", str(out), "-j", "1"])
    assert code == 5, err


def test_70_a_bug(png: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import featmap.run.imagejob  # one file runs through its apply_image (the batch loop is not loaded)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(featmap.run.imagejob, "apply_image", broken)
    code, err = _run(["apply", str(png), "-k", "sobel_x", "-o", str(tmp_path / "out")])
    assert code == 70 and "internal error (RuntimeError: boom" in err and "--debug" in err


def test_130_interrupted(png: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import featmap.run.imagejob

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(featmap.run.imagejob, "apply_image", interrupted)
    code, err = _run(["apply", str(png), "-k", "sobel_x", "-o", str(tmp_path / "out")])
    assert code == 130 and err.strip() == "featmap: error: interrupted"


def test_143_terminated(tmp_path: Path) -> None:
    folder = tmp_path / "album"
    folder.mkdir()
    pixels = np.random.default_rng(1).integers(0, 256, (160, 160), dtype=np.uint8)
    for i in range(300):
        Image.fromarray(pixels).save(folder / f"p{i:03}.png")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "featmap", "apply", str(folder), "-k", "edges", "-o", str(out), "-j", "1", "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "p000").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted after" in err and "--skip-existing" in err
