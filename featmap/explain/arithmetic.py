"""The output-size arithmetic per axis and where each window goes, from a `featmap.core.geometry.ConvGeometry`."""

from __future__ import annotations

from featmap.core.geometry import ConvGeometry
from featmap.errors import ShapeError
from featmap.explain.limits import Matrix
from featmap.frozen import frozen_dataclass

__all__ = ["AxisArithmetic", "axes_of", "check_fits", "positions_of", "window_cells"]


def check_fits(g: ConvGeometry, arr: Matrix, kernel_hw: tuple[int, ...]) -> None:
    """Refuse a geometry planned for another input or kernel size."""
    if g.in_hw != arr.shape[:2] or g.kernel_hw != tuple(kernel_hw):
        raise ShapeError(
            "geometry",
            f"is planned for a {g.in_hw} input and {g.kernel_hw} kernel; got {arr.shape[:2]} and {tuple(kernel_hw)}",
            "plan the layer on this input",
        )


@frozen_dataclass
class AxisArithmetic:
    """The output-size formula along one axis, with its numbers.

    ``unused`` counts the rows (or columns) at the end of the padded input that no window reaches
    because the stride does not fit; they start at padded index ``padded - unused``.
    """

    axis: str
    size: int
    kernel: int
    dilation: int
    pad_before: int
    pad_after: int
    stride: int
    out: int
    unused: int

    @property
    def padded(self) -> int:
        """Input length with the padding."""
        return self.size + self.pad_before + self.pad_after

    @property
    def span(self) -> int:
        """The length the kernel's dilated extent covers: ``dilation * (kernel - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    def _pad_terms(self) -> tuple[str, str]:
        if self.pad_before == self.pad_after:
            return "2P", f"2·{self.pad_before}"
        return "P₁ + P₂", f"{self.pad_before} + {self.pad_after}"

    @property
    def formula(self) -> str:
        """The rule in symbols (``(N − F + 2P) / S + 1``, floored)."""
        pads, _ = self._pad_terms()
        kernel = "F" if self.dilation == 1 else "(D·(F − 1) + 1)"
        return f"(N − {kernel} + {pads}) / S + 1"

    @property
    def worked(self) -> str:
        """The rule with the numbers put in, floored where the stride does not divide."""
        _, pads = self._pad_terms()
        kernel = str(self.kernel) if self.dilation == 1 else f"({self.dilation}·({self.kernel} − 1) + 1)"
        reach = self.padded - self.span
        quotient = f"{reach} / {self.stride}" if reach % self.stride == 0 else f"⌊{reach} / {self.stride}⌋"
        return f"({self.size} − {kernel} + {pads}) / {self.stride} + 1 = {quotient} + 1 = {self.out}"

    @property
    def note(self) -> str | None:
        """What the stride leaves unused, or None when every padded row (column) is reached."""
        if not self.unused:
            return None
        word = self.axis[:-1] if self.unused == 1 else self.axis
        first = self.padded - self.unused
        where = f"index {first}" if self.unused == 1 else f"indices {first}–{self.padded - 1}"
        return (
            f"{self.reach_text()} leaves {self.unused} {word} unused (padded {where}): floored, as PyTorch and Keras do"
        )

    def reach_text(self) -> str:
        """``"stride 2 over 8 − 3 = 5"``: why the stride does not fit."""
        return f"stride {self.stride} over {self.padded} − {self.span} = {self.padded - self.span}"


def axes_of(g: ConvGeometry) -> tuple[AxisArithmetic, AxisArithmetic]:
    return tuple(  # type: ignore[return-value]  # two axes
        AxisArithmetic(
            name,
            g.in_hw[a],
            g.kernel_hw[a],
            g.dilation[a],
            g.padding[2 * a],
            g.padding[2 * a + 1],
            g.stride[a],
            g.out_hw[a],
            g.dropped_hw[a],
        )
        for a, name in enumerate(("rows", "columns"))
    )


def window_cells(g: ConvGeometry, r: int, c: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Padded-input rows and columns the window of output ``(r, c)`` reads (dilation included)."""
    if not (0 <= r < g.out_hw[0] and 0 <= c < g.out_hw[1]):
        raise ShapeError(
            "position",
            f"({r}, {c}) is outside the {g.out_hw[0]}×{g.out_hw[1]} output",
            f"use rows 0–{g.out_hw[0] - 1} and columns 0–{g.out_hw[1] - 1}",
        )
    (kh, kw), (sh, sw), (dh, dw) = g.kernel_hw, g.stride, g.dilation
    return tuple(r * sh + i * dh for i in range(kh)), tuple(c * sw + j * dw for j in range(kw))


def positions_of(g: ConvGeometry) -> list[tuple[int, int]]:
    return [(r, c) for r in range(g.out_hw[0]) for c in range(g.out_hw[1])]
