"""The presets' spec documents in a compiled form: ``--model NAME`` reads its preset without YAML when the file is
the one the compiled form was made from.

A preset is a small YAML file, but reading it (the ``yaml`` import with libyaml's C loader, the event walk that
checks the reading limits, the parse) was ~95M of the ~1.12e9 instructions of the whole LeNet-5 digit command
(``featmap apply samples/digits/digit_7.png --model lenet5-digits``). `COMPILED_DIR` (``compiled/`` beside the
presets) holds, for each ``NAME.yaml``, ``NAME.json``: the document `featmap.documents.read_document` makes of the
file, and the file's whole text. `compiled_document` gives that document only for a preset whose text is exactly
that text, and only when no environment variable changes a limit that reading checks; otherwise None, and the
file is read as any spec file is. So an edited preset is never hidden by a stale compiled form: it is a shortcut,
never the source. Nothing is written while featmap runs (a read-only install reads the same files).

After editing ``featmap/net/models/*.yaml``, ``python tools/compile_models.py`` writes them again
(tests/test_spec_compiled.py fails until then).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from featmap.documents import read_document
from featmap.errors import SpecError
from featmap.limits import DEPTH, FILE_SIZE, FILE_VALUES, YAML_ALIAS_NODES

__all__ = ["COMPILED_DIR", "compiled_document", "compiled_text", "exact", "write_compiled"]

#: The folder of the presets (`featmap.net.spec.files.MODEL_DIR`).
PRESETS = Path(__file__).resolve().parent.parent / "models"
#: The presets' compiled documents, one JSON file per preset.
COMPILED_DIR = PRESETS / "compiled"
#: Limits checked while a spec file is read: with any of them set in the environment, the file is read and checked.
_READING_LIMITS = (DEPTH, FILE_SIZE, FILE_VALUES, YAML_ALIAS_NODES)
_FORMAT = 1


def compiled_document(path: Path) -> Any | None:
    """The document of the preset at ``path`` (a file of `PRESETS`) from its compiled form, or None when the
    compiled form does not hold exactly this file's text (or is missing or unreadable, or ``path`` is not a
    preset, or a reading limit is set in the environment)."""
    if path.parent != PRESETS or any(os.environ.get(limit.env, "").strip() for limit in _READING_LIMITS):
        return None
    try:
        entry = json.loads((COMPILED_DIR / f"{path.stem}.json").read_text(encoding="utf-8"))
        if entry["format"] != _FORMAT or entry["yaml"] != path.read_text(encoding="utf-8"):
            return None
        return entry["document"]
    except (OSError, ValueError, KeyError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None


def exact(document: Any) -> str:
    """A text that two documents share only if they hold the same values of the same types (``1``, ``1.0`` and
    ``True`` are equal in Python, not here): `repr`, whose floats are the shortest text that reads back."""
    return repr(document)


def compiled_text(path: Path) -> str:
    """The compiled form of the preset at ``path``, as its JSON file holds it (read with the reading limits at
    their defaults); a document that JSON would not give back as it is raises `SpecError`."""
    saved = {limit.env: os.environ.pop(limit.env) for limit in _READING_LIMITS if limit.env in os.environ}
    try:
        document = read_document(path, SpecError, "check the path")
    finally:
        os.environ.update(saved)
    refused = SpecError(str(path), "holds a value JSON does not keep as it is", "write it as text or a number")
    try:
        text = json.dumps(
            {"format": _FORMAT, "yaml": path.read_text(encoding="utf-8"), "document": document},
            ensure_ascii=False,
            indent=1,
        )
    except (TypeError, ValueError):  # a date, a set, a float JSON has no number for
        raise refused from None
    if exact(json.loads(text)["document"]) != exact(document):  # a tuple, a key that is not text
        raise refused
    return text + "\n"


def write_compiled(presets: Path = PRESETS, target: Path = COMPILED_DIR) -> list[Path]:
    """Compile every preset of ``presets`` into ``target`` (``python tools/compile_models.py``), removing
    compiled files no preset has any more; the files written."""
    target.mkdir(exist_ok=True)
    written = []
    for path in sorted(presets.glob("*.yaml")):
        out = target / f"{path.stem}.json"
        out.write_text(compiled_text(path), encoding="utf-8")
        written.append(out)
    for stale in set(target.glob("*.json")) - set(written):
        stale.unlink()
    return written
