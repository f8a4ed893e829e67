"""Parametric kernels (Gaussian, box, LoG, DoG, Gabor, motion blur) and compass rotations.

Each generator takes keyword arguments and returns a float64 ``(kh, kw)`` array; angles are in
degrees, counter-clockwise, with rows growing downwards (image convention).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from featmap.errors import KernelFileError
from featmap.limits import KERNEL_SIZE

__all__ = ["GENERATORS", "generate", "rotate45", "rotations"]

Array = NDArray[np.float64]


def _odd_size(size: float | None, sigma: float, what: str, key: str = "size") -> int:
    """The kernel's side: ``size``, or ``2*ceil(3*sigma)+1`` from ``sigma``; bounded by the kernel-size limit."""
    if size is None:
        derived = 2 * math.ceil(3 * sigma) + 1 if 3 * sigma < 1e18 else float("inf")
        KERNEL_SIZE.check(derived, f"{what}: the size 2*ceil(3*sigma)+1 from `sigma` {sigma:g}")
        return int(derived)
    if not math.isfinite(size) or size != int(size) or size < 1:
        raise KernelFileError(what, f"`{key}` must be a whole number >= 1; got {size:g}")
    KERNEL_SIZE.check(size, f"{what}: `{key}`")
    return int(size)


def _grid(size_h: int, size_w: int) -> tuple[Array, Array]:
    """Row and column offsets from the kernel centre (half-integers for even sizes)."""
    y = np.arange(size_h) - (size_h - 1) / 2
    x = np.arange(size_w) - (size_w - 1) / 2
    return np.meshgrid(y, x, indexing="ij")


def _positive(value: float, name: str, what: str) -> float:
    if not value > 0 or not math.isfinite(value):
        raise KernelFileError(what, f"`{name}` must be > 0 and finite; got {value:g}")
    return float(value)


# OpenCV's getGaussianKernel uses fixed tables when no sigma is given and the size is odd and small
# (the binomial rows for 3 and 5); these are its values, in 1-D. OpenCV 4.x stops at 7, 5.x adds 9.
_SMALL_GAUSSIAN = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
    9: tuple(v / 64 for v in (1, 3.25, 7.5, 12.75, 15, 12.75, 7.5, 3.25, 1)),
}


def gaussian(size: float | None = None, sigma: float | None = None) -> Array:
    """Normalised Gaussian, equal to OpenCV's ``getGaussianKernel(size, sigma)`` outer product with itself.

    Without ``sigma``, sizes 1, 3, 5, 7 and 9 take OpenCV 5's fixed tables (``size=3`` is
    ``[0.25, 0.5, 0.25]`` per axis; OpenCV 4.x computes 9 from the formula) and other sizes OpenCV's
    default ``0.3·((size-1)/2 - 1) + 0.8``; without ``size``, ``size = 2·ceil(3·sigma) + 1``. Even
    sizes are sampled at half-pixel offsets from the centre.

    Examples
    --------
    >>> gaussian(size=3)[1].tolist()
    [0.125, 0.25, 0.125]
    >>> g = gaussian(size=3, sigma=1.0)
    >>> round(float(g.sum()), 6), g.shape
    (1.0, (3, 3))
    """
    if sigma is None:
        if size is None:
            raise KernelFileError("gaussian", "needs `size` or `sigma`", "e.g. gaussian:size=5,sigma=1.2")
        table = _SMALL_GAUSSIAN.get(_odd_size(size, 1, "gaussian"))
        if table is not None:
            row = np.array(table)
            return np.outer(row, row)
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    sigma = _positive(sigma, "sigma", "gaussian")
    n = _odd_size(size, sigma, "gaussian")
    yy, xx = _grid(n, n)
    g = np.exp(-(yy**2 + xx**2) / (2 * sigma**2))
    return g / g.sum()


def box(size: float = 3, height: float | None = None) -> Array:
    """Mean filter of ``size`` (or ``height`` x ``size``): every weight ``1 / (kh*kw)``.

    Examples
    --------
    >>> box(size=2).tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    """
    kw = _odd_size(size, 1, "box")
    kh = kw if height is None else _odd_size(height, 1, "box", "height")
    return np.full((kh, kw), 1.0 / (kh * kw))


def log(size: float | None = None, sigma: float = 1.0) -> Array:
    """Laplacian of Gaussian (negative centre, like the 4-neighbour Laplacian), shifted to sum 0.

    Examples
    --------
    >>> k = log(size=9, sigma=1.4)
    >>> abs(float(k.sum())) < 1e-12, float(k[4, 4]) < 0
    (True, True)
    """
    sigma = _positive(sigma, "sigma", "log")
    n = _odd_size(size, sigma, "log")
    yy, xx = _grid(n, n)
    r2 = (yy**2 + xx**2) / (2 * sigma**2)
    k = -1 / (math.pi * sigma**4) * (1 - r2) * np.exp(-r2)
    return k - k.mean()


def dog(size: float | None = None, sigma: float = 1.0, sigma2: float | None = None) -> Array:
    """Difference of Gaussians ``G(sigma) - G(sigma2)``, ``sigma2`` defaulting to ``1.6 * sigma``.

    Examples
    --------
    >>> abs(float(dog(size=9, sigma=1.0).sum())) < 1e-12
    True
    """
    sigma = _positive(sigma, "sigma", "dog")
    wide = _positive(1.6 * sigma if sigma2 is None else sigma2, "sigma2", "dog")
    n = _odd_size(size, max(sigma, wide), "dog")
    return gaussian(n, sigma) - gaussian(n, wide)


def gabor(
    size: float | None = None,
    sigma: float = 3.0,
    theta: float = 0.0,
    lambd: float = 8.0,
    gamma: float = 0.5,
    psi: float = 0.0,
) -> Array:
    """Gabor kernel ``exp(-(x'^2 + gamma^2 y'^2) / 2 sigma^2) * cos(2 pi x' / lambd + psi)``.

    ``theta`` (stripe normal direction) and ``psi`` (phase) are in degrees; ``x' = x cos(theta) + y
    sin(theta)`` with x pointing right and y up, so ``theta`` turns counter-clockwise on screen (like
    ``motion`` and the compass rotations) and ``theta=0`` responds to vertical stripes.

    OpenCV's ``getGaborKernel`` writes its samples mirrored left-right (its x points left), so its angle
    turns clockwise: ``gabor(size, sigma, theta, …)`` equals ``cv2.getGaborKernel((size, size), sigma,
    radians(180 - theta), lambd, gamma, radians(psi))`` for odd sizes. An even ``size`` gives exactly
    ``size × size`` samples at half-pixel offsets, centred between pixels; OpenCV gives ``size + 1``.

    Examples
    --------
    >>> k = gabor(size=7, sigma=2, theta=0, lambd=4)
    >>> k.shape, bool(np.allclose(k, k[:, ::-1]))
    ((7, 7), True)
    """
    sigma = _positive(sigma, "sigma", "gabor")
    lambd = _positive(lambd, "lambd", "gabor")
    gamma = _positive(gamma, "gamma", "gabor")
    n = _odd_size(size, sigma, "gabor")
    rows, cols = _grid(n, n)
    x, y = cols, -rows
    t = math.radians(theta)
    xr = x * math.cos(t) + y * math.sin(t)
    yr = -x * math.sin(t) + y * math.cos(t)
    return np.exp(-(xr**2 + gamma**2 * yr**2) / (2 * sigma**2)) * np.cos(2 * math.pi * xr / lambd + math.radians(psi))


def motion(length: float = 9, angle: float = 0.0) -> Array:
    """Motion blur: a normalised line of ``length`` pixels at ``angle`` degrees (0 = horizontal).

    The segment is sampled finely and each sample lands on its nearest pixel, so the weights
    say how much of the line crosses each pixel.

    Examples
    --------
    >>> motion(length=3, angle=0).tolist()
    [[0.0, 0.0, 0.0], [0.333..., 0.333..., 0.333...], [0.0, 0.0, 0.0]]
    """
    if not math.isfinite(length) or length != int(length) or length < 1:
        raise KernelFileError("motion", f"`length` must be a whole number >= 1; got {length:g}")
    KERNEL_SIZE.check(length, "motion: `length`")
    n = int(length) | 1  # odd, so the line has a centre pixel
    centre = (n - 1) / 2
    samples = 16 * int(length)
    t = (np.arange(samples) + 0.5) / samples * length - length / 2  # evenly along the segment
    a = math.radians(angle)
    rows = np.rint(centre - t * math.sin(a)).astype(int)
    cols = np.rint(centre + t * math.cos(a)).astype(int)
    k = np.zeros((n, n))
    np.add.at(k, (np.clip(rows, 0, n - 1), np.clip(cols, 0, n - 1)), 1.0)
    return k / k.sum()


GENERATORS: dict[str, Callable[..., Array]] = {
    "gaussian": gaussian,
    "box": box,
    "log": log,
    "dog": dog,
    "gabor": gabor,
    "motion": motion,
}


def generate(name: str, **params: float) -> Array:
    """Make a parametric kernel by generator name.

    Examples
    --------
    >>> generate("box", size=3).shape
    (3, 3)
    """
    try:
        func = GENERATORS[name]
    except KeyError:
        raise KernelFileError(name[:40], "is not a parametric kernel", f"use one of: {', '.join(GENERATORS)}") from None
    import inspect

    accepted = list(inspect.signature(func).parameters)
    unknown = [key for key in params if key not in accepted]
    if unknown:
        raise KernelFileError(
            name,
            f"takes only {', '.join(accepted)}; got {unknown[0][:40]!r}",
            f"e.g. {name}:{accepted[0]}=5",
        )
    for key, value in params.items():
        if not math.isfinite(value):
            raise KernelFileError(name, f"`{key}` must be a finite number; got {value:g}")
    try:
        with np.errstate(all="ignore"):  # an extreme argument shows as non-finite weights, checked below
            weights = func(**params)
    except (OverflowError, ZeroDivisionError) as exc:  # Python float arithmetic on an extreme argument
        raise KernelFileError(
            name,
            f"these arguments ({', '.join(f'{k}={v:g}' for k, v in params.items())}) overflow ({exc})",
            "use values nearer 1",
        ) from None
    if not np.isfinite(weights).all():
        raise KernelFileError(
            name,
            f"these arguments ({', '.join(f'{k}={v:g}' for k, v in params.items())}) give weights that are not numbers",
            "use a sigma, lambd or gamma nearer 1 (a tiny sigma or a huge one underflows)",
        )
    return weights


# The 3x3 outer ring in clockwise order from the top-left corner.
_RING = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))


def rotate45(weights: Array) -> Array:
    """Rotate a 3x3 kernel 45° counter-clockwise by moving its outer ring one step.

    Two steps equal ``np.rot90`` (one 90° counter-clockwise turn), as with ImageMagick's ``@`` kernels.

    Examples
    --------
    >>> k = np.arange(9.0).reshape(3, 3)
    >>> bool(np.array_equal(rotate45(rotate45(k)), np.rot90(k)))
    True
    """
    if weights.shape[-2:] != (3, 3):
        raise KernelFileError("rotations", f"45° steps need a 3x3 kernel; got {weights.shape[-2:]}")
    out = weights.copy()
    for k, (r, c) in enumerate(_RING):
        src = _RING[(k + 1) % 8]
        out[..., r, c] = weights[..., src[0], src[1]]
    return out


def rotations(weights: Array, count: int) -> list[tuple[int, Array]]:
    """The kernel turned ``count`` times round a full circle: ``[(angle, weights), …]``.

    ``count`` is 2, 4 (90° steps, any kernel) or 8 (45° steps, 3x3 only).

    Examples
    --------
    >>> [angle for angle, _ in rotations(np.eye(3), 4)]
    [0, 90, 180, 270]
    """
    if count not in (1, 2, 4, 8):
        raise KernelFileError("rotations", f"must be 1, 2, 4 or 8; got {count}")
    step = 360 // count
    turned, current = [], weights
    for k in range(count):
        turned.append((k * step, current))
        if count == 8:
            current = rotate45(current)
        else:
            current = np.rot90(current, k=step // 90, axes=(-2, -1)).copy()
    return turned
