"""A network job's options hash names its weights file by content (issue 19's leftover): a weights file touched
but unchanged does not redo a batch, a changed one does (even at the same size and modification time), and a
file that changes while a run uses it is refused rather than mixed into outputs the manifest credits to the old
weights."""

from __future__ import annotations

import functools
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featmap.cli import cli
from featmap.errors import SpecError
from featmap.net.spec import parse_tokens
from featmap.net.spec.model import Model
from featmap.run.netjob import make_network_job

TOKENS = ["conv:2@3x3/same", "relu", "flatten", "dense:3"]


def _model() -> Model:
    return Model(name="tiny", layers=tuple(parse_tokens(TOKENS)), input_shape=(6, 6, 1))


@functools.cache
def _weights_bytes(scale: float) -> bytes:
    """A ``.npz`` of the network's tensors, made once per scale (a zip records the time it was written)."""
    rng = np.random.default_rng(0)
    tensors = {
        "0.weight": rng.standard_normal((2, 1, 3, 3)).astype(np.float32) * scale,
        "0.bias": np.zeros(2, np.float32),
        "3.weight": rng.standard_normal((3, 72)).astype(np.float32),
        "3.bias": np.zeros(3, np.float32),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **tensors)
    return buffer.getvalue()


def _write_weights(path: Path, scale: float) -> None:
    path.write_bytes(_weights_bytes(scale))


def test_a_touched_file_keeps_the_hash_and_a_changed_one_changes_it_at_the_same_size_and_time(tmp_path):
    weights = tmp_path / "w.npz"
    _write_weights(weights, 1.0)
    before = make_network_job(_model(), weights=weights).options_hash()
    os.utime(weights, ns=(1, 2))  # touched: another time, same bytes
    assert make_network_job(_model(), weights=weights).options_hash() == before
    size = weights.stat().st_size
    _write_weights(weights, 2.0)  # other values, the same size, and the old time put back
    os.utime(weights, ns=(1, 2))
    assert weights.stat().st_size == size
    assert make_network_job(_model(), weights=weights).options_hash() != before
    _write_weights(weights, 1.0)  # the first values again: the first hash
    assert make_network_job(_model(), weights=weights).options_hash() == before


def test_the_hash_does_not_depend_on_where_the_file_is(tmp_path):
    """Content, not path: the same weights copied elsewhere give the same digest (a moved project resumes)."""
    first, second = tmp_path / "a.npz", tmp_path / "sub" / "b.npz"
    second.parent.mkdir()
    _write_weights(first, 1.0)
    second.write_bytes(first.read_bytes())
    assert make_network_job(_model(), weights=first).options_hash() == (
        make_network_job(_model(), weights=second).options_hash()
    )


def test_weights_changed_after_the_job_was_built_are_refused(tmp_path):
    weights = tmp_path / "w.npz"
    _write_weights(weights, 1.0)
    job = make_network_job(_model(), weights=weights)
    assert set(job.weights().tensors) == {"0.weight", "0.bias", "3.weight", "3.bias"}
    _write_weights(weights, 3.0)  # the run's records would credit these maps to the first file
    with pytest.raises(SpecError, match=r"w\.npz.*changed"):
        job.weights()
    touched = make_network_job(_model(), weights=weights)  # a new run takes the new file
    np.testing.assert_array_equal(touched.weights().tensors["0.weight"], np.load(weights)["0.weight"])


def _digits(tmp_path: Path) -> list[Path]:
    paths = []
    for index in range(3):
        pixels = np.zeros((6, 6), np.uint8)
        pixels[index : index + 3, 1:4] = 255
        path = tmp_path / f"d{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def test_a_batch_resumes_over_a_touched_weights_file_and_redoes_a_changed_one(runner, tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(json.dumps({"name": "tiny", "input": "6x6x1", "layers": TOKENS}))
    weights = tmp_path / "w.npz"
    _write_weights(weights, 1.0)
    images = [str(p) for p in _digits(tmp_path)]
    out = tmp_path / "out"
    args = ["apply", *images, "--spec", str(spec), "--weights", str(weights), "-o", str(out), "-j", "1", "--json"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    os.utime(weights)  # touched (a checkout, a copy with -p missing, a sync tool)
    again = runner.invoke(cli, [*args, "--skip-existing"])
    assert again.exit_code == 0, again.output
    assert len(json.loads(again.stdout)["skipped"]) == 3
    _write_weights(weights, 2.0)  # retrained: other values
    changed = runner.invoke(cli, [*args, "--skip-existing"])
    assert changed.exit_code == 2 and "--overwrite" in changed.stderr  # not mistaken for done, not clobbered
    redone = runner.invoke(cli, [*args, "--skip-existing", "--overwrite"])
    assert redone.exit_code == 0, redone.output
    assert json.loads(redone.stdout)["skipped"] == []
    assert len(json.loads(redone.stdout)["processed"]) == 3
