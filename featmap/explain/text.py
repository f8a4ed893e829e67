"""Numbers and sums as a learner reads them (shared by the terminal view and the GIF)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["format_number", "terms_text"]


def format_number(value: float) -> str:
    """A matrix entry as a learner reads it: ``4``, ``-0.5``, ``0.7843``, ``1.235e+07``; ``–`` for no value.

    Examples
    --------
    >>> [format_number(v) for v in (4.0, -0.5, 2 / 3, 12345678.9, float("nan"))]
    ['4', '-0.5', '0.6667', '1.235e+07', '–']
    """
    if not np.isfinite(value):
        return "–" if np.isnan(value) else ("∞" if value > 0 else "-∞")
    if value == 0:
        return "0"
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    if 1e-4 <= abs(value) < 1e6:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.3e}"


def terms_text(values: Iterable[float], limit: int = 27) -> str:
    """``"1 + 0 - 2"``: the terms of a sum, or ``"sum of N products"`` beyond ``limit`` terms.

    Examples
    --------
    >>> terms_text([1.0, 0.0, -2.0])
    '1 + 0 - 2'
    """
    numbers = [float(v) for v in values]
    if len(numbers) > limit:
        return f"sum of {len(numbers)} products"
    text = format_number(numbers[0])
    for v in numbers[1:]:
        text += f" - {format_number(-v)}" if v < 0 else f" + {format_number(v)}"
    return text
