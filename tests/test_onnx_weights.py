"""ONNX files run with their own weights (featmap.net.onnx.tensors, .weights, .patterns, .refusals): initializers in
the file, in external data, through Identity/Transpose; limits before reading; GELU spelled with Erf; refusals
listed one a line; the command line (``--spec model.onnx``, ``--upto`` by node name, batches)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.special import erf

import featmap
from featmap.cli import cli
from featmap.errors import ModelMappingError, SpecError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from featmap.net.onnx import load_onnx, onnx_weights  # noqa: E402

from .onnx_graphs import Graph  # noqa: E402

RNG = np.random.default_rng(11)


def mixed_graph() -> tuple[Graph, str]:
    """Conv+BN+ReLU, then channels-last LayerNorm (no bias) → MatMul+Add → GELU(Erf) → back, a C×1×1 layer scale,
    a residual add, global pooling and a Gemm stored in × out (transB=0), a weight behind an Identity."""
    g = Graph((1, 3, 12, 12))
    x = g.add("Conv", ["x"], weights=((8, 3, 3, 3), (8,)), pads=[1, 1, 1, 1])
    positive = [g.weight((8,), (RNG.random(8) + 0.5).astype(np.float32)) for _ in range(2)]
    bn = [positive[0], g.weight((8,)), g.weight((8,)), positive[1]]
    x = g.add("BatchNormalization", [x, *bn], epsilon=1e-3)
    x = g.add("Relu", [x])
    t = g.add("Transpose", [x], perm=[0, 2, 3, 1])
    t = g.add("LayerNormalization", [t, g.weight((8,))], axis=-1, epsilon=1e-6)
    alias = g.add("Identity", [g.weight((8, 16))])
    t = g.add("Add", [g.add("MatMul", [t, alias]), g.weight((16,))])
    half = g.weight((), np.array(0.5, np.float32))
    inner = g.add(
        "Add", [g.add("Erf", [g.add("Div", [t, g.weight((), np.float32(2**0.5))])]), g.weight((), np.float32(1.0))]
    )
    t = g.add("Mul", [g.add("Mul", [t, inner]), half])  # PyTorch's legacy spelling of GELU
    t = g.add("Add", [g.add("MatMul", [t, g.weight((16, 8))]), g.weight((8,))])
    t = g.add("Transpose", [t], perm=[0, 3, 1, 2])
    t = g.add("Mul", [g.weight((8, 1, 1)), t])
    x = g.add("Add", [t, x])
    x = g.add("Flatten", [g.add("GlobalAveragePool", [x])], axis=1)
    return g, g.add("Gemm", [x, g.weight((8, 5)), g.weight((5,))])


def reference(g: Graph, output: str, image: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    model = g.model(output)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": image.transpose(2, 0, 1)[None].copy()})[0][0]


def test_initializers_are_the_weights(tmp_path: Path) -> None:
    g, out = mixed_graph()
    path = g.save(tmp_path / "mixed.onnx", out)
    image = RNG.random((12, 12, 3), dtype=np.float32)
    result = featmap.forward(image, str(path))
    expected = reference(g, out, image)
    np.testing.assert_allclose(result.logits, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    kinds = [o.node.plan.kind for o in result.outputs]
    assert kinds.count("gelu") == 1 and "Erf" not in {o.node.plan.name.split("/")[-1] for o in result.outputs}
    gelu = next(o for o in result.outputs if o.node.plan.kind == "gelu")
    assert gelu.node.plan.name == "/mul13/Mul"  # named after the last node of the pattern (its output)
    tensors = onnx_weights(path)
    gemm = next(k for k in tensors if k.endswith("/gemm21/Gemm.weight"))
    stored = {t.name: numpy_helper.to_array(t) for t in g.inits}
    (gemm_stored,) = [v for v in stored.values() if v.shape == (8, 5)]
    np.testing.assert_array_equal(tensors[gemm], gemm_stored.T)  # stored in × out: transposed
    scale = next(k for k in tensors if k.endswith("/mul17/Mul.weight"))
    assert tensors[scale].shape == (8,)
    norm = next(k for k in tensors if k.endswith("/layernormalization5/LayerNormalization.bias"))
    assert not tensors[norm].any()  # absent bias: zeros


def test_external_data_and_its_errors(tmp_path: Path) -> None:
    g, out = mixed_graph()
    inline = g.save(tmp_path / "inline.onnx", out)
    folder = tmp_path / "ext"
    folder.mkdir()
    external = g.save(folder / "net.onnx", out, save_as_external_data=True, location="net.onnx.data", size_threshold=0)
    assert (folder / "net.onnx.data").stat().st_size > 1000 and external.stat().st_size < 5000
    image = RNG.random((12, 12, 3), dtype=np.float32)
    a = featmap.forward(image, str(inline)).logits
    b = featmap.forward(image, str(external)).logits
    np.testing.assert_array_equal(a, b)
    (folder / "net.onnx.data").rename(folder / "moved.data")
    with pytest.raises(SpecError, match=r"external data file .*net\.onnx\.data.* is missing; keep the external"):
        featmap.forward(image, str(external))
    model = onnx.load(str(external), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.data"
    (folder / "escape.onnx").write_bytes(model.SerializeToString())  # onnx.save would check the location
    with pytest.raises(SpecError, match="outside the model's folder"):
        onnx_weights(folder / "escape.onnx")


def test_float16_weights_and_non_finite(tmp_path: Path) -> None:
    g = Graph((1, 3, 6, 6))
    w16 = RNG.standard_normal((4, 3, 3, 3)).astype(np.float16)
    x = g.add("Conv", ["x", g.weight(w16.shape, w16)])
    out = g.add("Cast", [x], to=TensorProto.FLOAT)
    g.nodes.pop()  # the Cast is not needed: featmap computes in float32 (the output stays the conv's)
    path = g.save(tmp_path / "half.onnx", x)
    image = RNG.random((6, 6, 3), dtype=np.float32)
    got = featmap.forward(image, str(path)).logits
    expected = np.einsum("hwc,ochw->o", image[:3, :3], w16.astype(np.float32))
    np.testing.assert_allclose(got[0, 0], expected, rtol=1e-5)
    assert out
    bad = Graph((1, 3, 6, 6))
    weights = np.ones((4, 3, 3, 3), np.float32)
    weights[2, 1, 0, 0] = np.nan
    y = bad.add("Conv", ["x", bad.weight(weights.shape, weights)])
    with pytest.raises(SpecError, match=r"tensor `w0`: holds nan at index \(2, 1, 0, 0\)"):
        onnx_weights(bad.save(tmp_path / "nan.onnx", y))


def test_limits_are_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = Graph((1, 64, 8, 8))
    x = g.add("Conv", ["x"], weights=((64, 64, 3, 3),))  # 36,864 floats: 147,456 bytes
    path = g.save(tmp_path / "big.onnx", x)
    monkeypatch.setenv("FEATMAP_MAX_WEIGHTS_BYTES", "64K")
    with pytest.raises(SpecError) as info:
        load_onnx(path)
    assert "over the weights limit of 65,536 (FEATMAP_MAX_WEIGHTS_BYTES)" in str(info.value)
    assert info.value.fix == f"set FEATMAP_MAX_WEIGHTS_BYTES={path.stat().st_size} (or more) to allow it"
    monkeypatch.delenv("FEATMAP_MAX_WEIGHTS_BYTES")
    monkeypatch.setenv("FEATMAP_MAX_WEIGHTS_ELEMENTS", "1000")
    read: list[str] = []
    from featmap.net.onnx.tensors import TensorStore

    original = TensorStore._stored
    monkeypatch.setattr(TensorStore, "_stored", lambda self, name: read.append(name) or original(self, name))
    with pytest.raises(SpecError, match=r"tensor `w0`.*36,864 elements, over the limit of 1,000"):
        onnx_weights(path)
    assert read == []  # refused from the headers


def test_recognised_by_content_and_over_the_spec_file_limit(tmp_path: Path) -> None:
    g = Graph((1, 3, 8, 8))
    flat = g.add("Flatten", ["x"], axis=1)
    out = g.add("Gemm", [flat, g.weight((22_000, 192))], transB=1)  # 16.9 MB: over the 16 MiB spec-file limit
    path = g.save(tmp_path / "model.bin", out)  # no .onnx extension: the first bytes say what it is
    assert path.stat().st_size > 16 << 20
    Image.fromarray((RNG.random((8, 8, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    result = CliRunner().invoke(
        cli, ["apply", str(tmp_path / "in.png"), "--spec", str(path), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "in" / "02-gemm2_Gemm" / "000.png").is_file()


def test_gelu_spellings(tmp_path: Path) -> None:
    x = np.linspace(-4, 4, 3 * 4 * 4, dtype=np.float32).reshape(4, 4, 3)
    exact = x * 0.5 * (1 + erf(x.astype(np.float64) / np.sqrt(2)))
    for spelling in ("legacy", "dynamo", "half-first"):
        g = Graph((1, 3, 4, 4))
        r = g.weight((), np.float32(1 / 2**0.5))
        inner = g.add("Add", [g.weight((), np.float32(1.0)), g.add("Erf", [g.add("Mul", ["x", r])])])
        half = g.weight((), np.float32(0.5))
        if spelling == "legacy":
            out = g.add("Mul", [g.add("Mul", ["x", inner]), half])
        elif spelling == "dynamo":
            out = g.add("Mul", ["x", g.add("Mul", [half, inner])])
        else:
            out = g.add("Mul", [g.add("Mul", ["x", half]), inner])
        model = load_onnx(g.save(tmp_path / f"{spelling}.onnx", out, opset=13))
        assert [type(layer).__name__ for layer in model.layers] == ["Act"], spelling
        got = featmap.forward(x, model, init="kaiming").logits
        np.testing.assert_allclose(got, exact, rtol=1e-6, atol=1e-6)


def test_restriding_reshape_and_gather(tmp_path: Path) -> None:
    """torch's dynamo export of ConvNeXt's head: Reshape [-1] then Gather of every element, shaped back."""
    for table, mapped in ((np.arange(8).reshape(1, 8, 1, 1), True), (np.arange(8)[::-1].reshape(1, 8, 1, 1), False)):
        g = Graph((1, 8, 5, 5))
        x = g.add("ReduceMean", ["x"], axes=[2, 3], keepdims=1)
        flat = g.add("Reshape", [x, g.weight((1,), np.array([-1], np.int64))])
        x = g.add("Gather", [flat, g.weight(table.shape, table.astype(np.int64))], axis=0)
        x = g.add("Flatten", [g.add("Transpose", [x], perm=[0, 2, 3, 1])], axis=1)
        path = g.save(tmp_path / "head.onnx", x, opset=13)
        if mapped:
            assert [type(layer).__name__ for layer in load_onnx(path).layers] == ["GlobalPool2d", "Flatten"]
        else:
            with pytest.raises(ModelMappingError, match=r"Gather"):
                load_onnx(path)


def test_every_refused_node_listed_and_nothing_written(tmp_path: Path) -> None:
    g = Graph((1, 3, 8, 8))
    x = g.add("Conv", ["x"], weights=((4, 3, 3, 3),), pads=[1] * 4)
    for _ in range(30):
        x = g.add("Sin", [x])  # each fed by an unsupported node
    x = g.add("Custom", [x])
    g.nodes[-1].domain = "com.example"
    x = g.add("Clip", [x], min=-1.0, max=1.0)
    x = g.add("Conv", [x], weights=((4, 4, 3, 3),), pads=[1] * 4)  # mappable: not listed
    model = g.model(x, 11)
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    path = tmp_path / "odd.onnx"
    onnx.save(model, path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["apply", str(tmp_path / "in.png"), "--spec", str(path), "-o", str(out)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"featmap: error: {path}: 32 nodes featmap cannot map (30 Sin, 1 Clip, 1 com.")
    assert lines[0].endswith("see README, 'ONNX', for the operators featmap reads")
    assert lines[1] == "  /sin2/Sin (Sin): no featmap layer for this operator"
    assert lines[30] == "  /sin31/Sin (Sin): no featmap layer for this operator"
    assert (
        lines[31]
        == "  /custom32/Custom (com.example.Custom): an operator of the 'com.example' domain, not standard ONNX"
    )
    assert lines[32] == "  /clip33/Clip (Clip): a clip to [-1.0, 1.0] (featmap maps ReLU and ReLU6)"
    assert len(lines) == 33 and "\\n" not in result.stderr
    assert not out.exists()


def test_control_flow_and_dynamic_sizes(tmp_path: Path) -> None:
    body = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"])], "b", [], [helper.make_tensor_value_info("t", 1, None)]
    )
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("If", ["cond"], ["y"], name="/cond/If", then_branch=body, else_branch=body),
    ]
    graph = helper.make_graph(
        nodes,
        "cf",
        [helper.make_tensor_value_info("x", 1, [1, 3, 8, 8]), helper.make_tensor_value_info("cond", 9, [])],
        [helper.make_tensor_value_info("y", 1, None)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "if.onnx")
    with pytest.raises(ModelMappingError) as info:
        load_onnx(tmp_path / "if.onnx")
    assert info.value.details[0].startswith("/cond/If (If): control flow (If): featmap runs one fixed stack")
    g = Graph((1, "channels", "height", "width"))  # type: ignore[arg-type]
    path = g.save(tmp_path / "dyn.onnx", g.add("Relu", ["x"]))
    result = CliRunner().invoke(cli, ["shape", str(path)])
    assert result.exit_code == 2  # open height and width run (tests/test_onnx_dynamic.py); open channels cannot
    assert "its input 'x' has open sizes (1×channels×height×width) featmap cannot run" in result.stderr
    assert result.stderr.splitlines()[1] == "  x (input): 1×channels×height×width"
    assert CliRunner().invoke(cli, ["shape", str(path), "--input", "8x8x3"]).exit_code == 0


def test_upto_node_names_folders_and_batches(tmp_path: Path) -> None:
    g, out = mixed_graph()
    path = g.save(tmp_path / "mixed.onnx", out)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray((RNG.random((12, 12, 3)) * 255).astype(np.uint8)).save(photos / f"p{i}.png")
    runner = CliRunner()
    one = runner.invoke(
        cli,
        [
            "apply",
            str(photos / "p0.png"),
            "--spec",
            str(path),
            "--upto",
            "/relu3/Relu",
            "-o",
            str(tmp_path / "a"),
            "--json",
        ],
    )
    assert one.exit_code == 0, one.output
    folders = sorted(p.name for p in (tmp_path / "a" / "p0").iterdir())
    assert folders == ["01-conv1_Conv", "02-batchnormalization2_BatchNormalization", "03-relu3_Relu"]
    names = [layer["name"] for layer in json.loads(one.stdout)["layers"]]
    assert names == ["/conv1/Conv", "/batchnormalization2/BatchNormalization", "/relu3/Relu"]
    api = featmap.forward(str(photos / "p0.png"), str(path), upto="/relu3/Relu")
    assert [o.node.plan.name for o in api.outputs] == names
    batch = runner.invoke(cli, ["apply", str(photos), "--spec", str(path), "-o", str(tmp_path / "b"), "-j", "2"])
    assert batch.exit_code == 0, batch.output
    for stem in ("p0", "p1"):
        assert (tmp_path / "b" / stem / "01-conv1_Conv" / "007.png").is_file()
        last = sorted((tmp_path / "b" / stem).iterdir())[-1]
        assert last.name.endswith("gemm21_Gemm")


def test_weights_check_reads_an_onnx_file_as_apply_does(tmp_path: Path) -> None:
    """`featmap weights check` takes every file `featmap apply --weights` runs: an ONNX file's initializers, keyed by
    the layers mapped from it (it said "is not a weights file" while `apply --weights` read it)."""
    g, out = mixed_graph()
    path = g.save(tmp_path / "mixed.onnx", out)
    check = featmap.check_weights(str(path), str(path))
    assert check.ok and {row.status for row in check.rows} == {"ok"}
    assert len(check.rows) == len(onnx_weights(path))
    result = CliRunner().invoke(cli, ["weights", "check", "--spec", str(path), "--weights", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
