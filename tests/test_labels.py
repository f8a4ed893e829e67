"""Class names (`featmap.net.labels`): ImageNet-1k for the torchvision presets, --labels files, the count check
before any work, and a batch's predictions.csv, manifest records and class counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from featmap.cli import cli
from featmap.errors import OptionError
from featmap.net.labels import check_labels, load_labels
from featmap.net.spec import load_model

DIGITS = Path(__file__).resolve().parent.parent / "samples" / "digits"


def test_imagenet_names_ship_with_featmap() -> None:
    names = load_labels("imagenet-1k")
    assert len(names) == len(set(names)) == 1000
    known = {
        0: "tench",
        1: "goldfish",
        207: "golden retriever",
        281: "tabby",
        409: "analog clock",
        999: "toilet tissue",
    }
    assert {i: names[i] for i in known} == known
    for preset in ("resnet18", "vgg16", "inception_v3", "convnext_tiny"):
        assert load_model(preset).labels == names


def test_label_file_formats(tmp_path: Path) -> None:
    lines = tmp_path / "a.txt"
    lines.write_text("cat\ndog\n\n")
    assert load_labels(lines) == ("cat", "dog")
    listed = tmp_path / "b.json"
    listed.write_text('["cat", "dog"]')
    assert load_labels(listed) == ("cat", "dog")
    mapped = tmp_path / "c.json"
    mapped.write_text('{"1": "dog", "0": "cat"}')
    assert load_labels(mapped) == ("cat", "dog")
    mapped.write_text('{"0": "cat", "2": "dog"}')
    with pytest.raises(OptionError, match="not the indices 0"):
        load_labels(mapped)
    with pytest.raises(OptionError, match="does not exist"):
        load_labels(tmp_path / "missing.txt")
    with pytest.raises(OptionError, match="has 2 names but the network's output has 3 values"):
        check_labels(("cat", "dog"), 3, "x")


def test_labels_that_do_not_match_stop_before_any_work(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    out = tmp_path / "out"
    run = CliRunner().invoke(
        cli, ["apply", str(DIGITS / "digit_1.png"), "--model", "lenet5-digits", "--labels", str(names), "-o", str(out)]
    )
    assert run.exit_code == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "has 3 names but the network's output has 10 values" in lines[0]
    assert not out.exists()


def test_labels_name_the_classes_of_your_own_spec(tmp_path: Path) -> None:
    names = tmp_path / "names.json"
    names.write_text(json.dumps([f"class {i}" for i in range(10)]))
    run = CliRunner().invoke(
        cli,
        [
            "apply",
            str(DIGITS / "digit_4.png"),
            "--model",
            "lenet5-digits",
            "--labels",
            str(names),
            "-o",
            str(tmp_path / "o"),
            "--json",
        ],
    )
    assert run.exit_code == 0, run.output
    top = json.loads(run.stdout)["top"]
    assert len(top) == 5 and top[0] == {
        "index": 4,
        "label": "class 4",
        "probability": pytest.approx(top[0]["probability"]),
    }
    assert top[0]["probability"] > 0.99 and sum(t["probability"] for t in top) <= 1 + 1e-9


def test_predictions_csv_of_a_batch(tmp_path: Path) -> None:
    """samples/digits through lenet5-digits: every digit right, one row each, sorted, fixed decimals; the
    manifest's last-layer record holds the top 5; a resume keeps every row (read back from the manifest)."""
    out = tmp_path / "out"
    args = ["apply", str(DIGITS), "--model", "lenet5-digits", "-o", str(out), "-j", "1", "-q"]
    run = CliRunner().invoke(cli, [*args, "--json"])
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["predictions"] == [{"label": str(k), "images": 1} for k in range(10)]
    text = (out / "predictions.csv").read_text()
    rows = text.splitlines()
    assert rows[0] == "input,top1,index,probability,top5"
    assert len(rows) == 11
    for k, row in enumerate(rows[1:]):
        source, top1, index, probability, top5 = row.split(",")
        assert source.endswith(f"digit_{k}.png") and top1 == index == str(k)
        assert 0.99 < float(probability) <= 1 and len(probability.split(".")[1]) == 6
        assert top5.startswith(f"{k} (") and top5.count(";") == 4
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    with_top = [r for r in records if "top" in r]
    assert len(with_top) == 10 and all(r["kernel"].startswith("12-output/") for r in with_top)
    assert {r["top"][0]["label"] for r in with_top} == {str(k) for k in range(10)}
    (out / "predictions.csv").unlink()
    again = CliRunner().invoke(cli, [*args, "--skip-existing"])
    assert again.exit_code == 0, again.output
    assert (out / "predictions.csv").read_text() == text
    assert "predicted: 0 × 1, 1 × 1" in again.stdout
