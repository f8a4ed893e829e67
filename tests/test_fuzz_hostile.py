"""Generators for the classes of hostile input that once hung or crashed featmap (issue 23): values that
contain themselves (YAML ``&a [*a]``), huge numeric YAML, huge kernel folders, huge fan-out in a spec and
names longer than a file system allows. Every case ends in a success or one line with a documented exit
code, well within the fuzz suite's time limit (a case still running after it is a `Hang`).

Cases per test scale with ``FEATMAP_FUZZ_SCALE`` like ``tests/test_fuzz.py`` (``tools/fuzz.sh`` runs both).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from featmap.cli import cli
from featmap.errors import KernelFileError, LimitError, SpecError
from featmap.kernels import KernelLibrary, load_kernel_file
from featmap.net.spec import parse_file
from tests.test_fuzz import EXIT_CODES, SCALE, outcome, time_limit

EXAMPLES = {"self": 20, "numeric": 6, "dirs": 6, "fanout": 8, "names": 10}


def _settings(name: str) -> settings:
    return settings(
        max_examples=EXAMPLES[name] * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "tiny.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (10, 12), dtype=np.uint8)).save(path)
    return path


def _cli(args: list[str]) -> Any:
    with time_limit():
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code in EXIT_CODES, (result.exit_code, result.stderr[-400:])
    lines = [line for line in result.stderr.splitlines() if line.startswith("featmap: error")]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr[-400:]
    if result.exit_code:
        assert len(lines) == 1, result.stderr[-400:]
    return result


# ------------------------------------------------------------------------------------- values that hold themselves

SELF_VALUES = st.sampled_from(["&a [*a]", "&a [1, [*a]]", "&a {x: *a}", "&a [[1, 2], *a]", "&a [&b [*b], *a]"])


@_settings("self")
@given(field=st.sampled_from(["weights", "tags", "description", "bias", "name"]), value=SELF_VALUES)
def test_self_referencing_alias_in_a_kernel_file(tmp_path: Path, field: str, value: str) -> None:
    entry = {"name": "k", "weights": "[[1, 0], [0, 1]]", field: value}
    text = "kernels:\n  - " + "\n    ".join(f"{k}: {v}" for k, v in entry.items()) + "\n"
    path = tmp_path / "self.yaml"
    path.write_text(text)
    with time_limit(), pytest.raises(KernelFileError, match="refers to its own anchor"):
        load_kernel_file(path)


@_settings("self")
@given(where=st.sampled_from(["layers", "branch", "blocks", "input"]), value=SELF_VALUES)
def test_self_referencing_alias_in_a_spec(tmp_path: Path, where: str, value: str) -> None:
    docs = {
        "layers": f"layers: {value}\n",
        "branch": f"layers:\n  - parallel:\n      branches: {value}\n",
        "blocks": f"blocks:\n  b: {value}\nlayers: [{{block: b}}]\n",
        "input": f"input: {value}\nlayers: [relu]\n",
    }
    path = tmp_path / "self.yaml"
    path.write_text(docs[where])
    with time_limit(), pytest.raises(SpecError, match="refers to its own anchor"):
        parse_file(path)


# ------------------------------------------------------------------------------------- huge numeric YAML


@_settings("numeric")
@given(side=st.integers(10, 2300), style=st.sampled_from(["flow", "block-rows", "block"]))
def test_huge_numeric_yaml_is_loaded_or_refused_before_parsing(tmp_path: Path, side: int, style: str) -> None:
    row = "[" + ", ".join(["1"] * side) + "]"
    if style == "flow":
        weights = "weights: [" + ", ".join([row] * side) + "]\n"
    elif style == "block-rows":
        weights = "weights:\n" + "".join(f"  - {row}\n" for _ in range(side))
    else:  # one number a line: no commas at all
        weights = "weights:\n" + "".join("  -\n" + "    - 1\n" * side for _ in range(side))
    path = tmp_path / "big.yaml"
    path.write_text("name: big\n" + weights)
    kernels = outcome(load_kernel_file, path)
    values = side * side  # the limit (100,000) is checked on an estimate: the border is fuzzy by a few lines
    if values > 110_000:  # refused from its separators, never parsed
        assert kernels is None
    elif values < 90_000:
        assert kernels is not None and kernels[0].weights.shape == (side, side)


def test_a_2300_square_yaml_matrix_is_refused_naming_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: big\nweights:\n" + "".join("  - [" + ", ".join(["1"] * 2300) + "]\n" for _ in range(2300)))
    with time_limit(), pytest.raises(LimitError) as caught:
        load_kernel_file(path)
    assert "5,290,003 exceeds the file values limit of 100,000" in str(caught.value)
    assert "FEATMAP_MAX_FILE_VALUES=5290003" in str(caught.value)


def test_the_same_matrix_as_json_loads(tmp_path: Path) -> None:
    weights = np.arange(300 * 300, dtype=np.float64).reshape(300, 300) % 7 - 3
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"name": "big", "weights": weights.tolist()}))
    (kernel,) = load_kernel_file(path)
    np.testing.assert_array_equal(kernel.weights, weights)


# ------------------------------------------------------------------------------------- huge kernel folders


@_settings("dirs")
@given(files=st.integers(0, 60), per_file=st.integers(1, 30))
def test_kernel_folders_over_the_count_limit_are_refused(
    monkeypatch: pytest.MonkeyPatch, files: int, per_file: int
) -> None:
    monkeypatch.setenv("FEATMAP_MAX_KERNELS", "200")  # the built-ins (~60) count too
    with tempfile.TemporaryDirectory() as folder:
        for f in range(files):
            entries = [{"name": f"k{f}_{i}", "weights": [[1, 0], [0, -1]]} for i in range(per_file)]
            (Path(folder) / f"f{f}.json").write_text(json.dumps({"kernels": entries}))
        builtins = len(list(KernelLibrary(use_env=False)))
        library = outcome(KernelLibrary, [folder], use_env=False)
        total = files * per_file + builtins
        if files > 200 or total > 200:
            assert library is None
        else:
            assert library is not None and len(list(library)) == total


def test_a_folder_of_many_kernel_files_is_refused_while_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATMAP_MAX_KERNELS", "500")  # 200,000 files against 10,000 is the same, only slower
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(4_000):  # empty files: refused from the listing, none is read (an empty file would fail)
        (folder / f"k{i}.yaml").touch()
    with time_limit(), pytest.raises(LimitError, match=r"more than 500 kernel files: 501 exceeds"):
        KernelLibrary([folder], use_env=False)


# ------------------------------------------------------------------------------------- huge fan-out


@_settings("fanout")
@given(branches=st.integers(1, 500_000), body=st.sampled_from(["[]", '["relu"]', '["relu", "relu"]']))
def test_parallel_fan_out_is_refused_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, branches: int, body: str
) -> None:
    path = tmp_path / "wide.json"
    text = '{"input": "8x8x1", "layers": [{"parallel": {"merge": "add", "branches": [' + ", ".join([body] * branches)
    path.write_text(text + "]}}]}")
    monkeypatch.setenv("FEATMAP_MAX_FILE_VALUES", "2000000")  # the branch count is checked before the layers
    model = outcome(parse_file, path)
    layers = max(len(json.loads(body)), 1) * branches
    if layers > 10_000 or branches < 2:  # a merge needs two branches
        assert model is None
    else:
        assert model is not None


def test_400000_parallel_branches_is_one_line(image: Path, tmp_path: Path) -> None:
    path = tmp_path / "wide.json"
    path.write_text(json.dumps({"input": "8x8x1", "layers": [{"parallel": {"branches": [["relu"]] * 400_000}}]}))
    result = _cli(["apply", str(image), "--spec", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "400,001 exceeds the file values limit of 100,000" in result.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------- long names


@_settings("names")
@given(
    length=st.integers(1, 4000),
    where=st.sampled_from(["out", "out-child", "name", "input", "kernel-dir"]),
    char=st.sampled_from(["x", "é", "-"]),
)
def test_long_names_end_in_one_line(image: Path, length: int, where: str, char: str) -> None:
    long = char * length
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        args = ["apply", str(image), "-k", "sobel_x", "-o", str(out), "-q"]
        if where == "out":
            args[-2] = str(Path(folder) / long)
        elif where == "out-child":
            args[-2] = str(Path(folder) / "a" / long / "b")
        elif where == "name":
            args += ["--name", f"{long}{{kernel}}.png"]
        elif where == "input":
            args[1] = str(Path(folder) / f"{long}.png")
        else:
            args += ["--kernel-dir", str(Path(folder) / long)]
        result = _cli(args)
        if len(os.fsencode(long)) > 255 and where in ("out", "out-child"):
            assert result.exit_code == 2 and "longer than the 255" in result.stderr
        if result.exit_code != 0:
            written = [p for p in Path(folder).rglob("*") if p.suffix == ".png" and p != image]
            assert not written


def test_out_with_a_300_character_name_is_a_usage_error(image: Path, tmp_path: Path) -> None:
    result = _cli(["apply", str(image), "-k", "sobel_x", "-o", str(tmp_path / ("x" * 300))])
    assert result.exit_code == 2
    assert "has a name of 300 bytes, longer than the 255 the file system allows" in result.stderr
