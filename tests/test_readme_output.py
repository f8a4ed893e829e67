"""README's shown sessions print what featmap prints: the opening "What you get" table, byte for byte.

A ``$ featmap …`` block whose command reads only shipped samples is run in a copy of ``samples/`` and its
stdout compared with the lines README shows under the command (trailing spaces aside: Rich pads the last
column). This catches a table that drifts (a leading space, a renamed column) as soon as it does.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from featmap.cli import cli
from tests.conftest import REPO

#: The first line of each shown session checked here.
SESSIONS = ("$ featmap apply samples/camera.png -k sobel_x -k sobel_y --combine magnitude",)


def _session(first: str) -> tuple[list[str], list[str]]:
    """The command (continuations joined) and the output lines README shows for it."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    command, i = lines[start][2:], start
    while command.endswith("\\"):
        i += 1
        command = command[:-1] + " " + lines[i].strip()
    end = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```"))
    return shlex.split(command)[1:], lines[i + 1 : end]


@pytest.mark.parametrize("first", SESSIONS)
def test_shown_session_is_what_featmap_prints(first: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args, shown = _session(first)
    shutil.copytree(REPO / "samples", tmp_path / "samples")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args, terminal_width=200)
    assert result.exit_code == 0, result.stderr
    printed = [line.rstrip() for line in result.stdout.splitlines()]
    assert printed == [line.rstrip() for line in shown]
