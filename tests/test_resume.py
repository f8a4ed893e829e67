"""featmap.run.resume: ``--skip-existing`` decided for a whole batch at once skips exactly the images whose outputs
are there as they were written, and makes again one whose output was deleted, truncated, rewritten or made with
other options; on local folders (with and without the index's fingerprints). On S3 (moto): test_backends_storage."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featmap.errors import OptionError
from featmap.io import manifest_index
from featmap.io.discover import InputImage, discover
from featmap.io.manifest_index import INDEX_NAME, fingerprint, read_outputs
from featmap.io.outputs import Manifest
from featmap.run.batch import run_batch, targets_for
from featmap.run.preflight import check_batch
from featmap.run.resume import Recorded, _runs, target_names
from tests.test_backends import make_job, make_photos, tree_bytes


def _maps(out: Path) -> dict[str, bytes]:
    """Every output file's bytes (the manifest and its index apart)."""
    return {name: data for name, data in tree_bytes(out).items() if name != INDEX_NAME}


def _batch(tmp_path: Path, count: int = 6) -> tuple[list[Any], Path, dict[str, bytes]]:
    photos = make_photos(tmp_path / "in", count)
    items, _, _ = discover([photos])
    out = tmp_path / "out"
    assert len(run_batch(items, make_job(out), jobs=1).processed) == count
    return items, out, _maps(out)


def _resume(items: list[Any], out: Path, **job: Any) -> tuple[list[str], list[str]]:
    """A resume as `featmap apply` runs it (the preflight, then the batch): (processed, skipped) by file name."""
    check_batch(items, make_job(out, **job), overwrite=bool(job.get("overwrite")))
    report = run_batch(items, make_job(out, **job), jobs=1, skip_existing=True)
    assert not report.failed
    return sorted(Path(r.input.path).name for r in report.processed), sorted(Path(s).name for s in report.skipped)


def damage_output(target: Path, damage: str) -> None:
    """Damage a written output as a user or a crash might: ``deleted``, ``truncated`` (its last 20 bytes cut), or
    anything else: the same bytes with another modification time."""
    if damage == "deleted":
        target.unlink()
    elif damage == "truncated":
        with open(target, "r+b") as fh:
            fh.truncate(target.stat().st_size - 20)
    else:  # same bytes, another time
        os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))


def _outputs(item: Any, out: Path) -> list[Path]:
    return list(targets_for(item, make_job(out)).values())


@pytest.fixture(params=["no index", "index"])
def indexed(request: Any, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both kinds of output folder: a small manifest (no index: files checked by content) and one with the index
    beside it (files checked against their fingerprints)."""
    if request.param == "index":
        monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 1)
    return bool(request.param == "index")


def test_a_resume_skips_exactly_the_done_images(tmp_path: Path, indexed: bool) -> None:
    items, out, before = _batch(tmp_path)
    assert (out / INDEX_NAME).is_file() is indexed
    names = sorted(item.path.name for item in items)
    assert _resume(items, out) == ([], names)
    assert _resume(items, out) == ([], names)  # and again: nothing was written, nothing changes
    assert _maps(out) == before


@pytest.mark.parametrize("damage", ["deleted", "truncated", "emptied"])
def test_an_image_whose_output_is_missing_or_cut_is_made_again(tmp_path: Path, indexed: bool, damage: str) -> None:
    items, out, before = _batch(tmp_path)
    hit = items[2]
    target = _outputs(hit, out)[1]
    if damage == "deleted":
        target.unlink()
    elif damage == "truncated":  # in place: its folder does not change
        data = target.read_bytes()
        with open(target, "r+b") as fh:
            fh.truncate(len(data) - 20)
    else:
        target.write_bytes(b"")
    others = sorted(item.path.name for item in items if item is not hit)
    assert _resume(items, out) == ([hit.path.name], others)
    assert _maps(out) == before  # made again byte for byte, nothing else touched
    assert _resume(items, out) == ([], sorted(item.path.name for item in items))


def test_a_rewritten_output_is_made_again_where_its_fingerprint_is_kept(tmp_path: Path, monkeypatch: Any) -> None:
    """With the index, a file rewritten whole (another complete PNG, even of the same size) no longer matches the
    fingerprint taken when the batch wrote it; the other images are skipped on the fingerprint alone."""
    monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 1)
    items, out, before = _batch(tmp_path)
    outputs, _, _ = read_outputs(out / "manifest.jsonl", save=False)
    for item in items:  # every output's fingerprint was taken right after it was written
        for path in _outputs(item, out):
            st = path.stat()
            assert outputs.files[path.relative_to(out).as_posix()] == fingerprint(st.st_size, st.st_mtime_ns)
    hit, donor = items[1], items[4]
    target, other = _outputs(hit, out)[0], _outputs(donor, out)[0]
    target.write_bytes(other.read_bytes())  # a complete PNG: only the fingerprint tells
    assert _resume(items, out)[0] == [hit.path.name]
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))  # same bytes, touched
    assert _resume(items, out)[0] == [hit.path.name]
    assert _resume(items, out)[0] == []
    assert _maps(out) == before


def test_an_output_without_a_fingerprint_is_checked_once_and_kept(tmp_path: Path, monkeypatch: Any) -> None:
    """An index without fingerprints (written before there were any, format 1) is still read; the files it holds
    are checked by content once, and their fingerprints kept in the index for the next resume."""
    monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 1)
    items, out, _ = _batch(tmp_path, 4)
    index = out / INDEX_NAME
    outputs, size, _ = read_outputs(out / "manifest.jsonl", save=False)
    outputs.forget_files()
    assert manifest_index.save_index(outputs, out / "manifest.jsonl", size)
    assert read_outputs(out / "manifest.jsonl", save=False)[0].files == {}
    data = index.read_bytes()  # the same index in format 1: no fingerprints after the makers' numbers
    head_end = data.index(b"\n", len(manifest_index._MAGIC)) + 1
    count = len(outputs.by_png)
    old = manifest_index._MAGIC_1 + data[len(manifest_index._MAGIC) : head_end + 4 * count]
    index.write_bytes(old + data[head_end + 12 * count :])
    assert dict(read_outputs(out / "manifest.jsonl", save=False)[0].by_png) == dict(outputs.by_png)
    names = sorted(item.path.name for item in items)
    assert _resume(items, out) == ([], names)
    kept = read_outputs(out / "manifest.jsonl", save=False)[0].files
    assert len(kept) == 4 * 3 and index.read_bytes().startswith(manifest_index._MAGIC)


def test_other_options_are_not_done(tmp_path: Path) -> None:
    items, out, _ = _batch(tmp_path, 3)
    with pytest.raises(OptionError, match="made from another input or with other options"):
        _resume(items, out, normalize="percentile")
    processed, skipped = _resume(items, out, normalize="percentile", overwrite=True)
    assert processed == sorted(item.path.name for item in items) and skipped == []


def test_the_batch_template_names_targets_as_targets_for_does(tmp_path: Path) -> None:
    """`target_names` fills one template per job; it must name every input's outputs exactly as the job does,
    whatever the input's folder, stem, suffix and the name pattern."""
    odd = ["a.png", "b.tar.jpg", "noext", "ünï cødé.png", "x{y}.png", "..png", "-.jpeg", "sp ace.PNG"]
    places = [(Path(), None), (Path("d/e"), "s"), (Path("d"), "..")]
    items = [
        InputImage(tmp_path / name, folder, stem or name.split(".")[0] or "_")
        for name in odd
        for folder, stem in places
    ]
    plain = [item for item in items if item.stem != ".."]  # names worked out for the whole batch at once
    plain += [
        InputImage(tmp_path / "w.png", Path("d/e"), "w\x01\x02{0}"),
        InputImage(tmp_path / "v.png", Path(), "\x02"),
    ]
    patterns = [
        "{stem}/{kernel}",
        "{stem}_{kernel}.png",
        "{kernel}/{stem}.{ext}",
        "{ext}/{stem}-{kernel}",
        "x/{kernel}",
        "{kernel}/{stem}",
        "{kernel}\x01{stem}",
    ]
    for pattern, batch in itertools.product(patterns, (items, plain)):
        job = make_job(tmp_path / "out", name=pattern.replace("{k}", "{kernel}"), sheet=True, report=True)
        names = target_names(batch, job)
        for item, found in zip(batch, names, strict=True):
            try:
                want = [p.relative_to(tmp_path / "out").as_posix() for p in targets_for(item, job).values()]
            except Exception:  # noqa: BLE001 - a name that cannot be an output: no names
                want = None
            assert found == want, (pattern, item)


def test_the_fast_stem_and_child_path_agree_with_pathlib() -> None:
    from featmap.io.discover import _child_maker, _stem
    from featmap.io.outputs import safe_stem

    for name in ["a.png", "a.", "..png", ".png", "a..png", "x. y", "ünï.cødé", "noext", "a.b.c", "-.jpeg", "..a"]:
        assert _stem(name) == safe_stem(name), name
        for folder in (Path("."), Path("/"), Path("a/b"), Path("/a")):
            child = _child_maker(folder)(name)
            assert child == folder / name and str(child) == str(folder / name) and isinstance(child, Path)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_batch_s_outputs_are_found_one_after_another(tmp_path: Path, monkeypatch: Any, jobs: int) -> None:
    """The check finds each input's outputs as the run of positions after its first (no name looked up), also with
    a sheet and a report and when two processes finished images in any order; the positions are those of its names."""
    monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 1)
    items, _, _ = discover([make_photos(tmp_path / "in", 7)])
    out = tmp_path / "out"
    job = make_job(out, sheet=True, report=True)
    assert len(run_batch(items, job, jobs=jobs).processed) == 7
    manifest = Manifest(out)
    batch = Recorded(items, job, job.options_hash(), manifest)
    outputs = manifest._outputs
    assert outputs.base == 7 * 5 and all(batch.recorded)
    for first, names in zip(batch.first, batch.names, strict=True):
        assert first >= 0
        assert [outputs.position(n) for n in str(names).split("\0")] == list(range(first, first + 5))


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.booleans()), max_size=24),
    st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=3), min_size=1, max_size=4),
    st.booleans(),
)
def test_outputs_found_one_after_another_are_the_input_s(
    recs: list[tuple[int, int, bool]], wanted: list[list[int]], indexed: bool
) -> None:
    """`_runs` (names compared with the index's text) says an input's outputs start at a position only where the
    manifest records each of them, last, as made by that input: checked against a plain per-name reading, on any
    mix of records (re-made outputs, failures, other makers), read from an index and after one."""
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "manifest.jsonl"
        lines = [
            json.dumps({"input": f"/p/{m}.png", "options": "o", "png": f"{n}/k.png", "status": "ok" if ok else "x"})
            + "\n"
            for m, n, ok in recs
        ]
        manifest.write_text("".join(lines), encoding="utf-8")
        outputs, size, _ = read_outputs(manifest, save=False)
        if indexed and size and manifest_index.save_index(outputs, manifest, size):
            outputs = read_outputs(manifest, save=False)[0]
        names = ["\0".join(f"{n}/k.png" for n in want) for want in wanted]
        makers = [outputs.number((f"/p/{i}.png", "o")) for i in range(len(wanted))]
        for i, first in enumerate(_runs(outputs, names, makers)):
            if first >= 0:
                mine = names[i].split("\0")
                assert outputs.names[first : first + len(mine)] == mine
                assert all(outputs.maker(n) == (f"/p/{i}.png", "o") for n in mine)


def test_a_batch_looks_at_each_output_once_before_and_once_after_writing_it(tmp_path: Path, monkeypatch: Any) -> None:
    """Before an image runs, each of its outputs is looked at once (which are there: what an unfinished image must not
    remove, and what may not be replaced, from one answer); after, once (its fingerprint); the journal settles from
    the manifest without looking. A re-run with ``--overwrite`` (every output there) the same."""
    items, _, _ = discover([make_photos(tmp_path / "in", 3)])
    out = tmp_path / "out"
    looks: dict[str, int] = {}
    real_stat = os.stat

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else ""
        if isinstance(text, str) and text.startswith(f"{out}/") and text.endswith(".png"):
            looks[text] = looks.get(text, 0) + 1
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    for overwrite in (False, True):
        looks.clear()
        assert len(run_batch(items, make_job(out, overwrite=overwrite), jobs=1).processed) == 3
        assert len(looks) == 3 * 3 and set(looks.values()) == {2}, looks


@pytest.mark.parametrize("damage", ["deleted", "truncated", "touched"])
def test_a_resume_on_two_processes_stats_from_the_preflight_on(tmp_path: Path, monkeypatch: Any, damage: str) -> None:
    """At ``-j 2`` the preflight begins the stats (a helper process, `featmap.run.resume_files.Sweep`) as soon as it
    knows the names, and the batch takes them: the same images are skipped and made again as at ``-j 1``."""
    from featmap.run import resume_files

    monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 1)
    monkeypatch.setattr(resume_files, "SPLIT_FROM", 1)
    begun: list[Any] = []
    real = resume_files.Sweep.__init__

    def spy(self: Any, root: str, texts: Any, processes: int = 1, counts: Any = None) -> None:
        begun.append(processes)
        real(self, root, texts, processes, counts)

    monkeypatch.setattr(resume_files.Sweep, "__init__", spy)
    items, out, before = _batch(tmp_path, 8)
    hit = items[5]
    target = _outputs(hit, out)[0]
    damage_output(target, damage)
    new = hit.path.with_name("new" + hit.path.suffix)  # an input the manifest does not know: not asked of the files
    new.write_bytes(items[0].path.read_bytes())
    items, _, _ = discover([hit.path.parent])
    check_batch(items, make_job(out), overwrite=False, resume_processes=2)
    assert begun == [2]
    report = run_batch(items, make_job(out), jobs=2, skip_existing=True)
    assert begun == [2]  # the batch took the preflight's stats
    assert sorted(Path(r.input.path).name for r in report.processed) == sorted([hit.path.name, new.name])
    assert sorted(Path(s).name for s in report.skipped) == sorted(
        i.path.name for i in items if i.path.name not in (hit.path.name, new.name)
    )
    assert {k: v for k, v in _maps(out).items() if not k.startswith("new")} == before
