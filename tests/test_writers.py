"""The writer registry and interface: formats by name, the JSON summary, a writer added by one registry line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featmap.errors import SpecError
from featmap.io.outputs import OutputOptions
from featmap.io.writers import REGISTRY, Writer, get_writer, open_writers, register
from featmap.io.writers.png import save_png
from featmap.kernels import Kernel, KernelBank
from featmap.run.batch import ApplyJob, apply_image
from featmap.run.pipeline import iter_feature_maps

DELTA = Kernel("delta", [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
DOUBLE = Kernel("double", [[0, 0, 0], [0, 2, 0], [0, 0, 0]])


def test_formats_follow_the_options() -> None:
    assert [w.name for w in open_writers(OutputOptions())] == ["png"]
    assert [type(w).__name__ for w in open_writers(OutputOptions(raw="tiff"))] == ["PngWriter", "TiffWriter"]
    with pytest.raises(SpecError, match="unknown output format 'bmp'"):
        get_writer("bmp")


def test_json_writer_records_every_map(tmp_path: Path) -> None:
    image = np.arange(25, dtype=np.float32).reshape(5, 5, 1)
    targets = {"delta": tmp_path / "a" / "delta.png", "double": tmp_path / "a" / "double.png"}
    (writer,) = open_writers(OutputOptions(), ["json"])
    assert writer.planned_paths(targets) == [tmp_path / "a" / "maps.json"]
    for fmap in iter_feature_maps(image, KernelBank((DELTA, DOUBLE))):
        assert writer.add(targets[fmap.info.name], fmap) is None
    (path,) = writer.finish(targets)
    maps = json.loads(path.read_text())["maps"]
    assert [m["name"] for m in maps] == ["delta", "double"]
    assert maps[0]["shape"] == [3, 3, 1] and maps[1]["stats"]["max"] == 2 * maps[0]["stats"]["max"] == 2 * 18.0


class _InvertWriter(Writer):
    """A test writer: 255 minus the PNG's pixels, beside it."""

    name = "invert"
    suffix = ".inv.png"
    manifest_key = "invert"

    def path_for(self, target: Path) -> Path:
        return target.with_name(target.stem + self.suffix)

    def add(self, target: Path, fmap: object) -> Path:
        from featmap.io.writers.png import to_pixels

        values = fmap.values  # type: ignore[attr-defined]
        return save_png(self.path_for(target), 255 - to_pixels(values, self.options.normalize))


def test_a_new_writer_is_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "invert", "")
    register("invert", f"{__name__}:_InvertWriter")
    monkeypatch.setattr(OutputOptions, "formats", property(lambda self: ("png", "invert")))
    src = tmp_path / "in.png"
    Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16).save(src)
    result = apply_image(src, ApplyJob(KernelBank((DELTA,)), output=OutputOptions(tmp_path / "out")))
    png = np.asarray(Image.open(result.maps[0].png))
    inverted = np.asarray(Image.open(tmp_path / "out" / "in" / "delta.inv.png"))
    np.testing.assert_array_equal(inverted, 255 - png)
    record = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])
    assert record["invert"] == "in/delta.inv.png" and record["png"] == "in/delta.png"


@pytest.mark.parametrize("normalize", ["minmax", "abs", "symmetric", "clip"])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_a_kernel_maps_png_takes_its_range_from_its_statistics(tmp_path: Path, normalize: str, bit_depth: int) -> None:
    """The PNG writer reads a kernel map's min and max from its statistics, not from another pass over the map: the
    same bytes as the range `display_scale` finds in the values (zeros of both signs, a flat map, negative values)."""
    from featmap.enums import Normalize
    from featmap.io.writers import png
    from featmap.net.records import MapStats

    rng = np.random.default_rng(11)
    signed = rng.standard_normal((61, 47, 1)).astype(np.float32)
    signed[rng.random(signed.shape) < 0.3] = -0.0
    zeros = np.where(rng.random((33, 20, 1)) < 0.5, np.float32(0.0), np.float32(-0.0)).astype(np.float32)
    zeros[0, 0, 0] = 2.5
    for values in (signed, zeros, np.full((9, 13, 1), 0.25, np.float32), np.abs(signed) + 3):
        stats = MapStats.of(values)
        kind = Normalize(normalize)
        made = png._stream_scaled(tmp_path / "a.png", values, kind, bit_depth, 1, (stats.min, stats.max))
        found = png._stream_scaled(tmp_path / "b.png", values, kind, bit_depth, 1)
        assert made.read_bytes() == found.read_bytes()


@pytest.mark.parametrize("side", [8, 28, 64])
def test_a_layers_channel_pngs_go_to_threads_only_when_they_are_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int
) -> None:
    """Small maps (LeNet-5's 28×28) are written in the calling thread, larger ones on the PNG threads: the same
    files either way, each the bytes `PngWriter.add` writes for that map alone."""
    import threading

    from featmap.io.writers import png
    from featmap.net.records import ChannelInfo, ChannelMap, LayerMaps, MapStats

    rng = np.random.default_rng(side)
    maps = tuple(
        ChannelMap(
            rng.normal(size=(side, side, 1)).astype(np.float32),
            ChannelInfo(f"01-conv/{c:03d}", "0", c, (side, side, 1), 0, MapStats(-1.0, 1.0, 0.0, 1.0)),
        )
        for c in range(3)
    )
    in_main: list[bool] = []
    add = png.PngWriter.add

    def watched(self: png.PngWriter, target: Path, fmap: object) -> Path:
        in_main.append(threading.current_thread() is threading.main_thread())
        return add(self, target, fmap)  # type: ignore[arg-type]

    monkeypatch.setattr(png.PngWriter, "add", watched)
    (writer,) = open_writers(OutputOptions(tmp_path), ["png"])
    assert isinstance(writer, png.PngWriter)
    targets = {m.info.name: tmp_path / "layer" / f"{m.info.channel:03d}.png" for m in maps}
    files = writer.add_layer(targets, LayerMaps("01-conv", maps))
    assert in_main == [side * side < png.THREADED_FROM] * 3 and png.THREADED_FROM == 64 * 64
    for fmap, written in zip(maps, files, strict=True):
        assert written is not None
        alone = add(writer, tmp_path / "alone" / written.name, fmap)
        assert written.read_bytes() == alone.read_bytes()
