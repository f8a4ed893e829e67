"""Ctrl-C and SIGTERM at awkward moments: a one-image command stopped by SIGTERM cleans up as a batch does (exit
143, one line, no lock, journal or half-made output left, and the same command then runs), and an interrupt
during start-up (before the command's own handling) is one line and exit 130, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from featmap.cli import cli
from tests.conftest import REPO, SAMPLES

KERNELS = ["-k", "sobel_x", "-k", "sobel_y", "-k", "laplacian_4", "--padding", "same"]


#: A featmap process whose first map's PNG, once written, brings the signal from outside (the image half done).
STOP_AFTER_FIRST_MAP = """
import os, sys
import featmap.cli as cli
from featmap.io.writers.png import PngWriter
real, sig = PngWriter.add_layer, int(sys.argv[1])
def add_layer(self, targets, layer):
    written = real(self, targets, layer)
    if not getattr(PngWriter, "signalled", False):
        PngWriter.signalled = True
        os.kill(os.getpid(), sig)
    return written
PngWriter.add_layer = add_layer
sys.argv = ["featmap", *sys.argv[2:]]
cli.run()
"""


def _featmap(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def _left(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "")])
def test_one_image_stopped_half_way_cleans_up_and_says_one_line(tmp_path: Path, sig: int, code: int, word: str) -> None:
    out = tmp_path / "out"
    args = ["apply", str(SAMPLES / "camera.png"), *KERNELS, "-o", str(out), "--json"]
    stopped = _featmap(STOP_AFTER_FIRST_MAP, str(int(sig)), *args, cwd=tmp_path)
    assert stopped.returncode == code, (stopped.stdout, stopped.stderr)
    lines = [line for line in stopped.stderr.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("featmap: error: ") and word in lines[0]
    assert json.loads(stopped.stdout)["exit_code"] == code
    assert not out.exists() or _left(out) in ([], ["manifest.jsonl"])  # nothing half made, no lock or journal
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.stderr
    assert "note" not in again.stderr  # no dead run's lock or journal to clear
    assert _left(out) == ["camera/laplacian_4.png", "camera/sobel_x.png", "camera/sobel_y.png", "manifest.jsonl"]


def test_an_interrupt_during_start_up_is_one_line(tmp_path: Path) -> None:
    """Ctrl-C before the command's own handling (imports, the BLAS set-up): exit 130 and one line."""
    code = (
        "import sys, featmap.cli as c\n"
        "def stop(env):\n"
        "    raise KeyboardInterrupt\n"
        "c.quiet_blas_threads = stop\n"
        f"sys.argv = ['featmap', 'apply', {str(SAMPLES / 'camera.png')!r}, '-k', 'sobel_x', '--json', '-o', 'out']\n"
        "c.run()\n"
    )
    done = _featmap(code, cwd=tmp_path)
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == ["featmap: error: interrupted"]
    assert json.loads(done.stdout) == {"error": "interrupted", "exit_code": 130}


def test_sigterm_while_a_batch_is_being_set_up_is_one_line(tmp_path: Path) -> None:
    """SIGTERM before the batch loop (the job being built, the helpers' server starting): exit 143, one line."""
    code = (
        "import os, signal, sys, featmap, featmap.cli as c\n"
        "real = featmap.build_job\n"
        "def build_job(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "featmap.build_job = build_job\n"
        f"sys.argv = ['featmap', 'apply', {str(SAMPLES / 'digits')!r}, '-k', 'sobel_x', '-j', '2', '-o', 'out']\n"
        "c.run()\n"
    )
    done = _featmap(code, cwd=tmp_path)
    assert done.returncode == 143, done.stderr
    assert [line for line in done.stderr.splitlines() if line] == [
        "featmap: error: terminated (SIGTERM); unfinished outputs were removed"
    ]
    assert not (tmp_path / "out").exists()


def test_sigterm_during_start_up_is_one_line_and_exit_143(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys, featmap.cli as c\n"
        "def stop(env):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "c.quiet_blas_threads = stop\n"
        "sys.argv = ['featmap', 'shape', 'conv:2@3x3', '--input', '8x8x1', '--json']\n"
        "c.run()\n"
    )
    done = _featmap(code, cwd=tmp_path)
    assert done.returncode == 143, done.stderr
    assert done.stderr.splitlines() == ["featmap: error: terminated (SIGTERM)"]
    assert json.loads(done.stdout) == {"error": "terminated (SIGTERM)", "exit_code": 143}


def test_an_interrupt_while_the_folder_is_being_locked_leaves_no_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C inside `OutputLock.acquire`, once the lock is held: given up again, so the next run has nothing to
    clear (it said ``featmap: note: cleared a stale lock`` before)."""
    import featmap.io.outputlock as outputlock

    def stop(*args: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(outputlock.time, "strftime", stop)
    with pytest.raises(KeyboardInterrupt):
        outputlock.OutputLock(tmp_path / "out").acquire()
    monkeypatch.undo()
    assert not (tmp_path / "out" / outputlock.LOCK_NAME).exists()
    lock = outputlock.OutputLock(tmp_path / "out").acquire()
    assert lock.cleared == []
    lock.release()
