"""featmap.io.manifest_index: the fast manifest reader agrees with json.loads on every kind of line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from featmap.io.manifest_index import index_lines, records
from featmap.io.outputs import Manifest


def reference(lines: list[str]) -> dict[str, tuple[str, str]]:
    """The slow, obvious reader: json.loads on each line, cut lines skipped, later records winning."""
    index = {}
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("png"), str):
            index[rec["png"]] = (str(rec.get("input")), str(rec.get("options")))
    return index


def line(**fields: Any) -> str:
    return json.dumps(fields, sort_keys=True) + "\n"


def test_hand_worked_lines() -> None:
    lines = [
        line(input="/p/a.png", kernel="k", options="o1", png="a/k.png", stats={"max": 1.0}, status="ok"),
        line(input='/p/we"ird\\name.png', options="o1", png='we"ird/k.png', status="ok"),  # escapes: json path
        line(input="/p/b.png", options="o1", status="failed", error='bad "thing"'),  # no png: not an output
        line(input="/p/a.png", kernel="k", options="o2", png="a/k.png", status="ok"),  # a re-run replaces
        line(input="/p/c.png", options="o1", png="c/k.png")[:-9],  # cut short by a crash
    ]
    expected = {"a/k.png": ("/p/a.png", "o2"), 'we"ird/k.png': ('/p/we"ird\\name.png', "o1")}
    assert index_lines(lines) == reference(lines) == expected


@given(
    st.lists(
        st.tuples(st.text(max_size=12), st.sampled_from(["o1", "o2"]), st.text(max_size=8), st.integers(0, 60)),
        max_size=12,
    )
)
def test_agrees_with_json_loads(records: list[tuple[str, str, str, int]]) -> None:
    lines = []
    for source, options, png, cut in records:
        text = line(input=source, kernel="k", options=options, png=png, shape=[1, 2], status="ok")
        lines.append(text[: len(text) - cut] if cut % 3 == 0 else text)
    assert index_lines(lines) == reference(lines)


def test_records_keep_what_a_rerun_reads() -> None:
    lines = [
        line(input="/p/a.png", kernel="k", options="o1", png="a/k.png", stats={"max": 1.0}, status="ok"),
        line(input="/p/b.png", options="o1", status="failed", error="bad"),
        line(input="/p/c.png", options="o1", png="c/k.png", status="ok")[:-9],  # cut short: skipped
        line(input='/p/q"d.png', options="o1", png="d/k.png", status="ok"),  # escaped: the json path, whole
    ]
    assert list(records(lines)) == [
        {"input": "/p/a.png", "options": "o1", "png": "a/k.png", "status": "ok"},
        {"input": "/p/b.png", "options": "o1", "status": "failed", "error": "bad"},
        {"input": '/p/q"d.png', "options": "o1", "png": "d/k.png", "status": "ok"},
    ]


def test_manifest_resume_agrees_with_json_loads_on_odd_lines(tmp_path: Path) -> None:
    """`Manifest` (the fast reader and the once-resolved resume check) answers as a plain json.loads reader."""
    out = tmp_path / "out"
    out.mkdir()
    src = tmp_path / "in"
    src.mkdir()
    names = ["plain.png", "ünï cødé.png", 'q"uote.png', "back\\slash.png", "cut.png"]
    for name in names:
        (src / name).touch()
    lines = [
        line(input=str(src / n), kernel="k", options="o1", png=f"{i}/k.png", status="ok") for i, n in enumerate(names)
    ]
    lines.append(line(input=str(src / "plain.png"), options="o1", status="failed", error='bad "x" ü'))
    lines[-2] = lines[-2][:-12]  # the last output's line cut short by a crash
    lines.append(lines.pop(-2))  # ... and last in the file, with no newline
    (out / "manifest.jsonl").write_text("".join(lines), encoding="utf-8")
    expected = reference(lines)
    assert set(expected) == {"0/k.png", "1/k.png", "2/k.png", "3/k.png"}
    manifest = Manifest(out)
    for i, name in enumerate(names):
        target = out / str(i) / "k.png"
        target.parent.mkdir()
        target.touch()
        want = expected.get(f"{i}/k.png") == (str((src / name).resolve()), "o1")
        assert want == (i < 4)
        assert manifest.complete([target], src / name, "o1") is want
        assert manifest.made_by(target, src / name, "o1", finished=True) is want
        assert manifest.complete([target], src / name, "o2") is False
    assert manifest.complete([], src / "plain.png", "o1") is False
