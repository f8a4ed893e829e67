"""Every input's output names at once, as the manifest records them (``d0001/img/sobel_x.png``), for the resume
check (`featmap.run.resume`) and a URL store's.

A kernel job's names differ from input to input only in the input's folder, stem and suffix, so the job's own
`targets` is asked once, for a probe input whose stem and suffix are markers, and each input's names are that
template filled in (checked against the job's own answer on the batch's first input; an input the template cannot
stand for, or a network's, whose outputs follow the image's size, is asked one at a time). A batch of plain names
is filled in all at once (`str.replace` mapped over the inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter
from pathlib import Path, PurePosixPath
from typing import Any

from featmap.errors import FeatmapError
from featmap.io.discover import InputImage

__all__ = ["joined_names", "target_names"]

# Markers for a probe input's stem and suffix: characters no file name in a batch holds.
_STEM, _EXT = "\x1fstem\x1f", "\x1fext\x1f"
_UNSEEN = "\0"  # a folder not seen yet (no prefix holds a NUL)


def target_names(items: Sequence[Any], job: Any) -> list[list[str] | None]:
    """Each item's targets (`featmap.run.imagejob.targets_for`, in order) as names relative to the job's output
    folder, as the manifest records them; None for an item whose targets cannot be worked out (its name cannot
    be an output: processing it says why)."""
    return [None if names is None else names.split("\0") for names in joined_names(items, job)]


def joined_names(items: Sequence[Any], job: Any) -> list[str | None]:
    """`target_names`, each item's names NUL-joined in one string (a batch of 250,000 keeps 250,000 strings,
    not a million: the check splits them as it goes)."""
    out_dir = Path(job.output.out_dir)
    template = _template(job, out_dir)
    if template is not None and items and _names_by_template(items[0], template) != _names_of(items[0], job, out_dir):
        template = None  # the job names its outputs in a way the template does not follow: ask it for each
    if template is not None and not template[1]:
        found = _all_by_template(items, template[0])
        if found is not None:
            return found
    names: list[str | None] = []
    prefixes: dict[int, str | None] = {}
    for item in items:
        found_one = None
        if template is not None:
            found_one = _names_by_template(item, template, prefixes)
        names.append(found_one if found_one is not None else _names_of(item, job, out_dir))
    return names


def _all_by_template(items: Sequence[Any], text: str) -> list[str | None] | None:
    """`_names_by_template` of every item at once, for a template without the suffix, when every stem is a plain
    name and every folder a plain relative one (the usual batch); None otherwise (asked one at a time)."""
    stems = list(map(_STEM_OF, items))
    joined = "".join(stems)
    if "/" in joined or "\0" in joined or not _ODD_STEMS.isdisjoint(stems):
        return None
    folders = list(map(_REL_DIR_OF, items))
    keys = list(map(id, folders))
    found = {key: _prefix(folder) for key, folder in dict(zip(keys, folders, strict=True)).items()}
    prefixes = {key: prefix for key, prefix in found.items() if prefix is not None}
    if len(prefixes) != len(found):
        return None
    if "\1" in text or "\2" in text:
        return list(map(text.format, map(prefixes.__getitem__, keys), stems, repeat("")))
    marked = text.format("\1", "\2", "")  # `str.replace` fills in a name: twice as fast as `str.format`
    if marked.count("\1\2") == marked.count("\1") == marked.count("\2"):  # the stem right after the folder
        places = list(map(str.__add__, map(prefixes.__getitem__, keys), stems))
        return list(map(marked.replace("\1\2", "\1").replace, repeat("\1"), places))
    return [marked.replace("\1", prefixes[key]).replace("\2", stem) for key, stem in zip(keys, stems, strict=True)]


_STEM_OF, _REL_DIR_OF = attrgetter("stem"), attrgetter("rel_dir")
_ODD_STEMS = frozenset(("", ".", ".."))  # stems the template cannot stand for


def _template(job: Any, out_dir: Path) -> tuple[str, bool] | None:
    """The job's names of a probe input, NUL-joined, with ``{1}`` for the stem and ``{2}`` for the suffix (a
    `str.format` template), and whether the suffix is used; None for a job whose names depend on more (a
    network's layers follow the image's size)."""
    from featmap.run.jobs import ApplyJob

    if not isinstance(job, ApplyJob):
        return None
    probe = InputImage(Path(f"probe.{_EXT}"), Path(), _STEM)
    try:
        names = [_relative(p, out_dir) for p in job.targets(probe).values()]
    except (FeatmapError, ValueError):
        return None
    if any(n is None or "\0" in n for n in names):
        return None
    text = "\0".join("{0}" + str(n).replace("{", "{{").replace("}", "}}") for n in names)
    return text.replace(_STEM, "{1}").replace(_EXT, "{2}"), _EXT in text


def _names_by_template(
    item: Any, template: tuple[str, bool], prefixes: dict[int, str | None] | None = None
) -> str | None:
    """``item``'s names from the job's template, or None where the template cannot stand for the job (a stem
    that is not a plain name, an empty suffix where the pattern uses it, an unusual folder)."""
    text, uses_ext = template
    stem = item.stem
    if not stem or stem in (".", "..") or "/" in stem or "\0" in stem:
        return None
    ext = _suffix(item) if uses_ext else ""
    if uses_ext and (not ext or "/" in ext or "\0" in ext):
        return None
    rel_dir = item.rel_dir
    prefix = prefixes.get(id(rel_dir), _UNSEEN) if prefixes is not None else _UNSEEN  # a batch's folders are shared
    if prefix is _UNSEEN:
        prefix = _prefix(rel_dir)
        if prefixes is not None:
            prefixes[id(rel_dir)] = prefix
    if prefix is None:
        return None
    return text.format(prefix, stem, ext)


def _suffix(item: Any) -> str:
    """``item.path.suffix`` without its dot, from the resolved path's text where discovery kept it (the same last
    name for a plain file)."""
    resolved = getattr(item, "resolved", None)
    if resolved is None:
        return str(item.path.suffix).lstrip(".")
    name = resolved[resolved.rfind("/") + 1 :]
    dot = name.rfind(".")
    return name[dot + 1 :] if 0 < dot < len(name) - 1 else ""


def _prefix(rel_dir: Any) -> str | None:
    """``rel_dir`` as the start of a name under the output folder (``""`` or ``"a/b/"``), or None for a folder
    that is not a plain relative one."""
    rel = PurePosixPath(Path(rel_dir).as_posix())
    if rel.is_absolute() or any(part in ("..", "") or "\0" in part for part in rel.parts):
        return None
    return "" if rel.parts == () else rel.as_posix() + "/"


def _names_of(item: Any, job: Any, out_dir: Path) -> str | None:
    """``item``'s names from the job itself (`featmap.run.imagejob.targets_for`), NUL-joined."""
    from featmap.run.imagejob import targets_for

    try:
        targets = targets_for(InputImage(item.path, item.rel_dir, item.stem), job)
    except FeatmapError:
        return None
    names = [_relative(p, out_dir) for p in targets.values()]
    if not names or any(n is None or "\0" in n for n in names):
        return None
    return "\0".join(str(n) for n in names)


def _relative(path: Path, out_dir: Path) -> str | None:
    """``path`` relative to ``out_dir`` as the manifest writes it, or None when it is not inside."""
    text, root = str(path), str(out_dir)
    if text.startswith(root + "/") and "/." not in text and "//" not in text:
        return text[len(root) + 1 :]
    try:
        return path.relative_to(out_dir).as_posix()
    except ValueError:
        return None
