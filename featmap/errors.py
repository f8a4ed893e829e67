"""Exceptions raised by featmap; each renders as one line ``what: problem; fix``."""

from __future__ import annotations

__all__ = [
    "FeatmapError",
    "ImageReadError",
    "KernelFileError",
    "OptionError",
    "OutputExistsError",
    "ShapeError",
    "SpecError",
]


class FeatmapError(ValueError):
    """Base class: a user-facing error with what went wrong, the problem and the fix.

    Examples
    --------
    >>> str(FeatmapError("stride", "must be >= 1; got 0", "use a stride of 1 or more"))
    'stride: must be >= 1; got 0; use a stride of 1 or more'
    """

    def __init__(self, what: str, problem: str, fix: str | None = None) -> None:
        self.what = what
        self.problem = problem
        self.fix = fix
        text = f"{what}: {problem}" if what else problem
        if fix:
            text = f"{text}; {fix}"
        super().__init__(text)


class KernelFileError(FeatmapError):
    """A kernel file or kernel argument is malformed."""


class ImageReadError(FeatmapError):
    """An image cannot be read (missing, corrupt, truncated, too large, not an image)."""


class SpecError(FeatmapError):
    """A layer specification or option value is malformed."""


class OptionError(SpecError):
    """Options that cannot go together (e.g. ``pool_size`` without ``pool``): a usage error on the command line."""


class ShapeError(FeatmapError):
    """A geometry cannot work (kernel larger than the padded input, channel mismatch)."""


class OutputExistsError(FeatmapError):
    """An output file exists and was made by a different run."""
