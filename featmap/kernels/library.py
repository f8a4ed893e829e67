"""The kernel library: named kernels from folders searched in order, and the ``-k`` lookup."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from featmap.errors import KernelFileError, brief
from featmap.kernels.compiled import builtin_kernel_dir, builtin_records
from featmap.kernels.files import KERNEL_SUFFIXES, load_kernel_file
from featmap.kernels.generators import GENERATORS
from featmap.kernels.parametric import parametric_kernel
from featmap.kernels.records import Kernel, KernelBank
from featmap.limits import KERNELS

__all__ = ["KERNEL_PATH_ENV", "KernelLibrary", "builtin_kernel_dir"]

#: Environment variable naming extra kernel folders or files, separated by ``os.pathsep``.
KERNEL_PATH_ENV = "FEATMAP_KERNEL_PATH"


def _cut(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _kernel_files(location: Path) -> list[Path]:
    if location.is_file():
        return [location]
    if location.is_dir():
        found: list[Path] = []
        limit = KERNELS.value()
        for p in location.iterdir():  # counted while listing: a folder of 200,000 files is refused at once
            if p.suffix.lower() in KERNEL_SUFFIXES and not p.name.startswith("."):
                found.append(p)
                if len(found) > limit:
                    KERNELS.check(len(found), f"{location}: more than {limit:,} kernel files")
        return sorted(found)
    raise KernelFileError(str(location), "is not a kernel file or folder", "check the path")


def _kernels_by_file(location: Path, builtin: bool) -> Iterator[tuple[Path, list[Kernel]]]:
    """Each kernel file of ``location`` with its kernels, read one after the other (the ``builtin`` folder's
    from their compiled form when it matches them, `featmap.kernels.compiled`)."""
    files = _kernel_files(location)
    compiled = builtin_records(files) if builtin else None
    if compiled is not None:
        yield from compiled
        return
    for file in files:
        yield file, load_kernel_file(file)


class KernelLibrary:
    """Named kernels from folders searched in order: ``--kernel-dir``, ``FEATMAP_KERNEL_PATH``, built-ins.

    A name found in an earlier folder hides the same name in a later one, so a user can override a
    built-in kernel; within one folder a name must be unique.

    Examples
    --------
    >>> lib = KernelLibrary()
    >>> lib["sobel_x"].size
    (3, 3)
    >>> [k.name for k in lib.select("sobel_x")]
    ['sobel_x']
    """

    def __init__(self, extra: Iterable[str | os.PathLike[str]] = (), *, use_env: bool = True) -> None:
        locations = [Path(p) for p in extra]
        if use_env:
            locations += [Path(p) for p in os.environ.get(KERNEL_PATH_ENV, "").split(os.pathsep) if p]
        builtin = builtin_kernel_dir()
        locations.append(builtin)
        self.locations: tuple[Path, ...] = tuple(locations)
        self._kernels: dict[str, Kernel] = {}
        total, kernel_limit = 0, KERNELS.value()
        for location in self.locations:
            here: dict[str, Kernel] = {}
            for file, kernels in _kernels_by_file(location, location == builtin):
                for k in kernels:
                    if k.name in here:
                        raise KernelFileError(
                            f"{file}: kernel {k.name!r}",
                            f"is also defined in {here[k.name].origin}",
                            "rename one",
                        )
                    here[k.name] = k
                    total += 1
                    if total > kernel_limit:
                        KERNELS.check(total, f"{file}: kernels so far")
            for name, k in here.items():
                self._kernels.setdefault(name, k)

    def __getitem__(self, name: str) -> Kernel:
        return self._kernels[name]

    def __contains__(self, name: object) -> bool:
        return name in self._kernels

    def __iter__(self) -> Iterator[Kernel]:
        return iter(self._kernels.values())

    def tags(self) -> dict[str, list[str]]:
        """Every tag with the names of the kernels that carry it."""
        groups: dict[str, list[str]] = {}
        for k in self:
            for tag in k.tags:
                groups.setdefault(tag, []).append(k.name)
        return groups

    def select(self, spec: str) -> list[Kernel]:
        """Resolve one ``-k`` value to kernels.

        ``NAME`` (a library kernel), ``TAG`` (every kernel with that tag), ``FILE.yaml`` (every kernel
        in it), ``FILE.yaml:NAME``, or a parametric kernel ``gaussian:size=5,sigma=1.2``.
        """
        text = spec.strip()
        head, colon, tail = text.partition(":")
        if not colon and text in self._kernels:
            return [self._kernels[text]]
        if not colon and text in self.tags():
            return [self._kernels[n] for n in self.tags()[text]]
        if head.lower() in GENERATORS and (not colon or "=" in tail or not tail):
            return [parametric_kernel(text)]
        path_part, name_part = text, ""
        for suffix in KERNEL_SUFFIXES:
            marker = suffix + ":"
            if marker in text.lower():
                cut = text.lower().rindex(marker) + len(suffix)
                path_part, name_part = text[:cut], text[cut + 1 :]
                break
        if Path(path_part).suffix.lower() in KERNEL_SUFFIXES or os.sep in path_part:
            kernels = load_kernel_file(path_part)
            if not name_part:
                return kernels
            chosen = [k for k in kernels if k.name == name_part or name_part in k.tags]
            if not chosen:
                raise KernelFileError(
                    f"{_cut(path_part)}: kernel {brief(name_part)}",
                    "is not in the file",
                    f"use one of: {', '.join(k.name for k in kernels)}",
                )
            return chosen
        if text in self._kernels:
            return [self._kernels[text]]
        tagged = self.tags().get(text)
        if tagged:
            return [self._kernels[n] for n in tagged]
        import difflib

        close = difflib.get_close_matches(text, [*self._kernels, *self.tags()], n=3, cutoff=0.75)
        raise KernelFileError(
            _cut(text),
            "is not a kernel, tag, kernel file or parametric kernel",
            f"did you mean {' or '.join(close)}? (see `featmap kernels list`)"
            if close
            else f"see `featmap kernels list`, or write e.g. gaussian:size=5,sigma=1.2 ({', '.join(GENERATORS)})",
        )

    def bank(self, specs: Sequence[str]) -> KernelBank:
        """Resolve several ``-k`` values into one `KernelBank`, in order, dropping exact repeats."""
        chosen: dict[str, Kernel] = {}
        for spec in specs:
            for k in self.select(spec):
                if (
                    k.name in chosen
                    and chosen[k.name] is not k
                    and not (chosen[k.name].origin == "parametric" and k.origin == "parametric")
                ):
                    raise KernelFileError(
                        f"{k.origin}: kernel {k.name!r}",
                        f"has the same name as the kernel from {chosen[k.name].origin}",
                        "rename one, or select only one of them",
                    )
                chosen.setdefault(k.name, k)
        if not chosen:
            raise KernelFileError("-k", "no kernel selected", "pass -k NAME (see `featmap kernels list`)")
        return KernelBank(tuple(chosen.values()))
