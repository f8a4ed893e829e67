"""Colormaps for feature maps: names resolved in the `cmap` library's catalogue, and the ``auto`` choice.

The colours come from `cmap` (pure Python, no dependencies: matplotlib's, ColorBrewer's, cmocean's,
colorcet's… maps), never from tables typed here. A `Colormap` holds the 256-entry lookup table that
matplotlib and `cmap` use: a display position ``t`` in [0, 1] takes entry ``min(floor(256 t), 255)``;
its 8-bit colour is ``floor(255 · rgb)``, as ``cmap.Colormap(name)(t, bytes=True)`` gives.

``auto`` picks a diverging map centred at 0 for a map holding a negative value (`DIVERGING_DEFAULT`,
blue below 0, white at 0, red above) and a perceptually uniform sequential one only for a map with no
negative value (`SEQUENTIAL_DEFAULT`): an all-negative map is not drawn on viridis with its least negative
value yellow. No files, no printing.

Examples
--------
>>> get_colormap("viridis").lut8[0].tolist()
[68, 1, 84]
>>> choose_colormap("auto", -1.0, 2.0).name, choose_colormap("auto", 0.0, 2.0).name
('RdBu_r', 'viridis')
>>> choose_colormap("auto", -3.0, -1.0).name
'RdBu_r'
"""

from __future__ import annotations

from dataclasses import field
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.core.cvfilter import opencv
from featmap.errors import SpecError
from featmap.frozen import frozen_dataclass

__all__ = [
    "AUTO",
    "DIVERGING_DEFAULT",
    "LUT_SIZE",
    "SEQUENTIAL_DEFAULT",
    "Colormap",
    "choose_colormap",
    "colormap_names",
    "get_colormap",
]

AUTO = "auto"
SEQUENTIAL_DEFAULT = "viridis"
DIVERGING_DEFAULT = "RdBu_r"
LUT_SIZE = 256
_REVERSED = "_r"


@frozen_dataclass
class Colormap:
    """A named colormap: its `cmap` name, category and lookup tables.

    Attributes
    ----------
    name : str
        As asked for (``RdBu_r``), or the default ``auto`` chose.
    qualified : str
        `cmap`'s namespaced name (``colorbrewer:RdBu_r``), which names the colours' source.
    diverging : bool
        A diverging map: featmap centres it at 0.
    lut : ndarray, shape (256, 3)
        RGB in [0, 1], from `cmap`.
    lut8 : ndarray, shape (256, 3), uint8
        ``floor(255 · lut)``: the 8-bit colours written to PNGs.
    """

    name: str
    qualified: str
    diverging: bool
    lut: NDArray[np.float64] = field(repr=False, compare=False)
    lut8: NDArray[np.uint8] = field(repr=False, compare=False)

    def colours8(self, positions: NDArray[np.floating]) -> NDArray[np.uint8]:
        """The 8-bit RGB colours of display positions in [0, 1] (clipped), shape ``positions.shape + (3,)``.

        Examples
        --------
        >>> get_colormap("gray").colours8(np.array([0.0, 0.5, 1.0])).tolist()
        [[0, 0, 0], [128, 128, 128], [255, 255, 255]]
        """
        index = np.multiply(positions, LUT_SIZE, dtype=np.float32)
        np.clip(index, 0, LUT_SIZE - 1, out=index)
        entries = index.astype(np.uint8)
        # one 4-byte gather per pixel, then RGBA -> RGB by OpenCV: 3x faster than indexing the (256, 3) table
        rgba = self._packed[entries].view(np.uint8).reshape(*entries.shape, 4)
        cv2 = opencv()
        if cv2 is not None and rgba.ndim == 3:
            colours: NDArray[np.uint8] = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
            return colours
        return np.ascontiguousarray(rgba[..., :3])

    @property
    def _packed(self) -> NDArray[np.uint32]:
        return _packed_lut(self.qualified, self.lut8)


_PACKED: dict[str, NDArray[np.uint32]] = {}


def _packed_lut(key: str, lut8: NDArray[np.uint8]) -> NDArray[np.uint32]:
    """The 8-bit table as one uint32 (RGB + a zero byte) per entry."""
    if key not in _PACKED:
        table = np.zeros((LUT_SIZE, 4), dtype=np.uint8)
        table[:, :3] = lut8
        _PACKED[key] = table.view(np.uint32).reshape(LUT_SIZE)
    return _PACKED[key]


def _catalog() -> Any:
    from cmap import Colormap as CmapColormap

    return CmapColormap.catalog()


@cache
def colormap_names() -> tuple[str, ...]:
    """Every short name `cmap` knows (``viridis``, ``RdBu``…), sorted; ``NAME_r`` reverses any of them."""
    return tuple(sorted(_catalog().short_keys(), key=str.lower))


def _unknown(name: str) -> SpecError:
    import difflib  # only for a misspelt name

    names = colormap_names()
    lowered = {n.lower(): n for n in names}
    wanted = name.lower().removesuffix(_REVERSED)
    close = [lowered[n] for n in difflib.get_close_matches(wanted, list(lowered), n=5, cutoff=0.6)]
    hint = f"did you mean {', '.join(close)}?" if close else "e.g. viridis, magma, gray, RdBu_r, coolwarm"
    return SpecError("`colormap`", f"unknown colormap {name!r}", f"{hint} (or auto; any of cmap's {len(names)} names)")


@cache
def get_colormap(name: str) -> Colormap:
    """The colormap called ``name`` in `cmap`'s catalogue (``NAME_r`` reversed); `SpecError` listing close
    matches when there is none."""
    from cmap import Colormap as CmapColormap

    text = name.strip()
    if not text or text.lower() == AUTO:
        raise SpecError("`colormap`", f"{name!r} names no colormap", "choose with choose_colormap, or give a name")
    base, reverse = (text[: -len(_REVERSED)], True) if text.lower().endswith(_REVERSED) else (text, False)
    catalog = _catalog()
    try:
        qualified = str(catalog.resolve(base))
    except KeyError:
        try:  # a name whose own spelling ends in _r
            qualified, reverse = str(catalog.resolve(text)), False
        except KeyError:
            raise _unknown(text) from None
    source = CmapColormap(qualified)
    if reverse:
        source = source.reversed()
    lut = np.asarray(source.lut(LUT_SIZE), dtype=np.float64)[:, :3]
    lut8 = (lut * 255).astype(np.uint8)  # truncated, as cmap's and matplotlib's bytes=True
    lut.setflags(write=False)
    lut8.setflags(write=False)
    shown = qualified + (_REVERSED if reverse else "")
    return Colormap(text, shown, source.category == "diverging", lut, lut8)


def choose_colormap(name: str | None, low: float, high: float) -> Colormap:
    """``name``'s colormap, or for ``auto``/None the default for a map spanning ``low``..``high``: diverging
    when it holds a negative value, sequential otherwise."""
    if name is None or name.strip().lower() == AUTO:
        return get_colormap(DIVERGING_DEFAULT if low < 0 else SEQUENTIAL_DEFAULT)
    return get_colormap(name)
