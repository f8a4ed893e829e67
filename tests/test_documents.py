"""Safe reading of YAML/JSON documents: size, depth and alias-expansion limits, numbers as users write them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from featmap.documents import read_document
from featmap.errors import KernelFileError, LimitError, SpecError
from featmap.kernels import KernelLibrary, load_kernel_file

BOMB = "\n".join(
    ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
)


def test_billion_laughs_is_refused_before_expanding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    started = time.monotonic()
    with pytest.raises(LimitError, match=r"bomb.yaml: line \d+: alias \*a\d: [\d,]+ exceeds the YAML alias expansion"):
        read_document(path, SpecError, "")
    assert time.monotonic() - started < 5
    assert len(str(pytest.raises(LimitError, read_document, path, SpecError, "").value)) < 300


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b [1, 2, 3]\nagain: *b\n")
    assert read_document(path, SpecError, "") == {"base": [1, 2, 3], "again": [1, 2, 3]}


@pytest.mark.parametrize(
    ("suffix", "text"), [(".json", "[" * 100_000 + "]" * 100_000), (".yaml", "[" * 900 + "]" * 900)]
)
def test_deep_nesting_is_a_limit_not_a_crash(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(LimitError, match="exceeds the nesting depth limit of 64"):
        read_document(path, SpecError, "")


def test_nesting_at_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text("[" * 64 + "]" * 64)
    assert read_document(path, SpecError, "") is not None


def test_file_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: k\nweights: [[1]]\n" + "#" * 2000 + "\n")
    monkeypatch.setenv("FEATMAP_MAX_FILE_SIZE", "1K")
    with pytest.raises(LimitError, match=r"big.yaml: [\d.]+ KiB exceeds the file size limit of 1 KiB"):
        load_kernel_file(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_named_pipe_is_not_read_forever(tmp_path: Path) -> None:
    fifo = tmp_path / "k.yaml"
    os.mkfifo(fifo)
    with pytest.raises(KernelFileError, match="is not a regular file"):
        load_kernel_file(fifo)


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("1e-3", 0.001),
        ("2E+2", 200.0),
        ("-5e1", -50.0),
        ("1.5e-3", 0.0015),
        ("1.0e30", 1.0e30),
        ("-2.5E3", -2500.0),
        (".5e3", 500.0),
        ("1.e2", 100.0),
    ],
)
def test_numbers_are_read_as_users_write_them(tmp_path: Path, written: str, value: float) -> None:
    path = tmp_path / "k.yaml"
    path.write_text(f"name: k\nweights: [[1, 2]]\nscale: {written}\n")
    (kernel,) = load_kernel_file(path)
    assert kernel.weights[0].tolist() == pytest.approx([value, 2 * value])


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("[[1e400]]", "must be finite"),
        ("[[" + "9" * 400 + "]]", "must be finite"),
        ("[[1e39]]", "float32's range"),
        ("[[.nan]]", "must be finite"),
    ],
)
def test_weights_beyond_float32_are_refused(tmp_path: Path, weights: str, message: str) -> None:
    path = tmp_path / "k.yaml"
    path.write_text(f"name: k\nweights: {weights}\n")
    with pytest.raises(KernelFileError, match=message):
        load_kernel_file(path)


def test_scale_that_overflows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.yaml"
    path.write_text("name: k\nweights: [[3e38]]\nscale: 10\n")
    with pytest.raises(KernelFileError, match="`scale`: makes weights beyond float32's range"):
        load_kernel_file(path)


def test_a_huge_matrix_is_refused_before_it_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATMAP_MAX_KERNEL_SIZE", "4")
    path = tmp_path / "k.json"
    path.write_text('{"name": "k", "weights": [' + ",".join(["[1, 2]"] * 5) + "]}")
    with pytest.raises(LimitError, match="rows: 5 exceeds the kernel size limit of 4"):
        load_kernel_file(path)


@pytest.mark.parametrize("name", ["a\x00.yaml", "./\x00b.json"])
def test_a_path_with_a_nul_character_is_one_clean_error(name: str) -> None:
    with pytest.raises(KernelFileError, match="NUL character"):
        KernelLibrary(use_env=False).select(name)
