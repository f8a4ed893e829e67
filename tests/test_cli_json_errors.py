"""``--json`` keeps stdout one JSON document on every path, errors included: a failing command prints
``{"error": …, "exit_code": …}`` there (the one line stays on stderr), for every command and exit code. And one
image's error names the image first, as a batch names each of its images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli


def _png(path: Path, size: tuple[int, int] = (20, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)).save(path)
    return path


def _run(*args: Any) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _error_document(result: Any, code: int) -> dict[str, Any]:
    """The JSON document on stdout of a failed command, checked against its exit code and its stderr line."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    document = json.loads(result.stdout)
    assert set(document) >= {"error", "exit_code"} and document["exit_code"] == code
    first = result.stderr.splitlines()[0]
    assert first.startswith("featmap: error: ") and first.removeprefix("featmap: error: ") == document["error"]
    return document


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return _png(tmp_path / "tiny.png", (1, 30))


def test_apply_errors_and_usage_errors_are_json(tmp_path: Path, tiny: Path) -> None:
    out = tmp_path / "out"
    failed = _error_document(_run("apply", tiny, "-k", "sobel_x", "-o", out, "--json"), 1)
    assert "3 is larger than the padded input 1" in failed["error"]
    usage = _error_document(_run("apply", tiny, "-k", "sobel_x", "--max-pixels", "0", "-o", out, "--json"), 2)
    assert "--max-pixels" in usage["error"]
    clash = _error_document(_run("apply", tiny, "-k", "sobel_x", "--model", "lenet5", "-o", out, "--json"), 2)
    assert "give one of -k, --spec and --model" in clash["error"]
    missing = _error_document(_run("apply", tmp_path / "nope.png", "-k", "sobel_x", "-o", out, "--json"), 1)
    assert "nope.png" in missing["error"]
    (tmp_path / "empty").mkdir()
    nothing = _error_document(_run("apply", tmp_path / "empty", "-k", "sobel_x", "-o", out, "--json"), 4)
    assert nothing["error"]
    unknown = _error_document(_run("apply", tiny, "-k", "no_such_kernel", "-o", out, "--json"), 1)
    assert "no_such_kernel" in unknown["error"]


def test_every_command_s_errors_are_json(tmp_path: Path) -> None:
    _error_document(_run("shape", "conv:6@5x5/q", "--input", "32x32x1", "--json"), 2)
    _error_document(_run("shape", "conv:6@5x5/q", "--input", "32x32x1", "--format", "json"), 2)
    _error_document(_run("shape", "conv:6@50x50", "--input", "32x32x1", "--json"), 1)
    _error_document(_run("kernels", "show", "no_such_kernel", "--json"), 1)
    _error_document(_run("explain", "--input", "1 2; 3", "-k", "1 0; 0 1", "--json"), 1)
    _error_document(_run("explain", "--example", "nope", "--json"), 1)
    weights = tmp_path / "w.npz"
    np.savez(weights, other=np.zeros(3, np.float32))
    _error_document(_run("weights", "check", "--model", "lenet5", "--weights", tmp_path / "no.npz", "--json"), 1)
    checked = _run("weights", "check", "--model", "lenet5", "--weights", weights, "--json")
    assert checked.exit_code == 1 and "tensor" in checked.stdout  # the rows of a check that fails: JSON as ever
    json.loads(checked.stdout)


def test_a_bug_and_an_interrupt_are_json_too(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import featmap

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(featmap, "apply_file", broken)
    bug = _error_document(_run("apply", tiny, "-k", "sobel_x", "--padding", "same", "-o", tmp_path, "--json"), 70)
    assert "internal error (RuntimeError: a bug" in bug["error"]

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(featmap, "apply_file", interrupted)
    stop = _error_document(_run("apply", tiny, "-k", "sobel_x", "--padding", "same", "-o", tmp_path, "--json"), 130)
    assert stop["error"] == "interrupted"


def test_without_json_stdout_stays_empty_on_error(tiny: Path, tmp_path: Path) -> None:
    result = _run("apply", tiny, "-k", "sobel_x", "-o", tmp_path / "out")
    assert result.exit_code == 1 and result.stdout == ""


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["-k", "sobel_x"], "kernel: 3 is larger than the padded input 1"),
        (["-k", "sobel_x", "--padding", "same", "--pad-mode", "reflect"], "reflect padding (1, 1, 1, 1)"),
        (["-k", "sobel_x", "--padding", "same", "--pool", "max"], "pool window: 2 is larger than the padded input 1"),
    ],
)
def test_one_image_s_error_names_it_as_a_batch_does(tmp_path: Path, tiny: Path, args: list[str], problem: str) -> None:
    result = _run("apply", tiny, *args, "-o", tmp_path / "out")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"featmap: error: {tiny}: ") and problem in line
    batch = _run("apply", tiny, tiny.parent / "nothing-else-*.png", *args, "-o", tmp_path / "b", "-j", "1")
    assert batch.exit_code == 3 and f"featmap: error: {tiny}: " in batch.stderr


def test_an_error_that_names_the_image_already_is_not_named_twice(tmp_path: Path) -> None:
    huge = _png(tmp_path / "big.png", (40, 50))
    result = _run("apply", huge, "-k", "sobel_x", "--max-pixels", "100", "-o", tmp_path / "out")
    (line,) = result.stderr.splitlines()
    assert result.exit_code == 1 and line.count("big.png") == 1
