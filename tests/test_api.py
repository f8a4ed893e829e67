"""The Python API (`featmap.apply`, `featmap.shape`, `featmap.kernel`) and the job builder (`featmap.run.jobs`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import featmap
from featmap.errors import KernelFileError, OptionError, ShapeError, SpecError
from featmap.kernels import KernelLibrary
from featmap.net.layers import Act, Conv2d, Pool2d
from featmap.net.spec import parse_tokens
from featmap.net.summary import summarize
from featmap.run.batch import ApplyJob
from featmap.run.jobs import make_job

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)


def test_apply_on_an_array_matches_scipy() -> None:
    image = np.random.default_rng(1).random((12, 9)).astype(np.float32)
    result = featmap.apply(image, ["sobel_x"], padding="same", pad_mode="symmetric")
    expected = ndimage.correlate(image, SOBEL_X, mode="reflect")  # scipy's reflect is featmap's symmetric
    np.testing.assert_allclose(result.maps[0].values[:, :, 0], expected, atol=1e-5)
    assert result.input_shape == (12, 9, 1) and result.warnings == ()


def test_apply_strides_pools_and_combines_like_the_pieces() -> None:
    image = np.random.default_rng(2).random((11, 11)).astype(np.float32)
    result = featmap.apply(image, ["sobel_x", "sobel_y"], stride=2, pool="max", combine="magnitude")
    gx = featmap.conv2d(image, SOBEL_X, stride=2)
    gy = featmap.conv2d(image, SOBEL_X.T.copy(), stride=2)
    np.testing.assert_allclose(result.maps[0].values, featmap.pool2d(gx, 2), atol=1e-6)
    np.testing.assert_allclose(result.maps[2].values, featmap.pool2d(np.sqrt(gx**2 + gy**2), 2), atol=1e-5)
    assert [m.info.name for m in result.maps] == ["sobel_x", "sobel_y", "magnitude"]
    # the conv's 11 -> 5 by stride 2 uses every row, (5 - 1) * 2 + 3 = 11; the 2x2 pool of 5 leaves one
    assert result.warnings == (
        "max pool 2x2: stride 2 leaves the last 1 row and 1 column of the padded 5x5 input unused "
        "(floored, as PyTorch and Keras do)",
    )


def test_apply_reads_a_file_as_the_command_does(tmp_path: Path) -> None:
    pixels = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    from_file = featmap.apply(tmp_path / "a.png", "box_3")
    from_array = featmap.apply(pixels / np.float32(255), "box_3")
    np.testing.assert_allclose(from_file.maps[0].values, from_array.maps[0].values, atol=1e-6)


def test_apply_warns_and_strict_refuses() -> None:
    image = np.ones((7, 7), np.float32)
    assert featmap.apply(image, "box_3", stride=3).warnings[0].startswith("conv 3x3: stride 3 leaves the last 1 row")
    with pytest.raises(ShapeError, match="stride 3 leaves"):
        featmap.apply(image, "box_3", stride=3, strict=True)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"pool_size": 3}, OptionError, "`pool_size` and `pool_stride` need `pool`"),
        ({"pool_stride": 2, "pool": "global-avg"}, OptionError, "need `pool` max, avg or min"),
        ({"combine": "max"}, SpecError, "`combine`: needs two or more kernels"),
        ({"stride": 0}, SpecError, "`stride`: must be >= 1"),
        ({"background": "nocolour"}, SpecError, "`background`: unknown colour"),
        ({"name_pattern": "{stem}"}, SpecError, "`name_pattern`: pattern"),
    ],
)
def test_errors_name_parameters_not_flags(options: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        make_job(["sobel_x"], **options)  # type: ignore[arg-type]
    assert "--" not in str(caught.value)


def test_make_job_equals_the_job_built_by_hand() -> None:
    bank = KernelLibrary().bank(["sobel_x", "sobel_y"])
    by_hand = ApplyJob(bank, Conv2d(stride=(2, 2), padding="same"), Act("relu"), Pool2d("max", (3, 3)), "max")
    built = make_job(["sobel_x", "sobel_y"], stride=2, padding="same", activation="relu", pool="max", pool_size=3,
                     combine="max")  # fmt: skip
    assert (built.conv, built.act, built.pool, built.combine) == (
        by_hand.conv,
        by_hand.act,
        by_hand.pool,
        by_hand.combine,
    )
    assert built.bank.names == by_hand.bank.names and built.options_hash() == by_hand.options_hash()
    mixed = make_job([featmap.kernel("sobel_x"), "sobel_y"])
    assert mixed.bank.names == ("sobel_x", "sobel_y")


def test_shape_takes_tokens_presets_and_layers() -> None:
    tokens = ["conv:6@5x5", "avgpool:2", "conv:16@5x5", "avgpool:2", "flatten", "dense:120", "dense:84", "dense:10"]
    by_tokens = featmap.shape(tokens, input="32x32x1")
    assert by_tokens == summarize(parse_tokens(tokens), (32, 32, 1))
    assert featmap.shape(parse_tokens(tokens), input=(32, 32, 1)) == by_tokens
    lenet = featmap.shape("lenet5")
    assert (lenet.totals.params, lenet.totals.macs) == (61_706, 416_520)  # LeNet-5: 61,706 weights and biases
    assert featmap.shape("lenet5", batch=4).totals.macs == 4 * 416_520
    with pytest.raises(SpecError, match="`input`: is needed"):
        featmap.shape(tokens)


def test_kernel_by_name_spec_or_weights() -> None:
    np.testing.assert_array_equal(featmap.kernel("sobel_x").weights, SOBEL_X)
    assert featmap.kernel("gaussian:size=5,sigma=1").weights.sum() == pytest.approx(1.0)
    assert featmap.kernel([[1, 2], [3, 4]], name="mine").size == (2, 2)
    with pytest.raises(SpecError, match="selects 13 kernels"):
        featmap.kernel("edges")
    with pytest.raises(KernelFileError, match="is not a kernel"):
        featmap.kernel("no_such_kernel")
