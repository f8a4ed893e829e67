"""Shared fixtures: a Click runner, small images in tmp_path, array helpers; hypothesis without deadlines."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import settings
from PIL import Image

# A suite started with SIGINT ignored (a background job of a non-interactive shell, nohup) would pass that on to
# every featmap it starts (an ignored signal stays ignored across exec), and the tests that stop one with SIGINT
# would find it ignored: exit 0 instead of 130. Handled here, the signal is back to its default in the children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# No hypothesis test has a deadline: how long an example takes is the machine's load, not a property of the code
# (a 200 ms deadline failed a landing at load 5), and the suite makes no timing assertions.
settings.register_profile("featmap", deadline=None)
settings.load_profile("featmap")

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="Rewrite tests/golden/*.json from the current code.")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


SAMPLES = REPO / "samples"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)


@pytest.fixture
def gray_png(tmp_path: Path) -> Path:
    """A 24x32 8-bit gray PNG with a bright square (values known exactly)."""
    pixels = np.full((24, 32), 40, dtype=np.uint8)
    pixels[6:18, 8:20] = 200
    path = tmp_path / "square.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., Path]:
    """Save an array with Pillow under tmp_path and return the path."""

    def make(name: str, array: np.ndarray, **save: object) -> Path:
        path = tmp_path / name
        Image.fromarray(array).save(path, **save)
        return path

    return make


@pytest.fixture(scope="session")
def dask_cluster() -> object:
    """One Dask LocalCluster of 2 single-threaded worker processes for the whole session (skipped without the
    ``dask`` extra); tests connect to it by address, as a user connects to a running cluster."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed: pip install '.[dask]'")
    import logging
    import os

    saved = dict(os.environ)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    )
    os.environ.clear()  # the nannies run here and set the workers' variables (MALLOC_TRIM_THRESHOLD_, …) in it
    os.environ.update(saved)
    yield cluster
    cluster.close()


@pytest.fixture
def memory() -> Iterator[str]:
    """``memory://featmap-test``: fsspec's in-process file system (skipped without the ``dask`` extra), emptied
    after the test."""
    fsspec = pytest.importorskip("fsspec", reason="the dask extra is not installed: pip install '.[dask]'")
    fs = fsspec.filesystem("memory")
    yield "memory://featmap-test"
    if fs.exists("/featmap-test"):
        fs.rm("/featmap-test", recursive=True)
