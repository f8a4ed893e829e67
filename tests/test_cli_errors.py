"""The command line's one error path, and each hardening finding as the user meets it (issue 15)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli


def invoke(runner: CliRunner, *args: Any) -> Any:
    return runner.invoke(cli, [str(a) for a in args])


def _png(path: Path, seed: int = 0, size: tuple[int, int] = (20, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)).save(path, format="PNG")
    return path


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ------------------------------------------------------------------------------------ one error path


def test_an_unexpected_exception_is_a_one_line_bug_report(
    runner: CliRunner, gray_png: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("featmap.kernels.KernelLibrary.bank", broken)
    result = invoke(runner, "apply", gray_png, "-k", "sobel_x", "-o", tmp_path / "out")
    assert result.exit_code == 70
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "internal error (ZeroDivisionError: division by zero at test_cli_errors.py:" in result.stderr
    assert "this is a bug in featmap: rerun with `featmap --debug ...`" in result.stderr
    debug = invoke(runner, "--debug", "apply", gray_png, "-k", "sobel_x", "-o", tmp_path / "out")
    assert isinstance(debug.exception, ZeroDivisionError)  # --debug lets it through, traceback and all


def test_debug_shows_the_traceback_of_a_featmap_error(runner: CliRunner, gray_png: Path, tmp_path: Path) -> None:
    result = invoke(runner, "--debug", "apply", gray_png, "-k", "nope", "-o", tmp_path / "out")
    assert result.exception is not None and "is not a kernel" in str(result.exception)


def test_warnings_are_said_once_after_the_batch(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import featmap.run.imagejob

    original = featmap.run.imagejob.load_image

    def noisy(*args: Any, **kwargs: Any) -> Any:
        warnings.warn("palette with transparency as bytes", UserWarning, stacklevel=1)
        return original(*args, **kwargs)

    monkeypatch.setattr(featmap.run.imagejob, "load_image", noisy)
    for i in range(2):
        _png(tmp_path / "in" / f"a{i}.png", i)
    result = invoke(runner, "apply", tmp_path / "in", "-k", "sobel_x", "-o", tmp_path / "out", "-j", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "featmap: warning: UserWarning: palette with transparency as bytes (2 images)\n"


# ------------------------------------------------------------------------------------ non-finite maps


def test_a_non_finite_map_is_refused_naming_kernel_and_position(
    runner: CliRunner, gray_png: Path, tmp_path: Path
) -> None:
    kernel = tmp_path / "huge.yaml"
    kernel.write_text("name: huge\nweights: [[3e38, 3e38], [3e38, 3e38]]\n")
    out = tmp_path / "out"
    result = invoke(runner, "apply", gray_png, "-k", "sobel_x", "-k", kernel, "-o", out, "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["exit_code"] == 1  # stdout stays JSON
    # 40/255 · 3e38 · 4 stays finite; the first 2x2 window reaching the 200-valued square (rows 6+, cols 8+) overflows
    assert "kernel 'huge': the map is not finite (inf first at row 5, column 7)" in result.stderr
    assert _files(out) == []  # sobel_x's map, written first, is gone too: a failed run leaves nothing


def test_batch_json_is_strict_json_and_a_non_finite_map_is_a_per_image_failure(
    runner: CliRunner, tmp_path: Path
) -> None:
    kernel = tmp_path / "huge.yaml"
    kernel.write_text("name: huge\nweights: [[3e38, 3e38], [3e38, 3e38]]\n")
    _png(tmp_path / "in" / "a.png")
    result = invoke(runner, "apply", tmp_path / "in", "-k", kernel, "-o", tmp_path / "out", "--json", "-j", "1")
    assert result.exit_code == 3
    data = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in --json"))
    assert "the map is not finite" in data["failed"][0]["reason"]
    assert not [p for p in _files(tmp_path / "out") if p.endswith(".png")]


# ------------------------------------------------------------------------------------ output folders


def test_output_folder_equal_to_input_folder_is_an_error(runner: CliRunner, tmp_path: Path) -> None:
    _png(tmp_path / "in" / "a.png")
    for out in (tmp_path / "in", tmp_path / "in" / "."):
        result = invoke(runner, "apply", tmp_path / "in", "-k", "sobel_x", "-o", out)
        assert result.exit_code == 1, result.stderr
        assert "is the output folder (or inside it)" in result.stderr and "choose another -o folder" in result.stderr


def test_nothing_to_do_has_its_own_exit_code(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    result = invoke(runner, "apply", tmp_path / "in", "-k", "sobel_x", "-o", tmp_path / "out")
    assert result.exit_code == 4
    assert "holds no image (1 file ignored: not images, or hidden); nothing to do" in result.stderr


def test_a_file_where_a_map_folder_should_be_fails_that_image_only(runner: CliRunner, tmp_path: Path) -> None:
    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "b.png", 1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_text("in the way")
    result = invoke(runner, "apply", tmp_path / "in", "-k", "sobel_x", "-o", tmp_path / "out", "-j", "1")
    assert result.exit_code == 3, result.stderr
    assert "a.png: " in result.stderr and "is a file where an output folder should be" in result.stderr
    assert (tmp_path / "out" / "b" / "sobel_x.png").is_file()
    assert (tmp_path / "out" / "a").read_text() == "in the way"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_output_folder_without_write_permission(runner: CliRunner, gray_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = invoke(runner, "apply", gray_png, "-k", "sobel_x", "-o", out)
    finally:
        out.chmod(0o755)
    assert result.exit_code == 1 and "cannot be written (Permission denied)" in result.stderr


def test_symlink_loops_are_named_and_the_batch_goes_on(runner: CliRunner, tmp_path: Path) -> None:
    _png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "x").symlink_to(tmp_path / "in" / "y")
    (tmp_path / "in" / "y").symlink_to(tmp_path / "in" / "x")
    result = invoke(runner, "apply", tmp_path / "in", "-k", "sobel_x", "-o", tmp_path / "out", "-j", "1")
    assert result.exit_code == 3, result.stderr
    assert "in/x: cannot be followed (Too many levels of symbolic links); skipped" in result.stderr
    assert (tmp_path / "out" / "a" / "sobel_x.png").is_file()


def test_a_file_named_dots_png(runner: CliRunner, tmp_path: Path) -> None:
    image = _png(tmp_path / "in" / "...png")
    single = invoke(runner, "apply", image, "-k", "sobel_x", "-o", tmp_path / "one")
    assert single.exit_code == 0, single.stderr
    assert (tmp_path / "one" / "___png" / "sobel_x.png").is_file()
    batch = invoke(runner, "apply", image, _png(tmp_path / "b.png"), "-k", "sobel_x", "-o", tmp_path / "two")
    assert batch.exit_code == 0, batch.stderr


def test_a_failed_single_image_run_leaves_nothing_so_its_fix_works(runner: CliRunner, tmp_path: Path) -> None:
    image = _png(tmp_path / "a.png", size=(6, 6))
    out = tmp_path / "out"
    failed = invoke(runner, "apply", image, "-k", "sobel_x", "-k", "gaussian:size=9", "-o", out)
    assert failed.exit_code == 1 and "larger than the padded input" in failed.stderr
    assert not out.exists()
    fixed = invoke(runner, "apply", image, "-k", "sobel_x", "-k", "gaussian:size=9", "--padding", "same", "-o", out)
    assert fixed.exit_code == 0, fixed.stderr  # no --overwrite needed


def test_max_pixels_error_names_the_limit_given(runner: CliRunner, gray_png: Path, tmp_path: Path) -> None:
    for limit in ("100", "500"):  # 24x32 = 768 pixels: Pillow errors above 2x its limit, warns between
        result = invoke(runner, "apply", gray_png, "-k", "sobel_x", "--max-pixels", limit, "-o", tmp_path / "o")
        assert result.exit_code == 1
        assert f"is too large: 768 pixels, over the --max-pixels limit of {limit}" in result.stderr


# ------------------------------------------------------------------------------------ specs and kernels


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["conv:64@3x3/ceil"], 2, "a conv takes no `ceil` option"),
        (["maxpool:40"], 1, "pool window: 40 is larger than the padded input 32"),
        (["maxpool:2/p2"], 1, "exceed half the 2x2 window"),
    ],
)
def test_layer_token_errors(runner: CliRunner, args: list[str], code: int, message: str) -> None:
    result = invoke(runner, "shape", "--input", "32x32x1", *args)
    assert result.exit_code == code and message in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("layers:\n  - repeat: 1000000000\n    layers: [relu]\n", "1,000,000,000 exceeds the repeat count limit"),
        (
            "layers:\n  - repeat: 1000\n    layers:\n      - repeat: 1000\n        layers: [relu]\n",
            "1000 repeats of 1000 layers: 1,000,000 exceeds the layer count limit",
        ),
        ("layers: 5\n", "must be a list of layers; got int"),
        ("layers:\n  - [conv, 3]\n", "must be a token string or a mapping; got ['conv', 3]"),
        ("blocks:\n  b: 5\nlayers:\n  - block: b\n", "blocks.b: must be a layer list"),
        ("blocks:\n  b: {layers: [relu], params: 3}\nlayers:\n  - block: b\n", "params: must be a list of names"),
    ],
)
def test_spec_file_errors(runner: CliRunner, tmp_path: Path, text: str, message: str) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("input: 32x32x1\n" + text)
    result = invoke(runner, "shape", "--spec", spec)
    assert result.exit_code in (1, 2) and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("model", ["resnet18", "resnet50", "alexnet", "googlenet"])
def test_presets_do_not_warn_when_only_padding_is_unused(runner: CliRunner, model: str) -> None:
    result = invoke(runner, "shape", "--model", model)
    assert result.exit_code == 0
    # The stems (7x7/s2/p3 then 3x3/s2/p1 max pool on 224; AlexNet's 11x11/s4/p2) drop only padding rows.
    # ResNet's 1x1/s2 shortcut convs do leave a real input row unused, and say so.
    warned = [line for line in result.stderr.splitlines() if "leaves the last" in line]
    assert all("1.1.2.1.1 (conv2d)" in line for line in warned), warned  # block 0's shortcut: downsample.0


def test_a_float_gaussian_is_separable(runner: CliRunner) -> None:
    result = invoke(runner, "kernels", "show", "gaussian:size=5,sigma=1.2", "--json")
    assert json.loads(result.stdout)[0 if isinstance(json.loads(result.stdout), list) else "separable"] is True


# ------------------------------------------------------------------------------------ helper processes


class _NoHelpers:
    def __init__(self, count: int, work: Any, tasks: Any) -> None:
        raise OSError(38, "Function not implemented")


class _DyingHelpers:
    """A helper whose process died before it took an image (as the out-of-memory killer would make it): what is
    given out waits for this process, as in the pipe."""

    def __init__(self, count: int, work: Any, tasks: Any) -> None:
        self.count, self.started, self.working = count, 1, 0
        self.given: list[int] = []
        self.told = False

    def start(self) -> bool:
        return False

    def give(self, position: int) -> None:
        self.given.append(position)

    def take(self) -> int | None:
        return self.given.pop(0) if self.given else None

    def collect(self, wait: bool = False) -> tuple[list[Any], list[tuple[int, None]]]:
        told, self.told = self.told, True
        return [], [] if told else [(-9, None)]

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


# Helpers that cannot start, or die before they take an image: nothing fails, and the note says so.
@pytest.mark.parametrize(
    ("helpers", "said"),
    [
        (_NoHelpers, "could not start ([Errno 38] Function not implemented); every image ran in this process"),
        (_DyingHelpers, "a helper process died (exit code -9); no image was lost, the others ran on"),
    ],
)
def test_helpers_that_cannot_start_or_die_are_said_and_the_batch_goes_on(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: type, said: str
) -> None:
    monkeypatch.setattr("featmap.run.backends.pool.Helpers", helpers)
    monkeypatch.setattr("featmap.run.backends.pool.HELPER_START_SECONDS", 0.0)  # helpers even for a tiny batch
    for i in range(4):
        _png(tmp_path / "in" / f"a{i}.png", i)
    result = invoke(runner, "apply", tmp_path / "in", "-k", "sobel_x", "-o", tmp_path / "out", "-j", "2", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["processed"]) == 4 and data["failed"] == []
    assert f"featmap: note: helper processes {said}" in result.stderr or f"featmap: note: {said}" in result.stderr


def test_a_spec_layer_with_number_and_text_keys(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("input: 8x8x1\nlayers:\n  - {'': null, 0E0: null}\n")  # found by the fuzz session: 0E0 is a float
    result = invoke(runner, "shape", "--spec", spec)
    assert result.exit_code == 2 and "has keys ['', '0.0']; a layer is one `type: options` pair" in result.stderr


def test_a_network_over_a_limit_is_refused_before_it_runs(
    runner: CliRunner, gray_png: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "wide.yaml"
    spec.write_text('layers: ["conv:64@3x3", relu]\n')
    monkeypatch.setenv("FEATMAP_MAX_OUTPUT_PIXELS", "10000")  # 22×30×64 = 42,240 values
    result = invoke(runner, "apply", gray_png, "--spec", spec, "--init", "kaiming", "-o", tmp_path / "out")
    assert result.exit_code == 1, result.stderr
    assert "layer 1 (conv2d): output 22×30×64: 42,240 exceeds the output size limit of 10,000" in result.stderr
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("FEATMAP_MAX_OUTPUT_PIXELS", "100000")
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "100K")
    # weights 64·9 + 64 = 640 floats, and the widest step, relu: 42,240 in + 42,240 out: 85,120 × 4 B = 332.5 KiB
    result = invoke(runner, "apply", gray_png, "--spec", spec, "--init", "kaiming", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "network: estimated memory: 332 KiB exceeds the memory limit" in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["apply", "x.png", "-k", "sobel_x", "--model", "lenet5"], "give one of -k, --spec and --model"),
        (["apply", "x.png", "-k", "sobel_x", "--padding", "sam"], "Invalid value for '--padding'"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_line_with_a_pointer_to_help(runner, args, words):
    from featmap.cli import cli

    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("featmap: error: ")
    assert words in result.stderr and "--help'" in result.stderr
