"""featmap.kernels: kernel files, their errors, the built-in library and -k selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from featmap.errors import KernelFileError
from featmap.kernels import KernelLibrary, load_kernel_file, parametric_kernel

SOBEL_X = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_file_with_scale_normalize_bias_and_channels(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mine.yaml",
        """
kernels:
  - name: half
    weights: [[2, 4]]
    scale: 0.5
  - name: avg
    weights: [[1, 1], [1, 1]]
    normalize: true
    bias: 0.25
    tags: [blur]
  - name: rgb_sum
    weights:
      - [[1]]
      - [[2]]
      - [[3]]
""",
    )
    half, avg, rgb = load_kernel_file(path)
    np.testing.assert_array_equal(half.weights, [[1, 2]])
    np.testing.assert_array_equal(avg.weights, np.full((2, 2), 0.25))
    assert avg.bias == 0.25 and avg.tags == ("blur",) and half.bias is None
    assert rgb.per_channel and rgb.weights.shape == (3, 1, 1)
    assert not half.weights.flags.writeable


def test_single_kernel_mapping_and_json(tmp_path: Path) -> None:
    one = write(tmp_path, "one.yml", "name: sx\nweights: [[-1, 0, 1]]\n")
    assert [k.name for k in load_kernel_file(one)] == ["sx"]
    js = write(tmp_path, "k.json", json.dumps([{"name": "sobel", "weights": SOBEL_X}]))
    np.testing.assert_array_equal(load_kernel_file(js)[0].weights, SOBEL_X)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "- name: a\n  weights: [[1, 2], [3]]\n",
            r"kernel 'a': `weights`: row 2 has 1 values but row 1 has 2",
        ),
        ("- name: a\n  weights: []\n", r"`weights`: must be a non-empty list"),
        ("- name: a\n  weights: [[1, x]]\n", r"row 1: must be a number; got 'x'"),
        ("- name: a\n  weights: [[1, .nan]]\n", r"must be finite"),
        ("- name: a\n  weights: [[1, .inf]]\n", r"must be finite"),
        (
            "- name: a\n  weights: [[1]]\n- name: a\n  weights: [[2]]\n",
            r"kernel 'a': has the same name as kernel #1",
        ),
        ("- name: ../../etc/passwd\n  weights: [[1]]\n", r"`name`: must be letters, digits"),
        ("- name: a\n  weights: [[1]]\n  colour: red\n", r"`colour`: is not a kernel key"),
        ("- name: a\n", r"`weights`: is missing"),
        ("- name: a\n  weights: [[1, -1]]\n  normalize: true\n", r"sum to 0"),
        ("- name: a\n  weights: [[1, 2], [3, 4]]\n  rotations: 8\n", r"`rotations`: 45° steps need a 3x3"),
        ("42\n", r"is a int, not a kernel list"),
        ("", r"is empty, not a kernel list"),
        ("kernels: []\n", r"holds no kernels"),
        ("kernels:\n  - name: a\n    weights: [[1, 2]\n", r"invalid YAML at line \d+, column \d+"),
        ("- !!python/object/apply:os.system ['echo hi']\n", r"invalid YAML"),
    ],
)
def test_malformed_yaml_names_file_kernel_and_key(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(KernelFileError, match=match) as info:
        load_kernel_file(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '[{"name": "a",\n  "weights": [[1, 2]],}]')
    with pytest.raises(KernelFileError, match=r"invalid JSON at line 2, column 2[23]"):
        load_kernel_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KernelFileError, match="nope.yaml: no such file; check the path"):
        load_kernel_file(tmp_path / "nope.yaml")


def test_builtin_library_covers_the_classics() -> None:
    lib = KernelLibrary(use_env=False)
    wanted = [
        "identity",
        "box_3",
        "box_5",
        "box_7",
        "gaussian_3",
        "gaussian_5",
        "gaussian_7",
        "sharpen",
        "unsharp_5",
        "laplacian_4",
        "laplacian_8",
        "log_5",
        "sobel_x",
        "sobel_y",
        "scharr_x",
        "scharr_y",
        "prewitt_x",
        "prewitt_y",
        "roberts_x",
        "roberts_y",
        "emboss",
        "outline",
        "ridge",
        "motion_9",
        "gabor_0",
        "gabor_45",
        "gabor_90",
        "gabor_135",
        *(f"kirsch_{a}" for a in range(0, 360, 45)),
    ]
    for name in wanted:
        assert name in lib, name
        assert lib[name].source, f"{name} has no source"
    np.testing.assert_array_equal(lib["sobel_x"].weights, SOBEL_X)
    for blur in ("box_3", "gaussian_3", "gaussian_5", "gaussian_7", "motion_9"):
        assert float(lib[blur].weights.sum(dtype=np.float64)) == pytest.approx(1.0, abs=1e-6)
    for edge in ("sobel_x", "laplacian_4", "laplacian_8", "log_5", "kirsch_45", "outline"):
        assert float(lib[edge].weights.sum()) == 0.0
    np.testing.assert_array_equal(lib["kirsch_90"].weights, np.rot90(lib["kirsch_0"].weights))
    np.testing.assert_allclose(lib["unsharp_5"].weights.sum(), 1.0, rtol=1e-6)


def test_selection_forms(tmp_path: Path) -> None:
    path = write(tmp_path, "mine.yaml", "- name: a\n  weights: [[1]]\n  tags: [t]\n- name: b\n  weights: [[2]]\n")
    lib = KernelLibrary(use_env=False)
    assert [k.name for k in lib.select(str(path))] == ["a", "b"]
    assert [k.name for k in lib.select(f"{path}:b")] == ["b"]
    assert [k.name for k in lib.select("sobel")] == ["sobel_x", "sobel_y"]  # a tag
    assert len(lib.select("kirsch")) == 8
    assert [k.name for k in lib.select("gabor")] == ["gabor_0", "gabor_45", "gabor_90", "gabor_135"]  # tag first
    assert lib.select("gabor:size=7")[0].name == "gabor-size7"  # then the generator
    assert lib.select("gaussian:size=5,sigma=1.2")[0].name == "gaussian-size5-sigma1p2"
    with pytest.raises(KernelFileError, match="is not in the file"):
        lib.select(f"{path}:zzz")
    with pytest.raises(KernelFileError, match="is not a kernel, tag"):
        lib.select("sobel_z")


def test_kernel_dir_and_env_override_builtins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "lib"
    mine.mkdir()
    write(mine, "override.yaml", "- name: sobel_x\n  weights: [[7]]\n- name: only_mine\n  weights: [[1, 1]]\n")
    monkeypatch.setenv("FEATMAP_KERNEL_PATH", str(mine))
    lib = KernelLibrary()
    np.testing.assert_array_equal(lib["sobel_x"].weights, [[7]])
    assert "only_mine" in lib and "sobel_y" in lib


def test_duplicate_names_in_one_folder_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "- name: same\n  weights: [[1]]\n")
    write(tmp_path, "b.yaml", "- name: same\n  weights: [[2]]\n")
    with pytest.raises(KernelFileError, match="also defined in"):
        KernelLibrary([tmp_path], use_env=False)


def test_bank_keeps_order_and_drops_exact_repeats() -> None:
    lib = KernelLibrary(use_env=False)
    bank = lib.bank(["sobel_y", "sobel", "box:size=3", "box:size=3"])
    assert bank.names == ("sobel_y", "sobel_x", "box-size3")


def test_parametric_errors() -> None:
    with pytest.raises(KernelFileError, match="has no value"):
        parametric_kernel("gaussian:size")
    with pytest.raises(KernelFileError, match="must be a number"):
        parametric_kernel("gaussian:size=big")


def test_generate_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", "- name: g\n  generate: 'gaussian:size=3,sigma=1'\n")
    np.testing.assert_allclose(load_kernel_file(path)[0].weights, parametric_kernel("gaussian:size=3,sigma=1").weights)
    bad = write(tmp_path, "h.yaml", "- name: g\n  generate: 'sobel:size=3'\n")
    with pytest.raises(KernelFileError, match="`generate`: must name a generator"):
        load_kernel_file(bad)


def test_installed_package_finds_its_kernels(tmp_path: Path) -> None:
    """Run outside the checkout, so a non-editable install (as in CI) is what gets imported."""
    import subprocess
    import sys

    code = "from featmap.kernels import KernelLibrary; print(KernelLibrary(use_env=False)['sobel_x'].origin)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("edges.yaml")


def test_a_mistyped_kernel_name_gets_close_matches() -> None:
    from featmap.errors import KernelFileError
    from featmap.kernels import KernelLibrary

    with pytest.raises(KernelFileError, match="did you mean sobel_x"):
        KernelLibrary(use_env=False).bank(["sobelx"])
