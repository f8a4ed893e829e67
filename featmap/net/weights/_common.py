"""Shared by the weights modules: limits, layer kinds, names and shape text."""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import SpecError

BYTES_ENV = "FEATMAP_MAX_WEIGHTS_BYTES"
ELEMENTS_ENV = "FEATMAP_MAX_WEIGHTS_ELEMENTS"
DEFAULT_BYTES = 2 << 30
DEFAULT_ELEMENTS = 500_000_000
#: Layer kinds that carry weights; ``depthwise`` is a conv with groups = input channels.
KINDS = ("conv", "depthwise", "conv1d", "dense", "bn")

Weights = dict[str, NDArray[np.floating[Any]]]


def limit(env: str, default: int) -> int:
    """The limit in force: ``env`` (a whole number, with an optional binary K/M/G suffix) or ``default``."""
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    match = re.fullmatch(r"(\d[\d_]*)\s*([kmg]?)(?:i?b)?", text, re.IGNORECASE)
    if not match or int(match[1]) < 1:
        raise SpecError(env, f"must be a whole number >= 1 (K/M/G allowed); got {text[:40]!r}", f"e.g. {env}=4G")
    return int(match[1]) << {"": 0, "k": 10, "m": 20, "g": 30}[match[2].lower()]


def check_size(where: str, name: str, shape: tuple[int, ...], total_bytes: int) -> None:
    """Refuse one tensor over the element limit, or tensors whose data together pass the byte limit."""
    count, max_count = int(np.prod(shape, dtype=np.int64)), limit(ELEMENTS_ENV, DEFAULT_ELEMENTS)
    if count > max_count:
        raise SpecError(
            f"{where}: tensor `{name}`",
            f"has {count:,} elements, over the limit of {max_count:,} per tensor",
            f"set {ELEMENTS_ENV}={count} (or more) to allow it",
        )
    max_bytes = limit(BYTES_ENV, DEFAULT_BYTES)
    if total_bytes > max_bytes:
        raise SpecError(
            where,
            f"holds {total_bytes:,} bytes of tensors (at `{name}`), over the limit of {max_bytes:,}",
            f"set {BYTES_ENV}={total_bytes} (or more) to allow it",
        )


def shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def split_key(key: str) -> tuple[str, str]:
    layer, _, suffix = key.rpartition(".")
    return layer, suffix
