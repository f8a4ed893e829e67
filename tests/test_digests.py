"""featmap.digests: the same digests as hashlib's, from Python's built-in modules (no OpenSSL), or from hashlib where
this Python has no such module."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from featmap.digests import blake2b, sha256

DATA = [b"", b"abc", bytes(range(256)) * 300, "ünïcode".encode()]


@pytest.mark.parametrize("data", DATA)
def test_the_digests_are_hashlibs(data: bytes) -> None:
    assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    assert blake2b(data, digest_size=16).hexdigest() == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert blake2b(data).hexdigest() == hashlib.blake2b(data).hexdigest()
    assert (
        sha256(b"abc").hexdigest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )  # FIPS 180-2


def test_without_pythons_own_modules_hashlib_makes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("_sha2", "_sha256", "_blake2"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError
    assert sha256(b"abc").hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert blake2b(b"abc", digest_size=16).hexdigest() == hashlib.blake2b(b"abc", digest_size=16).hexdigest()


def test_making_them_loads_no_openssl() -> None:
    code = (
        "import sys; from featmap.digests import blake2b, sha256; sha256(b'x').hexdigest(); blake2b(b'x').hexdigest(); "
        "print('_hashlib' in sys.modules, 'hashlib' in sys.modules)"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert shown.stdout.split() == ["False", "False"]
