"""The built-in kernels' compiled form (featmap/kernels/builtin.json): in step with kernels/*.yaml, giving the same
records as reading the files, and never used for files it was not made from."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from featmap.kernels import KernelLibrary
from featmap.kernels.compiled import COMPILED, builtin_kernel_dir, builtin_records, compile_files, compiled_text

FILES = sorted(builtin_kernel_dir().glob("*.yaml"))


def _facts(library: KernelLibrary) -> list[tuple[object, ...]]:
    return [
        (k.name, k.weights.dtype.str, k.weights.shape, k.weights.tobytes(), k.bias, k.description, k.tags)
        + (k.source, k.origin, k.weights.flags.writeable)
        for k in library
    ]


def test_the_compiled_form_is_in_step_with_the_kernel_files() -> None:
    assert COMPILED.read_text(encoding="utf-8") == compiled_text(compile_files(FILES)), (
        "kernels/*.yaml changed: run `python tools/compile_kernels.py`"
    )


def test_the_library_from_the_compiled_form_equals_the_library_read_from_the_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compiled = KernelLibrary(use_env=False)
    assert builtin_records(FILES) is not None  # the shortcut is taken
    monkeypatch.setenv("FEATMAP_MAX_KERNEL_SIZE", "2048")  # a reading limit set (to its default): files read
    assert builtin_records(FILES) is None
    read = KernelLibrary(use_env=False)
    assert _facts(compiled) == _facts(read)
    assert len(_facts(read)) >= 30
    smooth = compiled["gaussian_5"].weights.astype(np.float64)
    assert np.isclose(smooth.sum(), 1.0, atol=1e-6)  # normalised, as the file says


def test_the_compiled_form_gives_each_file_with_its_own_path(tmp_path: Path) -> None:
    for file in FILES:
        shutil.copy(file, tmp_path / file.name)
    copies = sorted(tmp_path.glob("*.yaml"))
    found = builtin_records(copies)
    assert found is not None
    assert [file for file, _ in found] == copies
    assert {k.origin for _, kernels in found for k in kernels} == {str(p) for p in copies}


@pytest.mark.parametrize("change", ["edited", "missing", "added"])
def test_files_the_compiled_form_was_not_made_from_are_read_themselves(tmp_path: Path, change: str) -> None:
    for file in FILES:
        shutil.copy(file, tmp_path / file.name)
    first = tmp_path / FILES[0].name
    if change == "edited":  # one character of one file: the index no longer describes it
        first.write_text(first.read_text(encoding="utf-8").replace("1", "2", 1), encoding="utf-8")
    elif change == "missing":
        first.unlink()
    else:
        (tmp_path / "mine.yaml").write_text("name: mine\nweights: [[1]]\n", encoding="utf-8")
    assert builtin_records(sorted(tmp_path.glob("*.yaml"))) is None


def test_a_broken_compiled_form_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "builtin.json"
    broken.write_text('{"format": 1, "files": [', encoding="utf-8")
    monkeypatch.setattr("featmap.kernels.compiled.COMPILED", broken)
    assert builtin_records(FILES) is None
    assert "sobel_x" in KernelLibrary(use_env=False)  # the files themselves
