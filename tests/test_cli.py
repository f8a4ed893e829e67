"""The featmap command: stdout, stderr and exit codes of apply and kernels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli

from .conftest import SAMPLES


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def png_mode(path: Path) -> str:
    with Image.open(path) as im:
        return im.mode


def invoke(runner: CliRunner, *args: object) -> object:
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_apply_writes_maps_and_prints_the_table(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(
        runner,
        "apply",
        SAMPLES / "camera.png",
        "-k",
        "sobel_x",
        "-k",
        "sobel_y",
        "-k",
        "gaussian:size=5,sigma=1.2",
        "--stride",
        "2",
        "--padding",
        "same",
        "--pad-mode",
        "reflect",
        "--activation",
        "relu",
        "--pool",
        "max",
        "--pool-size",
        "2",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "camera.png" in lines[0] and "512×512" in lines[0] and "mode L" in lines[0]
    row = next(line for line in lines if "sobel_x" in line)
    for cell in ("3×3 s2", "0,1,0,1 reflect", "256×256×1", "128×128×1", "camera/sobel_x.png"):
        assert cell in row
    assert "gaussian-size5-sigma1p2" in result.stdout and "25" in result.stdout
    for name in ("sobel_x", "sobel_y", "gaussian-size5-sigma1p2"):
        assert png_size(out / "camera" / f"{name}.png") == (128, 128)


def test_apply_json_is_pure_json(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(
        runner,
        "apply",
        SAMPLES / "shapes.png",
        "-k",
        "sobel_x",
        "-k",
        "sobel_y",
        "--combine",
        "magnitude",
        "--padding",
        "1",
        "-o",
        tmp_path,
        "--json",
    )
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["input"]["width"] == 256 and data["input"]["channels"] == 1
    names = [m["name"] for m in data["maps"]]
    assert names == ["sobel_x", "sobel_y", "magnitude"]
    first = data["maps"][0]
    assert first["padding"] == {"top": 1, "bottom": 1, "left": 1, "right": 1, "mode": "zeros", "value": 0.0}
    assert first["conv_shape"] == [256, 256, 1] and first["params"] == 9 and first["operation"] == "cross-correlation"
    assert data["maps"][2]["combined_from"] == ["sobel_x", "sobel_y"]


def test_colour_keeps_channels(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "apply", SAMPLES / "coffee.png", "-k", "box_3", "--color", "-o", tmp_path, "--json")
    data = json.loads(result.stdout)
    assert data["maps"][0]["conv_shape"] == [398, 598, 3] and data["maps"][0]["params"] == 27
    assert png_mode(tmp_path / "coffee/box_3.png") == "RGB"


def test_stride_warning_goes_to_stderr_and_strict_refuses(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "apply", SAMPLES / "checkerboard.png", "-k", "box_3", "--stride", "3", "-o", tmp_path)
    assert result.exit_code == 0
    assert result.stderr.startswith("featmap: warning: ") and "leaves the last 1 row and 1 column" in result.stderr
    strict = invoke(
        runner,
        "apply",
        SAMPLES / "checkerboard.png",
        "-k",
        "box_3",
        "--stride",
        "3",
        "--strict",
        "-o",
        tmp_path / "s",
    )
    assert strict.exit_code == 1
    assert strict.stderr.startswith(f"featmap: error: {SAMPLES / 'checkerboard.png'}: conv 3x3: stride 3 leaves")
    assert strict.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("corrupt", ["-k", "sobel_x"], "is corrupt or truncated"),
        ("text", ["-k", "sobel_x"], "is not an image Pillow can read; give a PNG"),
        ("good", ["-k", "sobel_q"], "sobel_q: is not a kernel, tag, kernel file or parametric kernel"),
        ("good", ["-k", "BADFILE"], "invalid YAML at line"),
        ("good", ["-k", "gaussian:size=5,sigma=-1"], "`sigma` must be > 0"),
        ("good", ["-k", "sobel_x", "--combine", "max"], "--combine: needs two or more kernels"),
        ("good", ["-k", "sobel_x", "--pool", "max", "--pool-size", "40"], "larger than the padded input"),
    ],
)
def test_errors_are_one_line_with_exit_one(
    runner: CliRunner, tmp_path: Path, gray_png: Path, setup: str, args: list[str], message: str
) -> None:
    image = gray_png
    if setup == "corrupt":
        image = tmp_path / "broken.png"
        image.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    elif setup == "text":
        image = tmp_path / "notes.png"
        image.write_text("shopping list")
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("kernels:\n  - name: a\n    weights: [[1, 2]\n")
    args = [str(bad_file) if a == "BADFILE" else a for a in args]
    result = invoke(runner, "apply", image, *args, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.startswith("featmap: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stride", "0"], "'0' is not N or N,M"),
        (["--pad-mode", "mirror"], "is ambiguous"),
        (["--padding", "middle"], "is not valid or same or full"),
        (["--activation", "swish"], "'swish' is not one of"),
        (["--pool-size", "3"], "--pool-size and --pool-stride need --pool"),
    ],
)
def test_usage_errors_exit_two(
    runner: CliRunner, gray_png: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = invoke(runner, "apply", gray_png, "-k", "sobel_x", *args, "-o", tmp_path)
    assert result.exit_code == 2
    assert message in result.stderr


def test_missing_image_is_an_error(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "apply", tmp_path / "nope.png", "-k", "sobel_x")
    assert result.exit_code == 1
    assert (
        result.stderr == f"featmap: error: {tmp_path / 'nope.png'}: no such file, folder or matching pattern; "
        "check the path or pattern\n"
    )


def test_existing_outputs_need_overwrite(runner: CliRunner, gray_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert invoke(runner, "apply", gray_png, "-k", "sobel_x", "-o", out).exit_code == 0
    assert invoke(runner, "apply", gray_png, "-k", "sobel_x", "-o", out).exit_code == 0  # a re-run
    changed = invoke(runner, "apply", gray_png, "-k", "sobel_x", "--flip", "-o", out)
    assert changed.exit_code == 1 and "pass --overwrite" in changed.stderr
    assert invoke(runner, "apply", gray_png, "-k", "sobel_x", "--flip", "--overwrite", "-o", out).exit_code == 0


def test_raw_and_bit_depth(runner: CliRunner, gray_png: Path, tmp_path: Path) -> None:
    result = invoke(
        runner,
        "apply",
        gray_png,
        "-k",
        "sobel_x",
        "--raw",
        "tiff",
        "--bit-depth",
        "16",
        "--normalize",
        "symmetric",
        "-o",
        tmp_path,
    )
    assert result.exit_code == 0
    with Image.open(tmp_path / "square/sobel_x.png") as png:
        assert png.mode.startswith("I")
        assert np.asarray(png)[0, 0] == 32768  # flat area: 0 at mid-gray
    with Image.open(tmp_path / "square/sobel_x.tiff") as tiff:
        assert tiff.mode == "F"


def test_kernels_list_and_show(runner: CliRunner) -> None:
    listing = invoke(runner, "kernels", "list")
    assert listing.exit_code == 0
    assert "sobel_x" in listing.stdout and "kirsch_45" in listing.stdout and "Sobel" in listing.stdout
    edges = json.loads(invoke(runner, "kernels", "list", "--tag", "sobel", "--json").stdout)
    assert [k["name"] for k in edges] == ["sobel_x", "sobel_y"]
    show = invoke(runner, "kernels", "show", "sobel_x")
    assert show.exit_code == 0
    assert "-2" in show.stdout and "yes (rank 1)" in show.stdout and "sum" in show.stdout
    lap = json.loads(invoke(runner, "kernels", "show", "laplacian_4", "--json").stdout)
    assert lap["separable"] is False and lap["sum"] == 0 and lap["weights"][1] == [1, -4, 1]
    missing = invoke(runner, "kernels", "list", "--tag", "nope")
    assert missing.exit_code == 1 and missing.stderr.startswith("featmap: error: --tag")


def test_version_and_module_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "featmap", "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("featmap, version ")


@pytest.mark.parametrize(
    ("args", "status", "shown"),
    [
        (["shape", "conv:6@5x5", "--input", "32x32x1"], 0, "156"),
        (["shape", "conv:6@5x5", "--input", "3x3x1"], 1, "error"),
    ],
)
def test_the_command_process_ends_with_its_status_output_and_exit_handlers(
    tmp_path: Path, args: list[str], status: int, shown: str
) -> None:
    # featmap.cli.run (the console script, python -m featmap) ends the process without the interpreter's teardown:
    # the exit handlers still run, every line is out, and the status is the command's
    marker = tmp_path / "handlers.txt"
    code = (
        "import atexit, sys\n"
        "marker = sys.argv[1]\n"
        "atexit.register(lambda: open(marker, 'w').write('ran'))\n"
        "sys.argv = ['featmap', *sys.argv[2:]]\n"
        "from featmap.cli import run\n"
        "run()\n"
        "print('not reached')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(marker), *args], capture_output=True, text=True)
    assert proc.returncode == status and marker.read_text() == "ran"
    assert shown in (proc.stdout if status == 0 else proc.stderr) and "not reached" not in proc.stdout


def test_a_profiled_command_still_gets_its_profile_written(tmp_path: Path) -> None:
    # cProfile writes its report after the command returns: the exit without teardown must not skip it
    report = tmp_path / "featmap.prof"
    args = [sys.executable, "-m", "cProfile", "-o", str(report), "-m", "featmap", "--version"]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("featmap, version ")
    import pstats

    assert any(name == "run" for _, _, name in pstats.Stats(str(report)).stats)  # type: ignore[attr-defined]


def test_every_command_has_help_and_is_in_readme(runner: CliRunner) -> None:
    readme = (SAMPLES.parent / "README.md").read_text(encoding="utf-8")
    for path in (["apply"], ["kernels", "list"], ["kernels", "show"], ["kernels"], ["shape"]):
        result = invoke(runner, *path, "--help")
        assert result.exit_code == 0 and "Usage:" in result.stdout
        assert f"featmap {' '.join(path)}" in readme, path
