"""The `Kernel` record (one named filter) and the `KernelBank` (the kernels one run applies)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import field

import numpy as np
from numpy.typing import NDArray

from featmap.errors import KernelFileError
from featmap.frozen import frozen_dataclass

__all__ = ["Kernel", "KernelBank"]


@frozen_dataclass(eq=False)
class Kernel:
    """One named filter.

    Attributes
    ----------
    name : str
        Letters, digits, ``_`` and ``-``; safe to use in a file name.
    weights : ndarray, shape (kh, kw) or (C, kh, kw)
        float32, read-only. ``(kh, kw)`` filters each channel; ``(C, kh, kw)`` sums over channels.
    bias : float or None
        Added after the sum; None means the filter has no bias parameter.
    description, source : str
        What it does; where the weights come from.
    tags : tuple of str
        Groups it belongs to (``edges``, ``blur``…); ``-k TAG`` selects them all.
    origin : str
        The file it came from, or ``parametric``.

    Examples
    --------
    >>> k = Kernel("delta", np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]]))
    >>> k.size, k.weights.dtype.name
    ((3, 3), 'float32')
    """

    name: str
    weights: NDArray[np.floating]
    bias: float | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    source: str = ""
    origin: str = ""

    def __post_init__(self) -> None:
        w = np.array(self.weights, dtype=np.float32)
        w.setflags(write=False)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "tags", tuple(self.tags))

    @property
    def size(self) -> tuple[int, int]:
        """``(kh, kw)``."""
        return (int(self.weights.shape[-2]), int(self.weights.shape[-1]))

    @property
    def per_channel(self) -> bool:
        """True when the weights are ``(C, kh, kw)``: one slice per input channel."""
        return self.weights.ndim == 3


@frozen_dataclass
class KernelBank:
    """An ordered selection of kernels with unique names, as applied in one run.

    Examples
    --------
    >>> bank = KernelBank((Kernel("box3", np.full((3, 3), 1 / 9)),))
    >>> bank.names
    ('box3',)
    """

    kernels: tuple[Kernel, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for k in self.kernels:
            if k.name in seen:
                raise KernelFileError(
                    k.origin or k.name,
                    f"kernel {k.name!r} is selected twice",
                    "select each kernel once (a tag may already include it)",
                )
            seen.add(k.name)

    def __iter__(self) -> Iterator[Kernel]:
        return iter(self.kernels)

    def __len__(self) -> int:
        return len(self.kernels)

    @property
    def names(self) -> tuple[str, ...]:
        """The kernels' names in order."""
        return tuple(k.name for k in self.kernels)
