"""Parametric kernels from text: ``gaussian:size=5,sigma=1.2`` → a `Kernel` whose name spells the arguments."""

from __future__ import annotations

import math

from featmap.errors import KernelFileError, brief
from featmap.kernels.generators import generate
from featmap.kernels.records import Kernel

__all__ = ["parametric_kernel"]


def _cut(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _fmt_number(value: float) -> str:
    return f"{value:g}".replace("-", "m").replace(".", "p").replace("+", "")


def parametric_kernel(text: str) -> Kernel:
    """Make a kernel from ``generator:key=value,…``, e.g. ``gaussian:size=5,sigma=1.2``.

    The kernel's name spells out the arguments so that outputs stay apart. Every value must be a
    finite number; sizes are bounded by the kernel-size limit (`featmap.limits.KERNEL_SIZE`).

    Examples
    --------
    >>> k = parametric_kernel("gaussian:size=5,sigma=1.2")
    >>> k.name, k.size
    ('gaussian-size5-sigma1p2', (5, 5))
    """
    gen, _, args = text.partition(":")
    gen = gen.strip().lower()
    params: dict[str, float] = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise KernelFileError(
                _cut(text), f"argument {brief(item)} has no value", f"write it as key=value, e.g. {gen}:size=5"
            )
        try:
            number = float(value)
        except ValueError:
            raise KernelFileError(_cut(text), f"`{key.strip()}` must be a number; got {brief(value)}") from None
        if not math.isfinite(number):
            raise KernelFileError(_cut(text), f"`{key.strip()}` must be a finite number; got {brief(value)}")
        params[key.strip()] = number
    weights = generate(gen, **params)
    name = "-".join([gen] + [f"{k}{_fmt_number(v)}" for k, v in params.items()])
    described = ", ".join(f"{k}={v:g}" for k, v in params.items()) or "defaults"
    return Kernel(
        name,
        weights,
        description=f"{gen} kernel ({described})",
        tags=("parametric",),
        source="generated",
        origin="parametric",
    )
