"""The presets' compiled form (featmap/net/models/compiled/*.json): in step with featmap/net/models/*.yaml, giving
the same documents and models as reading the files, and never used for a file whose text it does not hold."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from featmap.documents import read_document
from featmap.errors import SpecError
from featmap.net.spec import compiled
from featmap.net.spec.compiled import COMPILED_DIR, PRESETS, compiled_document, compiled_text, exact, write_compiled
from featmap.net.spec.files import MODEL_DIR, list_models, load_model, parse_file

NAMES = sorted(p.stem for p in PRESETS.glob("*.yaml"))


def test_the_compiled_form_is_in_step_with_the_presets() -> None:
    assert MODEL_DIR == PRESETS and len(NAMES) >= 20
    assert sorted(p.stem for p in COMPILED_DIR.glob("*.json")) == NAMES, "run `python tools/compile_models.py`"
    for name in NAMES:
        assert (COMPILED_DIR / f"{name}.json").read_text(encoding="utf-8") == compiled_text(PRESETS / f"{name}.yaml"), (
            f"featmap/net/models/{name}.yaml changed: run `python tools/compile_models.py`"
        )


@pytest.mark.parametrize("name", NAMES)
def test_each_presets_compiled_document_and_model_equal_those_read_from_its_file(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = PRESETS / f"{name}.yaml"
    document = compiled_document(path)
    assert document is not None  # the shortcut is taken
    assert exact(document) == exact(read_document(path, SpecError, "check the path"))
    from_compiled = load_model(name)
    monkeypatch.setenv("FEATMAP_MAX_FILE_VALUES", "10000000")  # a reading limit set: the file itself is read
    assert compiled_document(path) is None
    assert repr(load_model(name)) == repr(from_compiled)


def test_values_of_every_type_keep_their_type(tmp_path: Path) -> None:
    spec = tmp_path / "typed.yaml"
    spec.write_text("a: 1\nb: 1.0\nc: true\nd: 1e-3\ne: null\nf: [x, '2']\ng: {h: .5}\n", encoding="utf-8")
    text = compiled_text(spec)
    (tmp_path / "compiled").mkdir()
    (tmp_path / "compiled" / "typed.json").write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled, "PRESETS", tmp_path)
        patch.setattr(compiled, "COMPILED_DIR", tmp_path / "compiled")
        document = compiled_document(spec)
    assert exact(document) == exact(
        {"a": 1, "b": 1.0, "c": True, "d": 0.001, "e": None, "f": ["x", "2"], "g": {"h": 0.5}}
    )
    dated = tmp_path / "dated.yaml"
    dated.write_text("when: 2020-01-01\n", encoding="utf-8")  # a date: JSON would give text back
    with pytest.raises(SpecError, match="JSON does not keep"):
        compiled_text(dated)


@pytest.fixture
def copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The presets and their compiled form copied to ``tmp_path``, which `compiled_document` then reads."""
    presets = tmp_path / "models"
    shutil.copytree(PRESETS, presets, ignore=shutil.ignore_patterns("*.npz"))
    monkeypatch.setattr(compiled, "PRESETS", presets)
    monkeypatch.setattr(compiled, "COMPILED_DIR", presets / "compiled")
    return presets


@pytest.mark.parametrize("change", ["edited", "no compiled file", "broken", "other format", "not a preset"])
def test_a_file_the_compiled_form_does_not_hold_is_read_itself(copies: Path, change: str) -> None:
    spec = copies / "lenet5.yaml"
    assert compiled_document(spec) is not None
    entry = copies / "compiled" / "lenet5.json"
    if change == "edited":  # one character: the compiled form no longer holds the file's text
        spec.write_text(spec.read_text(encoding="utf-8").replace("name: C1", "name: D1"), encoding="utf-8")
    elif change == "no compiled file":
        entry.unlink()
    elif change == "broken":
        entry.write_text(entry.read_text(encoding="utf-8")[:-20], encoding="utf-8")
    elif change == "other format":
        entry.write_text(entry.read_text(encoding="utf-8").replace('"format": 1', '"format": 2'), encoding="utf-8")
    else:  # the same text under another folder: any spec file is read itself
        spec = shutil.copy(spec, copies.parent / "lenet5.yaml")
    assert compiled_document(Path(spec)) is None
    model = parse_file(spec)
    assert [layer.name for layer in model.layers][0] == ("D1" if change == "edited" else "C1")
    assert repr(model.layers) == repr(parse_file(spec).layers)


def test_write_compiled_writes_every_preset_and_removes_the_stale(tmp_path: Path) -> None:
    target = tmp_path / "compiled"
    target.mkdir()
    (target / "gone.json").write_text("{}", encoding="utf-8")
    written = write_compiled(PRESETS, target)
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{name}.json" for name in NAMES)
    assert [p.read_text(encoding="utf-8") for p in written] == [
        (COMPILED_DIR / p.name).read_text(encoding="utf-8") for p in written
    ]
    assert [m.name for m in list_models()] == sorted(load_model(name).name for name in NAMES)
