"""One job type and one set of writers (featmap.run.imagerun): a kernel bank and a network hand the same map
records to the same writers, and a network's channel PNGs are the PNG writer's bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featmap.io.discover import InputImage
from featmap.io.outputs import OutputOptions
from featmap.io.writers import open_writers
from featmap.io.writers.pixels import map_pixels
from featmap.io.writers.png import save_png
from featmap.net.records import ChannelInfo, ChannelMap, LayerMaps, MapStats
from featmap.net.spec import parse_file
from featmap.run.imagejob import process_image
from featmap.run.jobs import make_job, make_output
from featmap.run.netimage import NetworkRun, process_network_image
from featmap.run.netjob import make_network_job


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(text)
    return path


def _item(path: Path) -> InputImage:
    return InputImage(path, Path(), path.stem)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"colormap": "auto"},
        {"bit_depth": 16},
        {"normalize": "percentile", "percentiles": (5.0, 95.0)},
        {"normalize": "clip"},
    ],
)
def test_a_networks_channel_pngs_are_the_png_writers_bytes(
    tmp_path: Path, gray_png: Path, options: dict[str, object]
) -> None:
    """Every channel PNG equals what the network path wrote before it went through `PngWriter` (`map_pixels`
    of the channel, then `save_png`), computed here from the layer's raw stack."""
    spec = _spec(
        tmp_path, "layers:\n  - {conv: {kernels: [sobel_x, sobel_y, laplacian_4]}}\n  - relu\n  - maxpool: 2\n"
    )
    out = make_output(out_dir=tmp_path / "out", raw="npy", **options)  # type: ignore[arg-type]
    job = make_network_job(parse_file(spec), output=out)
    result = process_network_image(_item(gray_png), job)
    assert [layer.folder for layer in result.layers] == ["01-conv2d", "02-relu", "03-maxpool2d"]
    for layer in result.layers:
        *pngs, stack = layer.files
        values = np.load(stack)
        assert [p.name for p in pngs] == [f"{ch:03d}.png" for ch in range(values.shape[2])]
        for ch, png in enumerate(pngs):
            drawn = map_pixels(
                values[:, :, ch : ch + 1],
                out.normalize,
                bit_depth=out.bit_depth,
                colormap=out.colormap,
                percentiles=out.percentiles,
            )
            before = save_png(tmp_path / "before.png", drawn.pixels, bit_depth=out.bit_depth)
            assert png.read_bytes() == before.read_bytes(), (layer.folder, ch)


def test_a_channel_png_maps_its_own_min_and_max_to_black_and_white(tmp_path: Path, gray_png: Path) -> None:
    """Independently of the writers: min-max of each channel, rounded to the nearest 8-bit level."""
    spec = _spec(tmp_path, "layers:\n  - {conv: {kernels: [sobel_x, box_3]}}\n")
    job = make_network_job(parse_file(spec), output=make_output(out_dir=tmp_path / "out", raw="npy"))
    (layer,) = process_network_image(_item(gray_png), job).layers
    values = np.load(layer.files[-1]).astype(np.float64)
    for ch in range(2):
        plane = values[:, :, ch]
        expected = np.rint((plane - plane.min()) / (plane.max() - plane.min()) * 255)
        assert np.array_equal(np.asarray(Image.open(layer.files[ch])), expected.astype(np.uint8))


def test_one_process_image_for_a_bank_and_a_one_layer_spec(tmp_path: Path, gray_png: Path) -> None:
    """`-k sobel_x -k box_3` and a spec of one conv layer naming the same kernels: the same pixels, map for
    channel, through the same `process_image`."""
    bank = make_job(["sobel_x", "box_3"], out_dir=tmp_path / "bank", raw="npy")
    spec = _spec(tmp_path, "layers:\n  - {conv: {kernels: [sobel_x, box_3]}}\n")
    net = make_network_job(parse_file(spec), output=make_output(out_dir=tmp_path / "net", raw="npy"))
    kernels = process_image(_item(gray_png), bank)
    network = process_image(_item(gray_png), net)
    (layer,) = network.layers  # type: ignore[attr-defined]  # a network's result: its layers
    assert [m.info.name for m in kernels.maps] == ["sobel_x", "box_3"]
    for ch, written in enumerate(kernels.maps):
        assert written.raw is not None
        assert np.array_equal(np.load(written.raw)[:, :, 0], np.load(layer.files[-1])[:, :, ch])
        assert np.array_equal(np.asarray(Image.open(written.png)), np.asarray(Image.open(layer.files[ch])))
    # the hand-worked value: sobel_x over the square's left edge (40 → 200 between columns 7 and 8), rows 7-16
    assert np.load(kernels.maps[0].raw)[7, 6, 0] == pytest.approx(4 * 160 / 255, rel=1e-6)  # type: ignore[arg-type]


def test_the_network_stream_is_layer_maps_named_as_the_targets(tmp_path: Path, gray_png: Path) -> None:
    spec = _spec(tmp_path, "layers:\n  - {conv: {kernels: [sobel_x, sobel_y]}}\n  - flatten\n")
    job = make_network_job(parse_file(spec), output=make_output(out_dir=tmp_path / "out", raw="tiff"))
    run = NetworkRun(_item(gray_png), job)
    layers = list(run.layers())
    assert [(x.folder, len(x.maps), x.stack) for x in layers] == [
        ("01-conv2d", 2, "01-conv2d/all"),
        ("02-flatten", 1, "02-flatten/all"),
    ]
    for layer in layers:
        assert layer.output is not None
        for ch, fmap in enumerate(layer.maps):
            assert isinstance(fmap.info, ChannelInfo) and fmap.info.channel == ch
            assert fmap.info.name in run.targets and fmap.info.stats == layer.output.stats
    conv, flat = layers
    assert conv.maps[1].values.shape == (22, 30, 1)  # 24×32, valid 3×3
    assert np.array_equal(conv.maps[1].values[:, :, 0], conv.output.values[:, :, 1])  # type: ignore[union-attr]
    assert flat.maps[0].values.shape == (1, 22 * 30 * 2, 1)  # a flat output: a one-row strip
    (tiff,) = open_writers(job.output, ["tiff"])[0].add_layer(run.writer_targets, flat)
    assert tiff is not None and tiff.name == "all.tiff"
    assert np.array_equal(np.asarray(Image.open(tiff)), flat.maps[0].values[:, :, 0])  # the strip as its page


def test_the_json_writer_takes_a_network_channel(tmp_path: Path) -> None:
    """A writer made for kernel maps takes a network channel as it is: the facts every map has, plus its layer."""
    stats = MapStats(-1.0, 2.0, 0.5, 1.0)
    plane = np.array([[[-1.0], [2.0]]], np.float32)
    fmap = ChannelMap(plane, ChannelInfo("01-conv/003", "0", 3, (1, 2, 1), 28, stats))
    targets = {"01-conv/003": tmp_path / "img" / "01-conv2d" / "003.png"}
    (writer,) = open_writers(OutputOptions(tmp_path), ["json"])
    assert writer.add_layer(targets, LayerMaps("01-conv2d", (fmap,))) == [None]
    (path,) = writer.finish(targets)
    assert json.loads(path.read_text())["maps"] == [
        {
            "name": "01-conv/003",
            "layer": "0",
            "channel": 3,
            "shape": [1, 2, 1],
            "params": 28,
            "stats": {"min": -1.0, "max": 2.0, "mean": 0.5, "std": 1.0},
        }
    ]


def test_the_kernel_page_reads_the_layer_record_the_network_page_reads(tmp_path: Path, gray_png: Path) -> None:
    """`-k sobel_x` on the kernel page and a one-layer spec naming sobel_x on the network page: the same
    `LayerRecord` facts (the conv's plan on the input, its weights), so the network page is the kernel page grown."""
    from featmap.io.images import load_image
    from featmap.io.writers.netreport import NetworkReport
    from featmap.io.writers.pictures import Pictures
    from featmap.io.writers.report import kernel_records, report_data
    from featmap.net.summary import summarize_plan
    from featmap.run.executor import iter_network
    from featmap.run.netreport import report_plan
    from featmap.run.pipeline import iter_feature_maps

    bank = make_job(["sobel_x"], out_dir=tmp_path / "bank", report=True)
    image = load_image(gray_png)
    pictures = Pictures(image, bank)
    for fmap in iter_feature_maps(image.pixels, bank.bank, bank.conv, bank.act, bank.pool):
        pictures.add(fmap.values, fmap.info, tmp_path / "bank" / "square" / "sobel_x.png")
    pictures.finish_scales()
    (kernel,) = kernel_records(pictures, tmp_path / "bank")

    spec = _spec(tmp_path, "layers:\n  - {conv: {kernels: [sobel_x]}}\n")
    net = make_network_job(parse_file(spec), output=make_output(out_dir=tmp_path / "net", report=True))
    nodes = net.plan(image.pixels.shape)
    summary = summarize_plan(nodes, image.pixels.shape)
    report = NetworkReport(report_plan(net, nodes, image.info, image.pixels, net.weights(), (), summary))
    for output in iter_network(nodes, image.pixels, net.weights()):
        report.add("01-conv2d", output.values)
    (layer,) = report.records

    assert (kernel.index, kernel.sources, layer.index, layer.sources) == (1, (0,), 1, (0,))
    for fact in ("kind", "in_shape", "out_shape", "params", "geometry"):
        assert getattr(kernel.plan, fact) == getattr(layer.plan, fact), fact
    assert kernel.plan.out_shape == (22, 30, 1) and kernel.plan.params == 9  # 24×32 valid 3×3; 9 weights, no bias
    assert np.array_equal(kernel.weights["weight"].ravel(), layer.weights["weight"].ravel())
    assert kernel.op["type"] == layer.op["type"] == "conv" and kernel.op["pad_mode"] == layer.op["pad_mode"]
    # the page's map is the record: its shapes, parameters, statistics and weights
    (page_map,) = report_data(pictures, tmp_path / "bank")["maps"]
    assert page_map["conv_shape"] == [22, 30, 1] and page_map["params"] == 9 and page_map["combined_from"] == []
    assert page_map["weights"] == [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
    assert page_map["stats"] == dict(kernel.stats) and page_map["png"] == "square/sobel_x.png"


def test_a_combined_map_is_a_record_reading_the_maps_it_merges(tmp_path: Path, gray_png: Path) -> None:
    from featmap.io.images import load_image
    from featmap.io.writers.pictures import Pictures
    from featmap.io.writers.report import kernel_records, report_data
    from featmap.run.pipeline import iter_feature_maps

    job = make_job(["sobel_x", "sobel_y"], combine="magnitude", out_dir=tmp_path, report=True)
    image = load_image(gray_png)
    pictures = Pictures(image, job)
    maps = iter_feature_maps(image.pixels, job.bank, job.conv, job.act, job.pool, combine=job.combine)
    for fmap in maps:
        pictures.add(fmap.values, fmap.info, tmp_path / f"{fmap.info.name}.png")
    pictures.finish_scales()
    records = kernel_records(pictures, tmp_path)
    assert [(r.name, r.sources, r.plan.kind) for r in records] == [
        ("sobel_x", (0,), "Conv2d"),
        ("sobel_y", (0,), "Conv2d"),
        ("magnitude", (1, 2), "magnitude"),
    ]
    assert [m["combined_from"] for m in report_data(pictures, tmp_path)["maps"]] == [[], [], [0, 1]]


@pytest.mark.parametrize("raw", ["npy", "tiff"])
def test_a_network_image_that_fails_part_way_leaves_no_layer_stack(tmp_path: Path, raw: str) -> None:
    """Layer 1 (×1e30) is finite and written, stack included; layer 2 overflows float32: the image fails and
    nothing of it is left, its first layer's ``all.npy`` neither."""
    from featmap.errors import FeatmapError
    from featmap.run.imagejob import apply_image

    gray = tmp_path / "g.png"
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(gray)
    (tmp_path / "big.yaml").write_text("name: big\nweights: [[1000000000000000000000000000000]]\n")
    spec = _spec(tmp_path, "layers:\n  - {conv: {kernels: [big]}}\n  - {conv: {kernels: [big]}}\n")
    out = tmp_path / "out"
    job = make_network_job(
        parse_file(spec, kernel_dirs=[tmp_path / "big.yaml"]), output=make_output(out_dir=out, raw=raw)
    )
    with pytest.raises(FeatmapError, match="non-finite"):
        apply_image(gray, job)
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_a_jobs_digest_and_plan_checks_are_worked_out_once_and_stay_right(tmp_path: Path) -> None:
    import pickle
    from dataclasses import replace

    from featmap.core.budget import check_image_plan
    from featmap.errors import LimitError

    job = make_job(["sobel_x", "gaussian:size=5,sigma=1"], padding="same", pool="max")
    twin = make_job(["sobel_x", "gaussian:size=5,sigma=1"], padding="same", pool="max")
    digest = job.options_hash()
    assert job.options_hash() == digest == twin.options_hash() == pickle.loads(pickle.dumps(job)).options_hash()
    other = replace(job, output=make_output(normalize="clip"))  # a new job: its own digest, not the cached one
    assert other.options_hash() != digest and other.options_hash() == replace(twin, output=other.output).options_hash()
    sizes = [k.size for k in job.bank]
    expected = check_image_plan((300, 200), 1, sizes, padding="same", pool=((2, 2), (2, 2), "valid"))
    assert job.check_plan((300, 200), 1, "a.png") == job.check_plan((300, 200), 1, "b.png") == expected
    for _ in range(2):  # a size over the limits is refused every time it is asked about, naming that image
        with pytest.raises(LimitError, match="huge.png"):
            job.check_plan((40_000, 40_000), 1, "huge.png")
