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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import field, replace
from itertools import groupby, repeat
from operator import attrgetter
from pathlib import Path

from featmap.frozen import frozen_dataclass
from featmap.io.bulk import bulk_objects
from featmap.io.images import IMAGE_SUFFIXES, is_image
from featmap.io.outputs import safe_stem

__all__ = ["FetchedImage", "InputImage", "discover"]

_GLOB_CHARS = set("*?[")


@frozen_dataclass
class InputImage:
    """One input: its path, the folder it maps to under the output folder, and its output stem; ``resolved``:
    ``str(path.resolve())`` where discovery worked it out (a plain file of a folder it listed), else None."""

    path: Path
    rel_dir: Path
    stem: str
    resolved: str | None = field(default=None, compare=False, repr=False, kw_only=True)

    @property
    def source(self) -> str | None:
        """Where ``path`` was fetched from (`FetchedImage`); None: the file was given as it is."""
        return None


@frozen_dataclass
class FetchedImage(InputImage):
    """A remote input's local copy (``path``, in a back end's temporary folder) and the URL it came from, which
    every page and record names instead of the copy."""

    url: str = ""

    @property
    def source(self) -> str | None:
        """The URL the copy was fetched from."""
        return self.url


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(
    root: Path, recursive: bool, exclude: set[Path], problems: list[tuple[str, str]] | None = None
) -> Iterable[tuple[Path, str, list[tuple[str, str, bool]]]]:
    """Each folder under ``root`` with its files in sorted order: ``(folder, its resolved path, [(path, name,
    is a symlink)])`` (a folder resolved once, not a file at a time: a batch may hold 10⁵ files); hidden
    entries and ``exclude`` skipped; symlink loops cut.

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
        files = []
        for entry in entries:
            if entry.name[0] == ".":  # hidden
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks; `seen` stops loops between folders
                is_file = not is_dir and entry.is_file()
                link = entry.is_symlink()
                if not is_dir and not is_file and link:
                    os.stat(entry.path)  # raises for a loop or a dangling link
            except OSError as exc:
                if problems is not None:
                    problems.append((str(Path(entry.path)), f"cannot be followed ({exc.strerror}); skipped"))
                continue
            if is_dir:
                if recursive:
                    subdirs.append(Path(entry.path))
            elif is_file:
                files.append((entry.path, entry.name, link))
        yield folder, str(real), files
        stack.extend(reversed(subdirs))


def _child_maker(folder: Path) -> Callable[[str], Path]:
    """``lambda name: folder / name`` for plain file names: pathlib's own shortcut for a listed name where this
    Python has it (``Path.glob`` uses it; 0.4 µs where ``/`` takes 1.2 and ``Path(text)`` 2.5), with the path's
    text set as ``str`` would work it out (a resume names 10⁵ skipped inputs; ``str`` then costs nothing). Each
    shortcut is used only where it gives exactly pathlib's own path."""
    make = getattr(folder, "_make_child_relpath", None)
    if make is None or not isinstance(make("x"), Path) or make("x") != folder / "x":
        return folder.joinpath
    if str(folder) in ("", ".", "/"):
        return make  # type: ignore[no-any-return]
    prefix = f"{folder}/"

    def child(name: str) -> Path:
        path: Path = make(name)
        path._str = prefix + name  # type: ignore[attr-defined]
        return path

    try:
        probe: Path | None = child("x")
    except AttributeError:  # a pathlib without the slot
        probe = None
    if probe is None or str(probe) != str(folder / "x") or probe.parts != (folder / "x").parts:
        return make  # type: ignore[no-any-return]
    return child


def _input(path: Path, rel_dir: Path, stem: str, resolved: str) -> InputImage:
    """``InputImage(path, rel_dir, stem, resolved=resolved)``, made as a frozen dataclass's ``__init__`` makes it,
    without its ``object.__setattr__`` calls (a folder of 10⁵ images)."""
    item = _NEW(InputImage)
    _SET(item, "__dict__", {"path": path, "rel_dir": rel_dir, "stem": stem, "resolved": resolved})
    return item


_NEW, _SET = object.__new__, object.__setattr__


def _stem(name: str) -> str:
    """`safe_stem` of a file's name, the usual case (``photo.jpg``) without a `Path`."""
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 and name[0] != "." else safe_stem(name)


def _unique_stems(items: list[InputImage]) -> list[InputImage]:
    """Give inputs that would write to the same place distinct stems: ``a.png``/``a.jpg`` → ``a_png``/``a_jpg``,
    and a numeric suffix if that still collides (same name in two folders given at once)."""
    places: dict[str, set[str]] = {}
    for rel_dir, group in groupby(items, key=attrgetter("rel_dir")):  # a folder's inputs are together
        places.setdefault(str(rel_dir), set()).update(map(attrgetter("stem"), group))
    if sum(map(len, places.values())) == len(items):
        return items  # no two alike (the usual case, told apart as text: a `Path`'s hash is slow)
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
    with bulk_objects():  # 10⁵ inputs that stay alive: not scanned for cycles as they are made
        return _discover(specs, recursive=recursive, exclude=exclude)


def _discover(
    specs: Sequence[str | os.PathLike[str]], *, recursive: bool, exclude: Sequence[Path]
) -> tuple[list[InputImage], list[tuple[str, str]], int]:
    """`discover`."""
    excluded = {p.resolve() for p in exclude}
    excluded_text = [str(e) for e in excluded]
    excluded_set = set(excluded_text)
    found: list[InputImage] = []
    problems: list[tuple[str, str]] = []
    ignored = 0
    seen: set[str] = set()

    def add(path: Path, rel_dir: Path) -> None:
        try:
            real = str(path.resolve())
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
            problems.append((str(path), f"cannot be followed ({exc}); skipped"))
            return
        if real in seen or any(_within(real, e) for e in excluded_text):
            return
        seen.add(real)
        found.append(InputImage(path, rel_dir, safe_stem(path.name), resolved=real))

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
                for folder, real, files in _walk(match, recursive, excluded, problems):
                    rel_dir = folder.relative_to(match)
                    prefix = real.rstrip("/") + "/"
                    inside = any(_within(real, e) for e in excluded_text)  # its files are excluded too
                    child = _child_maker(folder)
                    if not inside and _add_plain(files, prefix, rel_dir, child, seen, excluded_set, found):
                        continue
                    for text, name, link in files:
                        dot = name.rfind(".")
                        known = 0 < dot < len(name) - 1 and name[dot:].lower() in IMAGE_SUFFIXES
                        if not known and not is_image(text):
                            ignored += 1
                        elif link or inside:
                            add(Path(text), rel_dir)
                        elif (resolved := prefix + name) not in seen and resolved not in excluded_text:
                            seen.add(resolved)  # `add`, for a plain file in a folder already resolved
                            stem = name[:dot] if known and name[0] != "." else safe_stem(name)
                            found.append(_input(child(name), rel_dir, stem, resolved))
            elif match.is_file():
                if any(_hidden(part) for part in match.parts[-1:]) and match != path:
                    continue
                add(match, Path())
            elif match == path:  # named, not matched by a pattern: say what it is
                problems.append((text, "is not an image file or a folder (a pipe or a device)"))
    return _unique_stems(found), problems, ignored


def _add_plain(
    files: list[tuple[str, str, bool]],
    prefix: str,
    rel_dir: Path,
    child: Callable[[str], Path],
    seen: set[str],
    excluded: set[str],
    found: list[InputImage],
) -> bool:
    """`discover`'s loop for a folder's files at once, in the usual case: no symlink, every name an image's,
    none seen before; False (nothing done) otherwise."""
    if any(link for _, _, link in files):
        return False
    names = [name for _, name, _ in files]
    stems = [name[:dot] if 0 < (dot := name.rfind(".")) < len(name) - 1 else "" for name in names]
    if not all(name[len(stem) :].lower() in IMAGE_SUFFIXES for name, stem in zip(names, stems, strict=True) if stem):
        return False
    resolved = [prefix + name for name in names]
    if "" in stems or not seen.isdisjoint(resolved) or not excluded.isdisjoint(resolved):
        return False
    seen.update(resolved)
    found.extend(map(_input, map(child, names), repeat(rel_dir), stems, resolved))
    return True


def _within(path: str, folder: str) -> bool:
    """``Path(path).is_relative_to(folder)`` for resolved paths, as text."""
    return path == folder or path.startswith(folder if folder.endswith("/") else folder + "/")
