"""A network run's sheet and report go through the one writer interface (`featmap.io.writers.netpictures`): the
run hands the writer a pure `NetworkDrawing` before the first layer and every layer output as it goes by, and the
writer alone writes the two files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featmap.io.discover import InputImage
from featmap.io.writers import REGISTRY, REPORT_KEY, SHEET_KEY
from featmap.io.writers.netpictures import NetworkDrawing, NetworkPicturesWriter
from featmap.net.labels import top_classes
from featmap.net.records import LayerMaps
from featmap.net.spec import parse_file
from featmap.run.jobs import make_output
from featmap.run.netimage import process_network_image
from featmap.run.netjob import make_network_job

from .conftest import SAMPLES

DIGIT = SAMPLES / "digits" / "digit_7.png"


class Recording(NetworkPicturesWriter):
    """The network pictures writer, noting what it is handed."""

    seen: list[tuple[str, Any]] = []

    def begin(self, image: Any, job: Any) -> None:
        Recording.seen.append(("begin", job))
        super().begin(image, job)

    def add_layer(self, targets: Any, layer: LayerMaps) -> list[Path | None]:
        Recording.seen.append(("layer", layer.folder))
        return super().add_layer(targets, layer)

    def finish(self, targets: Any) -> tuple[Path, ...]:
        made = super().finish(targets)
        Recording.seen.append(("finish", made))
        return made


def _job(tmp_path: Path, **output: Any) -> Any:
    model = parse_file(Path(__file__).resolve().parent.parent / "featmap" / "net" / "models" / "lenet5-digits.yaml")
    return make_network_job(model, output=make_output(out_dir=tmp_path, **output))


@pytest.mark.parametrize(("sheet", "report"), [(True, True), (True, False), (False, True)])
def test_the_sheet_and_report_are_written_by_the_registered_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sheet: bool, report: bool
) -> None:
    monkeypatch.setitem(REGISTRY, "netpictures", f"{__name__}:Recording")
    Recording.seen = []
    job = _job(tmp_path, sheet=sheet, report=report)
    result = process_network_image(InputImage(DIGIT, Path(), "digit_7"), job)

    kinds = [kind for kind, _ in Recording.seen]
    assert kinds == ["begin", *["layer"] * len(result.layers), "finish"]
    drawing = Recording.seen[0][1]
    assert isinstance(drawing, NetworkDrawing)
    assert drawing.maps == tuple(job.layer_maps(drawing.pixels.shape))
    assert (drawing.report is not None) == report and drawing.predicts and drawing.labels == tuple(job.model.labels)
    assert [folder for kind, folder in Recording.seen if kind == "layer"] == [f.folder for f in result.layers]
    made = Recording.seen[-1][1]
    targets = job.targets(InputImage(DIGIT, Path(), "digit_7"))
    wanted = [targets[k] for k, asked in ((SHEET_KEY, sheet), (REPORT_KEY, report)) if asked]
    assert list(made) == wanted and all(p.is_file() and p.stat().st_size > 0 for p in made)
    # the run records exactly what the writer made, after the layers' records
    extra = [r for r in result.records if r["kernel"] in (SHEET_KEY, REPORT_KEY)]
    assert [tmp_path / r["png"] for r in extra] == wanted and result.records[-len(extra) :] == tuple(extra)


def test_top_classes_moved_to_the_labels_module_softmax_by_hand() -> None:
    """The writer works the sheet's prediction out with `featmap.net.labels.top_classes` (writers may not import
    the run): softmax of (0, 3, 1) is (1, e³, e) / (1 + e³ + e)."""
    total = 1 + np.e**3 + np.e
    found = top_classes(np.array([0.0, 3.0, 1.0]), 2, ("a", "b", "c"))
    assert [(i, label) for i, label, _ in found] == [(1, "b"), (2, "c")]
    assert [p for _, _, p in found] == pytest.approx([np.e**3 / total, np.e / total], rel=1e-12)
    assert top_classes(np.array([0.25, 0.75]), 1) == [(1, "1", 0.75)]  # already probabilities: kept as they are


def test_the_writer_refuses_a_begin_without_the_runs_drawing(tmp_path: Path) -> None:
    writer = NetworkPicturesWriter(make_output(out_dir=tmp_path, sheet=True))
    with pytest.raises(TypeError, match="NetworkDrawing"):
        writer.begin(None, {"not": "a drawing"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="whole layers"):
        writer.add(tmp_path / "a.png", None)  # type: ignore[arg-type]


def test_a_network_report_names_every_layer_the_run_wrote(tmp_path: Path) -> None:
    job = _job(tmp_path, report=True)
    result = process_network_image(InputImage(DIGIT, Path(), "digit_7"), job, single=True)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    found = re.search(r'<script id="featmap-data" type="application/json">(.*?)</script>', page, re.S)
    assert found is not None
    data = json.loads(found.group(1).replace("<\\/", "</"))
    assert [layer["folder"] for layer in data["layers"]] == [f.folder for f in result.layers]
