"""Exceptions raised by featmap; each renders as one line ``what: problem; fix``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "DamagedImageWarning",
    "FeatmapError",
    "ImageReadError",
    "KernelFileError",
    "LimitError",
    "MissingExtraError",
    "ModelMappingError",
    "NothingToDoError",
    "OptionError",
    "OutputBusyError",
    "OutputExistsError",
    "ShapeError",
    "SpecError",
    "brief",
    "install_hint",
]


class FeatmapError(ValueError):
    """Base class: a user-facing error with what went wrong, the problem and the fix.

    ``details`` are further lines (one item each, e.g. every node of a model that cannot be mapped): the first
    line stays ``what: problem; fix`` and each detail follows on its own indented line.

    Examples
    --------
    >>> str(FeatmapError("stride", "must be >= 1; got 0", "use a stride of 1 or more"))
    'stride: must be >= 1; got 0; use a stride of 1 or more'
    >>> FeatmapError("net.onnx", "2 nodes cannot be mapped", details=("a (Erf)", "b (If)")).details
    ('a (Erf)', 'b (If)')
    """

    #: The command line's exit code for this kind of error.
    exit_code = 1

    def __init__(self, what: str, problem: str, fix: str | None = None, *, details: Sequence[str] = ()) -> None:
        what, problem = _printable(what), _printable(problem)
        fix = None if fix is None else _printable(fix)
        self.what = what
        self.problem = problem
        self.fix = fix
        #: Lines that itemise the one-line message (every tensor a weights file lacks…): the command line prints
        #: them indented under it, each one line; ``str()`` is the one line alone.
        self.details = tuple(_printable(line) for line in details)
        text = f"{what}: {problem}" if what else problem
        if fix:
            text = f"{text}; {fix}"
        #: The first line alone (``what: problem; fix``).
        self.line = text
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled with its parts, details included (a batch's helper processes send errors back)."""
        return _rebuild, (type(self), self.what, self.problem, self.fix, self.details)


def _rebuild(cls: type[FeatmapError], what: str, problem: str, fix: str | None, details: tuple[str, ...]) -> Any:
    return cls(what, problem, fix, details=details)


_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


def _printable(text: str) -> str:
    r"""``text`` with control characters (a newline in a file name or a kernel string) escaped: one line.

    Examples
    --------
    >>> print(_printable("a\nb"))
    a\nb
    """
    return str(text).translate(_CONTROL)


class KernelFileError(FeatmapError):
    """A kernel file or kernel argument is malformed."""


class ImageReadError(FeatmapError):
    """An image cannot be read (missing, corrupt, truncated, too large, not an image)."""


class SpecError(FeatmapError):
    """A layer specification or option value is malformed."""


class ModelMappingError(SpecError):
    """A model file whose graph featmap cannot run (operators, control flow, dynamic sizes): a usage error (exit 2),
    with every offending node as a detail line."""

    exit_code = 2


class OptionError(SpecError):
    """Options that cannot go together (e.g. ``pool_size`` without ``pool``): a usage error on the command line."""


class ShapeError(FeatmapError):
    """A geometry cannot work (kernel larger than the padded input, channel mismatch)."""


class OutputExistsError(FeatmapError):
    """An output file exists and was made by a different run."""


class OutputBusyError(FeatmapError):
    """Another featmap run is writing into the output folder (its lock is live)."""

    exit_code = 5


class NothingToDoError(FeatmapError):
    """The inputs hold no image to process (an empty folder, only ignored files)."""

    exit_code = 4


class LimitError(FeatmapError):
    """A size, count, depth or allocation exceeds one of featmap's resource limits (see `featmap.limits`)."""


class MissingExtraError(SpecError):
    """A feature needs an optional package that is not installed; the fix names the ``pip install``.

    A failure (exit 1) whatever the command: the command line was right, the installation lacks a part.
    """


class DamagedImageWarning(UserWarning):
    """An image was read although its decoder said its data is damaged (a JPEG scan cut short and closed, bytes
    changed in transit): its maps are made from what the decoder recovered, which may be gray fill."""


def install_hint(extra: str, packages: str = "") -> str:
    """The install command for an optional extra, for an installed featmap and for a clone of the repository.

    Examples
    --------
    >>> install_hint("dask")
    "pip install 'featmap[dask]' (in a clone: pip install '.[dask]')"
    """
    what = f" ({packages})" if packages else ""
    return f"pip install 'featmap[{extra}]'{what} (in a clone: pip install '.[{extra}]')"


def brief(value: object, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters, so that an error message stays one short line.

    Examples
    --------
    >>> brief("x" * 100, 12)
    "'xxxxxxx…"
    """
    try:
        text = repr(value) if not isinstance(value, (list, dict, tuple, set)) else _brief_container(value, width)
    except (RecursionError, ValueError):  # a deep or huge value; ValueError: int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[: width - 4] + "…"


def _brief_container(value: object, width: int) -> str:
    """A container's repr built item by item until ``width`` characters (never the whole of a huge one)."""
    if isinstance(value, dict):
        items = iter(value.items())
        open_, close = "{", "}"
    else:
        items = iter(value)  # type: ignore[call-overload]  # list, tuple or set
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")") if isinstance(value, tuple) else ("{", "}")
    parts: list[str] = []
    length = 0
    for item in items:
        if length > width:
            parts.append("…")
            break
        if isinstance(item, tuple) and isinstance(value, dict):
            key, inner = item
            part = f"{brief(key, width)}: {brief(inner, width)}"
        else:
            part = brief(item, width)
        parts.append(part)
        length += len(part) + 2
    return open_ + ", ".join(parts) + close
