"""Tables at 60, 80 and 120 columns: never wider than the terminal, names never squashed; NO_COLOR."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from featmap.cli import cli
from featmap.kernels import KernelLibrary
from featmap.net.layers import Conv2d, Pool2d
from featmap.net.spec import load_model
from featmap.net.summary import summarize
from featmap.render import apply_view, kernel_list, summary_view
from featmap.run.batch import ApplyJob, OutputOptions, apply_image


def _text(renderable: object, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [60, 80, 120])
def test_apply_table_fits_and_shows_kernel_names_whole(tmp_path: Path, gray_png: Path, width: int) -> None:
    bank = KernelLibrary().bank(["sobel_x", "gaussian:size=5,sigma=1.2"])
    job = ApplyJob(bank, Conv2d(padding="same"), pool=Pool2d("max", 2), combine="magnitude",
                   output=OutputOptions(tmp_path / "out"))  # fmt: skip
    lines = _text(apply_view(apply_image(gray_png, job), job), width)
    assert all(len(line) <= width for line in lines)
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("kernel ")) :]
    assert "min" in table[0] and "max" in table[0]
    note = next((i for i, line in enumerate(table) if line.startswith("(not shown at")), len(table))
    names = [line.split("  ")[0].strip() for line in table[2:note]]
    assert names == ["sobel_x", "gaussian-size5-sigma1p2", "magnitude of 2 maps"]
    assert ("pad t,b,l,r" in table[0]) == (width >= 120)  # dropped on narrower terminals, after `file`
    said = " ".join(table[note:])
    for column in ("file", "pad t,b,l,r"):  # what is dropped is said under the table
        assert (column in table[0]) != (column in said), (column, said)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_summary_table_fits(width: int) -> None:
    model = load_model("lenet5")
    lines = _text(summary_view(summarize(model.layers, model.input_shape or (32, 32, 1))), width)
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["#"])
    assert all(len(line) <= width for line in lines[: at + 12])
    header = lines[at].split()
    assert header[:2] == ["#", "layer"] and "output" in header and "params" in header
    assert ("memory" in header) == (width >= 84)
    assert lines[at + 3].split()[:3] == ["1", "C1", "Conv2d"] or lines[at + 3].split()[:2] == ["1", "C1"]


@pytest.mark.parametrize("width", [60, 80, 120])
def test_kernel_list_fits(width: int) -> None:
    lines = _text(kernel_list(list(KernelLibrary())[:5]), width)
    assert all(len(line) <= width for line in lines)
    assert "sobel" in "".join(lines) or "identity" in "".join(lines)
    assert "identity" in lines[3]  # the first name, whole, on its row


def test_no_color_means_no_bold(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[1m" in runner.invoke(cli, ["kernels", "show", "sobel_x"]).stdout
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in runner.invoke(cli, ["kernels", "show", "sobel_x"]).stdout
