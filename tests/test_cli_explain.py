"""featmap explain: exit codes, stdout and stderr apart, JSON validity, the GIF, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

import featmap
from featmap.cli import cli
from featmap.explain.examples import explain_example
from featmap.io.writers.gif import COLORS, frame_colors, gif_layout

# Hand-worked outputs of the shipped examples (worked out in tests/test_explain.py).
EXAMPLE_OUTPUTS = {
    "valid": [[4, 3, 4], [2, 4, 3], [2, 3, 4]],
    "zero-padding": [[2, 2, 3, 1, 1], [1, 4, 3, 4, 1], [1, 2, 4, 3, 3], [1, 2, 3, 4, 1], [0, 2, 2, 1, 1]],
    "stride-2": [[12, 17, 10], [9, 14, 15], [13, 7, 22]],
    "max-pool": [[6, 8], [3, 4]],
    "avg-pool": [[3.25, 5.25], [2, 2]],
    "rgb": [[4, 0], [2, 8]],
}
SMALL = "1 2 0 1; 0 1 2 3; 3 0 1 2; 2 1 0 1"


def run(runner: CliRunner, *args: object) -> Result:
    return runner.invoke(cli, ["explain", *(str(a) for a in args)], catch_exceptions=False)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", sorted(EXAMPLE_OUTPUTS))
def test_each_example_prints_and_gives_json(runner: CliRunner, name: str) -> None:
    result = run(runner, "--example", name)
    assert result.exit_code == 0 and result.stderr == ""
    assert "featmap explain: example " + name in result.stdout
    assert "output size" in result.stdout and "step 1 of" in result.stdout
    document = as_json(run(runner, "--example", name, "--json"))
    assert document["output"] == EXAMPLE_OUTPUTS[name]
    assert document["source"] == f"example {name}"


def test_list_examples(runner: CliRunner) -> None:
    result = run(runner, "--list-examples")
    assert result.exit_code == 0
    for name in EXAMPLE_OUTPUTS:
        assert name in result.stdout
    assert [e["name"] for e in as_json(run(runner, "--list-examples", "--json"))] == list(EXAMPLE_OUTPUTS)


def test_text_view_marks_padding_window_and_arithmetic(runner: CliRunner) -> None:
    out = run(runner, "--example", "zero-padding", "--steps", "1").stdout
    assert "padded input 7×7" in out
    assert "[(0)]" in out  # a window cell on the padding
    assert "(5 − 3 + 2·1) / 1 + 1 = 4 / 1 + 1 = 5" in out
    assert "sum: 0 + 0 + 0 + 0 + 1 + 0 + 0 + 0 + 1 = 2" in out
    assert "(1 of 25 positions shown" in out
    rgb = run(runner, "--example", "rgb", "--at", "0,1").stdout
    assert "channel 2 sum: -2 + 0 + 0 - 2 + 0 + 0 + 0 + 0 + 1 = -3" in rgb
    assert (
        "sum over channels: 2 (ch 0) - 1 (ch 1) - 3 (ch 2) = -2" in rgb
        and "+ bias 1 = -1" in rgb
        and "relu(-1) = 0" in rgb
    )
    pooled = run(runner, "--example", "max-pool", "--at", "1,0").stdout
    assert "max(3, 2, 1, 2) = 3 at (2, 0)" in pooled and "[3]*" in pooled
    assert "average: (2 + 4 + 7 + 8) / 4 = 5.25" in run(runner, "--example", "avg-pool", "--at", "0,1").stdout


def test_at_and_steps_select_positions(runner: CliRunner) -> None:
    one = as_json(run(runner, "--example", "stride-2", "--at", "2,1", "--json"))
    (step,) = one["conv"]["steps"]
    # window rows 4–6, columns 2–4; kernel [[0,1,2],[2,2,0],[0,1,2]]: 0 + 2 + 2 + 0 + 3 + 0 = 7
    assert step["at"] == [2, 1] and step["rows"] == [4, 5, 6] and step["cols"] == [2, 3, 4]
    assert step["window"] == [[[0, 0, 1], [1, 0, 2], [2, 3, 0]]]
    assert step["products"] == [[[0, 0, 2], [2, 0, 0], [0, 3, 0]]]
    assert step["sum"] == 7 and step["value"] == 7
    assert len(as_json(run(runner, "--example", "valid", "--json"))["conv"]["steps"]) == 3  # the default
    assert len(as_json(run(runner, "--example", "valid", "--steps", "all", "--json"))["conv"]["steps"]) == 9
    assert len(as_json(run(runner, "--example", "valid", "--steps", "5", "--json"))["conv"]["steps"]) == 5


def test_inline_input_with_library_and_inline_kernels_equals_conv2d(runner: CliRunner) -> None:
    x = np.array([[float(v) for v in row.split()] for row in SMALL.split(";")])
    args = ["--padding", "same", "--pad-mode", "reflect", "--activation", "leaky_relu", "--slope", "0.1"]
    document = as_json(run(runner, "--input", SMALL, "-k", "sobel_x", *args, "--json"))
    sobel = featmap.conv2d(x, featmap.kernels.KernelLibrary()["sobel_x"].weights, padding="same", pad_mode="reflect")
    np.testing.assert_allclose(document["output"], featmap.activate(sobel[:, :, 0], "leaky_relu", slope=0.1))
    assert document["conv"]["kernel"]["name"] == "sobel_x"
    assert document["conv"]["padding"] == {"top": 1, "bottom": 1, "left": 1, "right": 1}
    flipped = as_json(run(runner, "--input", SMALL, "-k", "1 2; 3 4", "--flip", "--bias", "0.5", "--json"))
    expected = featmap.conv2d(x, [[1.0, 2.0], [3.0, 4.0]], 0.5, flip=True)[:, :, 0]
    assert flipped["output"] == expected.tolist()
    assert flipped["conv"]["applied_kernel"] == [[[4, 3], [2, 1]]]
    gauss = as_json(run(runner, "--input", SMALL, "-k", "gaussian:size=3,sigma=1", "--json"))
    assert gauss["conv"]["kernel"]["name"].startswith("gaussian")


def test_pool_mode_and_conv_then_pool(runner: CliRunner) -> None:
    x = np.array([[float(v) for v in row.split()] for row in SMALL.split(";")])
    pooled = as_json(
        run(runner, "pool", "--input", SMALL, "--pool", "avg", "--pool-size", "3", "--pool-padding", "same", "--json")
    )
    np.testing.assert_allclose(pooled["output"], featmap.pool2d(x, 3, padding="same", mode="avg")[:, :, 0])
    assert pooled["conv"] is None and pooled["pool"]["kind"] == "avg"
    assert None in pooled["pool"]["padded"]["values"][-1]  # padding cells are null, and said so in pad_mask
    both = as_json(run(runner, "--input", SMALL, "-k", "1 -1", "--activation", "relu", "--pool", "max", "--json"))
    conv = featmap.activate(featmap.conv2d(x, [[1.0, -1.0]]), "relu")
    assert both["output"] == featmap.pool2d(conv, 2)[:, :, 0].tolist()
    assert both["conv"]["out_shape"] == [4, 3] and both["pool"]["unused"] == [0, 1]
    globally = as_json(run(runner, "--input", SMALL, "-k", "1", "--pool", "global-max", "--json"))
    assert globally["output"] == [[3]]


def test_image_crop(runner: CliRunner, gray_png: Path) -> None:
    # gray_png: 40 everywhere, 200 on rows 6–17 and columns 8–19.
    crop = as_json(run(runner, "--image", gray_png, "--crop", "7,5,3,3", "-k", "1 0; 0 1", "--json"))
    assert crop["input"]["channels"] == [[[40, 40, 40], [40, 200, 200], [40, 200, 200]]]
    assert crop["output"] == [[240, 240], [240, 400]]
    assert "crop 7,5,3,3 (gray, values 0-255)" in crop["source"]
    unit = as_json(run(runner, "--image", gray_png, "--crop", "8,6,2,2", "--values", "0-1", "-k", "1", "--json"))
    assert np.ravel(unit["output"]) == pytest.approx([200 / 255] * 4, abs=1e-7)


def test_csv_and_npy_files(runner: CliRunner, tmp_path: Path) -> None:
    csv = tmp_path / "x.csv"
    csv.write_text("1,2,3\n4,5,6\n7,8,9\n")
    assert as_json(run(runner, "--input", csv, "-k", "1 1; 1 1", "--json"))["output"] == [[12, 16], [24, 28]]
    npy = tmp_path / "x.npy"
    np.save(npy, np.arange(9.0).reshape(3, 3))
    assert as_json(
        run(runner, "pool", "--input", npy, "--pool", "min", "--pool-size", "2", "--pool-stride", "1", "--json")
    )["output"] == [[0, 1], [3, 4]]


def test_stride_note_and_strict(runner: CliRunner) -> None:
    x = "; ".join(["1 2 3 4 5 6"] * 6)
    out = run(runner, "--input", x, "-k", "1 1 1; 1 1 1; 1 1 1", "--stride", "2").stdout
    assert "⌊3 / 2⌋ + 1 = 2" in out and "leaves 1 row unused (padded index 5)" in out
    strict = run(runner, "--input", x, "-k", "1 1 1; 1 1 1; 1 1 1", "--stride", "2", "--strict")
    assert strict.exit_code == 1 and "leaves 1 rows unused" in strict.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "1 2 3; 4 5", "-k", "1"], "featmap: error: --input row 2: has 2 values but row 1 has 3; "),
        (["--input", "1 2; three 4", "-k", "1"], "featmap: error: --input row 2: 'three' is not a number; "),
        (["--input", "", "-k", "1"], "featmap: error: --input: is empty; "),
        (["--input", "; ".join([" ".join(["1"] * 65)] * 65), "-k", "1"], "over explain's limit of 64"),
        (
            ["--input", "1 2; 3 4", "-k", "1 1 1; 1 1 1; 1 1 1"],
            "featmap: error: kernel: 3 is larger than the padded input 2",
        ),
        (["--input", "1 2; 3 4", "-k", "1 1; 1 1 | 1 1; 1 1"], "has 2 channel slices but the input has 1 channel"),
        (["--input", "1 2; 3 4", "-k", "sobel"], "featmap: error: -k: 'sobel' selects 2 kernels (sobel_x, sobel_y)"),
        (["--input", "1 2; 3 4", "-k", "no_such_kernel"], "is not a kernel, tag, kernel file"),
        (
            ["--input", "1 2; 3 4", "-k", "1", "--at", "2,0"],
            "featmap: error: position: (2, 0) is outside the 2×2 output",
        ),
        (["--input", "missing.csv", "-k", "1"], "no such file"),
        (["--example", "nope"], "featmap: error: example: unknown example 'nope'; use one of: valid, zero-padding"),
        (["pool", "--input", "1 2; 3 4", "--pool", "max", "--pool-size", "3"], "larger than the padded input"),
    ],
)
def test_bad_input_is_one_line_exit_1(runner: CliRunner, args: list[str], message: str) -> None:
    result = run(runner, *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert result.stderr.startswith("featmap: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_bad_crop_is_one_line_exit_1(runner: CliRunner, gray_png: Path) -> None:
    result = run(runner, "--image", gray_png, "--crop", "30,20,5,5", "-k", "1")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        "featmap: error: --crop: 30,20,5,5 (columns 30–34, rows 20–24) is outside the 32×24 image; "
        "keep x + w <= 32 and y + h <= 24\n"
    )


@pytest.mark.parametrize("crop", ["0,0,0,0", "2,2,0,3"])
def test_an_empty_crop_says_its_size_not_outside(runner: CliRunner, gray_png: Path, crop: str) -> None:
    """A crop of width or height 0 was "(columns 0–-1, rows 0–-1) is outside the 32×24 image"."""
    result = run(runner, "--image", gray_png, "--crop", crop, "-k", "1")
    assert result.exit_code == 1 and result.stdout == ""
    assert "outside" not in result.stderr and "give a width and height >= 1" in result.stderr
    assert result.stderr.startswith(f"featmap: error: --crop: {crop} has width ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give one input"),
        (["--input", "1 2", "--image", "x.png", "-k", "1"], "give one input"),
        (["--input", "1 2"], "conv mode needs a kernel"),
        (["pool", "--input", "1 2; 3 4", "-k", "1"], "pool mode takes no --kernel"),
        (["pool", "--input", "1 2; 3 4", "--stride", "2"], "pool mode takes no --stride"),
        (["--example", "valid", "--input", "1"], "--example fixes its input, kernel and options; drop --input"),
        (["--example", "valid", "--values", "0-1"], "drop --values"),
        (["--input", "1 2", "-k", "1", "--combine", "max"], "No such option '--combine'"),
        (["--input", "1 2", "-k", "1", "--steps", "0"], "'0' is not all or N"),
        (["--input", "1 2", "-k", "1", "--crop", "0,0,1,1"], "--crop goes with --image"),
        (["--input", "1 2", "-k", "1", "--color", "--values", "0-1"], "--color, --values go with --image"),
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    result = run(runner, *args)
    assert result.exit_code == 2
    assert message in result.stderr and result.stdout == ""


def test_json_is_always_valid_json(runner: CliRunner) -> None:
    for args in (
        ["--example", "rgb"],
        ["pool", "--input", "1 2 3; 4 5 6; 7 8 9", "--pool", "avg", "--pool-padding", "same"],
    ):
        document = as_json(run(runner, *args, "--json", "--steps", "all"))
        json.dumps(document, allow_nan=False)  # no NaN or Infinity anywhere


def test_gif_frames_and_last_frame_shows_the_whole_output(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "anim" / "conv.gif"
    result = run(runner, "--example", "valid", "--gif", target, "--json")
    assert result.exit_code == 0
    json.loads(result.stdout)  # stdout stays pure JSON
    assert result.stderr == f"featmap: note: wrote {target} (11 frames)\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["conv.gif"]  # no temporary file left
    with Image.open(target) as im:
        assert im.n_frames == 9 + 2  # empty output, one per position, the full output
    layout = gif_layout(explain_example("valid"))
    first, last = frame_colors(target, 0), frame_colors(target, 10)
    assert (last.shape[1], last.shape[0]) == layout.size
    for r in range(3):
        for c in range(3):
            x0, y0, _, _ = layout.output_box(0, r, c)
            assert tuple(first[y0 + 3, x0 + 3]) == COLORS["background"]
            assert tuple(last[y0 + 3, x0 + 3]) == COLORS["done"]
    middle = frame_colors(target, 5)  # 5th position (1, 1): done before it, current there, empty after
    assert tuple(middle[layout.output_box(0, 1, 0)[1] + 3, layout.output_box(0, 1, 0)[0] + 3]) == COLORS["done"]
    assert tuple(middle[layout.output_box(0, 1, 1)[1] + 3, layout.output_box(0, 1, 1)[0] + 3]) == COLORS["current"]
    assert tuple(middle[layout.output_box(0, 1, 2)[1] + 3, layout.output_box(0, 1, 2)[0] + 3]) == COLORS["background"]


def test_gif_of_conv_then_pool_has_both_stages(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "both.gif"
    assert run(runner, "--input", SMALL, "-k", "1 0; 0 1", "--pool", "max", "--gif", target).exit_code == 0
    with Image.open(target) as im:
        assert im.n_frames == 9 + 1 + 2  # 3×3 conv positions, one pooled position


def test_gif_limit_is_an_error(runner: CliRunner, tmp_path: Path) -> None:
    x = "; ".join([" ".join(["1"] * 30)] * 30)
    result = run(runner, "--input", x, "-k", "1", "--gif", tmp_path / "big.gif")
    assert result.exit_code == 1 and "902 frames" in result.stderr and "limit of 400" in result.stderr
    assert not (tmp_path / "big.gif").exists()


def test_help_and_readme(runner: CliRunner) -> None:
    result = run(runner, "--help")
    assert result.exit_code == 0 and "--example" in result.stdout and "--combine" not in result.stdout
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "featmap explain" in readme and "docs/gallery/explain_conv.gif" in readme


def test_large_input_text_view_is_whole_and_bounded(runner: CliRunner) -> None:
    values = (np.arange(40 * 40).reshape(40, 40) * 7) % 10
    text = "; ".join(" ".join(str(v) for v in row) for row in values)
    out = run(runner, "--input", text, "-k", "1 0; 0 1", "--at", "20,30").stdout
    assert "columns 32–38" in out  # the 39×39 output in blocks of 16 columns: no value cut
    assert "…" not in out
    assert "input (rows 18–23, columns 28–33 shown)" in out  # each step shows the window's neighbourhood
    steps = run(runner, "--input", text, "-k", "1 0; 0 1", "--steps", "all").stdout
    assert steps.count("step ") == 200 and "(200 of 1521 positions shown" in steps
    document = as_json(run(runner, "--input", text, "-k", "1 0; 0 1", "--steps", "all", "--json"))
    assert len(document["conv"]["steps"]) == 1521
    assert document["output"] == (values[:-1, :-1] + values[1:, 1:]).tolist()


def test_colour_crop_with_a_per_channel_kernel(runner: CliRunner, make_image: Any) -> None:
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    path = make_image("rgb.png", rgb)
    document = as_json(run(runner, "--image", path, "--color", "-k", "1 | 2 | -1", "--json"))
    assert document["input"]["shape"] == [4, 4, 3]
    assert document["output"] == [[10 + 2 * 20 - 30] * 4] * 4  # 20 everywhere
    gray_kernel = run(runner, "--image", path, "--color", "-k", "box_3")
    assert gray_kernel.exit_code == 1
    assert "has 1 channel slice but the input has 3 channels" in gray_kernel.stderr


@pytest.mark.parametrize("columns", [80, 120])
def test_multi_channel_overview_fits_the_terminal_or_says_what_is_cut(columns: int) -> None:
    runner = CliRunner(env={"COLUMNS": str(columns)})
    out = run(runner, "--example", "rgb").stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    # every channel of the input and of the kernel is there with all its columns (rows as hand-copied above)
    for title in ("input, channel 0", "input, channel 2", "kernel, channel 2"):
        assert title in out
    assert any(line.rstrip().endswith("3  0  0  1  1") for line in lines)  # input channel 2, row 3: all 4 columns
    assert any("0  -1   0   1" in line for line in lines)  # kernel channel 2, row 0: all 3 columns
    assert "not shown" not in out
    narrow = CliRunner(env={"COLUMNS": "30"})
    wide = run(
        narrow, "--input", " ".join(str(v) for v in range(12)), "pool", "--pool", "max", "--pool-size", "1"
    ).stdout
    assert "not shown" in wide and "widen the terminal" in wide  # a row wider than 30 columns says so
