"""A pipe or a device named where featmap expects a network, weights or spec file: one line naming it, before any
byte of it is read (a FIFO blocks its reader until a writer comes; /dev/zero never ends: sniffing it as a zip
or hashing it as weights ran until the memory or the patience ran out)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLES

LENET = REPO / "featmap" / "net" / "models" / "lenet5-digits.yaml"
DIGIT = SAMPLES / "digits" / "digit_3.png"

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="POSIX only")


def _limited() -> None:
    """The child may not take more than 2 GiB of address space: a regression is a MemoryError, not the OOM killer."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _featmap(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "featmap", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        preexec_fn=_limited,  # noqa: PLW1509 - the child only, before it runs anything
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/null"])
@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (("apply", DIGIT, "--spec", "{}", "-o", "out"), "give a YAML or JSON file"),
        (("shape", "--spec", "{}"), "give a YAML or JSON file"),
        (("apply", DIGIT, "--spec", LENET, "--weights", "{}", "-o", "out"), "give a weights file"),
    ],
)
def test_a_special_file_is_refused_in_one_line(
    tmp_path: Path, fifo: Path, special: str, args: tuple[str | Path, ...], fix: str
) -> None:
    path = str(fifo) if special == "fifo" else special
    done = _featmap(tmp_path, *(path if a == "{}" else a for a in args))
    assert done.returncode in (1, 2), done.stderr[-2000:]
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"featmap: error: {path}") and "is not a regular file (a pipe or a device)" in line
    assert fix in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_an_input_that_is_a_pipe_or_a_device_is_named_as_such(tmp_path: Path, fifo: Path, special: str) -> None:
    """It was "holds no image (0 files ignored …); check the folder, or pass -r", as if it were an empty folder."""
    path = str(fifo) if special == "fifo" else special
    done = _featmap(tmp_path, "apply", path, "-k", "sobel_x", "-o", "out")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"featmap: error: {path}: is not an image file or a folder (a pipe or a device); check the path or pattern"
    ]
