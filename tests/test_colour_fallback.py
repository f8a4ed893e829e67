"""A kernel run decides once, before its first map, whether any map reads the float image whole (a stride, a
dilation, a combined map, a pool whose windows do not tile the rows, a kernel summing over the channels, one too tall
for a band): then it holds the float image in place of the 8-bit samples, never both; else it keeps the samples and
every map goes band by band. The memory limit counts what the run holds, checked before the image is decoded.

The maps of the runs that read the float image whole are checked against an independent numpy implementation (a
sliding-window view of the padded float64 image, weighted and summed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from featmap.batch_api import ApplyOptions, apply_file, build_job
from featmap.core.samples import ScaledSamples
from featmap.errors import LimitError
from featmap.io.discover import InputImage
from featmap.kernels import Kernel
from featmap.run import imagejob
from featmap.run.imagejob import KernelRun

HEIGHT, WIDTH = 300, 400  # more rows than two bands (`featmap.run.fused.BAND_ROWS`)
LEVEL = np.float32(1 / 255)
A = np.array([[1, 0, -2], [3, 1, 0], [-1, 2, 1]], np.float32)
B = np.array([[0, 1, 0], [2, -3, 1], [0, 1, 1]], np.float32)
PER_CHANNEL = np.stack([A, B, A.T])  # one filter summing over R, G and B


@pytest.fixture(autouse=True)
def _big(monkeypatch: pytest.MonkeyPatch) -> None:
    """These small images are counted as big ones are: their samples alone when every map goes band by band (a
    small one's float image may be made beside them: `featmap.core.samples.CONVERT_WHOLE_UP_TO`)."""
    monkeypatch.setattr(imagejob, "CONVERT_WHOLE_UP_TO", 0)


def _image(tmp_path: Path, suffix: str = ".png", mode: str = "RGB") -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(5)
    smooth = np.cumsum(rng.integers(0, 3, (HEIGHT, WIDTH, 3)), axis=1) % 256  # a JPEG keeps it close
    samples = smooth.astype(np.uint8) if mode == "RGB" else smooth[:, :, 0].astype(np.uint8)
    path = tmp_path / f"{mode.lower()}{suffix}"
    Image.fromarray(samples, mode=mode).save(path, **({"quality": 90} if suffix == ".jpg" else {}))
    decoded = np.asarray(Image.open(path).convert(mode))  # a JPEG's own decode (libjpeg, as OpenCV's)
    return path, decoded if decoded.ndim == 3 else decoded[:, :, np.newaxis]


def _run(path: Path, kernels: list[Kernel], **options: Any) -> KernelRun:
    job = build_job(kernels, options=ApplyOptions(out_dir=path.parent / "out", **options))
    return KernelRun(InputImage(path, Path(), path.stem), job)


# options, kernels, whether every map goes band by band
CASES = {
    "plain": ({}, [A], True),
    "pool max": ({"pool": "max"}, [A, B], True),
    "same padding": ({"padding": "same", "pad_mode": "reflect"}, [A], True),
    "sheet": ({"sheet": True}, [A], True),  # its input picture is made from the float image after the maps
    "stride 2": ({"stride": 2}, [A, B], False),
    "dilation 2": ({"dilation": 2}, [A], False),
    "combine": ({"combine": "magnitude"}, [A, B], False),
    "same-padded pool": ({"pool": "max", "pool_size": 3, "pool_stride": 2, "pool_padding": "same"}, [A], False),
    "circular padding": ({"padding": "same", "pad_mode": "circular"}, [B], False),
    "per-channel kernel": ({}, [A, PER_CHANNEL], False),
    "tall kernel": ({}, [np.ones((41, 3), np.float32) / 123], False),
}


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_run_holds_the_samples_or_the_floats_never_both(tmp_path: Path, suffix: str, case: str) -> None:
    options, weights, by_bands = CASES[case]
    path, samples = _image(tmp_path, suffix)
    kernels = [Kernel(f"k{i}", w) for i, w in enumerate(weights)]
    run = _run(path, kernels, color=True, **options)
    data = run.image.data
    if by_bands:
        assert isinstance(data, ScaledSamples) and np.array_equal(data.samples, samples)
    else:  # converted once, before the writers see it: the samples are let go
        assert isinstance(data, np.ndarray) and data.dtype == np.float32
        assert np.array_equal(data, np.multiply(samples, LEVEL, dtype=np.float32))
        assert run.image.pixels is data


def test_a_gray_run_that_reads_the_floats_whole_holds_them_alone(tmp_path: Path) -> None:
    path, samples = _image(tmp_path, mode="L")
    assert isinstance(_run(path, [Kernel("a", A)]).image.data, ScaledSamples)
    data = _run(path, [Kernel("a", A)], stride=2).image.data
    assert isinstance(data, np.ndarray) and np.array_equal(data, np.multiply(samples, LEVEL, dtype=np.float32))


def _correlate(
    image: np.ndarray, weights: np.ndarray, stride: int = 1, dilation: int = 1, pad: int = 0, mode: str = "constant"
) -> np.ndarray:
    """Cross-correlation by definition: each output the weighted sum of its window of the padded image (float64);
    a 2-D kernel filters each channel, a (C, kh, kw) one sums over them."""
    padded = np.pad(image.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)), mode=mode)  # type: ignore[call-overload]
    kh, kw = weights.shape[-2:]
    windows = sliding_window_view(padded, ((kh - 1) * dilation + 1, (kw - 1) * dilation + 1), axis=(0, 1))
    windows = windows[::stride, ::stride, :, ::dilation, ::dilation]
    if weights.ndim == 3:
        return np.einsum("hwcij,cij->hw", windows, weights)[:, :, np.newaxis]
    return np.einsum("hwcij,ij->hwc", windows, weights)


def _max_pool_same(values: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Max pooling with TensorFlow's same padding (padded cells never win; the smaller half on top and left)."""
    out = [-(-n // stride) for n in values.shape[:2]]
    pads = [max((o - 1) * stride + size - n, 0) for o, n in zip(out, values.shape[:2], strict=True)]
    padded = np.pad(values, [(p // 2, p - p // 2) for p in pads] + [(0, 0)], constant_values=-np.inf)
    return sliding_window_view(padded, (size, size), axis=(0, 1))[::stride, ::stride].max(axis=(-2, -1))


def _expected(case: str, image: np.ndarray) -> list[np.ndarray]:
    if case == "stride 2":
        return [_correlate(image, A, stride=2), _correlate(image, B, stride=2)]
    if case == "dilation 2":
        return [_correlate(image, A, dilation=2)]
    if case == "combine":
        a, b = _correlate(image, A), _correlate(image, B)
        return [a, b, np.sqrt(a * a + b * b)]
    if case == "same-padded pool":
        return [_max_pool_same(_correlate(image, A), 3, 2)]
    if case == "circular padding":
        return [_correlate(image, B, pad=1, mode="wrap")]
    if case == "per-channel kernel":
        return [_correlate(image, A), _correlate(image, PER_CHANNEL)]
    assert case == "tall kernel"
    return [_correlate(image, np.ones((41, 3)) / 123)]


@pytest.mark.parametrize("case", [name for name, (_, _, bands) in CASES.items() if not bands])
def test_every_map_of_a_run_on_the_whole_float_image_is_the_reference(tmp_path: Path, case: str) -> None:
    options, weights, _ = CASES[case]
    path, samples = _image(tmp_path)
    run = _run(path, [Kernel(f"k{i}", w) for i, w in enumerate(weights)], color=True, **options)
    made = [layer.maps[0].values for layer in run.layers()]
    expected = _expected(case, np.multiply(samples, LEVEL, dtype=np.float32))
    assert [m.shape for m in made] == [e.shape for e in expected]
    for map_, reference in zip(made, expected, strict=True):
        np.testing.assert_allclose(map_, reference, rtol=0, atol=2e-5)


# bytes the run holds on the 300×400 RGB image: the image as the run keeps it, then the largest plan's arrays (a pooled
# band run holds less than the load itself: Pillow's image and the samples, 7 bytes a pixel)
SAMPLES, FLOATS = HEIGHT * WIDTH * 3, HEIGHT * WIDTH * 3 * 4
HELD = {
    "plain": SAMPLES + 298 * 398 * 3 * 4,  # the samples and the final map: no padded input, bands of floats
    "sheet": SAMPLES + FLOATS,  # the float image the sheet draws, after the maps (larger than the map)
    "dilation 2": FLOATS + FLOATS + 296 * 396 * 3 * 4,
    "stride 2": FLOATS + FLOATS + 149 * 199 * 3 * 4 * 2,  # the floats, the (unpadded) input, two maps' worth
    "combine": FLOATS + FLOATS + 298 * 398 * 3 * 4 * 2,  # and the combined map beside the one being made
}


@pytest.mark.parametrize("case", list(HELD))
def test_the_memory_limit_counts_what_the_run_holds_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    options, weights, _ = CASES[case]
    path, _ = _image(tmp_path)
    job = build_job(
        [Kernel(f"k{i}", w) for i, w in enumerate(weights)],
        options=ApplyOptions(color=True, out_dir=tmp_path / "out", **options),
    )
    held = HELD[case]
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", str(held - 1))
    with monkeypatch.context() as decoding:
        decoding.setattr("featmap.io.images.opencv_jpeg", lambda *a, **k: pytest.fail("decoded"))
        with pytest.raises(LimitError) as caught:
            apply_file(path, job)
    message = str(caught.value)
    assert message.startswith(f"{path}: running on 400×300 RGB loaded as 8-bit RGB: ") and "\n" not in message
    assert "exceeds the memory limit of" in message and "set FEATMAP_MAX_MEMORY=" in message
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", str(held))  # exactly what it holds: allowed
    assert len(apply_file(path, job).maps) == len(weights) + ("combine" in options)


def test_the_command_refuses_a_run_too_large_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from featmap.cli import cli

    path, _ = _image(tmp_path, ".jpg")
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "3M")  # the band run holds 1.7 MiB, the stride-2 run 3.09 MiB
    command = ["apply", str(path), "--color", "-k", "sobel_x", "-o", str(tmp_path / "out")]
    assert CliRunner().invoke(cli, command).exit_code == 0
    done = CliRunner().invoke(cli, [*command, "--stride", "2", "-o", str(tmp_path / "out2")])
    assert done.exit_code == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line == (
        f"featmap: error: {path}: running on 400×300 RGB loaded as 8-bit RGB: 3.09 MiB exceeds the memory limit of "
        "3 MiB; set FEATMAP_MAX_MEMORY=4M (or more) to allow it"
    )
    assert not (tmp_path / "out2").exists()
