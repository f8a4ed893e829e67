"""``--upto`` takes every row name ``featmap shape`` prints: a layer, a merge, or a block (VGG-16's ``1.2``),
whose last output is where the run stops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli
from featmap.net.spec import load_model
from featmap.run.netjob import make_network_job


def _rows(model: str) -> list[dict[str, str]]:
    result = CliRunner().invoke(cli, ["shape", "--model", model, "--json"])
    assert result.exit_code == 0, result.stderr
    return list(json.loads(result.stdout)["layers"])


@pytest.mark.parametrize("model", ["vgg16", "resnet18"])
def test_every_row_path_is_an_upto(model: str) -> None:
    spec = load_model(model)
    rows = _rows(model)
    assert any("." in row["path"] for row in rows)  # blocks and their layers both print
    whole = []
    for row in rows:
        job = make_network_job(spec, init="kaiming", upto=row["path"])
        if job.upto is None:  # the last layer, or a block that ends with it: the whole run, prediction and all
            whole.append(row["path"])
            continue
        inside = (job.upto + ".").startswith(row["path"] + ".")
        merge = (row["path"] + ".").startswith(job.upto + ".")  # an empty branch (identity shortcut): its merge
        assert inside or (merge and row["kind"] == "Identity"), (row, job.upto)
    assert whole and all((rows[-1]["path"] + ".").startswith(path + ".") for path in whole), whole


def test_mobilenet_v2_block_1_1_stops_after_its_relu6() -> None:
    job = make_network_job(load_model("mobilenet_v2"), init="kaiming", upto="1.1")  # features.0: conv, bn, relu6
    assert job.upto == "1.1.3"
    assert [name for name, _ in job.layer_maps()] == ["001-conv2d", "002-bn", "003-relu6"]  # 156 outputs: 3 digits


def test_upto_a_block_on_the_command_line(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "input: 8x8x1\nlayers:\n"
        "  - {name: stem, layers: ['conv:2@3x3/same', relu]}\n"
        "  - {name: body, layers: ['conv:3@3x3/same', relu, maxpool:2]}\n"
        "  - gap\n"
    )
    image = tmp_path / "in.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).save(image)
    rows = [row["path"] for row in _rows_of(spec)]
    assert "1" in rows and "1.1" in rows
    result = CliRunner().invoke(
        cli, ["apply", str(image), "--spec", str(spec), "--init", "kaiming", "--upto", "1", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "o" / "in").iterdir() if p.is_dir()) == ["01-conv2d", "02-relu"]


def _rows_of(spec: Path) -> list[dict[str, str]]:
    result = CliRunner().invoke(cli, ["shape", "--spec", str(spec), "--json"])
    assert result.exit_code == 0, result.stderr
    return list(json.loads(result.stdout)["layers"])


def test_a_name_no_row_has_is_still_refused() -> None:
    from featmap.errors import OptionError

    with pytest.raises(OptionError, match="no layer is called '9.9'"):
        make_network_job(load_model("vgg16"), init="kaiming", upto="9.9")
