"""The network report's Python side: lossless tensors, the run order of a residual network, the size budget and
its limit, one page per image and the batch index."""

from __future__ import annotations

import base64
import json
import re
import zlib
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from featmap.cli import cli
from featmap.io.writers.netreport import choose_exact, encode_f32, thumbnails
from featmap.net.plan import plan_layers
from featmap.net.spec import load_model, parse_tokens
from featmap.run.netreport import layer_op, run_order

from .conftest import SAMPLES

DIGIT = SAMPLES / "digits" / "digit_7.png"


def decode_f32(spec: dict[str, object]) -> np.ndarray:
    """`encode_f32` undone as the page does it: inflate, then bytes from their 4 planes."""
    planes = np.frombuffer(zlib.decompress(base64.b64decode(str(spec["data"]))), np.uint8)
    return planes.reshape(4, -1).T.copy().view("<f4").reshape(spec["shape"])  # type: ignore[arg-type]


def test_tensors_are_embedded_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((7, 5, 3)).astype(np.float32)
    values[0, 0, 0], values[1, 1, 1] = np.float32(1e-38), np.float32(-0.0)
    back = decode_f32(encode_f32(values))
    assert back.shape == values.shape and np.array_equal(back.view(np.uint32), values.view(np.uint32))


def test_thumbnails_share_one_diverging_scale_centred_at_zero_for_a_signed_layer() -> None:
    layer = np.zeros((4, 4, 2), np.float32)
    layer[:, :, 0], layer[:, :, 1] = -2.0, 1.0
    thumbs, stats = thumbnails(layer)
    assert (thumbs["low"], thumbs["high"], thumbs["cmap"]) == (-2.0, 2.0, "RdBu_r")
    index = np.frombuffer(zlib.decompress(base64.b64decode(thumbs["data"])), np.uint8).reshape(2, 4, 4)
    assert set(index[0].ravel()) == {0} and set(index[1].ravel()) == {192}  # -2 → 0, 1 → floor(0.75 · 256)
    assert stats == {"min": -2.0, "max": 1.0, "mean": -0.5}
    relu, _ = thumbnails(np.array([0.0, 0.5, 2.0], np.float32))
    assert (relu["low"], relu["high"], relu["cmap"], relu["flat"]) == (0.0, 2.0, "viridis", True)


def test_run_order_gives_a_residual_add_its_two_sources() -> None:
    order = run_order(plan_layers(load_model("resnet18").layers, (32, 32, 3)))
    kinds = [(node.plan.kind, sources) for node, sources in order[:10]]
    assert kinds[3] == ("MaxPool2d", (3,))
    assert kinds[9] == ("Add", (9, 4))  # the main path's last batch norm and the block's input
    assert layer_op(order[9][0], "torch") == {"type": "add"}
    assert layer_op(order[3][0], "torch")["declared"] == [1, 1, 1, 1]


def test_the_budget_keeps_the_prediction_and_takes_layers_in_order() -> None:
    nodes = plan_layers(parse_tokens(["conv:4@3x3", "relu", "flatten", "dense:3"]), (8, 8, 1))
    layers = [(n.plan.out_shape, [s for _, s in n.plan.weights], src) for n, src in run_order(nodes)]
    explained, kept = choose_exact(layers, (8, 8, 1), budget=10**9)
    assert explained == {1, 2, 3, 4} and kept == {0, 1, 2, 3, 4}
    explained, kept = choose_exact(layers, (8, 8, 1), budget=0)
    assert explained == set() and kept == {4}


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["apply", *args, "--report", "-o", str(tmp_path / "out")], env=env)
    return result.exit_code, result.stdout, result.stderr


def page_data(path: Path) -> dict[str, object]:
    text = path.read_text()
    found = re.search(r'<script id="featmap-data" type="application/json">(.*?)</script>', text, re.S)
    assert found is not None
    return json.loads(found.group(1).replace("<\\/", "</"))  # type: ignore[no-any-return]


def test_a_lenet_page_is_small_self_contained_and_embeds_every_layer(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, str(DIGIT), "--model", "lenet5-digits", "--raw", "npy")
    assert code == 0, err
    page = tmp_path / "out" / "report.html"
    assert page.stat().st_size < 1 << 20  # well under the 5 MB README promises
    text = page.read_text()
    assert "default-src 'none'" in text and "http://" not in text and "https://" not in text
    data = page_data(page)
    layers = data["layers"]
    assert isinstance(layers, list) and len(layers) == 12 and all(layer["exact"] for layer in layers)
    c3 = np.load(tmp_path / "out" / "digit_7" / "04-C3" / "all.npy")
    tensors = data["tensors"]
    assert isinstance(tensors, dict)
    assert np.array_equal(decode_f32(tensors["y4"]), c3)
    assert data["labels"] == [str(d) for d in range(10)]


def test_a_page_over_the_size_limit_is_refused_before_any_work(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, str(DIGIT), "--model", "lenet5-digits", env={"FEATMAP_MAX_REPORT_SIZE": "50K"})
    assert code != 0
    assert "report size limit of 50 KiB" in err and "FEATMAP_MAX_REPORT_SIZE" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "report.html").exists()
    assert not list((tmp_path / "out").glob("**/*.png"))  # refused before any layer ran


def test_a_small_budget_drops_arithmetic_but_keeps_the_prediction(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, str(DIGIT), "--model", "lenet5-digits", env={"FEATMAP_MAX_REPORT_SIZE": "330K"})
    assert code == 0, err
    data = page_data(tmp_path / "out" / "report.html")
    layers = data["layers"]
    assert isinstance(layers, list)
    exact = [layer["exact"] for layer in layers]
    assert exact[0] and not exact[-1] and exact == sorted(exact, reverse=True)  # taken in order while they fit
    assert layers[-1]["has_output"]  # the logits, for the prediction view


def test_a_batch_of_network_runs_gets_one_page_each_and_an_index(tmp_path: Path) -> None:
    folder = SAMPLES / "digits"
    code, _, err = run(tmp_path, str(folder / "digit_1.png"), str(folder / "digit_2.png"), "--model", "lenet5-digits")
    assert code == 0, err
    index = (tmp_path / "out" / "report.html").read_text()
    links = sorted(re.findall(r'href="([^"]+)"', index))
    assert links == ["digit_1/report.html", "digit_2/report.html"]
    for link in links:
        assert page_data(tmp_path / "out" / link)["network"] is True
