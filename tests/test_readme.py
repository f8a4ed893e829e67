"""README runs as written, top to bottom, in a fresh copy of the repository's files (issue 23 item 9).

Every ``featmap …`` command in README's code blocks (``$ featmap …`` lines of shown sessions included,
``\\`` continuations joined, ``# comments`` dropped, ``> FILE`` redirections kept) runs in README's order in
one temporary folder holding ``samples/``, ``kernels/`` and ``featmap/net/models/`` (as a fresh clone
has them). A YAML block starting ``# NAME.yaml`` is written there when README reaches it, as a reader
would save it. Every Python block runs too (the API examples), in the same folder.

A command may only read files that exist by then: shipped ones, or ones an earlier example made. An
example is skipped only when `SKIPPED` names it, with the reason; a new README example therefore runs (or
fails here) unless it is listed. ``pytest tests/test_readme.py -v`` lists what is covered, one test an
example.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from featmap.cli import cli
from tests.conftest import REPO

README = REPO / "README.md"

#: Substrings of the examples that do not run here, and why. Everything else in README runs.
SKIPPED = {
    "featmap shape model.onnx": "needs an ONNX file of your own (tests/test_onnx.py exports them)",
    "python3 -m venv": "set-up: creates a virtual environment and installs packages (what .ci/run does)",
    "pip install": "installs packages (no network in tests)",
    "python bench/run.py": "a benchmark: minutes of timing, run by hand (bench/)",
    "--scheduler local -j 8": "starts 8 Dask workers: too heavy here (tests/test_backends.py runs LocalCluster)",
    "--scheduler tcp://": "needs a running Dask cluster",
    "s3://": "needs object storage (tests/test_backends_storage.py runs a local S3 server)",
    "torch.onnx.export": "needs torch and torchvision (tests/test_onnx_runtime.py exports torchvision's models)",
    "--spec model.onnx": "needs the model.onnx the export above writes (tests/test_onnx_weights.py runs ONNX files)",
    "--model vgg16 --init glorot": "VGG-16 at 224×224 takes ~10 s here; tests/test_upto_rows.py runs --upto",
    "renamed.pth": "a shown session on a renamed checkpoint (tests/test_weights_check.py makes such files)",
}
if importlib.util.find_spec("keras") is None or importlib.util.find_spec("torch") is None:  # it saves net.keras
    SKIPPED |= {
        "keras.Sequential": "needs Keras on its torch back end (pip install '.[keras-test]' and torch)",
        "--weights net.keras": "needs net.keras, which the Keras example (skipped without Keras) saves",
        "--spec net.keras": "needs net.keras, which the Keras example (skipped without Keras) saves",
        "featmap shape net.keras": "needs net.keras, which the Keras example (skipped without Keras) saves",
    }
if importlib.util.find_spec("torch") is None:  # the PyTorch example saves net.pth; later ones read it
    SKIPPED |= {
        "class Block(nn.Module)": "needs torch (pip install '.[torch]')",
        "--weights net.pth": "needs net.pth, which the PyTorch example (skipped without torch) saves",
    }

#: Arguments that name a file the command reads: it must exist when the command runs.
_INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".yaml", ".yml", ".json", ".csv", ".npy", ".npz", ".safetensors",
                   ".keras", ".h5", ".onnx", ".tif", ".tiff")  # fmt: skip
_OUTPUT_FLAGS = {"-o", "--out", "--gif", "--name"}


@dataclass(frozen=True)
class Example:
    line: int
    kind: str  # "shell", "python" or "file"
    text: str

    @property
    def id(self) -> str:
        head = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return f"L{self.line}:{head[:50]}"


def examples() -> list[Example]:
    text = README.read_text(encoding="utf-8")
    found: list[Example] = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        lang, body = match.group(1), match.group(2)
        line = text[: match.start()].count("\n") + 2
        if lang == "python":
            found.append(Example(line, "python", body))
            continue
        if lang in ("yaml", "yml") and re.match(r"#\s*(\S+\.ya?ml)\s*\n", body):
            found.append(Example(line, "file", body))
            continue
        if lang not in ("", "sh", "bash", "console", "shell"):
            continue
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            raw = lines[i]
            command = raw[2:] if raw.startswith("$ ") else raw
            start = line + i
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            i += 1
            stripped = command.strip()
            shown = raw.startswith("$ ")
            if stripped.startswith(("featmap ", "python3 ", "python ", "pip ")) and (shown or not raw.startswith(" ")):
                if lang == "" and not shown and not _looks_like_commands(lines):
                    continue
                found.append(Example(start, "shell", stripped))
    return found


def _looks_like_commands(lines: list[str]) -> bool:
    """A plain block of commands (not a program's output that happens to start with a command's name)."""
    return all(not line.strip() or line.lstrip().startswith(("featmap ", "#")) or line.startswith("    ")
               for line in lines)  # fmt: skip


EXAMPLES = examples()


def _skip_reason(example: Example) -> str | None:
    for needle, reason in SKIPPED.items():
        if needle in example.text:
            return reason
    return None


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clone")
    for part in ("samples", "kernels", "featmap/net/models"):
        shutil.copytree(REPO / part, root / part)
    return root


def _args(command: str) -> tuple[list[str], str | None]:
    command = re.sub(r"\s+#\s.*$", "", command)  # a trailing comment
    words = shlex.split(command)
    target = None
    if ">" in words:
        at = words.index(">")
        target = words[at + 1]
        words = words[:at]
    return words, target


def _inputs(words: list[str]) -> list[str]:
    found = []
    for before, word in zip(["", *words], words, strict=False):
        if before in _OUTPUT_FLAGS or word.startswith("-"):
            continue
        path = word.split(":")[0] if word.count(":") == 1 and not word.startswith(("s3:", "file:")) else word
        if path.lower().endswith(_INPUT_SUFFIXES):
            found.append(path)
    return found


def test_examples_found() -> None:
    kinds = {e.kind for e in EXAMPLES}
    assert kinds == {"shell", "python", "file"} and len(EXAMPLES) > 30
    setup = [e.text for e in EXAMPLES if e.text.startswith("python3 -m venv")]
    assert len(setup) == 2
    venvs = [re.search(r"python3 -m venv (\S+)", s).group(1) for s in setup]  # type: ignore[union-attr]
    assert venvs[0] != venvs[1], "the second set-up command must make a fresh virtual environment elsewhere"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_readme_example_runs(example: Example, clone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = _skip_reason(example)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(clone)
    monkeypatch.setenv("COLUMNS", "120")
    if example.kind == "file":
        name = re.match(r"#\s*(\S+)", example.text).group(1)  # type: ignore[union-attr]
        (clone / name).write_text(example.text, encoding="utf-8")
        return
    if example.kind == "python":
        monkeypatch.setenv("KERAS_BACKEND", "torch")  # the Keras example: Keras 3 on the torch back end
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            if "import keras" in example.text:  # Keras' own warnings under numpy 2 (test_weights_keras ignores them)
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", UserWarning)
            exec(compile(example.text, f"README.md:{example.line}", "exec"), {"__name__": "readme"})
        return
    words, target = _args(example.text)
    assert words[0] == "featmap", example.text
    missing = [p for p in _inputs(words[1:]) if not (clone / p).exists() and not os.path.exists(p)]
    assert not missing, f"README.md:{example.line} uses {missing}, which no shipped file or earlier example provides"
    result = CliRunner().invoke(cli, words[1:])
    assert result.exit_code == 0, f"README.md:{example.line}: {example.text}\n{result.stderr[-600:]}"
    if target:
        (clone / target).write_text(result.stdout, encoding="utf-8")
