"""README's shown sessions print what featmap prints: every ``$ featmap …`` in a README code block is run and its
stdout compared, line by line, with the lines README shows under it, so that no shown output can drift.

A session runs in a temporary folder holding a copy of ``samples/`` (as README's commands name them), colour off
(as a pipe sees it), in a terminal as wide as the block's longest line (80 at least): text wraps greedily, so a
block made at any width from its longest line up to where the next word would have fitted wraps the same there.
Normalised, and only that: trailing spaces (Rich pads the last column) and the temporary folder's path. README
may elide: a line ``…`` stands for one or more lines, a line ending in ``…`` for any line that starts with what
precedes it. A file README's reader makes by hand (the renamed checkpoint) is made here, or the session skipped
saying why (without torch).
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from featmap.cli import cli
from tests.conftest import REPO

ELLIPSIS = "…"


@dataclass(frozen=True)
class Session:
    line: int
    args: tuple[str, ...]
    shown: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"L{self.line}:{' '.join(self.args)[:50]}"


def sessions() -> list[Session]:
    """Every ``$ featmap …`` command in README's code blocks and the lines shown under it (to the next ``$`` or
    the end of the block)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found: list[Session] = []
    for match in re.finditer(r"^```\w*\n(.*?)^```", text, re.S | re.M):
        first = text[: match.start()].count("\n") + 2
        lines = match.group(1).splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ featmap"):
                i += 1
                continue
            start, command = i, lines[i][2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            end = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("$ ")), len(lines))
            found.append(Session(first + start, tuple(shlex.split(command)[1:]), tuple(lines[i + 1 : end])))
            i = end
    return found


def matches(shown: list[str], printed: list[str]) -> bool:
    """Whether ``printed`` is what ``shown`` shows, README's elisions allowed (see the module's text)."""
    if not shown:
        return not printed
    head, rest = shown[0], shown[1:]
    if head == ELLIPSIS:  # one or more lines left out
        return any(matches(rest, printed[k:]) for k in range(1, len(printed) + 1))
    if not printed:
        return False
    if head.endswith(ELLIPSIS) and printed[0].startswith(head[: -len(ELLIPSIS)].rstrip()):
        return matches(rest, printed[1:])
    return head == printed[0] and matches(rest, printed[1:])


def test_readme_shows_sessions() -> None:
    """The sessions README shows, so that a lost ``$`` (an output no longer checked) shows here."""
    commands = [s.args[0] for s in sessions()]
    assert commands.count("apply") >= 2 and {"explain", "shape", "weights"} <= set(commands)
    assert all(s.shown for s in sessions())


def _renamed_checkpoint(folder: Path) -> None:
    """``renamed.pth``: resnet18's ``state_dict`` with its first conv renamed and a 10-class head, as README's
    reader might have saved it (needs torch and torchvision's model code)."""
    from .torchvision_models import torch_and_torchvision

    torch, torchvision = torch_and_torchvision()
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None, num_classes=10).state_dict()
    state["conv_1.weight"] = state.pop("conv1.weight")
    torch.save(state, folder / "renamed.pth")


@pytest.mark.parametrize("session", sessions(), ids=lambda s: s.id)
def test_shown_session_is_what_featmap_prints(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(REPO / "samples", tmp_path / "samples")
    if "renamed.pth" in session.args:
        _renamed_checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    width = max(80, *(len(line.rstrip()) for line in session.shown))  # the terminal README's block was made in
    monkeypatch.setenv("COLUMNS", str(width))
    result = CliRunner().invoke(cli, list(session.args), terminal_width=width)
    assert result.exit_code in (0, 1) and (result.stdout or result.stderr), (
        result.exit_code,
        result.stderr,
    )  # weights check exits 1 when the network cannot run
    printed = [line.rstrip().replace(str(tmp_path) + "/", "") for line in result.stdout.splitlines()]
    shown = [line.rstrip() for line in session.shown]
    assert matches(shown, printed), "\n".join(["README shows:", *shown, "", "featmap prints:", *printed, result.stderr])
