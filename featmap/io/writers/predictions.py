"""A batch's predictions: ``predictions.csv`` in the output folder (one row per image) and the count per class.

Columns: ``input`` (the path as given), ``top1`` (the class name), ``index`` (its output index),
``probability`` (six decimals), ``top5`` (``name (p); name (p); …``, four decimals). Rows are sorted by input,
probabilities printed with fixed decimals, so the same images give the same bytes whatever the order or the
back end. Images a resumed run skipped keep their row: their prediction is read back from the manifest, where
the last layer's record holds it (``"top"``). The file is written atomically (a temporary file, then a rename).

Examples
--------
>>> rows = [("b.png", [{"index": 7, "label": "7", "probability": 0.99}]), ("a.png", [])]
>>> print(predictions_csv(rows).decode(), end="")
input,top1,index,probability,top5
b.png,7,7,0.990000,7 (0.9900)
>>> class_counts(rows)
(('7', 1),)
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PREDICTIONS_NAME",
    "class_counts",
    "predictions_csv",
    "tops_from_lines",
    "tops_from_manifest",
    "write_predictions",
]

PREDICTIONS_NAME = "predictions.csv"
Row = tuple[str, Sequence[dict[str, Any]]]


def predictions_csv(rows: Iterable[Row]) -> bytes:
    """The CSV text of ``(input, top)`` rows, sorted by input; an image without a prediction has no row."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(["input", "top1", "index", "probability", "top5"])
    for source, top in sorted(rows, key=lambda row: row[0]):
        if not top:
            continue
        best = top[0]
        ranked = "; ".join(f"{t['label']} ({float(t['probability']):.4f})" for t in top[:5])
        out.writerow([source, best["label"], best["index"], f"{float(best['probability']):.6f}", ranked])
    return buffer.getvalue().encode("utf-8")


def write_predictions(out_dir: Path, rows: Iterable[Row]) -> Path:
    """Write ``predictions.csv`` into ``out_dir`` atomically; returns its path."""
    from featmap.io.images import atomic_write

    data = predictions_csv(rows)
    return atomic_write(Path(out_dir) / PREDICTIONS_NAME, lambda handle: handle.write(data))


def class_counts(rows: Iterable[Row]) -> tuple[tuple[str, int], ...]:
    """How many images each top-1 class got, most first (then by name)."""
    counts = Counter(str(top[0]["label"]) for _, top in rows if top)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def tops_from_manifest(manifest: Path, digest: str) -> dict[str, list[dict[str, Any]]]:
    """Resolved input path → the prediction recorded with options ``digest`` (a later record wins)."""
    try:
        with open(manifest, encoding="utf-8", errors="replace") as fh:
            return tops_from_lines(fh, digest)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return {}


def tops_from_lines(lines: Iterable[str], digest: str) -> dict[str, list[dict[str, Any]]]:
    """`tops_from_manifest` for a manifest's lines already at hand (a remote output's, kept in memory)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if '"top": [' not in line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(rec, dict) and rec.get("options") == digest and isinstance(rec.get("top"), list):
            found[str(rec.get("input"))] = rec["top"]
    return found
