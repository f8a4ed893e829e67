"""SHA-256 and BLAKE2b of small data without loading OpenSSL.

`hashlib` loads OpenSSL's libcrypto when it is imported (~12M instructions, a few ms of a command's start-up),
even for a BLAKE2b, which it takes from Python's own module. The digests featmap makes of small data (a job's
options, the built-in kernel files, the manifest's tail) come from Python's built-in implementations instead,
where this Python has them: the same digests, bit for bit (tested against `hashlib`). Large data (a weights
file) is hashed by `hashlib`, whose OpenSSL SHA-256 is several times faster per byte.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, cast

__all__ = ["Digest", "blake2b", "sha256"]


class Digest(Protocol):
    """What a hash object gives (`hashlib`'s, or a built-in module's)."""

    def update(self, data: bytes, /) -> None:
        """Hash ``data`` after what was hashed before."""

    def digest(self) -> bytes:
        """The digest of what was hashed."""
        ...

    def hexdigest(self) -> str:
        """The digest as hexadecimal text."""
        ...


def _first(modules: tuple[str, ...], name: str) -> Callable[..., Digest]:
    """``name`` from the first of ``modules`` that imports (the last is `hashlib`, which always does)."""
    for module in modules[:-1]:
        try:
            return cast(Callable[..., Digest], getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):  # not this Python's (or not built in, or without that hash)
            continue
    return cast(Callable[..., Digest], getattr(importlib.import_module(modules[-1]), name))


def sha256(data: bytes) -> Digest:
    """A SHA-256 hash object of ``data``, as ``hashlib.sha256(data)``."""
    return _first(("_sha2", "_sha256", "hashlib"), "sha256")(data)  # _sha2 from Python 3.12, _sha256 before


def blake2b(data: bytes, *, digest_size: int = 64) -> Digest:
    """A BLAKE2b hash object of ``data``, as ``hashlib.blake2b(data, digest_size=digest_size)``."""
    return _first(("_blake2", "hashlib"), "blake2b")(data, digest_size=digest_size)
