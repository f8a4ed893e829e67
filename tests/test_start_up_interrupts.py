"""Ctrl-C (and SIGTERM) in the command's first milliseconds, while Python imports featmap itself: one line and exit
130 (143) from the first instruction featmap runs, the JSON document with ``--json``, never a traceback.

The moments are made exact, not timed: a finder put first on `sys.meta_path` sends the signal to its own process
when Python looks for a given module (before the module runs), so the interrupt lands inside that import. The
command is started the two ways it is started: its console script (``from featmap.cli import run``) and ``python -m
featmap`` (`runpy`, as ``-m`` runs it: the package is imported while ``sys.argv[0]`` is ``-m``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLES

#: argv: the module at whose import the signal comes, the signal, how the command starts, then its arguments.
_STOP_AT = """
import os, runpy, sys
target, sig, how, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]

class StopAt:
    def find_spec(self, name, path=None, module=None):
        if name == target:
            sys.meta_path.remove(self)
            with open(os.environ["FEATMAP_TEST_FIRED"], "w") as note:
                note.write(name)
            os.kill(os.getpid(), sig)
        return None

sys.meta_path.insert(0, StopAt())
if how == "-m":
    sys.argv = ["-m", *args]
    sys.orig_argv = [sys.executable, "-m", "featmap", *args]
    runpy.run_module("featmap", run_name="__main__", alter_sys=True)
else:
    sys.argv = [os.path.join(os.path.dirname(sys.executable), "featmap"), *args]
    from featmap.cli import run
    sys.exit(run())
"""

#: Modules imported for the first time at successive moments of the start-up, from featmap's first line on (the
#: package's own imports, Click, the command line's helpers, the command's module, numpy once the command runs).
MOMENTS = ["typing", "featmap.errors", "featmap.launch", "click", "featmap.cli._common", "featmap.cli.apply", "numpy"]


def _stopped(
    tmp_path: Path, target: str, sig: int, how: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    fired = tmp_path / "fired"
    fired.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), FEATMAP_TEST_FIRED=str(fired))
    done = subprocess.run(
        [sys.executable, "-c", _STOP_AT, target, str(int(sig)), how, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    return done, fired.read_text() if fired.exists() else ""


@pytest.mark.parametrize("how", ["script", "-m"])
@pytest.mark.parametrize("target", MOMENTS)
@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [
        (signal.SIGINT, 130, "featmap: error: interrupted"),
        (signal.SIGTERM, 143, "featmap: error: terminated (SIGTERM)"),
    ],
)
def test_a_signal_while_featmap_loads_is_one_line(
    tmp_path: Path, how: str, target: str, sig: int, code: int, line: str
) -> None:
    args = ("apply", str(SAMPLES / "camera.png"), "-k", "sobel_x", "-o", str(tmp_path / "out"))
    done, fired = _stopped(tmp_path, target, sig, how, *args)
    assert fired == target, f"{target} was imported before the command started: pick a later moment"
    assert done.returncode == code, done.stderr
    (said,) = done.stderr.splitlines()  # one line; the command, once running, may add what it cleaned up
    assert said == line or said.startswith(f"{line}; ")
    assert done.stdout == ""
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


@pytest.mark.parametrize("how", ["script", "-m"])
@pytest.mark.parametrize("target", ["featmap.errors", "click", "featmap.cli._common"])
def test_with_json_the_interrupt_is_a_json_document(tmp_path: Path, how: str, target: str) -> None:
    args = ("shape", "conv:6@5x5", "--input", "32x32x1", "--format", "json")
    done, fired = _stopped(tmp_path, target, signal.SIGINT, how, *args)
    assert fired == target
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == ["featmap: error: interrupted"]
    assert json.loads(done.stdout) == {"error": "interrupted", "exit_code": 130}


def test_importing_the_library_leaves_the_signals_alone(tmp_path: Path) -> None:
    """A program that imports featmap keeps Python's Ctrl-C (KeyboardInterrupt) and SIGTERM; so does a command
    started with SIGINT ignored (a background job), which stays ignored."""
    code = (
        "import signal, sys\n"
        "before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))\n"
        "import featmap, featmap.cli\n"
        "print(before == (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert plain.stdout.split() == ["True"]
    ignored_code = code.replace("signal.getsignal(signal.SIGTERM)", "None")  # SIGTERM: the command's own guard
    ignored = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv = ['featmap']\n" + ignored_code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509 - the child only
    )
    assert ignored.stdout.split() == ["True"]
