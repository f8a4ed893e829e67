"""featmap.run.stores and the one batch loop: a URL batch behaves as the local batch does, byte for byte, also when
it is interrupted and resumed, and a local output folder is locked whatever the inputs are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from featmap.errors import FeatmapError, OutputBusyError
from featmap.io.discover import discover
from featmap.io.outputs import OutputLock
from featmap.run.backends import InProcess
from featmap.run.batch import BatchInterrupted, run_batch
from featmap.run.stores import LocalStore, UrlStore, open_store, shown, source
from tests.test_backends import make_job, make_photos, manifest, tree_bytes

fsspec = pytest.importorskip("fsspec", reason="the dask extra is not installed: pip install '.[dask]'")


def _upload(folder: Path, url: str) -> None:
    fs, root = fsspec.core.url_to_fs(url)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{root}/{path.relative_to(folder).as_posix()}", path.read_bytes())


def _remote(url: str) -> dict[str, bytes]:
    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    return {p[len(root) + 1 :]: fs.cat_file(p) for p in sorted(fs.find(root))}


def _stop_after(count: int) -> Any:
    def stop(progress: Any) -> None:
        if progress.done >= count:
            raise KeyboardInterrupt

    return stop


def test_open_store_picks_the_local_fast_case_for_paths(tmp_path: Path) -> None:
    assert isinstance(open_store(None, tmp_path, []), LocalStore)
    assert isinstance(open_store(tmp_path, tmp_path, []), LocalStore)
    assert isinstance(open_store("file:///x", tmp_path, []), LocalStore)
    url = open_store("memory://b/maps", Path("/unused"), [])
    assert isinstance(url, UrlStore) and url.out_url == "memory://b/maps"


def test_inputs_are_recorded_resolved_and_shown_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from featmap.io.discover import InputImage
    from featmap.io.storage import UrlImage

    monkeypatch.chdir(tmp_path)
    local = InputImage(Path("in/a.png"), Path(), "a")
    remote = UrlImage(Path("a.png"), Path(), "a", "memory://b/in/a.png")
    assert (shown(local), source(local)) == ("in/a.png", str(tmp_path / "in" / "a.png"))
    assert shown(remote) == source(remote) == "memory://b/in/a.png"


def test_an_interrupted_then_resumed_url_batch_equals_an_uninterrupted_local_one(tmp_path: Path, memory: str) -> None:
    photos = make_photos(tmp_path / "in", 6)
    items, _, _ = discover([photos])
    local = run_batch(items, make_job(tmp_path / "local"), jobs=1)
    assert len(local.processed) == 6
    _upload(photos, f"{memory}/photos")
    from featmap.io.storage import discover_urls

    found, _, _ = discover_urls([f"{memory}/photos"])
    out = f"{memory}/maps"
    with pytest.raises(BatchInterrupted) as stopped:
        run_batch(found, make_job(Path("/unused")), on_progress=_stop_after(2), out=out)
    first = stopped.value.report
    assert first.interrupted and len(first.processed) == 2
    assert len(_remote(out)) == 2 * 3 + 1  # two images' three maps each, and the manifest flushed at the interrupt
    resumed = run_batch(found, make_job(Path("/unused")), skip_existing=True, out=out)
    assert len(resumed.skipped) == 2 and len(resumed.processed) == 4 and not resumed.failed
    assert resumed.skipped == tuple(f"{memory}/photos/{p.name}" for p in sorted(photos.iterdir())[:2])
    remote = _remote(out)
    records = remote.pop("manifest.jsonl").decode().splitlines()
    assert remote == tree_bytes(tmp_path / "local")
    assert len(records) == 6 * 3  # one line per map, none repeated by the resume


def test_url_inputs_to_a_folder_interrupted_and_resumed_equal_the_local_batch(tmp_path: Path, memory: str) -> None:
    photos = make_photos(tmp_path / "in", 5, broken=True)
    items, _, _ = discover([photos])
    run_batch(items, make_job(tmp_path / "local"), jobs=1)
    _upload(photos, f"{memory}/photos")
    from featmap.io.storage import discover_urls

    found, _, _ = discover_urls([f"{memory}/photos"])
    out = tmp_path / "back"
    with pytest.raises(BatchInterrupted):
        run_batch(found, make_job(out), on_progress=_stop_after(3), out=out)
    assert not list(out.rglob(".*.tmp")) and not (out / ".featmap.lock").exists()
    resumed = run_batch(found, make_job(out), skip_existing=True, out=out)
    assert len(resumed.skipped) == 2 and len(resumed.processed) == 3  # broken.png failed and is retried
    assert resumed.failed == ((f"{memory}/photos/broken.png", resumed.failed[0][1]),)
    assert "corrupt or truncated" in resumed.failed[0][1]
    assert tree_bytes(out) == tree_bytes(tmp_path / "local")
    ok = [{k: r[k] for k in ("kernel", "png", "stats")} for r in manifest(out) if r["status"] == "ok"]
    expected = [
        {k: r[k] for k in ("kernel", "png", "stats")} for r in manifest(tmp_path / "local") if r["status"] == "ok"
    ]
    assert sorted(ok, key=lambda r: r["png"]) == sorted(expected, key=lambda r: r["png"])


def test_a_local_folder_is_locked_whatever_the_inputs(tmp_path: Path, memory: str) -> None:
    _upload(make_photos(tmp_path / "in", 2), f"{memory}/photos")
    from featmap.io.storage import discover_urls

    found, _, _ = discover_urls([f"{memory}/photos"])
    out = tmp_path / "out"
    with OutputLock(out), pytest.raises(OutputBusyError, match="is being written by another featmap run"):
        run_batch(found, make_job(out), out=out)
    assert not any(out.rglob("*.png"))


def test_memory_urls_refuse_a_back_end_of_other_processes(tmp_path: Path, memory: str) -> None:
    from featmap.run.backends.pool import LocalPool

    items, _, _ = discover([make_photos(tmp_path / "in", 2)])
    with pytest.raises(FeatmapError, match="memory://: lives in this process only"):
        run_batch(items, make_job(Path("/unused")), backend=LocalPool(2), out=f"{memory}/maps")
    report = run_batch(items, make_job(Path("/unused")), backend=InProcess(), out=f"{memory}/maps")
    assert len(report.processed) == 2


def test_a_url_batch_refuses_another_runs_outputs_with_the_local_message(tmp_path: Path, memory: str) -> None:
    items, _, _ = discover([make_photos(tmp_path / "in", 1)])
    out = f"{memory}/maps"
    run_batch(items, make_job(Path("/unused")), out=out)
    other = run_batch(items, make_job(Path("/unused"), normalize="abs"), out=out)
    local = run_batch(items, make_job(tmp_path / "o"), jobs=1)
    again = run_batch(items, make_job(tmp_path / "o", normalize="abs"), jobs=1)
    assert len(local.processed) == 1 and len(other.failed) == len(again.failed) == 1
    remote_reason, local_reason = other.failed[0][1], again.failed[0][1]
    assert remote_reason == "p00/sobel_x.png: exists and was not made from this input with these options; " + (
        "pass --overwrite to replace it, or choose another -o folder"
    )
    assert local_reason == f"{tmp_path / 'o'}/{remote_reason}"


def test_a_url_batch_with_reports_writes_the_local_batchs_index(tmp_path: Path, memory: str) -> None:
    items, _, _ = discover([make_photos(tmp_path / "in", 3, broken=True)])
    local = run_batch(items, make_job(tmp_path / "local", report=True), jobs=1)
    assert len(local.processed) == 3 and (tmp_path / "local" / "report.html").is_file()
    out = f"{memory}/maps"
    assert len(run_batch(items, make_job(Path("/unused"), report=True), out=out).processed) == 3
    remote = _remote(out)
    expected = tree_bytes(tmp_path / "local")
    assert sorted(remote) == sorted([*expected, "manifest.jsonl"])
    # every map and the index alike; an image's own report names the folder its maps were written under
    assert {k: v for k, v in remote.items() if not k.endswith("/report.html") and k != "manifest.jsonl"} == {
        k: v for k, v in expected.items() if not k.endswith("/report.html")
    }
    index = remote["report.html"].decode()
    assert remote["report.html"] == expected["report.html"]
    assert index.count("<li>") == 3 and 'href="p00/report.html"' in index and "broken.png" not in index
