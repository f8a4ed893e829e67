"""featmap.run.batch.apply_image: files written, manifest, re-runs and clobber protection."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from featmap.errors import OutputExistsError, SpecError
from featmap.kernels import KernelLibrary
from featmap.net.layers import Act, Conv2d, Pool2d
from featmap.run.batch import MANIFEST_NAME, ApplyJob, OutputOptions, apply_image

LIB = KernelLibrary(use_env=False)


def job(out: Path, *specs: str, **kwargs: object) -> ApplyJob:
    output = OutputOptions(
        out,
        **{k: v for k, v in kwargs.items() if k in ("name", "normalize", "raw", "overwrite", "bit_depth")},
    )  # type: ignore[arg-type]
    rest = {k: v for k, v in kwargs.items() if k not in ("name", "normalize", "raw", "overwrite", "bit_depth")}
    return ApplyJob(LIB.bank(list(specs) or ["sobel_x"]), output=output, **rest)  # type: ignore[arg-type]


def test_writes_one_png_per_kernel_with_the_map_values(gray_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = apply_image(gray_png, job(out, "identity", "box_3", conv=Conv2d(padding="same"), normalize="clip"))
    assert [m.png for m in result.maps] == [out / "square/identity.png", out / "square/box_3.png"]
    identity = np.asarray(Image.open(out / "square/identity.png"))
    np.testing.assert_array_equal(identity, np.asarray(Image.open(gray_png)))  # delta kernel, clip: same pixels
    assert result.input.width == 32 and result.input.height == 24


def test_raw_arrays_and_pattern(gray_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = apply_image(
        gray_png,
        job(out, "sobel_x", raw="npy", name="{stem}_{kernel}.png", act=Act("relu"), pool=Pool2d("max", 2)),
    )
    written = result.maps[0]
    assert written.png == out / "square_sobel_x.png" and written.raw == out / "square_sobel_x.npy"
    raw = np.load(written.raw)
    assert raw.dtype == np.float32 and raw.shape == (11, 15, 1) and raw.min() >= 0
    assert np.asarray(Image.open(written.png)).shape == (11, 15)


def test_manifest_records_each_output(gray_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = apply_image(gray_png, job(out, "sobel_x", "sobel_y"))
    lines = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert [r["kernel"] for r in lines] == ["sobel_x", "sobel_y"]
    assert lines[0]["png"] == "square/sobel_x.png" and lines[0]["input"] == str(gray_png.resolve())
    assert lines[0]["options"] == result.options_hash and lines[0]["shape"] == [22, 30, 1]
    assert lines[0]["stats"]["max"] == pytest.approx(result.maps[0].info.stats.max)


def test_rerun_is_allowed_but_a_different_run_is_not(gray_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    apply_image(gray_png, job(out, "sobel_x"))
    before = (out / "square/sobel_x.png").read_bytes()
    apply_image(gray_png, job(out, "sobel_x"))  # same input and options: fine
    with pytest.raises(OutputExistsError, match="not made from this input with these options; pass --overwrite"):
        apply_image(gray_png, job(out, "sobel_x", conv=Conv2d(stride=2)))
    assert (out / "square/sobel_x.png").read_bytes() == before  # untouched
    apply_image(gray_png, job(out, "sobel_x", conv=Conv2d(stride=2), overwrite=True))
    assert (out / "square/sobel_x.png").read_bytes() != before


def test_a_file_not_in_the_manifest_is_never_clobbered(gray_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "square").mkdir(parents=True)
    (out / "square/sobel_x.png").write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        apply_image(gray_png, job(out, "sobel_x"))
    assert (out / "square/sobel_x.png").read_bytes() == b"precious"


def test_input_is_never_overwritten(gray_png: Path) -> None:
    source = gray_png.rename(gray_png.with_name("sobel_x.png"))
    before = source.read_bytes()
    with pytest.raises(OutputExistsError, match="is the input image itself"):
        apply_image(source, job(source.parent, "sobel_x", name="{kernel}.png", overwrite=True))
    assert source.read_bytes() == before


@pytest.mark.parametrize("pattern", ["{stem}", "../{kernel}", "{kernel}_{nope}", "/abs/{kernel}"])
def test_bad_name_patterns(gray_png: Path, tmp_path: Path, pattern: str) -> None:
    with pytest.raises(SpecError, match="`name_pattern`"):
        apply_image(gray_png, job(tmp_path / "o", "sobel_x", name=pattern))


def test_no_temporary_files_left(gray_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    apply_image(gray_png, job(out, "edges", raw="tiff"))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def in_a_helper(*expressions: str) -> list[Any]:
    """Each expression's value in one helper process (`featmap.run.workers.Helpers`), which takes them in order."""
    from featmap.run.workers import Helpers

    helpers = Helpers(1, eval, expressions)
    found: list[Any] = []
    try:
        assert helpers.start() and not helpers.start()  # one helper, no second
        for position in range(len(expressions)):
            helpers.give(position)
        while len(found) < len(expressions):
            assert helpers.working, "the helper ended"
            found += helpers.collect(wait=True)[0]
    finally:
        helpers.close()
    return found


def test_helpers_run_one_thread_each_and_the_parent_environment_is_restored() -> None:
    from featmap.core.cvfilter import opencv, threads
    from featmap.run.workers import one_opencv_thread

    before = os.environ.get("OPENBLAS_NUM_THREADS")
    getenv = "__import__('os').getenv('{}')".format
    found = in_a_helper(
        getenv("OPENBLAS_NUM_THREADS"),
        getenv("MALLOC_TRIM_THRESHOLD_"),
        "__import__('featmap.core.cvfilter', fromlist=['threads']).threads()",
    )
    assert found[:2] == ["1", str(256 << 20)]
    if opencv() is not None:
        assert found[2] == 1
    assert os.environ.get("OPENBLAS_NUM_THREADS") == before
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
    if opencv() is not None:
        mine = threads()
        with one_opencv_thread():
            assert threads() == 1
        assert threads() == mine


def test_keep_freed_memory_on_glibc() -> None:
    import platform

    from featmap.run.workers import keep_freed_memory

    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
