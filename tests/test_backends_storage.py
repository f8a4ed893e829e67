"""featmap.io.storage and urlbatch: fsspec URLs as inputs and outputs, on ``memory://`` in this process
and on a real S3-compatible server (moto, started on 127.0.0.1) from the Dask cluster's workers. Results are
compared byte for byte with the local pool's."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from featmap.cli import cli
from featmap.io.discover import discover
from featmap.io.manifest_index import index_lines
from featmap.io.storage import discover_urls, is_remote, local_path
from featmap.run.backends.urlbatch import run_url_batch
from featmap.run.batch import BatchInterrupted, run_batch
from tests.test_backends import make_job, make_photos, tree_bytes

fsspec = pytest.importorskip("fsspec", reason="the dask extra is not installed: pip install '.[dask]'")
KERNELS = ["-k", "sobel_x", "-k", "laplacian_4", "-k", "gaussian:size=5,sigma=1"]
OPTIONS = ["--padding", "same", "--activation", "relu", "--pool", "max"]


def upload(folder: Path, url: str) -> None:
    fs, root = fsspec.core.url_to_fs(url)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{root}/{path.relative_to(folder).as_posix()}", path.read_bytes())


def remote_bytes(url: str) -> dict[str, bytes]:
    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    return {p[len(root) + 1 :]: fs.cat_file(p) for p in sorted(fs.find(root)) if not p.endswith("/manifest.jsonl")}


def test_url_words() -> None:
    assert is_remote("memory://x") and is_remote("s3://b/k") and not is_remote("file:///x") and not is_remote("a/b")
    assert local_path("file:///tmp/x") == "/tmp/x"


def test_memory_run_matches_the_local_pool_and_resumes(tmp_path: Path, memory: str) -> None:
    photos = make_photos(tmp_path / "in", 5, broken=True)
    (photos / "sub").mkdir()
    (photos / "notes.txt").write_text("not an image")
    make_photos(photos / "sub", 2)
    upload(photos, f"{memory}/photos")
    local = CliRunner().invoke(
        cli, ["apply", str(photos), "-r", *KERNELS, *OPTIONS, "-o", str(tmp_path / "pool"), "-j", "2"]
    )
    assert local.exit_code == 3, local.output
    args = ["apply", f"{memory}/photos", "-r", *KERNELS, *OPTIONS, "-o", f"{memory}/maps", "--json"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 3, first.output
    summary = json.loads(first.stdout)
    assert len(summary["processed"]) == 7 and summary["ignored"] == 1
    assert summary["failed"][0]["input"] == f"{memory}/photos/broken.png"
    assert remote_bytes(f"{memory}/maps") == tree_bytes(tmp_path / "pool")
    fs = fsspec.filesystem("memory")
    records = [json.loads(line) for line in fs.cat_file("/featmap-test/maps/manifest.jsonl").decode().splitlines()]
    assert {r["input"] for r in records if r["status"] == "ok"} == {
        f"{memory}/photos/{name}"
        for name in ("p00.png", "p01.jpg", "p02.png", "p03.jpg", "p04.png", "sub/p00.png", "sub/p01.jpg")
    }
    again = CliRunner().invoke(cli, [*args, "--skip-existing"])
    assert len(json.loads(again.stdout)["skipped"]) == 7


def test_memory_refuses_to_clobber_another_runs_outputs(tmp_path: Path, memory: str) -> None:
    upload(make_photos(tmp_path / "in", 2), f"{memory}/photos")
    base = ["apply", f"{memory}/photos", "-k", "sobel_x", "-o", f"{memory}/maps", "--json"]
    assert CliRunner().invoke(cli, base).exit_code == 0
    other = CliRunner().invoke(cli, [*base, "--activation", "abs"])
    assert other.exit_code == 3
    assert "exists and was not made from this input with these options" in other.stderr
    assert CliRunner().invoke(cli, [*base, "--activation", "abs", "--overwrite"]).exit_code == 0


def test_local_inputs_to_a_url_and_url_inputs_to_a_folder(tmp_path: Path, memory: str) -> None:
    photos = make_photos(tmp_path / "in", 3)
    job = make_job(tmp_path / "pool")
    items, _, _ = discover([photos])
    run_batch(items, job, jobs=1)
    to_url = run_url_batch(items, make_job(Path("/unused")), f"{memory}/maps")
    assert len(to_url.processed) == 3 and remote_bytes(f"{memory}/maps") == tree_bytes(tmp_path / "pool")
    upload(photos, f"{memory}/photos")
    found, problems, _ = discover_urls([f"{memory}/photos"])
    assert problems == [] and [i.url for i in found] == [
        f"{memory}/photos/{n}" for n in ("p00.png", "p01.jpg", "p02.png")
    ]
    to_folder = run_url_batch(found, make_job(tmp_path / "back"), tmp_path / "back")
    assert len(to_folder.processed) == 3 and tree_bytes(tmp_path / "back") == tree_bytes(tmp_path / "pool")


def test_memory_interrupt_removes_unfinished_outputs(tmp_path: Path, memory: str) -> None:
    upload(make_photos(tmp_path / "in", 4), f"{memory}/photos")
    found, _, _ = discover_urls([f"{memory}/photos"])

    def stop(progress: Any) -> None:
        if progress.done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(BatchInterrupted) as stopped:
        run_url_batch(found, make_job(Path("/unused")), f"{memory}/maps", on_progress=stop)
    assert len(stopped.value.report.processed) == 2
    assert len(remote_bytes(f"{memory}/maps")) == 2 * 3  # two images' maps; the manifest was flushed
    index = index_lines(
        fsspec.filesystem("memory").cat_file("/featmap-test/maps/manifest.jsonl").decode().splitlines(True)
    )
    assert len(index) == 6


# ----------------------------------------------------------------------------------------------- S3 (moto)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port), with fake credentials in this process's environment."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed: pip install '.[s3test]'")
    pytest.importorskip("s3fs", reason="s3fs is not installed: pip install '.[dask]'")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "featmap-test",
        "AWS_SECRET_ACCESS_KEY": "featmap-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for key, value in saved.items():
        os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


def _set_environment(env: dict[str, str]) -> None:
    os.environ.update(env)


def test_s3_on_the_cluster_matches_the_local_pool(tmp_path: Path, s3_endpoint: str, dask_cluster: Any) -> None:
    from distributed import Client

    from featmap.run.backends.dask import DaskBackend

    with Client(dask_cluster.scheduler_address) as client:  # the workers learn the endpoint as a user's would
        keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
        client.run(_set_environment, {k: os.environ[k] for k in keys})
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("featmap-bucket")
    photos = make_photos(tmp_path / "in", 6, broken=True)
    upload(photos, "s3://featmap-bucket/photos")
    items, _, _ = discover([photos])
    run_batch(items, make_job(tmp_path / "pool"), jobs=2)
    found, problems, _ = discover_urls(["s3://featmap-bucket/photos"])
    assert problems == [] and len(found) == 7
    backend = DaskBackend(dask_cluster.scheduler_address, chunk=2)
    report = run_url_batch(found, make_job(Path("/unused")), "s3://featmap-bucket/maps", backend=backend)
    assert len(report.processed) == 6 and report.failed[0][0] == "s3://featmap-bucket/photos/broken.png"
    fs.invalidate_cache()
    assert remote_bytes("s3://featmap-bucket/maps") == tree_bytes(tmp_path / "pool")
    again = run_url_batch(
        found, make_job(Path("/unused")), "s3://featmap-bucket/maps", backend=backend, skip_existing=True
    )
    assert len(again.skipped) == 6 and not again.processed


def test_a_resume_on_s3_skips_the_done_images_and_remakes_a_deleted_output(tmp_path: Path, s3_endpoint: str) -> None:
    """The URL store (moto's S3 server): the same batch-wide names; the folder is listed once."""
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("featmap-resume")
    items, _, _ = discover([make_photos(tmp_path / "in", 4)])
    out = "s3://featmap-resume/maps"
    assert len(run_batch(items, make_job(Path("/unused")), jobs=1, out=out).processed) == 4
    again = run_batch(items, make_job(Path("/unused")), jobs=1, out=out, skip_existing=True)
    assert not again.processed and len(again.skipped) == 4
    hit = items[1]
    fs.rm(f"featmap-resume/maps/{hit.stem}/sobel_x.png")
    fs.invalidate_cache()
    redo = run_batch(items, make_job(Path("/unused")), jobs=1, out=out, skip_existing=True)
    assert [Path(r.input.path).name for r in redo.processed] == [hit.path.name] and len(redo.skipped) == 3
