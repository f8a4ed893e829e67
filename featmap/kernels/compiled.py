"""The built-in kernels in a compiled form: read without YAML when the files are the ones it was made from.

Each ``featmap apply -k NAME`` reads the whole library, and the built-in files' YAML (the ``yaml`` import
and the parse with its checks) was ~15-30 ms of every command's start-up before the first image. `COMPILED`
(``builtin.json`` beside this module) holds every built-in file's records as `load_kernel_file` makes them,
with the SHA-256 of the text each came from. `builtin_records` gives those records only when the folder
holds exactly those files with exactly that text and no environment variable changes a limit that reading
checks; otherwise it gives None and the files are read as any folder's are. So an edited kernel file is
never hidden by a stale index: the index is a shortcut, never the source.

After editing ``kernels/*.yaml`` in a checkout, ``python tools/compile_kernels.py`` writes it again
(tests/test_kernels_compiled.py fails until then).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featmap.kernels.files import KERNEL_SUFFIXES, load_kernel_file
from featmap.kernels.records import Kernel
from featmap.limits import DEPTH, FILE_SIZE, FILE_VALUES, KERNEL_SIZE, YAML_ALIAS_NODES

__all__ = ["COMPILED", "builtin_kernel_dir", "builtin_records", "compile_files", "compiled_text", "write_compiled"]

#: The compiled records of the built-in kernel files.
COMPILED = Path(__file__).resolve().parent / "builtin.json"
#: Limits checked while a kernel file is read: with any of them set, the files are read and checked.
_READING_LIMITS = (DEPTH, FILE_SIZE, FILE_VALUES, KERNEL_SIZE, YAML_ALIAS_NODES)
_FORMAT = 1


def builtin_kernel_dir() -> Path:
    """The folder of kernels shipped with featmap.

    Installed, it is ``featmap/builtin_kernels`` (the wheel maps the repository's ``kernels/`` there);
    in a source checkout it is ``kernels/`` beside the package.
    """
    here = Path(__file__).resolve().parent.parent  # the featmap package
    installed = here / "builtin_kernels"
    if any(installed.glob("*.yaml")):
        return installed
    return here.parent / "kernels"


def _digest(data: bytes) -> str:
    from featmap.digests import sha256

    return sha256(data).hexdigest()


def compile_files(files: Sequence[Path]) -> dict[str, Any]:
    """Read and check ``files`` as the library does and return their records as JSON-ready data (a file's
    path is kept by name only: a record's `Kernel.origin` is where the file is found when it is used)."""
    entries = []
    for file in files:
        records = [
            {
                "name": k.name,
                "weights": k.weights.tolist(),  # float32 values, exact as JSON numbers
                "bias": k.bias,
                "description": k.description,
                "tags": list(k.tags),
                "source": k.source,
            }
            for k in load_kernel_file(file)
        ]
        entries.append({"file": file.name, "sha256": _digest(file.read_bytes()), "kernels": records})
    return {"format": _FORMAT, "files": entries}


def builtin_records(files: Sequence[Path]) -> list[tuple[Path, list[Kernel]]] | None:
    """Each of ``files`` (the built-in folder's kernel files, in order) with its kernels from `COMPILED`, or
    None when the index does not describe exactly these files with exactly this text (or is missing or
    unreadable, or a reading limit is set in the environment)."""
    if any(os.environ.get(limit.env, "").strip() for limit in _READING_LIMITS):
        return None
    try:
        compiled = json.loads(COMPILED.read_bytes())
        entries = compiled["files"]
        if compiled.get("format") != _FORMAT or [entry["file"] for entry in entries] != [f.name for f in files]:
            return None
        found: list[tuple[Path, list[Kernel]]] = []
        for file, entry in zip(files, entries, strict=True):  # the names matched above
            if _digest(file.read_bytes()) != entry["sha256"]:
                return None
            origin = str(file)
            kernels = [
                Kernel(k["name"], k["weights"], k["bias"], k["description"], tuple(k["tags"]), k["source"], origin)
                for k in entry["kernels"]
            ]
            found.append((file, kernels))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found


def compiled_text(data: dict[str, Any]) -> str:
    """`compile_files`'s data as the index's text: one kernel a line, so an edit shows as a small diff."""
    files = [
        "{"
        + f'"file": {json.dumps(entry["file"])}, "sha256": {json.dumps(entry["sha256"])}, "kernels": [\n'
        + ",\n".join(json.dumps(k, ensure_ascii=False) for k in entry["kernels"])
        + "\n]}"
        for entry in data["files"]
    ]
    return f'{{"format": {data["format"]}, "files": [\n' + ",\n".join(files) + "\n]}\n"


def write_compiled(folder: Path, target: Path = COMPILED) -> Path:
    """Compile every kernel file of ``folder`` (the built-ins; listed as the library lists a folder) into
    ``target``, with the reading limits at their defaults (``python tools/compile_kernels.py``)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in KERNEL_SUFFIXES and not p.name.startswith("."))
    saved = {limit.env: os.environ.pop(limit.env) for limit in _READING_LIMITS if limit.env in os.environ}
    try:
        data = compile_files(files)
    finally:
        os.environ.update(saved)
    target.write_text(compiled_text(data), encoding="utf-8")
    return target
