"""featmap.run.resume_early: the stats a resume begins as the command starts (a helper reading the index's names)
give each file its own stat, whoever got to it, and only for the index the check read; a resume that takes them
skips and makes again the same images as one that does not."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import featmap
from featmap.io import manifest_index
from featmap.io.discover import discover
from featmap.io.manifest_index import INDEX_NAME, read_outputs, save_index
from featmap.run import resume_early
from featmap.run.batch import run_batch
from featmap.run.preflight import check_batch
from featmap.run.resume_early import EarlySweep, began_early, begin_early, stop_early, taken_early
from tests.test_resume import _batch, _maps, _outputs, damage_output
from tests.test_resume_files import _as_rows, _expected


def _folder(tmp_path: Path, groups: int = 30, per: int = 3) -> tuple[Path, list[str]]:
    """An output folder whose manifest records ``groups`` inputs' ``per`` outputs each, with an index of the
    first two thirds of its lines (the rest: lines after the index), and the files: some missing, one a folder,
    one a symlink. Returns the folder and each input's names NUL-joined, in the order they were recorded."""
    out = tmp_path / "out"
    texts, lines = [], []
    for i in range(groups):
        names = []
        for k in range(per):
            name = f"d{i % 4}/img{i:03d}/k{k}.png"
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            if (i + k) % 7:  # every seventh is missing
                (out / name).write_bytes(b"p" * (i + 3 * k + 1))
            names.append(name)
            record = {"input": f"/in/{i}.png", "options": "ab12", "png": name, "status": "ok"}
            lines.append(json.dumps(record, sort_keys=True) + "\n")
        texts.append("\0".join(names))
    (out / "d0/img000/k2.png").unlink(missing_ok=True)
    (out / "d0/img000/k2.png").mkdir()
    (out / "d1/img001/k1.png").unlink(missing_ok=True)
    (out / "d1/img001/k1.png").symlink_to(out / "d2/img002/k0.png")
    manifest = out / "manifest.jsonl"
    head = "".join(lines[: 2 * len(lines) // 3])
    manifest.write_text(head)
    outputs, size, _ = read_outputs(manifest, save=False)
    assert save_index(outputs, manifest, size)
    with open(manifest, "a") as fh:
        fh.write("".join(lines[2 * len(lines) // 3 :]))
    return out, texts


def _ask(out: Path, texts: list[str], order: list[int]) -> tuple[Any, list[str], Any, Any, list[str]]:
    """The check's side: the manifest's outputs as it reads them, the groups in ``order``, their files' rows
    (``bounds``), positions (``places``) and paths."""
    outputs, _, _ = read_outputs(out / "manifest.jsonl", save=False)
    joined = [texts[i] for i in order]
    counts = [text.count("\0") + 1 for text in joined]
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    names = [name for text in joined for name in text.split("\0")]
    places = np.array([outputs.position(name) for name in names], dtype=np.int64)
    return outputs, joined, bounds, places, [f"{out}/{name}" for name in names]


def _wait(sweep: EarlySweep, files: int) -> None:
    deadline = time.monotonic() + 30
    while sweep._helper.done() < files and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("when", ["helper done", "helper just started", "index replaced", "another folder"])
@pytest.mark.parametrize("order", ["recorded", "shuffled"])
def test_each_file_gets_its_own_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str, order: str) -> None:
    """Whoever stat'ed a file (the helper from the last of the index's names back, or this process from the lowest
    position up, or after the helper stopped), its row is its own `os.stat`; the helper's answers are used only
    for the index the check read and the folder it asks about."""
    monkeypatch.setattr(resume_early, "_GROUPS", 2)  # this process looks at the helper's progress often
    out, texts = _folder(tmp_path)
    groups = list(range(len(texts)))
    if order == "shuffled":
        groups = list(np.random.default_rng(3).permutation(groups))
    sweep = EarlySweep(f"{out}/", str(out / INDEX_NAME))
    outputs, joined, bounds, places, paths = _ask(out, texts, groups)
    if when != "helper just started":
        _wait(sweep, outputs.base)
        assert sweep._helper.done() == outputs.base  # every name the index holds
    if when == "index replaced":  # the same names, another file: not the index the check read
        (out / "copy").write_bytes((out / INDEX_NAME).read_bytes())
        os.replace(out / "copy", out / INDEX_NAME)
        outputs, joined, bounds, places, paths = _ask(out, texts, groups)
    here: list[str] = []
    real = resume_early._stat_here
    monkeypatch.setattr(resume_early, "_stat_here", lambda names: here.extend(map(os.fsdecode, names)) or real(names))
    root = f"{out}/" if when != "another folder" else f"{out}/./"
    found = sweep.take(outputs, root, joined, bounds, places)
    if when == "another folder":
        paths = [f"{out}/./{path[len(str(out)) + 1 :]}" for path in paths]
    assert _as_rows(found) == _expected(paths)
    assert sweep._helper._process is None  # stopped
    after_index = {path for path, place in zip(paths, places.tolist(), strict=True) if place >= outputs.base}
    if when == "helper done":
        assert set(here) == after_index  # the helper's answers for every file the index names
    elif when != "helper just started":
        assert set(here) == set(paths)


def test_an_index_the_helper_cannot_read_leaves_every_file_here(tmp_path: Path) -> None:
    out, texts = _folder(tmp_path)
    (out / INDEX_NAME).write_bytes(b"featmap manifest index 2\nnot json\n")
    sweep = EarlySweep(f"{out}/", str(out / INDEX_NAME))
    _wait(sweep, 1)
    assert sweep._helper.header[:1] == (-1,) and sweep._helper.done() == 0
    sweep.stop()


def test_only_a_resume_on_two_processes_with_a_big_index_begins_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = _folder(tmp_path)
    for processes, folder in ((1, out), (2, str(out)), (2, tmp_path)):  # one process, a URL's text, no index
        begin_early(folder, processes)
        assert not began_early()
    begin_early(out, 2)  # an index of 60 names: too few to pay for a helper
    assert not began_early()
    monkeypatch.setattr(resume_early, "SPLIT_FROM", 1)
    begin_early(out, 2)
    sweep = taken_early()
    assert sweep is not None and not began_early() and taken_early() is None
    sweep.stop()
    assert not featmap.begin_resume(out, 1) and not featmap.begin_resume(f"s3://bucket{out}", 2)
    assert featmap.begin_resume(out, 2) and began_early()  # the API's way in (`featmap apply` takes it)
    helper = resume_early._EARLY[0]._helper
    stop_early()  # nobody took it (the command's exit does the same)
    assert not began_early() and helper._process is None


@pytest.mark.parametrize("damage", ["deleted", "truncated", "touched"])
def test_a_resume_takes_the_stats_begun_as_the_command_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """``featmap apply --skip-existing -j 2`` begins the stats before its inputs are found; the batch takes them
    (the preflight begins none of its own), and the same images are skipped and made again as at ``-j 1``."""
    from featmap.run import resume_files
    from tests.test_backends import make_job

    monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 1)
    monkeypatch.setattr(resume_early, "SPLIT_FROM", 1)
    monkeypatch.setattr(resume_files, "SPLIT_FROM", 1)
    items, out, before = _batch(tmp_path, 8)
    hit = items[5]
    target = _outputs(hit, out)[0]
    damage_output(target, damage)
    taken: list[int] = []
    real = EarlySweep.take

    def spy(self: EarlySweep, outputs: Any, *args: Any) -> Any:
        _wait(self, outputs.base)
        taken.extend([self._helper.done(), outputs.base])
        return real(self, outputs, *args)

    monkeypatch.setattr(EarlySweep, "take", spy)
    sweeps: list[Any] = []
    monkeypatch.setattr(resume_files.Sweep, "take", lambda self, *a: sweeps.append(self))
    begin_early(out, 2)
    assert began_early()
    items, _, _ = discover([hit.path.parent])
    check_batch(items, make_job(out), overwrite=False, resume_processes=2)
    report = run_batch(items, make_job(out), jobs=2, skip_existing=True)
    assert len(taken) == 2 and taken[0] == taken[1] > 0 and sweeps == []  # the helper answered for every output
    assert [Path(r.input.path).name for r in report.processed] == [hit.path.name]
    assert sorted(Path(s).name for s in report.skipped) == sorted(
        i.path.name for i in items if i.path.name != hit.path.name
    )
    assert _maps(out) == before


def test_featmap_apply_begins_them_as_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``featmap apply DIR --skip-existing -j 2``: the check takes the stats begun before the job was built, and
    reports as a resume does (an output deleted: its image made again, the rest skipped)."""
    from click.testing import CliRunner

    from featmap.cli import cli
    from featmap.run import resume_files

    monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 1)
    monkeypatch.setattr(resume_early, "SPLIT_FROM", 1)
    monkeypatch.setattr(resume_files, "SPLIT_FROM", 1)
    items, out, _ = _batch(tmp_path, 6)
    hit = items[2]
    _outputs(hit, out)[1].unlink()
    taken: list[Any] = []
    real = EarlySweep.take
    monkeypatch.setattr(EarlySweep, "take", lambda self, *args: taken.append(self) or real(self, *args))
    kernels = ["-k", "sobel_x", "-k", "laplacian_4", "-k", "gaussian:size=5,sigma=1"]
    args = ["apply", str(hit.path.parent), *kernels, "--padding", "same", "--activation", "relu", "--pool", "max"]
    result = CliRunner().invoke(cli, [*args, "-o", str(out), "--skip-existing", "-j", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(taken) == 1 and not began_early()
    assert [Path(p["input"]).name for p in report["processed"]] == [hit.path.name]
    assert sorted(Path(s).name for s in report["skipped"]) == sorted(i.path.name for i in items if i.path != hit.path)
