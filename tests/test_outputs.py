"""The output folder: its lock, stale leftovers of a killed run, the manifest's journal, safe names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from featmap.errors import FeatmapError, OutputBusyError
from featmap.io.outputs import JOURNAL_NAME, LOCK_NAME, Manifest, OutputLock, OutputOptions, safe_stem


def test_lock_holds_the_folder_and_names_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from featmap.io.outputs import OutputLock; OutputLock({str(out)!r}).acquire(); input()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        for _ in range(500):
            if (out / LOCK_NAME).exists() and (out / LOCK_NAME).read_text():
                break
            time.sleep(0.02)
        with pytest.raises(OutputBusyError, match=rf"is being written by another featmap run \(pid {holder.pid}, "):
            OutputLock(out).acquire()
    finally:
        holder.communicate(b"\n", timeout=30)
    # The holder exited without releasing (as a kill -9 would): the next run recognises a stale lock.
    lock = OutputLock(out).acquire()
    assert len(lock.cleared) == 1 and json.loads((out / LOCK_NAME).read_text())["pid"] != holder.pid
    assert f"pid {holder.pid}" in lock.cleared[0] and "no longer running" in lock.cleared[0]
    lock.release()
    assert not (out / LOCK_NAME).exists()


def test_taking_the_lock_clears_a_dead_runs_temporary_files_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / ".sobel_x.png.4242.tmp").write_bytes(b"half")
    (out / "a" / "sobel_x.png").write_bytes(b"done")
    (out / "a" / ".notes.tmp").write_bytes(b"not ours")  # no pid: not an atomic_write temporary
    (out / LOCK_NAME).write_text("")  # the dead run's lock file, killed before it wrote its pid
    with OutputLock(out) as lock:
        assert lock.cleared == ["1 temporary file of an unfinished run"]
    assert sorted(p.name for p in (out / "a").iterdir()) == [".notes.tmp", "sobel_x.png"]


def test_a_folder_whose_last_run_ended_cleanly_is_not_walked(tmp_path: Path, monkeypatch: Any) -> None:
    """Every run that writes holds the lock and removes its file as it ends; with no lock file left there is no
    dead run's temporary file to look for (a resume's folder holds 250,000 folders)."""
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    walked: list[Any] = []
    monkeypatch.setattr(os, "walk", lambda *args, **kwargs: walked.append(args) or iter(()))
    with OutputLock(out) as lock:
        assert lock.cleared == []
    assert walked == []
    (out / LOCK_NAME).write_text('{"pid": 999999, "started": "then"}')  # killed: its lock file stayed
    with OutputLock(out) as lock:
        assert lock.cleared == ["a stale lock (pid 999999, started then, no longer running)"]
    assert walked == [(out,)]


def test_an_output_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(FeatmapError, match="out: is a file .*not a folder; choose another -o folder"):
        OutputLock(tmp_path / "out").acquire()


def test_journal_lets_the_same_run_replace_what_a_killed_run_was_writing(tmp_path: Path) -> None:
    out, source = tmp_path / "out", tmp_path / "a.png"
    source.write_bytes(b"x")
    target = out / "a" / "k.png"
    target.parent.mkdir(parents=True)
    Manifest(out).begin([target], source, "digest1")
    target.write_bytes(b"half-done")  # killed before its manifest line
    manifest = Manifest(out)
    manifest.check([target], source, "digest1", overwrite=False)  # the same run may replace it
    assert not manifest.complete([target], source, "digest1")  # but it is not done
    with pytest.raises(FeatmapError, match="was not made from this input with these options"):
        manifest.check([target], source, "other-options", overwrite=False)
    manifest.settle()  # still unresolved: kept
    assert (out / JOURNAL_NAME).exists()
    manifest.append([{"input": str(source.resolve()), "options": "digest1", "png": "a/k.png", "status": "ok"}])
    manifest.settle()  # now recorded: the journal goes
    assert not (out / JOURNAL_NAME).exists()
    assert Manifest(out).complete([target], source, "digest1")


@pytest.mark.parametrize(
    ("name", "stem"), [("photo.png", "photo"), ("...png", "___png"), (".png", "_png"), ("..", "__"), ("a.b.c", "a.b")]
)
def test_safe_stem(name: str, stem: str) -> None:
    assert safe_stem(name) == stem


def test_a_file_named_dots_png_gets_a_folder_inside_the_output(tmp_path: Path) -> None:
    options = OutputOptions(tmp_path / "out")
    target = options.target(tmp_path / "...png", "sobel_x")
    assert target == tmp_path / "out" / "___png" / "sobel_x.png"
