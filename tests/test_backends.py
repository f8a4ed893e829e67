"""featmap.run.backends: the in-process and local-pool back ends, and the Dask back end on a real LocalCluster of
2 worker processes, each compared byte for byte with the local pool."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli
from featmap.io.discover import discover
from featmap.kernels import KernelLibrary
from featmap.net.layers import Act, Conv2d, Pool2d
from featmap.run.backends import InProcess, choose_backend
from featmap.run.backends.pool import LocalPool
from featmap.run.batch import ApplyJob, BatchInterrupted, OutputOptions, run_batch


def make_photos(folder: Path, count: int, size: int = 48, broken: bool = False) -> Path:
    """Small distinct RGB JPEGs and PNGs (and one truncated PNG when ``broken``)."""
    rng = np.random.default_rng(14)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size + i % 3, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i:02d}.{'jpg' if i % 2 else 'png'}")
    if broken:
        data = (folder / "p00.png").read_bytes()
        (folder / "broken.png").write_bytes(data[: len(data) // 2])
    return folder


def make_job(out: Path, **output: Any) -> ApplyJob:
    bank = KernelLibrary().bank(["sobel_x", "laplacian_4", "gaussian:size=5,sigma=1"])
    return ApplyJob(
        bank, Conv2d(padding="same"), Act("relu"), Pool2d("max", (2, 2)), output=OutputOptions(out, **output)
    )


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every output file's bytes by relative path (the manifest apart)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.jsonl"
    }


def manifest(root: Path) -> list[dict[str, Any]]:
    lines = (root / "manifest.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: (r["input"], r.get("kernel", "")))


def test_choose_backend() -> None:
    assert isinstance(choose_backend(None, jobs=1), InProcess)
    assert isinstance(choose_backend(None, jobs=3), LocalPool)


def test_the_pool_does_not_start_helpers_for_a_small_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import featmap.run.backends.pool as pool

    started: list[int] = []
    monkeypatch.setattr(pool, "Helpers", lambda count, work, tasks: started.append(count))
    items, _, _ = discover([make_photos(tmp_path / "in", 2)])
    report = run_batch(items, make_job(tmp_path / "out"), jobs=2)
    assert len(report.processed) == 2 and started == []


class _FakeHelpers:
    """Helpers that never take an image: what is given out waits in a queue this process pulls from, as the pipe."""

    def __init__(self, count: int, work: Any, tasks: Any) -> None:
        from collections import deque

        self.count, self.started, self.working = count, 0, 0
        self.given: deque[int] = deque()
        self.stopped = False

    def give(self, position: int) -> None:
        self.given.append(position)

    def take(self) -> int | None:
        return self.given.popleft() if self.given else None

    def collect(self, wait: bool = False) -> tuple[list[Any], list[Any]]:
        return [], []

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        pass


class _SlowToStart(_FakeHelpers):
    """Helpers whose start lasts until they are stopped, as a fork server still importing makes the first one wait."""

    def __init__(self, count: int, work: Any, tasks: Any) -> None:
        import threading

        super().__init__(count, work, tasks)
        self.released = threading.Event()

    def start(self) -> bool:
        self.released.wait(timeout=20)
        return False  # what a pool stopped meanwhile says

    def stop(self) -> None:
        super().stop()
        self.released.set()

    def close(self) -> None:
        self.released.set()


def test_the_pool_works_on_while_a_helper_starts_and_on_one_opencv_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import featmap.run.backends.pool as pool
    from featmap.core.cvfilter import opencv, threads
    from featmap.run.work import work_image

    made: list[_SlowToStart] = []
    monkeypatch.setattr(pool, "Helpers", lambda *args: made.append(_SlowToStart(*args)) or made[-1])
    monkeypatch.setattr(pool, "HELPER_START_SECONDS", 0.0)  # a helper is asked for after the first image
    seen: list[tuple[int, bool]] = []  # (OpenCV threads, the helper still starting) as each image runs

    def work(task: Any) -> Any:
        seen.append((threads(), bool(made) and not made[0].released.is_set()))
        try:
            return work_image(task)
        finally:
            if len(seen) == 6:  # the helper is "started" once every image is done (the pool waits for that)
                made[0].released.set()

    items, _, _ = discover([make_photos(tmp_path / "in", 6)])
    job, alone = make_job(tmp_path / "two"), make_job(tmp_path / "one")
    finished: list[int] = []
    tasks = [(i, item, job) for i, item in enumerate(items)]
    before = threads()
    LocalPool(2).run(tasks, work, lambda i, result, error: finished.append(i), lambda name: None)
    assert sorted(finished) == list(range(6)) and made[0].released.is_set()  # every image here
    assert [starting for _, starting in seen[1:]] == [True] * 5  # images 2-6 ran while the helper was starting
    if opencv() is not None:
        assert [count for count, _ in seen] == [1] * 6 and threads() == before  # -j 2: two cores, this one's one
    run_batch(items, alone, jobs=1)
    assert tree_bytes(tmp_path / "two") == tree_bytes(tmp_path / "one") != {}


class _CannotStart(_FakeHelpers):
    """Helpers that cannot start (no process slots): starting fails at once."""

    def __init__(self, count: int, work: Any, tasks: Any, log: list[str]) -> None:
        super().__init__(count, work, tasks)
        self.log = log
        log.append("asked")

    def start(self) -> bool:
        raise OSError("no process slots")

    def stop(self) -> None:
        self.log.append("stopped")

    def close(self) -> None:
        self.log.append("closed")


@pytest.mark.parametrize(("count", "asked_first"), [(6, False), (16, True)])
def test_a_large_batch_asks_for_its_helpers_before_its_first_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int, asked_first: bool
) -> None:
    """From `EARLY_ASK_IMAGES` images on, the helpers are asked for before the first image (their start overlaps it);
    when that image then shows they would not pay (here: a start of an hour), they are stopped and every image
    runs here, with the same files as one process makes."""
    import featmap.run.backends.pool as pool
    from featmap.run.work import work_image

    log: list[str] = []
    monkeypatch.setattr(pool, "Helpers", lambda *args: _CannotStart(*args, log))
    monkeypatch.setattr(pool, "HELPER_START_SECONDS", 3600.0)
    assert pool.EARLY_ASK_IMAGES == 16

    def work(task: Any) -> Any:
        log.append("image")
        return work_image(task)

    items, _, _ = discover([make_photos(tmp_path / "in", count, size=64)])
    job = make_job(tmp_path / "two")
    finished: list[int] = []
    tasks = [(i, item, job) for i, item in enumerate(items)]
    LocalPool(2).run(tasks, work, lambda i, r, e: finished.append(i), lambda name: None)
    assert sorted(finished) == list(range(count))
    assert log == (["asked", "image", "stopped"] + ["image"] * (count - 1) if asked_first else ["image"] * count)
    run_batch(items, make_job(tmp_path / "one"), jobs=1)
    assert tree_bytes(tmp_path / "two") == tree_bytes(tmp_path / "one") != {}


def _dies_in_a_helper(task: Any) -> Any:
    """`work_image`, except that a helper process kills itself on the first image it takes (leaving a mark beside
    the output folder), and this process goes slowly until it has."""
    import multiprocessing
    import signal
    import time

    from featmap.run.work import work_image

    mark = task[2].output.out_dir.parent / "helper-died"
    if multiprocessing.parent_process() is not None:
        mark.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    if not mark.exists():
        time.sleep(0.05)
    return work_image(task)


def test_a_helper_killed_on_an_image_fails_that_image_and_the_batch_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real helper killed (as the out-of-memory killer would) while it holds an image: that image is reported
    with the reason, and every other image is done, with the same files as one process makes."""
    import featmap.run.backends.pool as pool

    monkeypatch.setattr(pool, "HELPER_START_SECONDS", 0.0)
    items, _, _ = discover([make_photos(tmp_path / "in", 60)])
    job = make_job(tmp_path / "two")
    finished: dict[int, str | None] = {}
    tasks = [(i, item, job) for i, item in enumerate(items)]
    backend = LocalPool(2)
    backend.run(tasks, _dies_in_a_helper, lambda i, r, e: finished.__setitem__(i, e), lambda name: None)
    failed = [i for i, error in finished.items() if error is not None]
    assert sorted(finished) == list(range(60)) and len(failed) == 1, backend.notes
    assert finished[failed[0]] == pool.DIED
    assert backend.notes == [f"a helper process died (exit code -9); {items[failed[0]].path} failed, the others ran on"]
    run_batch(items, make_job(tmp_path / "one"), jobs=1)
    lost = items[failed[0]].rel_dir / items[failed[0]].stem
    expected = {name: data for name, data in tree_bytes(tmp_path / "one").items() if not name.startswith(f"{lost}/")}
    assert tree_bytes(tmp_path / "two") == expected != {}


@pytest.mark.parametrize("count", [10, 16])
def test_the_pool_shares_a_large_batch_with_helpers_and_matches_one_process(tmp_path: Path, count: int) -> None:
    """Helpers asked for after the first image (10 images) or before it (16, `EARLY_ASK_IMAGES`)."""
    photos = make_photos(tmp_path / "in", count, size=160)
    items, _, _ = discover([photos])
    pool = LocalPool(2)
    original = pool_run = pool.run

    helpers_used: list[bool] = []

    def spy(*args: Any) -> None:
        import featmap.run.backends.pool as module

        saved = module.HELPER_START_SECONDS
        module.HELPER_START_SECONDS = 0.0  # always worth a helper here
        try:
            original(*args)
        finally:
            module.HELPER_START_SECONDS = saved
        helpers_used.append(True)

    pool.run = spy  # type: ignore[method-assign]
    one = run_batch(items, make_job(tmp_path / "one"), jobs=1)
    two = run_batch(items, make_job(tmp_path / "two"), backend=pool)
    assert pool_run is original and helpers_used == [True]
    assert len(one.processed) == len(two.processed) == count
    assert tree_bytes(tmp_path / "one") == tree_bytes(tmp_path / "two") != {}


def test_a_batch_is_given_to_helpers_a_block_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 4 images (`_BLOCK`), each with its own helper: every image once, the same files as one process."""
    import featmap.run.backends.pool as pool
    from featmap.run.work import work_image

    monkeypatch.setattr(pool, "HELPER_START_SECONDS", 0.0)
    monkeypatch.setattr(pool, "_BLOCK", 4)
    asked: list[int] = []
    real = pool.Helpers

    def helpers(count: int, work: Any, block: Any) -> Any:
        asked.append(len(block))
        return real(count, work, block)

    monkeypatch.setattr(pool, "Helpers", helpers)
    items, _, _ = discover([make_photos(tmp_path / "in", 14)])
    job = make_job(tmp_path / "two")
    finished: list[int] = []
    tasks = [(i, item, job) for i, item in enumerate(items)]
    LocalPool(2).run(tasks, work_image, lambda i, r, e: finished.append(i) if e is None else None, lambda name: None)
    assert sorted(finished) == list(range(14)) and asked == [4, 4, 4, 1]  # the first image here, then 13 in blocks
    run_batch(items, make_job(tmp_path / "one"), jobs=1)
    assert tree_bytes(tmp_path / "two") == tree_bytes(tmp_path / "one") != {}


# ------------------------------------------------------------------------------------------------- Dask


@pytest.fixture
def dask_backend(dask_cluster: Any) -> Any:
    from featmap.run.backends.dask import DaskBackend

    return DaskBackend(dask_cluster.scheduler_address, chunk=2)


def test_dask_results_are_byte_identical_to_the_local_pool(tmp_path: Path, dask_backend: Any) -> None:
    items, _, _ = discover([make_photos(tmp_path / "in", 9, broken=True)])
    local = run_batch(items, make_job(tmp_path / "pool"), jobs=2)
    remote = run_batch(items, make_job(tmp_path / "dask"), backend=dask_backend)
    assert len(remote.processed) == len(local.processed) == 9
    assert [p for p, _ in remote.failed] == [p for p, _ in local.failed] == [str(tmp_path / "in" / "broken.png")]
    assert "corrupt or truncated" in remote.failed[0][1]
    assert tree_bytes(tmp_path / "dask") == tree_bytes(tmp_path / "pool")
    assert len(tree_bytes(tmp_path / "dask")) == 27
    assert manifest(tmp_path / "dask") == manifest(tmp_path / "pool")


def test_dask_cli_by_environment_variable_exit_code_and_resume(
    tmp_path: Path, dask_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = make_photos(tmp_path / "in", 4, broken=True)
    out = tmp_path / "out"
    monkeypatch.setenv("FEATMAP_SCHEDULER", dask_cluster.scheduler_address)
    args = ["apply", str(photos), "-k", "sobel_x", "-o", str(out), "--json", "--chunk", "3"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 3, first.output
    summary = json.loads(first.stdout)
    assert len(summary["processed"]) == 4 and summary["failed"][0]["input"].endswith("broken.png")
    assert "broken.png: is corrupt or truncated" in first.stderr
    again = CliRunner().invoke(cli, [*args, "--skip-existing"])
    assert len(json.loads(again.stdout)["skipped"]) == 4


def test_dask_interrupt_removes_unfinished_outputs_then_resumes(tmp_path: Path, dask_backend: Any) -> None:
    items, _, _ = discover([make_photos(tmp_path / "in", 12, size=96)])
    out = tmp_path / "out"
    seen: list[int] = []

    def stop_after_first(progress: Any) -> None:
        seen.append(progress.done)
        if progress.done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(BatchInterrupted) as stopped:
        run_batch(items, make_job(out), backend=dask_backend, on_progress=stop_after_first)
    report = stopped.value.report
    assert report.interrupted and 1 <= len(report.processed) < 12
    expected = {m.png.relative_to(out).as_posix() for r in report.processed for m in r.maps}
    assert set(tree_bytes(out)) == expected  # unfinished images left nothing, no temporary files either
    resumed = run_batch(items, make_job(out), backend=dask_backend, skip_existing=True)
    assert len(resumed.skipped) == len(report.processed) and len(resumed.processed) == 12 - len(report.processed)
    fresh = run_batch(items, make_job(tmp_path / "fresh"), jobs=1)
    assert len(fresh.processed) == 12 and tree_bytes(out) == tree_bytes(tmp_path / "fresh")


def test_scheduler_without_the_extra_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    photos = make_photos(tmp_path / "in", 2)
    result = CliRunner().invoke(
        cli, ["apply", str(photos), "-k", "sobel_x", "-o", str(tmp_path / "o"), "--scheduler", "local"]
    )
    assert result.exit_code == 1
    assert "--scheduler: needs Dask distributed, which is not installed; pip install 'featmap[dask]'" in result.stderr


def test_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    import socket

    from featmap.errors import FeatmapError
    from featmap.run.backends.dask import DaskBackend

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    items, _, _ = discover([make_photos(tmp_path / "in", 2)])
    backend = DaskBackend(f"tcp://127.0.0.1:{port}", connect_timeout=0.5)
    with pytest.raises(FeatmapError) as error:
        run_batch(items, make_job(tmp_path / "out"), backend=backend)
    assert str(error.value).startswith(f"--scheduler: cannot reach the Dask scheduler at tcp://127.0.0.1:{port} (")
    assert str(error.value).endswith("; check the address (tcp://host:8786), or use --scheduler local")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


def test_scheduler_local_starts_and_closes_its_own_cluster(tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="the dask extra is not installed: pip install '.[dask]'")
    photos = make_photos(tmp_path / "in", 3)
    CliRunner().invoke(cli, ["apply", str(photos), "-k", "sobel_x", "-o", str(tmp_path / "pool"), "-j", "1"])
    args = ["apply", str(photos), "-k", "sobel_x", "-o", str(tmp_path / "out"), "--scheduler", "local", "-j", "1"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["processed"]) == 3
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "pool")


def test_one_job_runs_on_one_opencv_thread_and_restores_the_count() -> None:
    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    seen: list[int] = []
    try:
        backend = choose_backend(None, jobs=1)
        tasks: list[Any] = [(i, SimpleNamespace(path=f"img{i}.png")) for i in range(2)]
        backend.run(tasks, lambda task: (seen.append(cv2.getNumThreads()), task), lambda *_: None, lambda _: None)
        assert seen == [1, 1] and cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)
