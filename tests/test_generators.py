"""featmap.kernels.generators: parametric kernels against their formulas and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featmap.errors import KernelFileError
from featmap.kernels.generators import box, dog, gabor, gaussian, generate, log, motion, rotate45, rotations


def test_gaussian_matches_formula_and_sums_to_one() -> None:
    g = gaussian(size=5, sigma=1.2)
    y, x = np.mgrid[-2:3, -2:3]
    ref = np.exp(-(x**2 + y**2) / (2 * 1.2**2))
    np.testing.assert_allclose(g, ref / ref.sum(), rtol=1e-12)
    assert gaussian(sigma=1.0).shape == (7, 7)  # 2*ceil(3 sigma)+1
    assert gaussian(size=5).sum() == pytest.approx(1.0)  # OpenCV's default sigma for size 5 is 1.1
    assert separable_rank(g) == 1


def separable_rank(k: np.ndarray) -> int:
    return int(np.linalg.matrix_rank(k, tol=1e-10))


def test_box_and_log_and_dog() -> None:
    np.testing.assert_array_equal(box(size=3), np.full((3, 3), 1 / 9))
    assert box(size=3, height=5).shape == (5, 3)
    k = log(size=9, sigma=1.4)
    assert abs(k.sum()) < 1e-12 and k[4, 4] == k.min()
    np.testing.assert_allclose(k, k.T)
    d = dog(size=9, sigma=1.0, sigma2=2.0)
    np.testing.assert_allclose(d, gaussian(9, 1.0) - gaussian(9, 2.0))


def test_gabor_orientation() -> None:
    vertical = gabor(size=15, sigma=3, theta=0, lambd=8)
    horizontal = gabor(size=15, sigma=3, theta=90, lambd=8)
    np.testing.assert_allclose(horizontal, vertical.T, atol=1e-12)
    # centre row follows cos(2 pi x / lambda) times the envelope
    x = np.arange(15) - 7
    np.testing.assert_allclose(vertical[7], np.exp(-(x**2) / 18) * np.cos(2 * math.pi * x / 8), atol=1e-12)


def test_motion_blur_is_a_normalised_line() -> None:
    m = motion(length=5, angle=0)
    np.testing.assert_allclose(m[2], [0.2] * 5)
    assert m.sum() == pytest.approx(1.0) and np.count_nonzero(m) == 5
    vertical = motion(length=5, angle=90)
    np.testing.assert_allclose(vertical, m.T, atol=1e-12)
    diagonal = motion(length=7, angle=45)
    np.testing.assert_allclose(diagonal, diagonal[::-1, ::-1])  # symmetric about the centre
    # 7 px along 45° reach 2.47 px up and right: rows 1..5, anti-diagonal only
    assert diagonal[1, 5] > 0 and diagonal[5, 1] > 0 and diagonal[0, 6] == 0 and diagonal[1, 1] == 0


def test_rotations() -> None:
    k = np.array([[5, 5, 5], [-3, 0, -3], [-3, -3, -3]], dtype=float)
    turned = rotations(k, 8)
    assert [a for a, _ in turned] == [0, 45, 90, 135, 180, 225, 270, 315]
    np.testing.assert_array_equal(turned[2][1], np.rot90(k))
    np.testing.assert_array_equal(rotate45(turned[7][1]), k)
    assert len({w.tobytes() for _, w in turned}) == 8
    with pytest.raises(KernelFileError, match="3x3"):
        rotate45(np.ones((5, 5)))


def test_generate_errors() -> None:
    with pytest.raises(KernelFileError, match="not a parametric kernel"):
        generate("sobel")
    with pytest.raises(KernelFileError, match="takes only"):
        generate("box", sigma=2)
    with pytest.raises(KernelFileError, match="sigma.*> 0"):
        generate("gaussian", size=5, sigma=-1)


@pytest.mark.parametrize("size", [1, 3, 5, 7, 9, 11, 15])
def test_gaussian_without_sigma_equals_opencv(size: int) -> None:
    cv2 = pytest.importorskip("cv2")
    if size == 9 and int(cv2.__version__.split(".")[0]) < 5:
        pytest.skip("OpenCV 4.x has no fixed table for size 9")
    row = cv2.getGaussianKernel(size, 0, ktype=cv2.CV_64F).ravel()
    np.testing.assert_allclose(gaussian(size=size), np.outer(row, row), rtol=1e-12, atol=1e-15)


def test_gaussian_small_sizes_are_opencvs_tables() -> None:
    # OpenCV's fixed table for 3 (not the 0.8-sigma formula, which gives 0.239, 0.522, 0.239)
    np.testing.assert_array_equal(gaussian(size=3)[1] / gaussian(size=3)[1].sum(), [0.25, 0.5, 0.25])
    np.testing.assert_array_equal(gaussian(size=5)[2] * 16 / 0.375, [1, 4, 6, 4, 1])
    assert not np.allclose(gaussian(size=3, sigma=0.8), gaussian(size=3))  # an explicit sigma uses the formula


@pytest.mark.parametrize(("size", "sigma"), [(3, 0.5), (5, 1.2), (9, 3.0), (13, 2.2)])
def test_gaussian_with_sigma_equals_opencv(size: int, sigma: float) -> None:
    cv2 = pytest.importorskip("cv2")
    row = cv2.getGaussianKernel(size, sigma, ktype=cv2.CV_64F).ravel()
    np.testing.assert_allclose(gaussian(size=size, sigma=sigma), np.outer(row, row), rtol=1e-12, atol=1e-15)


def test_gaussian_even_size_samples_half_pixel_offsets() -> None:
    # 4 taps at -1.5, -0.5, 0.5, 1.5 with OpenCV's default sigma for 4 (0.95); OpenCV 5.0's own even
    # kernels weight the centre pair as if at offset 0, so they are not the reference here.
    x = np.array([-1.5, -0.5, 0.5, 1.5])
    row = np.exp(-(x**2) / (2 * 0.95**2))
    np.testing.assert_allclose(gaussian(size=4), np.outer(row, row) / row.sum() ** 2, rtol=1e-12)


@pytest.mark.parametrize("theta", [0, 30, 45, 90, 120, 135, 200])
@pytest.mark.parametrize("psi", [0, 90])
def test_gabor_equals_opencv_at_180_minus_theta(theta: float, psi: float) -> None:
    cv2 = pytest.importorskip("cv2")
    ours = gabor(size=15, sigma=3, theta=theta, lambd=8, gamma=0.5, psi=psi)
    theirs = cv2.getGaborKernel((15, 15), 3, math.radians(180 - theta), 8, 0.5, math.radians(psi), ktype=cv2.CV_64F)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    if theta % 180 not in (0, 90):  # the same angle in OpenCV is the mirror image
        same_angle = cv2.getGaborKernel((15, 15), 3, math.radians(theta), 8, 0.5, math.radians(psi), ktype=cv2.CV_64F)
        np.testing.assert_allclose(ours, same_angle[:, ::-1], atol=1e-12)
        assert not np.allclose(ours, same_angle, atol=1e-3)


def test_gabor_even_size_is_exact_where_opencv_adds_one() -> None:
    cv2 = pytest.importorskip("cv2")
    assert gabor(size=4, sigma=2).shape == (4, 4)
    assert cv2.getGaborKernel((4, 4), 2, math.pi, 8, 0.5, 0).shape == (5, 5)
    # featmap's 4×4 samples sit at half-pixel offsets: ±0.5, ±1.5 from the centre
    x = np.array([-1.5, -0.5, 0.5, 1.5])
    expected = np.exp(-(x[None, :] ** 2 + 0.25 * x[:, None] ** 2) / 8) * np.cos(2 * math.pi * x[None, :] / 8)
    np.testing.assert_allclose(gabor(size=4, sigma=2, theta=0, lambd=8, gamma=0.5), expected, atol=1e-12)
