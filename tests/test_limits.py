"""Resource limits: defaults, environment variables, errors that name the limit, and README's table."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from featmap.cli import cli
from featmap.core.budget import check_image_plan
from featmap.errors import LimitError
from featmap.limits import KERNEL_SIZE, LIMITS, MEMORY, check_conv, format_bytes

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_table_lists_every_limit_with_its_default_and_variable() -> None:
    text = README.read_text()
    for limit in LIMITS:
        default = limit.show(limit.default) + ("" if limit.is_bytes else f" {limit.unit}")
        assert f"| {limit.name} | {default} | {limit.bounds} | `{limit.env}`" in text, limit.name


def test_environment_raises_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        LimitError, match=r"3,000 exceeds the kernel size limit of 2,048 .*FEATMAP_MAX_KERNEL_SIZE=3000"
    ):
        KERNEL_SIZE.check(3000, "gaussian `size`")
    monkeypatch.setenv("FEATMAP_MAX_KERNEL_SIZE", "4096")
    KERNEL_SIZE.check(3000, "gaussian `size`")
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "2G")
    assert MEMORY.value() == 2 << 30
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "lots")
    with pytest.raises(LimitError, match="FEATMAP_MAX_MEMORY: must be a whole number"):
        MEMORY.value()


def test_a_bad_limit_variable_is_a_one_line_error(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATMAP_MAX_PADDING", "-3")
    result = runner.invoke(cli, ["kernels", "list"])
    assert result.exit_code == 1 and result.stderr.startswith("featmap: error: FEATMAP_MAX_PADDING: must be")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"padding": 20000}, "padding: 20,000 exceeds the padding limit of 4,096"),
        ({"dilation": (1, 100000)}, "dilation: 100,000 exceeds the dilation limit"),
        ({"stride": 10**20}, "stride: 1e\\+20 exceeds the stride limit .* use a smaller value"),
        ({"padding": "full", "dilation": 1000}, r"padding \(`full`\): 2,000,000 exceeds"),
        ({"pool_size": 5000}, "pool size: 5,000 exceeds the kernel size limit"),
    ],
)
def test_conv_numbers_are_checked_before_work(kwargs: dict[str, object], message: str) -> None:
    sizes = [(2001, 2001)] if kwargs.get("padding") == "full" else [(3, 3)]
    with pytest.raises(LimitError, match=message):
        check_conv(sizes, **kwargs)  # type: ignore[arg-type]


def test_plan_memory_is_estimated_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    # 512x512 gray, 3x3 kernel, padding 1, two maps: padded input + a map + the combined accumulator, float32
    assert check_image_plan((512, 512), 1, [(3, 3), (3, 3)], padding=1) == (514 * 514 + 2 * 512 * 512) * 4
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "1M")
    with pytest.raises(LimitError, match=r"camera.png: estimated memory: 3.01 MiB exceeds the memory limit of 1 MiB"):
        check_image_plan((512, 512), 1, [(3, 3), (3, 3)], padding=1, what="camera.png")


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (0, 1023, 1024, 12 << 20, 5 << 40)] == [
        "0 B",
        "1023 B",
        "1 KiB",
        "12 MiB",
        "5 TiB",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "gaussian:size=100000000"], "gaussian: `size`: 100,000,000 exceeds the kernel size limit"),
        (["-k", "gaussian:sigma=inf"], "`sigma` must be a finite number"),
        (["-k", "box:size=100000"], "box: `size`: 100,000 exceeds"),
        (["-k", "motion:length=1e9"], "motion: `length`: 1,000,000,000 exceeds"),
        (["-k", "gaussian:sigma=1e-300"], "give weights that are not numbers"),
        (["-k", "sobel_x", "--padding", "20000"], "padding: 20,000 exceeds the padding limit"),
        (["-k", "sobel_x", "--dilation", "100000"], "dilation: 100,000 exceeds the dilation limit"),
        (["-k", "sobel_x", "--pad-value", "inf"], "`pad_value`: must be a finite number"),
    ],
)
def test_unbounded_numbers_are_one_line_errors(
    runner: CliRunner, gray_png: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(cli, ["apply", str(gray_png), *args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("featmap: error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (tmp_path / "out").exists()
