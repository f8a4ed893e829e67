"""Turn the files, folders and glob patterns a user names into a list of images, each with its place in
the output tree.

Examples
--------
>>> items, problems, ignored = discover(["no/such/thing.png"])
>>> items, problems
([], [('no/such/thing.png', 'no such file, folder or matching pattern')])
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from featmap.io.images import is_image
from featmap.io.outputs import safe_stem

__all__ = ["InputImage", "discover"]

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class InputImage:
    """One input: its path, the folder it maps to under the output folder, and its output stem."""

    path: Path
    rel_dir: Path
    stem: str


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(
    root: Path, recursive: bool, exclude: set[Path], problems: list[tuple[str, str]] | None = None
) -> Iterable[Path]:
    """Files under ``root`` in sorted order; hidden entries and ``exclude`` skipped; symlink loops cut.

    An entry that cannot be followed (a symlink pointing at itself or at a missing file) is added to
    ``problems`` and the walk goes on."""
    seen: set[Path] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        real = folder.resolve()
        if real in seen or real in exclude:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if _hidden(entry.name):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows symlinks; `seen` stops loops between folders
                is_file = not is_dir and entry.is_file()
                if not is_dir and not is_file and entry.is_symlink():
                    os.stat(entry.path)  # raises for a loop or a dangling link
            except OSError as exc:
                if problems is not None:
                    problems.append((str(path), f"cannot be followed ({exc.strerror}); skipped"))
                continue
            if is_dir:
                if recursive:
                    subdirs.append(path)
            elif is_file:
                yield path
        stack.extend(reversed(subdirs))


def _unique_stems(items: list[InputImage]) -> list[InputImage]:
    """Give inputs that would write to the same place distinct stems: ``a.png``/``a.jpg`` → ``a_png``/``a_jpg``,
    and a numeric suffix if that still collides (same name in two folders given at once)."""
    groups: dict[tuple[Path, str], list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault((item.rel_dir, item.stem), []).append(i)
    out = list(items)
    taken = {key for key, members in groups.items() if len(members) == 1}
    for (rel_dir, _), members in groups.items():
        if len(members) < 2:
            continue
        for i in members:
            item = items[i]
            stem = f"{item.stem}_{item.path.suffix.lstrip('.').lower() or 'noext'}"
            n = 1
            candidate = stem
            while (rel_dir, candidate) in taken:
                n += 1
                candidate = f"{stem}_{n}"
            taken.add((rel_dir, candidate))
            out[i] = replace(item, stem=candidate)
    return out


def discover(
    specs: Sequence[str | os.PathLike[str]], *, recursive: bool = False, exclude: Sequence[Path] = ()
) -> tuple[list[InputImage], list[tuple[str, str]], int]:
    """Expand ``specs`` into images: ``(images, problems, ignored)``.

    - a file is taken as given (a broken one fails later, when it is read);
    - a folder contributes the images directly in it, or in its whole tree with ``recursive``; hidden
      files and folders and the ``exclude`` folders (the output folder) are skipped, symlink loops are
      cut, and files whose content is not an image are ignored (counted in ``ignored``);
    - a pattern with ``*``, ``?`` or ``[`` (``**`` for any depth) is expanded.

    Files found in a folder keep their sub-folder in ``rel_dir``, so the output mirrors the input tree.
    """
    excluded = {p.resolve() for p in exclude}
    found: list[InputImage] = []
    problems: list[tuple[str, str]] = []
    ignored = 0
    seen: set[Path] = set()

    def add(path: Path, rel_dir: Path) -> None:
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
            problems.append((str(path), f"cannot be followed ({exc}); skipped"))
            return
        if real in seen or any(real.is_relative_to(e) for e in excluded):
            return
        seen.add(real)
        found.append(InputImage(path, rel_dir, safe_stem(path.name)))

    for spec in specs:
        text = os.fspath(spec)
        path = Path(text)
        if path.exists():
            matches = [path]
        elif _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
        else:
            matches = []
        if not matches:
            problems.append((text, "no such file, folder or matching pattern"))
            continue
        for match in matches:
            if match.is_dir() and any(match.resolve().is_relative_to(e) for e in excluded):
                problems.append(
                    (
                        text,
                        "is the output folder (or inside it), whose files are never taken as inputs",
                    )
                )
                continue
            if match.is_dir():
                for file in _walk(match, recursive, excluded, problems):
                    if is_image(file):
                        add(file, file.parent.relative_to(match))
                    else:
                        ignored += 1
            elif match.is_file():
                if any(_hidden(part) for part in match.parts[-1:]) and match != path:
                    continue
                add(match, Path())
    return _unique_stems(found), problems, ignored
