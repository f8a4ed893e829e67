"""featmap.run.resume_files: the resume check's stats give the same sizes, times and modes whether this process
makes them all or helper processes share them (``-j``), and whatever a helper does (cannot start, dies)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featmap.run import resume_files
from featmap.run.resume_files import stat_all


def _expected(paths: list[str]) -> list[tuple[int, int, int]]:
    """Each path's size, time and mode as `os.stat` gives them one at a time (0, 0, 0 where it raises)."""
    found = []
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            found.append((0, 0, 0))
            continue
        found.append((st.st_size, st.st_mtime_ns, st.st_mode))
    return found


def _files(tmp_path: Path) -> list[str]:
    """Files of many sizes, a folder, a symlink to a file and a dangling one, missing files, a name that is not
    UTF-8, and a path holding a NUL (which no helper can be handed: its share falls back to this process)."""
    paths = []
    for i in range(40):
        path = tmp_path / f"f{i:02d}.png"
        path.write_bytes(b"x" * (i * 37))
        os.utime(path, ns=(10**9 * i, 10**9 * i + i))
        paths.append(str(path))
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "f03.png")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    odd = os.fsdecode(bytes(tmp_path) + b"/\xff\xfe.png")
    Path(odd).write_bytes(b"odd")
    paths += [str(tmp_path / "sub"), str(tmp_path / "link"), str(tmp_path / "dangling"), odd]
    paths += [str(tmp_path / f"missing{i}.png") for i in range(5)] + [str(tmp_path / "f01.png") + "/under"]
    paths.append(str(tmp_path / "\ud800.png"))  # no file system name: text no encoding takes
    return paths


def _as_rows(found: tuple[Any, Any, Any]) -> list[tuple[int, int, int]]:
    return [tuple(row) for row in np.stack(found, axis=1).tolist()]


@pytest.mark.parametrize("processes", [1, 2, 3, 8, 20])
def test_shared_stats_are_this_process_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: int) -> None:
    monkeypatch.setattr(resume_files, "SPLIT_FROM", 1)
    paths = _files(tmp_path) * 3
    assert _as_rows(stat_all(paths, processes)) == _expected(paths)


def test_a_nul_in_a_helper_s_share_is_answered_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resume_files, "SPLIT_FROM", 1)
    paths = _files(tmp_path) + [str(tmp_path / "f02.png") + "\0x"]
    assert _as_rows(stat_all(paths, 2)) == _expected(paths)
    assert _expected(paths)[-1] == (0, 0, 0)


@pytest.mark.parametrize(
    ("owner", "name", "value", "processes"),
    [
        (sys, "executable", "/no/such/python", 4),  # cannot start
        (sys, "executable", sys.executable + "-not-there", 4),
        (resume_files, "_HELPER", "import sys; sys.exit(3)", 3),  # starts, then fails
        (resume_files, "_HELPER", "import sys; sys.stdout.write('short')", 3),
        (resume_files, "_HELPER", "1/0", 3),
    ],
)
def test_a_helper_that_cannot_start_or_fails_leaves_its_share_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: object, name: str, value: str, processes: int
) -> None:
    monkeypatch.setattr(resume_files, "SPLIT_FROM", 1)
    monkeypatch.setattr(owner, name, value)
    paths = _files(tmp_path)
    assert _as_rows(stat_all(paths, processes)) == _expected(paths)


def test_few_files_start_no_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setattr(resume_files, "_Helper", lambda *args: started.append(args))
    paths = _files(tmp_path)
    assert _as_rows(stat_all(paths, 8)) == _expected(paths)
    assert started == [] and len(paths) < resume_files.SPLIT_FROM


def test_the_batch_shares_the_stats_only_with_a_local_pool_s_processes() -> None:
    from featmap.run.backends import InProcess, choose_backend
    from featmap.run.resume import local_processes

    assert local_processes(choose_backend(None, jobs=3)) == 3
    assert local_processes(choose_backend(None, jobs=1)) == 1
    assert local_processes(InProcess()) == 1


def test_a_frozen_application_starts_no_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frozen application's executable is the application itself, not a Python to hand a program to."""
    started: list[Any] = []
    monkeypatch.setattr(resume_files, "SPLIT_FROM", 1)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(resume_files, "_Helper", lambda *args: started.append(args))
    paths = _files(tmp_path)
    assert _as_rows(stat_all(paths, 4)) == _expected(paths)
    assert started == []


def _groups(tmp_path: Path) -> tuple[str, list[str]]:
    """A root and groups of NUL-joined names under it, as a resume has them (an input's outputs): folders of one to
    four files, some missing, a name that is a folder, one that is a symlink."""
    root = tmp_path / "out"
    texts = []
    for i in range(60):
        folder = root / f"d{i % 3}" / f"img{i:03d}"
        folder.mkdir(parents=True)
        names = []
        for k in range(1 + i % 4):
            name = f"d{i % 3}/img{i:03d}/k{k}.png"
            if (i + k) % 7:  # every seventh is missing
                (root / name).write_bytes(b"p" * (i + k))
            names.append(name)
        texts.append("\0".join(names))
    (root / "d0" / "img000" / "k9.png").mkdir()
    (root / "d0" / "img000" / "k8.png").symlink_to(root / "d1" / "img001" / "k0.png")
    texts[0] += "\0d0/img000/k9.png\0d0/img000/k8.png"
    return f"{root}/", texts


@pytest.mark.parametrize("processes", [1, 2, 3])
@pytest.mark.parametrize("head_start", [0.0, 0.3])
def test_a_sweep_of_groups_under_a_root_gives_each_file_s_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: int, head_start: float
) -> None:
    """Whether the helpers are early (they had ``head_start`` seconds: most files are theirs) or this process is,
    each file's row is its own stat, in the order of the names."""
    import time

    monkeypatch.setattr(resume_files, "SPLIT_FROM", 1)
    monkeypatch.setattr(resume_files, "_GROUPS", 2)  # this process looks at the helpers' progress often
    root, texts = _groups(tmp_path)
    sweep = resume_files.Sweep(root, texts, processes)
    time.sleep(head_start)
    paths = [root + name for text in texts for name in text.split("\0")]
    assert _as_rows(sweep.take()) == _expected(paths)


def test_a_sweep_stats_here_only_the_groups_wanted(tmp_path: Path) -> None:
    root, texts = _groups(tmp_path)
    wanted = [i % 2 == 0 for i in range(len(texts))]
    rows = _as_rows(resume_files.Sweep(root, texts, 1).take(wanted))
    expected = []
    for text, keep in zip(texts, wanted, strict=True):
        names = [root + name for name in text.split("\0")]
        expected += _expected(names) if keep else [(0, 0, 0)] * len(names)
    assert rows == expected


def test_a_stopped_sweep_leaves_no_helper_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resume_files, "SPLIT_FROM", 1)
    root, texts = _groups(tmp_path)
    sweep = resume_files.Sweep(root, texts, 3)
    helpers = [helper for _, _, helper in sweep.parts]
    assert all(helper is not None and helper._process is not None for helper in helpers)
    processes = [helper._process for helper in helpers if helper is not None]
    sweep.stop()
    assert all(process.poll() is not None for process in processes)
