"""The HTML report's Python side: lossless input encoding, the page's data, self-containment, the batch index."""

from __future__ import annotations

import base64
import json
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli
from featmap.errors import OutputExistsError
from featmap.io.writers.report import encode_input, encode_samples, render_html, write_index

from .conftest import SAMPLES


def decode_samples(enc: dict[str, object]) -> np.ndarray:
    """The page's decoding, in numpy: inflate, join the byte planes, undo the row differences, scale."""
    h, w, c = int(enc["h"]), int(enc["w"]), int(enc["c"])  # type: ignore[call-overload]
    dtype = {"u8": np.uint8, "u16": np.uint16, "f32": np.uint32}[str(enc["kind"])]
    size = np.dtype(dtype).itemsize
    planes = np.frombuffer(zlib.decompress(base64.b64decode(str(enc["data"]))), np.uint8).reshape(size, -1)
    rows = np.ascontiguousarray(planes.T).view(dtype).reshape(h, w * c)
    q = np.cumsum(rows, axis=0, dtype=dtype)  # wraps like the page's typed arrays
    if enc["kind"] == "f32":
        return q.view(np.float32).reshape(h, w, c)
    scale = np.float32(1 / (255 if enc["kind"] == "u8" else 65535))
    return np.multiply(q, scale, dtype=np.float32).reshape(h, w, c)


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("u8", lambda r: r.integers(0, 256, (17, 23, 1)).astype(np.float32) * np.float32(1 / 255)),
        ("u16", lambda r: r.integers(0, 65536, (9, 5, 3)).astype(np.float32) * np.float32(1 / 65535)),
        ("f32", lambda r: r.random((13, 7, 1), dtype=np.float32)),
    ],
)
def test_samples_round_trip_exactly(kind: str, make: object, rng: np.random.Generator) -> None:
    pixels = make(rng)  # type: ignore[operator]
    enc = encode_samples(pixels)
    assert enc["kind"] == kind
    back = decode_samples(enc)
    assert back.dtype == np.float32 and np.array_equal(back.view(np.uint32), pixels.view(np.uint32))


def decode_input(enc: dict[str, Any]) -> np.ndarray:
    """The page's `loadInput`: samples, or luma from the RGB samples plus the per-pixel correction."""
    if enc["kind"] != "luma8":
        return decode_samples(enc)
    rgb = decode_samples(enc["rgb"])
    w = [np.float32(v) for v in enc["weights"]]
    luma = (rgb[:, :, 0] * w[0]).astype(np.float32) + (rgb[:, :, 1] * w[1]).astype(np.float32)
    luma = luma.astype(np.float32) + (rgb[:, :, 2] * w[2]).astype(np.float32)
    correction = np.frombuffer(zlib.decompress(base64.b64decode(enc["correction"])), np.int8)
    bits = luma.astype(np.float32).view(np.int32).reshape(-1) + correction
    return bits.astype(np.int32).view(np.float32).reshape(enc["h"], enc["w"], 1)


def test_a_photo_in_gray_round_trips(tmp_path: Path) -> None:
    from featmap.io.images import load_image

    pixels = load_image(SAMPLES / "coffee.png").pixels  # RGB to luma: float32, not 8-bit levels
    enc = encode_samples(pixels)
    assert enc["kind"] == "f32"
    assert np.array_equal(decode_samples(enc), pixels)
    rgb = load_image(SAMPLES / "coffee.png", color=True).pixels
    small = encode_input(pixels, rgb)
    assert small["kind"] == "luma8" and len(small["rgb"]["data"]) + len(small["correction"]) < 0.8 * len(enc["data"])
    assert np.array_equal(decode_input(small).view(np.uint32), pixels.view(np.uint32))
    assert encode_input(pixels, rgb[:, :-1])["kind"] == "f32"  # mismatched sizes: the float32 bits


def page_data(page: str) -> dict[str, object]:
    found = re.search(r'<script id="featmap-data" type="application/json">(.*?)</script>', page, re.S)
    assert found
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def test_script_cannot_be_closed_by_data() -> None:
    data = {"title": "</script><script>alert(1)</script>", "x": "</b>"}
    page = render_html(data)
    assert page.count("</script>") == 2  # the data's own and the page script's
    assert page_data(page) == data
    assert "&lt;/script&gt;" in page.split("<title>")[1].split("</title>")[0]


@pytest.mark.parametrize("text", ["<!--<script>", "<!-- <script x>", "<!--", "<script>"])
def test_no_string_in_the_data_enters_the_script_escape_states(text: str) -> None:
    """HTML parses a script element's text for ``<!--`` and ``<script``: after both, a ``</script>`` no longer ends
    the element (the "script data double escaped" state), and the page's own script is swallowed. A class name or a
    layer name can hold them; no ``<`` is left in the data (``\\u003c`` in JSON), so no state can start."""
    data = {"title": "t", "labels": [text, "</script>"], "x": "a<b"}
    page = render_html(data)
    body = page.split('<script id="featmap-data" type="application/json">')[1].split("</script>")[0]
    assert "<" not in body
    assert page_data(page) == data


def run_report(runner: CliRunner, tmp_path: Path, *extra: str) -> tuple[Path, str]:
    out = tmp_path / "out"
    args = ["apply", str(SAMPLES / "camera.png"), "-k", "sobel_x", "-k", "sobel_y", "--combine", "magnitude"]
    result = runner.invoke(cli, [*args, "--padding", "same", "--pool", "max", "--report", "-o", str(out), *extra])
    assert result.exit_code == 0, result.output + result.stderr
    return out, (out / "report.html").read_text(encoding="utf-8")


def test_report_is_self_contained_and_holds_the_arrays(runner: CliRunner, tmp_path: Path) -> None:
    out, page = run_report(runner, tmp_path)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "http://" not in page and "https://" not in page
    assert "default-src 'none'" in page  # the page may not load anything, even by mistake
    data = page_data(page)
    from featmap.io.images import load_image

    pixels = load_image(SAMPLES / "camera.png").pixels
    assert data["input"]["kind"] == "u8"  # type: ignore[index]
    assert np.array_equal(decode_input(data["input"]), pixels)  # type: ignore[arg-type]
    maps = data["maps"]
    assert [m["name"] for m in maps] == ["sobel_x", "sobel_y", "magnitude"]  # type: ignore[index]
    assert maps[0]["weights"] == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]  # type: ignore[index]
    assert maps[2]["combined_from"] == [0, 1] and maps[2]["weights"] is None  # type: ignore[index]
    assert maps[0]["pad"] == [1, 1, 1, 1] and maps[0]["shape"] == [256, 256, 1]  # type: ignore[index]
    assert data["pool"] == {  # type: ignore[comparison-overlap]
        "kind": "max", "global": False, "size": [2, 2], "stride": [2, 2], "pad": [0, 0, 0, 0],
        "declared": [0, 0, 0, 0], "count_include_pad": False,
    }  # fmt: skip
    for m in maps:  # type: ignore[attr-defined]
        assert m["picture"].startswith("data:image/png;base64,")
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert any(rec["png"] == "report.html" and rec["kernel"] == "(report)" for rec in manifest)


def test_batch_gets_an_index(runner: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name, where in (("a.png", folder), ("b.png", folder / "sub")):
        Image.fromarray(np.full((20, 30), 99, np.uint8)).save(where / name)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["apply", str(folder), "-r", "-k", "box_3", "--report", "-o", str(out), "-j", "1"])
    assert result.exit_code == 0, result.output + result.stderr
    index = (out / "report.html").read_text()
    links = re.findall(r'href="([^"]+)"', index)
    assert sorted(links) == ["a/report.html", "sub/b/report.html"]
    for link in links:
        assert "featmap report" in (out / link).read_text()


def test_index_does_not_clobber_a_foreign_page(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("<html>my notes</html>")
    with pytest.raises(OutputExistsError, match="not a featmap report"):
        write_index(tmp_path, ["a.png"], [tmp_path / "a" / "report.html"])
    assert (tmp_path / "report.html").read_text() == "<html>my notes</html>"
