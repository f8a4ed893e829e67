"""featmap.batch_api: the public calls ``featmap apply`` is made of (`build_job`, `apply_file`, `find_images`,
`apply_batch`), each giving what the command gives, byte for byte."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

import featmap
from featmap.cli import cli
from featmap.errors import FeatmapError, NothingToDoError, SpecError
from featmap.io.storage import REMOTE_PLACEHOLDER
from featmap.run.jobs import make_job, make_output
from featmap.run.netjob import make_network_job
from tests.conftest import SAMPLES
from tests.test_backends import make_photos, tree_bytes

KERNEL_ARGS = ["-k", "sobel_x", "-k", "laplacian_4", "--padding", "same", "--activation", "relu", "--pool", "max"]


def test_the_new_names_are_public() -> None:
    for name in ("ApplyOptions", "BatchInterrupted", "FoundImages", "apply_batch", "apply_file", "apply_layers"):
        assert name in featmap.__all__ and getattr(featmap, name) is not None
    from featmap.run.batch import BatchInterrupted

    assert featmap.BatchInterrupted is BatchInterrupted


def test_every_option_is_a_flag_of_featmap_apply() -> None:
    # the command builds ApplyOptions from its parameters by name: each field must be one of them (the pictures'
    # normalization apart: the command sets it from whether --normalize was given)
    from featmap.cli.apply import apply

    names = {p.name for p in apply.params} | {"sheet_normalize"}
    assert {f.name for f in fields(featmap.ApplyOptions)} <= names


def test_build_job_equals_the_job_builders(tmp_path: Path) -> None:
    options = featmap.ApplyOptions(stride=2, padding="same", pool="max", combine="magnitude", out_dir=tmp_path)
    built = featmap.build_job(["sobel_x", "sobel_y"], options=options)
    by_hand = make_job(
        ["sobel_x", "sobel_y"], stride=2, padding="same", pool="max", combine="magnitude", out_dir=tmp_path
    )
    assert built.options_hash() == by_hand.options_hash() and built.bank.names == by_hand.bank.names
    assert (built.conv, built.act, built.pool, built.combine, built.output) == (
        by_hand.conv,
        by_hand.act,
        by_hand.pool,
        by_hand.combine,
        by_hand.output,
    )
    network = featmap.build_job(model="lenet5-digits", options=featmap.ApplyOptions(out_dir=tmp_path, sheet=True))
    from featmap.net.spec import load_model

    expected = make_network_job(load_model("lenet5-digits"), output=make_output(out_dir=tmp_path, sheet=True))
    assert network.options_hash() == expected.options_hash() and network.output == expected.output


def test_build_job_refuses_kernels_with_a_network_and_none_at_all() -> None:
    with pytest.raises(SpecError, match="given together"):
        featmap.build_job(["sobel_x"], model="lenet5")
    with pytest.raises(SpecError, match="no kernel given"):
        featmap.build_job()


def test_a_url_output_folder_is_worked_out_under_the_placeholder() -> None:
    job = featmap.build_job("sobel_x", options=featmap.ApplyOptions(out_dir="s3://bucket/maps/"))
    assert job.output.out_dir == REMOTE_PLACEHOLDER


def test_find_images_leaves_the_output_folder_out_and_says_why_nothing_was_found(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "in", 3)
    (photos / "notes.txt").write_text("not an image")
    make_photos(photos / "out", 2)
    found = featmap.find_images([str(photos)], recursive=True, out=photos / "out")
    assert [i.path.name for i in found.items] == ["p00.png", "p01.jpg", "p02.png"] and found.ignored == 1
    with pytest.raises(FeatmapError, match="is the output folder") as inside:
        featmap.find_images([str(photos / "out")], out=photos / "out")
    assert inside.value.fix == "choose another -o folder"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(NothingToDoError, match=r"holds no image \(1 file ignored"):
        featmap.find_images([str(tmp_path / "empty")])
    assert featmap.find_images([str(tmp_path / "empty")], required=False) == ([], [], 1)


def test_apply_batch_writes_what_the_command_writes(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "in", 4, broken=True)
    done = CliRunner().invoke(cli, ["apply", str(photos), *KERNEL_ARGS, "-o", str(tmp_path / "cli"), "-j", "1"])
    assert done.exit_code == 3, done.output
    options = featmap.ApplyOptions(padding="same", activation="relu", pool="max", out_dir=tmp_path / "api")
    job = featmap.build_job(["sobel_x", "laplacian_4"], options=options)
    found = featmap.find_images([str(photos)], out=tmp_path / "api")
    report = featmap.apply_batch(found.items, job, jobs=1)
    assert len(report.processed) == 4 and [p for p, _ in report.failed] == [str(photos / "broken.png")]
    assert tree_bytes(tmp_path / "api") == tree_bytes(tmp_path / "cli") != {}
    again = featmap.apply_batch(found.items, job, jobs=1, skip_existing=True)
    assert len(again.skipped) == 4 and not again.processed


def test_apply_file_writes_what_the_command_writes_and_refuses_other_options(tmp_path: Path) -> None:
    image = make_photos(tmp_path / "in", 1) / "p00.png"
    done = CliRunner().invoke(cli, ["apply", str(image), *KERNEL_ARGS, "-o", str(tmp_path / "cli")])
    assert done.exit_code == 0, done.output
    options = featmap.ApplyOptions(padding="same", activation="relu", pool="max", out_dir=tmp_path / "api")
    result = featmap.apply_file(image, featmap.build_job(["sobel_x", "laplacian_4"], options=options))
    assert [m.info.name for m in result.maps] == ["sobel_x", "laplacian_4"]
    assert tree_bytes(tmp_path / "api") == tree_bytes(tmp_path / "cli") != {}
    other = featmap.build_job(["sobel_x", "laplacian_4"], options=featmap.ApplyOptions(out_dir=tmp_path / "api"))
    with pytest.raises(FeatmapError, match="made with other options|not made from this input"):
        featmap.apply_file(image, other)


def test_apply_layers_are_the_layers_of_a_job() -> None:
    conv, act, pool = featmap.apply_layers(stride=2, padding="same", activation="relu", pool="max", pool_size=3)
    job = make_job(["sobel_x"], stride=2, padding="same", activation="relu", pool="max", pool_size=3)
    assert (conv, act, pool) == (job.conv, job.act, job.pool)


def test_start_helpers_starts_the_fork_server_only_for_more_than_one_process() -> None:
    import multiprocessing

    assert featmap.start_helpers(1) is False  # one process: nothing to start
    assert featmap.start_helpers(2) is ("forkserver" in multiprocessing.get_all_start_methods())
    assert featmap.start_helpers(2) is ("forkserver" in multiprocessing.get_all_start_methods())  # running: kept


def test_apply_batch_starts_the_helpers_server_for_its_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local batch of three images or more asks for the helpers' server with the job's kind (the server then
    imports only that path); two images, one process or a Dask scheduler do not ask."""
    asked: list[tuple[int | None, bool | None]] = []
    monkeypatch.setattr(featmap, "start_helpers", lambda jobs=None, *, network=None: asked.append((jobs, network)))
    photos = featmap.find_images([make_photos(tmp_path / "in", 3)], out=tmp_path / "k").items
    kernels = featmap.build_job(["sobel_x"], options=featmap.ApplyOptions(out_dir=tmp_path / "k"))
    assert len(featmap.apply_batch(photos, kernels, jobs=2).processed) == 3
    digits = featmap.find_images([SAMPLES / "digits"], out=tmp_path / "n").items
    network = featmap.build_job(model="lenet5-digits", options=featmap.ApplyOptions(out_dir=tmp_path / "n"))
    assert len(featmap.apply_batch(digits[:3], network, jobs=2).processed) == 3
    featmap.apply_batch(digits[:2], network, jobs=2, skip_existing=True)
    assert asked == [(2, False), (2, True)]
