"""Batches over folders: discovery, layout, failures and exit codes, resume, parallel determinism, interrupts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli
from featmap.io.discover import discover

from .conftest import SAMPLES


def _png(path: Path, seed: int, size: tuple[int, int] = (40, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)).save(path)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """photos/ with nested images, a duplicate stem, a corrupt file, a non-image, a hidden file, a symlink loop
    and the output folder inside it."""
    root = tmp_path / "photos"
    _png(root / "a.png", 1)
    with Image.open(root / "a.png") as im:
        im.convert("RGB").save(root / "a.jpg", quality=95)  # same stem as a.png
    _png(root / "trip" / "b.png", 2)
    _png(root / "trip" / "deeper" / "c.png", 3)
    _png(root / ".hidden" / "d.png", 4)
    _png(root / ".e.png", 5)
    (root / "notes.txt").write_text("not an image")
    good = (root / "trip" / "b.png").read_bytes()
    (root / "trip" / "broken.png").write_bytes(good[: len(good) // 2])
    (root / "trip" / "loop").symlink_to(root, target_is_directory=True)
    with Image.open(SAMPLES / "text.png") as im:
        im.save(root / "noext_image", format="PNG")  # recognised by content, not suffix
    return root


def run(runner: CliRunner, *args: object) -> object:
    return runner.invoke(cli, ["apply", *map(str, args)], catch_exceptions=False)


def test_discovery(tree: Path) -> None:
    items, problems, ignored = discover([tree], recursive=True, exclude=[tree / "maps"])
    names = sorted((str(i.rel_dir), i.stem) for i in items)
    assert names == [
        (".", "a_jpg"),
        (".", "a_png"),
        (".", "noext_image"),
        ("trip", "b"),
        ("trip", "broken"),
        ("trip/deeper", "c"),
    ]
    assert problems == [] and ignored == 1  # notes.txt
    flat, _, _ = discover([tree])
    assert len(flat) == 3  # not recursive: only the top folder


def test_folder_batch_layout_failures_and_exit_code(runner: CliRunner, tree: Path) -> None:
    out = tree / "maps"  # inside the input folder
    result = run(runner, tree, "-r", "-k", "sobel_x", "-k", "box_3", "-o", out, "-j", "1")
    assert result.exit_code == 3
    assert "trip/broken.png: is corrupt or truncated" in result.stderr
    assert "processed" in result.stdout and "broken.png" in result.stdout
    for rel in ("a_png", "a_jpg", "noext_image", "trip/b", "trip/deeper/c"):
        assert sorted(p.name for p in (out / rel).iterdir()) == ["box_3.png", "sobel_x.png"], rel
    assert not (out / "trip" / "broken").exists()
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sum(r["status"] == "ok" for r in lines) == 10
    assert [r["input"] for r in lines if r["status"] == "failed"] == [str((tree / "trip" / "broken.png").resolve())]
    # the output folder is never re-ingested, and a resumed run redoes nothing
    again = run(runner, tree, "-r", "-k", "sobel_x", "-k", "box_3", "-o", out, "--skip-existing", "--json")
    data = json.loads(again.stdout)
    assert again.exit_code == 3 and data["total"] == 6 and len(data["skipped"]) == 5 and data["processed"] == []


def test_json_summary_and_all_good_exit_zero(runner: CliRunner, tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / "in" / f"x{i}.png", i)
    result = run(runner, tmp_path / "in", "-k", "sobel_x", "-o", tmp_path / "out", "--json", "-j", "2")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert len(data["processed"]) == 3 and data["failed"] == [] and data["images_per_second"] > 0


def test_jobs_do_not_change_the_bytes(runner: CliRunner, tree: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    run(runner, tree, "-r", "-k", "edges", "--combine", "max", "--padding", "same", "-o", one, "-j", "1")
    run(runner, tree, "-r", "-k", "edges", "--combine", "max", "--padding", "same", "-o", two, "-j", "2")
    files = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(files) == 5 * 14
    assert files == sorted(p.relative_to(two) for p in two.rglob("*.png"))
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


def test_same_name_in_two_folders_and_globs(runner: CliRunner, tmp_path: Path) -> None:
    _png(tmp_path / "d1" / "x.png", 1)
    _png(tmp_path / "d2" / "x.png", 2)
    result = run(runner, tmp_path / "d1", tmp_path / "d2", "-k", "sobel_x", "-o", tmp_path / "out")
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["x_png", "x_png_2"]
    pattern = run(runner, str(tmp_path / "d*" / "*.png"), "-k", "box_3", "-o", tmp_path / "g", "--json")
    assert len(json.loads(pattern.stdout)["processed"]) == 2
    missing = run(runner, str(tmp_path / "nothing*.png"), "-k", "box_3", "-o", tmp_path / "g")
    assert missing.exit_code == 1 and "no such file, folder or matching pattern" in missing.stderr


def test_other_runs_outputs_are_refused_up_front_not_clobbered(runner: CliRunner, tmp_path: Path) -> None:
    for i in range(2):
        _png(tmp_path / "in" / f"x{i}.png", i)
    out = tmp_path / "out"
    assert run(runner, tmp_path / "in", "-k", "sobel_x", "-o", out).exit_code == 0
    before = (out / "x0" / "sobel_x.png").read_bytes()
    changed = run(runner, tmp_path / "in", "-k", "sobel_x", "--flip", "-o", out)
    # the whole batch's clash, once, before any work (featmap.run.preflight): a usage error
    assert changed.exit_code == 2 and changed.stderr.count("pass --overwrite") == 1
    assert "2 of 2 images have outputs made" in changed.stderr
    assert (out / "x0" / "sobel_x.png").read_bytes() == before


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_leaves_no_partial_outputs_and_resumes(tmp_path: Path, sig: int, code: int) -> None:
    src = tmp_path / "in"
    for i in range(24):
        _png(src / f"img{i:02d}.png", i, (384, 384))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "featmap", "apply", str(src), "-k", "edges", "-k", "gabor", "-o", str(out), "-j", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (manifest.exists() and manifest.stat().st_size > 0):
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "interrupted after" in stderr and "--skip-existing" in stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    done = [d for d in out.iterdir() if d.is_dir()]
    assert 0 < len(done) < 24
    for folder in done:
        assert len(list(folder.iterdir())) == 17, folder  # 13 edges + 4 gabor: complete or absent
    ok = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(ok) == 17 * len(done)
    resumed = subprocess.run([*cmd, "--skip-existing", "--json"], capture_output=True, text=True, timeout=300)
    data = json.loads(resumed.stdout)
    assert resumed.returncode == 0 and len(data["skipped"]) == len(done) and len(data["processed"]) == 24 - len(done)


def test_inputs_are_never_modified(runner: CliRunner, tree: Path) -> None:
    snapshot = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file() and "loop" not in p.parts}
    run(runner, tree, "-r", "-k", "sobel_x", "-o", tree / "maps", "--overwrite")
    for path, data in snapshot.items():
        assert path.read_bytes() == data
    assert os.access(tree / "a.png", os.R_OK)
