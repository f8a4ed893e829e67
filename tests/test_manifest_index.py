"""featmap.io.manifest_index: the fast manifest reader agrees with json.loads on every kind of line."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from featmap.io import manifest_index
from featmap.io.manifest_index import INDEX_NAME, Outputs, index_lines, read_outputs, records, save_index
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


# --------------------------------------------------------------------------- the index beside the manifest


def makers(lines: list[str]) -> dict[str, tuple[str, str] | None]:
    """Each png's latest maker by a plain json.loads reader: (input, options) when its status is ok."""
    found: dict[str, tuple[str, str] | None] = {}
    for text in lines:
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("png"), str):
            ok = rec.get("status", "ok") == "ok" and all(isinstance(rec.get(k), str) for k in ("input", "options"))
            found[rec["png"]] = (rec["input"], rec["options"]) if ok else None
    return found


def answers(outputs: Outputs) -> dict[str, tuple[str, str] | None]:
    return {png: outputs.maker(png) for png in outputs.by_png}


def some_lines(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        source = rng.choice(["/p/a.png", "/p/b.png", "/p/ü.png", '/p/q"uote.png', "/p/c.png"])
        status = rng.choice(["ok", "ok", "ok", "failed"])
        lines.append(
            line(input=source, options=rng.choice(["o1", "o2"]), png=f"{rng.randrange(40)}/k.png", n=i, status=status)
        )
    return lines


def test_an_index_is_written_read_and_extended_with_the_new_lines_only(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 1)
    monkeypatch.setattr(manifest_index, "_TAIL", 64)  # the hash checks the last 64 bytes the index covers
    manifest = tmp_path / "manifest.jsonl"
    lines = some_lines(300, 1)
    manifest.write_text("".join(lines[:200]), encoding="utf-8")
    first, size, covered = read_outputs(manifest)  # reads every line, writes the index
    assert size == covered == manifest.stat().st_size
    assert (tmp_path / INDEX_NAME).is_file()
    assert answers(first) == makers(lines[:200])
    again, size, covered = read_outputs(manifest, save=False)  # the index alone: nothing after it
    assert answers(again) == makers(lines[:200]) and size == covered
    with open(manifest, "a", encoding="utf-8") as fh:  # a run appends; then a line cut short by a crash
        fh.write("".join(lines[200:]) + lines[0][:-7])
    extended, size, covered = read_outputs(manifest, save=False)
    assert answers(extended) == makers(lines) and covered < size == manifest.stat().st_size - len(lines[0][:-7])
    # Only the lines after the index are read: outputs renamed in place early in the indexed part (same size,
    # same last 64 bytes) are not seen, which a full read would show.
    data = manifest.read_bytes()
    early = len("".join(lines[:100]).encode())
    changed = data[:early].replace(b"/k.png", b"/j.png") + data[early:]  # outputs a full read would list
    manifest.write_bytes(changed)
    assert makers(changed.decode().splitlines(keepends=True)) != makers(lines)
    assert answers(read_outputs(manifest, save=False)[0]) == makers(lines)


def test_a_stale_or_damaged_index_is_rebuilt(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 1)
    manifest = tmp_path / "manifest.jsonl"
    index = tmp_path / INDEX_NAME
    old, new = some_lines(120, 2), some_lines(150, 3)
    manifest.write_text("".join(old), encoding="utf-8")
    read_outputs(manifest)
    manifest.write_text("".join(new), encoding="utf-8")  # rewritten, longer: the index's tail hash fails
    assert answers(read_outputs(manifest)[0]) == makers(new)
    manifest.write_text("".join(new[:10]), encoding="utf-8")  # cut shorter than the index covers
    assert answers(read_outputs(manifest, save=False)[0]) == makers(new[:10])
    good = index.read_bytes()
    for damaged in (good[:-3], good[:40], b"garbage", good.replace(b'"outputs"', b'"outputz"')):
        index.write_bytes(damaged)
        assert answers(read_outputs(manifest, save=False)[0]) == makers(new[:10])
    manifest.unlink()
    gone, size, covered = read_outputs(manifest)
    assert (gone.by_png, gone.makers, size, covered) == ({}, [], 0, 0)


@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["o1", "o2"]), st.booleans()), max_size=30), st.data())
def test_index_then_tail_answers_as_a_full_read(records: list[tuple[int, str, bool]], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "manifest.jsonl"
        lines = [
            line(input=f"/p/{i}.png", options=o, png=f"{i % 3}/k.png", status="ok" if ok else "failed")
            for i, o, ok in records
        ]
        split = data.draw(st.integers(0, len(lines)))
        manifest.write_text("".join(lines[:split]), encoding="utf-8")
        outputs, size, _ = read_outputs(manifest, save=False)
        saved = save_index(outputs, manifest, size) if size else False
        manifest.write_text("".join(lines), encoding="utf-8")
        again, _, covered = read_outputs(manifest, save=False)
        assert covered == (size if saved else 0)
        assert answers(again) == makers(lines)


def test_manifest_keeps_its_index_current_as_a_run_appends(tmp_path: Path, monkeypatch: Any) -> None:
    """A batch's `Manifest.append` writes the index as the manifest grows, so a killed run's resume reads
    only the last lines; the answers (`complete`, `made_by`) are those of the lines themselves."""
    monkeypatch.setattr(manifest_index, "INDEX_MIN_BYTES", 400)
    out = tmp_path / "out"
    src = tmp_path / "in"
    src.mkdir()
    names = [f"im{i}.png" for i in range(12)]
    for name in names:
        (src / name).touch()
    manifest = Manifest(out)
    for name in names:
        target = out / name[:-4] / "k.png"
        target.parent.mkdir(parents=True)
        target.touch()
        manifest.append([{"input": str((src / name).resolve()), "options": "o1", "png": f"{name[:-4]}/k.png"}])
    assert (out / INDEX_NAME).is_file()
    covered = json.loads((out / INDEX_NAME).read_bytes().split(b"\n")[1])["size"]
    assert 400 <= covered <= (out / "manifest.jsonl").stat().st_size
    reopened = Manifest(out)
    for name in names:
        target = out / name[:-4] / "k.png"
        assert reopened.complete([target], src / name, "o1") and manifest.complete([target], src / name, "o1")
        assert not reopened.complete([target], src / name, "o2")
        assert reopened.made_by(target, src / name, "o1", finished=True)
    (out / names[0][:-4] / "k.png").unlink()  # a deleted output is made again, whatever the manifest says
    assert not Manifest(out).complete([out / names[0][:-4] / "k.png"], src / names[0], "o1")


def test_resume_resolves_symlinked_inputs_as_resolve_does(tmp_path: Path) -> None:
    """The resume check lists an input folder once; a symlinked input still counts as its target."""
    out, src, real = tmp_path / "out", tmp_path / "in", tmp_path / "real"
    src.mkdir()
    real.mkdir()
    (real / "a.png").touch()
    (src / "link.png").symlink_to(real / "a.png")
    (src / "b.png").touch()
    (tmp_path / "in2").symlink_to(src)
    out.mkdir()
    for name in ("a", "b"):
        (out / name).mkdir()
        (out / name / "k.png").touch()
    records = [
        line(input=str(real / "a.png"), options="o1", png="a/k.png", status="ok"),
        line(input=str(src / "b.png"), options="o1", png="b/k.png", status="ok"),
    ]
    (out / "manifest.jsonl").write_text("".join(records), encoding="utf-8")
    manifest = Manifest(out)
    assert manifest.complete([out / "a" / "k.png"], src / "link.png", "o1")
    assert manifest.complete([out / "b" / "k.png"], tmp_path / "in2" / "b.png", "o1")
    assert not manifest.complete([out / "b" / "k.png"], src / "link.png", "o1")
    assert not manifest.complete([out / "a" / "k.png"], real / ".." / "real" / "b.png", "o1")


@given(
    st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["o1", "o2"])), max_size=30), st.sampled_from(["o1", "o2"])
)
def test_numbers_for_are_each_input_s_maker_with_these_options(pairs: list[tuple[int, str]], options: str) -> None:
    """One batch's options (every maker's, the C-loop path) or mixed: the numbers a maker-by-maker reading gives."""
    outputs = Outputs()
    for n, (i, made_with) in enumerate(pairs):
        outputs.add({"input": f"/p/{i}.png", "options": made_with, "png": f"{n}.png", "status": "ok"})
    expected = {source: n for n, (source, made) in enumerate(outputs.makers) if made == options}
    assert outputs.numbers_for(options) == expected
    assert all(outputs.number((source, options)) == n for source, n in expected.items())
