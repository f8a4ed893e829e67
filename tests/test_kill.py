"""Kill a batch at random moments, then resume: the result is byte-identical to an uninterrupted run, and no
process, temporary file or lock is left behind.

CI runs ``FEATMAP_KILL_TRIALS`` (default 1) trials of each signal; ``tools/fuzz.sh`` runs 20 of each.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TRIALS = int(os.environ.get("FEATMAP_KILL_TRIALS", "1"))
_SKIP = {"manifest.jsonl", ".featmap-writing.jsonl"}


def _inputs(folder: Path, count: int = 8) -> Path:
    rng = np.random.default_rng(7)
    folder.mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (192, 256), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def _command(src: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "featmap",
        "apply",
        str(src),
        "-k",
        "sobel",
        "-k",
        "gabor",
        "-o",
        str(out),
        "-j",
        "2",
        *extra,
    ]


def _tree(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name not in _SKIP
    }


def _group_alive(pgid: int) -> list[int]:
    """Processes still in the process group ``pgid`` (the run's helpers and resource tracker inherit it)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes], float]:
    root = tmp_path_factory.mktemp("kill")
    src = _inputs(root / "in")
    out = root / "ref"
    started = time.monotonic()
    done = subprocess.run(_command(src, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return src, _tree(out), time.monotonic() - started


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find left-over processes")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_then_resume_is_identical(
    tmp_path: Path, reference: tuple[Path, dict[str, bytes], float], sig: int, trial: int
) -> None:
    src, expected, seconds = reference
    out = tmp_path / "out"
    moment = random.Random(f"{sig}-{trial}").uniform(0, seconds / 2)
    proc = subprocess.Popen(_command(src, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (out / "manifest.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the run has started work: an image is done
    time.sleep(moment)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)  # returns once no process holds the pipes: helpers gone too
    # 130: interrupted; 0: done before the signal; -SIGINT: the signal came as Python was exiting (its handler
    # is gone by then), after the run had finished
    assert proc.returncode in (0, -signal.SIGKILL, 130, -signal.SIGINT), stderr
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_alive(proc.pid) == [], "a helper outlived its parent"
    if sig == signal.SIGINT:
        assert not [p for p in out.rglob("*.tmp")], "SIGINT must leave no temporary file"
    resumed = subprocess.run(_command(src, out, "--skip-existing"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _tree(out) == expected
    assert not [p for p in out.rglob("*.tmp")]
    assert not (out / ".featmap.lock").exists() and not (out / ".featmap-writing.jsonl").exists()


def test_a_live_run_holds_the_folder(tmp_path: Path, reference: tuple[Path, dict[str, bytes], float]) -> None:
    src, _, _ = reference
    out = tmp_path / "out"
    first = subprocess.Popen(_command(src, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (out / ".featmap.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = subprocess.run(_command(src, out), capture_output=True, text=True, timeout=120)
    first.communicate(timeout=120)
    if first.returncode == 0 and second.returncode == 0:
        pytest.skip("the first run finished before the second started")  # a very fast machine
    assert second.returncode == 5, second.stderr
    assert f"pid {first.pid}" in second.stderr and "is being written by another featmap run" in second.stderr
    assert first.returncode == 0
