"""ONNX models whose input has open sizes (``N×3×H×W``): each image runs at its own size (batch 1), the layers
planned for it, as ONNX Runtime runs it; ``featmap shape`` says which sizes are open and takes ``--input``. Graphs
built node by node (`tests.onnx_graphs`), compared with ONNX Runtime at two sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import featmap
from featmap.cli import cli
from featmap.errors import ModelMappingError

from .onnx_graphs import Graph, helper

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is a test extra (pip install '.[onnxtest]')")

SIZES = ((37, 45), (64, 50))


def _open_graph() -> tuple[Graph, str, dict[str, str]]:
    """A strided conv, a padded max pool, a residual block with batch norm, global pooling and the flatten torch
    exports for an open batch (``Shape → Gather → Unsqueeze → Concat → Reshape``), then a linear layer."""
    g = Graph(("N", 3, "H", "W"))  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    c1 = g.add("Conv", ["x"], weights=((8, 3, 3, 3), (8,)), pads=[1, 1, 1, 1], strides=[2, 2])
    r1 = g.add("Relu", [c1])
    p1 = g.add("MaxPool", [r1], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c2 = g.add("Conv", [p1], weights=((8, 8, 3, 3),), pads=[1, 1, 1, 1])
    stats = [rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.2, 8), rng.normal(0, 0.3, 8), rng.uniform(0.5, 2, 8)]
    bn = g.add("BatchNormalization", [c2, *(g.weight((8,), v.astype(np.float32)) for v in stats)])
    r2 = g.add("Relu", [g.add("Add", [p1, bn])])
    gap = g.add("GlobalAveragePool", [r2])
    batch = g.add("Gather", [g.add("Shape", [gap]), g.weight((), np.array(0, np.int64))], axis=0)
    target = g.add("Concat", [g.add("Unsqueeze", [batch, g.weight((1,), np.array([0], np.int64))]),
                              g.weight((1,), np.array([-1], np.int64))], axis=0)  # fmt: skip
    out = g.add("Gemm", [g.add("Reshape", [gap, target])], weights=((5, 8), (5,)), transB=1)
    names = ("/conv1/Conv", "/maxpool3/MaxPool", "/batchnormalization5/BatchNormalization", "/relu7/Relu")
    return g, out, dict(zip(names, (c1, p1, bn, r2), strict=True))  # featmap's layer (the node) → its tensor


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("onnx-open")
    g, out, probes = _open_graph()
    path = g.save(folder / "open.onnx", out)
    probe = g.model(out)  # ONNX Runtime also gives the inner tensors, as extra outputs
    probe.graph.output.extend(helper.make_tensor_value_info(t, 1, None) for t in probes.values())
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return {"path": path, "session": session, "probes": probes, "folder": folder}


def _ort(model: dict[str, object], image: np.ndarray) -> list[np.ndarray]:
    session = model["session"]
    return session.run(None, {"x": np.ascontiguousarray(image.transpose(2, 0, 1))[None]})  # type: ignore[attr-defined,no-any-return]


def test_each_image_runs_at_its_own_size_as_onnx_runtime_does(model: dict[str, object]) -> None:
    from featmap.net.onnx import load_onnx

    loaded = load_onnx(model["path"])  # type: ignore[arg-type]
    assert loaded.input_shape is None and loaded.input_dims == ("H", "W", 3) and loaded.channels == 3
    rng = np.random.default_rng(9)
    for h, w in SIZES:
        image = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
        result = featmap.forward(image, str(model["path"]))
        logits, *inner = _ort(model, image)
        np.testing.assert_allclose(result.logits, logits[0], rtol=1e-5, atol=1e-5)
        assert result.input_shape == (h, w, 3)
        by_name = {o.node.plan.name: o.values for o in result.outputs}
        for name, want in zip(model["probes"], inner, strict=True):  # type: ignore[call-overload]
            scale = 1e-5 * float(np.abs(want).max())  # float32 sums: within 1e-5 of the layer's largest value
            np.testing.assert_allclose(by_name[name], want[0].transpose(1, 2, 0), rtol=1e-5, atol=scale, err_msg=name)


def test_shape_shows_the_open_sizes_and_takes_input(model: dict[str, object]) -> None:
    path = str(model["path"])
    run = CliRunner().invoke(cli, ["shape", path, "--json"])
    assert run.exit_code == 0, run.output
    assert run.stderr.startswith(f"featmap: warning: {path}: the input is H×W×3 (open sizes); shapes below are for")
    data = json.loads(run.stdout)
    assert data["input_dims"] == ["H", "W", 3] and data["input"] == [224, 224, 3]
    run = CliRunner().invoke(cli, ["shape", path, "--input", "37x45x3", "--json"])
    assert run.exit_code == 0 and run.stderr == ""
    data = json.loads(run.stdout)
    assert data["input"] == [37, 45, 3] and "input_dims" not in data
    assert data["layers"][0]["out_shape"] == [19, 23, 8]  # floor((37 + 2 - 3) / 2) + 1, floor((45 + 2 - 3) / 2) + 1
    assert data["totals"]["params"] == 8 * 27 + 8 + 8 * 72 + 4 * 8 + 5 * 8 + 5


def test_a_batch_of_two_sizes_on_the_command_line(model: dict[str, object], tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(4)
    wanted = {}
    for h, w in SIZES:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"in{h}.png")
        wanted[f"in{h}"] = int(np.argmax(_ort(model, pixels.astype(np.float32) / 255)[0]))
    out = tmp_path / "out"
    run = CliRunner().invoke(cli, ["apply", str(tmp_path), "--spec", str(model["path"]), "-o", str(out)])
    assert run.exit_code == 0, run.output
    for h, w in SIZES:
        first = sorted((out / f"in{h}").iterdir())[0]
        with Image.open(first / "000.png") as picture:
            assert picture.size == ((w + 1) // 2, (h + 1) // 2)  # the first conv, stride 2, at this image's size
    rows = [line.split(",") for line in (out / "predictions.csv").read_text().splitlines()[1:]]
    assert {Path(row[0]).stem: int(row[2]) for row in rows} == wanted
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    shapes = {(record["input"], tuple(record["shape"])) for record in records}
    assert {shape for name, shape in shapes if name.endswith("in37.png")} >= {(19, 23, 8), (10, 12, 8), (5,)}
    assert {shape for name, shape in shapes if name.endswith("in64.png")} >= {(32, 25, 8), (16, 13, 8), (5,)}


def test_a_mapping_that_depends_on_the_size_is_refused(tmp_path: Path) -> None:
    """``SAME_LOWER`` pads depend on the size: one mapping cannot serve every image."""
    g = Graph(("N", 3, "H", "W"))  # type: ignore[arg-type]
    path = g.save(tmp_path / "lower.onnx", g.add("Conv", ["x"], weights=((4, 3, 3, 3),), auto_pad="SAME_LOWER",
                                                  strides=[2, 2]))  # fmt: skip
    from featmap.net.onnx import load_onnx

    with pytest.raises(ModelMappingError, match=r"has open sizes \(H×W×3\) and node '/conv1/Conv' maps to other"):
        load_onnx(path)
    assert load_onnx(path, (9, 9, 3)).input_shape == (9, 9, 3)


@pytest.mark.filterwarnings("ignore")  # the exporter's deprecation and tracer warnings
def test_torchs_export_with_open_sizes(tmp_path: Path) -> None:
    """torchvision's mobilenet_v3_small exported with open batch, height and width (``dynamic_axes``; the dynamo
    exporter's ``dynamic_shapes`` gives the same graph shape and takes a minute here, so it is checked by hand):
    ONNX Runtime's logits at two sizes, within 1e-5 of the largest."""
    from .torchvision_models import seeded_twin, torch_and_torchvision

    torch, torchvision = torch_and_torchvision()
    twin = seeded_twin(torch, torchvision, "mobilenet_v3_small")
    path = tmp_path / "open.onnx"
    axes = {"x": {0: "N", 2: "H", 3: "W"}}
    torch.onnx.export(twin, (torch.zeros(2, 3, 64, 64),), path, input_names=["x"], dynamo=False, dynamic_axes=axes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    for h, w in SIZES:
        image = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
        want = session.run(None, {"x": np.ascontiguousarray(image.transpose(2, 0, 1))[None]})[0][0]
        got = featmap.forward(image, str(path)).logits
        assert float(np.abs(got - want).max() / np.abs(want).max()) < 1e-5
