"""Kernels as data: the `Kernel` record, YAML/JSON kernel files, the kernel library and ``-k`` lookup.

A kernel file holds one kernel (a mapping with ``name``), a list of them, or a mapping with a
``kernels`` list. Every error names the file, the kernel and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .documents import read_document
from .errors import KernelFileError
from .generators import GENERATORS, generate, rotations

__all__ = [
    "KERNEL_PATH_ENV",
    "Kernel",
    "KernelBank",
    "KernelLibrary",
    "builtin_kernel_dir",
    "load_kernel_file",
    "parametric_kernel",
]

#: Environment variable naming extra kernel folders or files, separated by ``os.pathsep``.
KERNEL_PATH_ENV = "FEATMAP_KERNEL_PATH"
KERNEL_SUFFIXES = (".yaml", ".yml", ".json")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_KEYS = {
    "name",
    "weights",
    "generate",
    "bias",
    "scale",
    "normalize",
    "description",
    "tags",
    "source",
    "rotations",
}


@dataclass(frozen=True, eq=False)
class Kernel:
    """One named filter.

    Attributes
    ----------
    name : str
        Letters, digits, ``_`` and ``-``; safe to use in a file name.
    weights : ndarray, shape (kh, kw) or (C, kh, kw)
        float32, read-only. ``(kh, kw)`` filters each channel; ``(C, kh, kw)`` sums over channels.
    bias : float or None
        Added after the sum; None means the filter has no bias parameter.
    description, source : str
        What it does; where the weights come from.
    tags : tuple of str
        Groups it belongs to (``edges``, ``blur``…); ``-k TAG`` selects them all.
    origin : str
        The file it came from, or ``parametric``.

    Examples
    --------
    >>> k = Kernel("delta", np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]]))
    >>> k.size, k.weights.dtype.name
    ((3, 3), 'float32')
    """

    name: str
    weights: NDArray[np.floating]
    bias: float | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    source: str = ""
    origin: str = ""

    def __post_init__(self) -> None:
        w = np.array(self.weights, dtype=np.float32)
        w.setflags(write=False)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "tags", tuple(self.tags))

    @property
    def size(self) -> tuple[int, int]:
        """``(kh, kw)``."""
        return (int(self.weights.shape[-2]), int(self.weights.shape[-1]))

    @property
    def per_channel(self) -> bool:
        """True when the weights are ``(C, kh, kw)``: one slice per input channel."""
        return self.weights.ndim == 3


@dataclass(frozen=True)
class KernelBank:
    """An ordered selection of kernels with unique names, as applied in one run.

    Examples
    --------
    >>> bank = KernelBank((parametric_kernel("box:size=3"),))
    >>> bank.names
    ('box-size3',)
    """

    kernels: tuple[Kernel, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for k in self.kernels:
            if k.name in seen:
                raise KernelFileError(
                    k.origin or k.name,
                    f"kernel {k.name!r} is selected twice",
                    "select each kernel once (a tag may already include it)",
                )
            seen.add(k.name)

    def __iter__(self) -> Iterator[Kernel]:
        return iter(self.kernels)

    def __len__(self) -> int:
        return len(self.kernels)

    @property
    def names(self) -> tuple[str, ...]:
        """The kernels' names in order."""
        return tuple(k.name for k in self.kernels)


def _fmt_number(value: float) -> str:
    text = f"{value:g}".replace("-", "m").replace(".", "p").replace("+", "")
    return text


def parametric_kernel(text: str) -> Kernel:
    """Make a kernel from ``generator:key=value,…``, e.g. ``gaussian:size=5,sigma=1.2``.

    The kernel's name spells out the arguments so that outputs stay apart.

    Examples
    --------
    >>> k = parametric_kernel("gaussian:size=5,sigma=1.2")
    >>> k.name, k.size
    ('gaussian-size5-sigma1p2', (5, 5))
    """
    gen, _, args = text.partition(":")
    gen = gen.strip().lower()
    params: dict[str, float] = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise KernelFileError(text, f"argument {item!r} has no value", f"write it as key=value, e.g. {gen}:size=5")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise KernelFileError(text, f"`{key.strip()}` must be a number; got {value!r}") from None
    weights = generate(gen, **params)
    name = "-".join([gen] + [f"{k}{_fmt_number(v)}" for k, v in params.items()])
    described = ", ".join(f"{k}={v:g}" for k, v in params.items()) or "defaults"
    return Kernel(
        name,
        weights,
        description=f"{gen} kernel ({described})",
        tags=("parametric",),
        source="generated",
        origin="parametric",
    )


def _entries(doc: Any, where: str) -> list[Any]:
    if isinstance(doc, Mapping) and "kernels" in doc:
        doc = doc["kernels"]
    elif isinstance(doc, Mapping) and "name" in doc:
        doc = [doc]
    if not isinstance(doc, list):
        kind = "empty" if doc is None else f"a {type(doc).__name__}"
        raise KernelFileError(
            where,
            f"is {kind}, not a kernel list",
            "write a list of kernels, a mapping with a `kernels:` list, or one kernel with `name:`",
        )
    if not doc:
        raise KernelFileError(where, "holds no kernels", "add at least one kernel")
    return doc


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise KernelFileError(where, f"must be a number; got {value!r}")
    if not np.isfinite(value):
        raise KernelFileError(where, f"must be finite; got {value!r}", "use a finite number")
    return float(value)


def _matrix(rows: Any, where: str) -> NDArray[np.float64]:
    if not isinstance(rows, list) or not rows:
        raise KernelFileError(where, "must be a non-empty list of rows", "e.g. [[0, 1, 0], [1, -4, 1], [0, 1, 0]]")
    width = None
    out = []
    for r, row in enumerate(rows, start=1):
        if not isinstance(row, list) or not row:
            raise KernelFileError(where, f"row {r} is not a non-empty list of numbers; got {row!r}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise KernelFileError(
                where,
                f"row {r} has {len(row)} values but row 1 has {width}",
                "give every row the same length",
            )
        out.append([_number(v, f"{where} row {r}") for v in row])
    return np.array(out, dtype=np.float64)


def _weights(value: Any, where: str) -> NDArray[np.float64]:
    if (
        isinstance(value, list)
        and value
        and all(isinstance(r, list) and r and all(isinstance(c, list) for c in r) for r in value)
    ):
        slices = [_matrix(m, f"{where}[{c}]") for c, m in enumerate(value)]
        if len({s.shape for s in slices}) != 1:
            raise KernelFileError(where, "per-channel matrices differ in size", "give every channel the same size")
        return np.stack(slices)
    return _matrix(value, where)


def _kernel_from_entry(entry: Any, index: int, path: str) -> list[Kernel]:
    if not isinstance(entry, Mapping):
        raise KernelFileError(f"{path}: kernel #{index + 1}", f"is a {type(entry).__name__}, not a mapping")
    name = entry.get("name")
    label = f"{path}: kernel #{index + 1}" if not isinstance(name, str) else f"{path}: kernel {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise KernelFileError(
            f"{label}: `name`",
            f"must be letters, digits, '_' or '-' (at most 64, not starting with '_' or '-'); got {name!r}",
            "rename the kernel",
        )
    unknown = set(entry) - _KEYS
    if unknown:
        raise KernelFileError(
            f"{label}: `{sorted(unknown)[0]}`", "is not a kernel key", f"use: {', '.join(sorted(_KEYS))}"
        )
    if ("weights" in entry) == ("generate" in entry):
        raise KernelFileError(
            f"{label}: `weights`",
            "is missing" if "weights" not in entry else "and `generate` are both given",
            "give a matrix of numbers as `weights`, or `generate: gaussian:size=5,sigma=1.2`",
        )
    if "generate" in entry:
        recipe = entry["generate"]
        if not isinstance(recipe, str) or recipe.partition(":")[0].strip().lower() not in GENERATORS:
            raise KernelFileError(
                f"{label}: `generate`",
                f"must name a generator; got {recipe!r}",
                f"use one of: {', '.join(GENERATORS)}",
            )
        try:
            weights = parametric_kernel(recipe).weights.astype(np.float64)
        except KernelFileError as exc:
            raise KernelFileError(f"{label}: `generate`", str(exc)) from None
    else:
        weights = _weights(entry["weights"], f"{label}: `weights`")
    if "scale" in entry and entry.get("normalize"):
        raise KernelFileError(label, "has both `scale` and `normalize`", "keep one")
    if "scale" in entry:
        weights = weights * _number(entry["scale"], f"{label}: `scale`")
    normalize = entry.get("normalize", False)
    if not isinstance(normalize, bool):
        raise KernelFileError(f"{label}: `normalize`", f"must be true or false; got {normalize!r}")
    if normalize:
        total = weights.sum()
        if abs(total) < 1e-12:
            raise KernelFileError(
                f"{label}: `normalize`",
                "the weights sum to 0, so they cannot be divided by their sum",
                "remove `normalize` (edge kernels sum to 0 by design) or use `scale`",
            )
        weights = weights / total
    bias = None if entry.get("bias") is None else _number(entry["bias"], f"{label}: `bias`")
    tags = entry.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) and _NAME.match(t) for t in tags):
        raise KernelFileError(f"{label}: `tags`", f"must be a list of simple words; got {tags!r}")
    text = {}
    for key in ("description", "source"):
        value = entry.get(key, "")
        if not isinstance(value, str):
            raise KernelFileError(f"{label}: `{key}`", f"must be text; got {value!r}")
        text[key] = value.strip()
    count = entry.get("rotations", 1)
    if isinstance(count, bool) or count not in (1, 2, 4, 8):
        raise KernelFileError(f"{label}: `rotations`", f"must be 1, 2, 4 or 8; got {count!r}")
    if count == 1:
        return [Kernel(name, weights, bias, text["description"], tuple(tags), text["source"], path)]
    try:
        turned = rotations(weights, count)
    except KernelFileError as exc:
        raise KernelFileError(f"{label}: `rotations`", exc.problem, "use rotations: 4 for non-3x3 kernels") from None
    return [
        Kernel(
            f"{name}_{angle}",
            w,
            bias,
            f"{text['description']} (turned {angle}°)".strip(),
            (*tags, name),
            text["source"],
            path,
        )
        for angle, w in turned
    ]


def load_kernel_file(path: str | os.PathLike[str]) -> list[Kernel]:
    """Read every kernel in a YAML or JSON file, validating as it goes.

    Raises `KernelFileError` naming the file, the kernel and the key on any problem.
    """
    p = Path(path)
    doc = read_document(p, KernelFileError, "check the path")
    kernels: list[Kernel] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(_entries(doc, str(p))):
        for k in _kernel_from_entry(entry, index, str(p)):
            if k.name in seen:
                raise KernelFileError(
                    f"{p}: kernel {k.name!r}",
                    f"has the same name as kernel #{seen[k.name] + 1}",
                    "rename one",
                )
            seen[k.name] = index
            kernels.append(k)
    return kernels


def builtin_kernel_dir() -> Path:
    """The folder of kernels shipped with featmap.

    Installed, it is ``featmap/builtin_kernels`` (the wheel maps the repository's ``kernels/`` there);
    in a source checkout it is ``kernels/`` beside the package.
    """
    here = Path(__file__).resolve().parent
    installed = here / "builtin_kernels"
    if any(installed.glob("*.yaml")):
        return installed
    return here.parent / "kernels"


def _kernel_files(location: Path) -> list[Path]:
    if location.is_file():
        return [location]
    if location.is_dir():
        return sorted(
            p for p in location.iterdir() if p.suffix.lower() in KERNEL_SUFFIXES and not p.name.startswith(".")
        )
    raise KernelFileError(str(location), "is not a kernel file or folder", "check the path")


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
        locations.append(builtin_kernel_dir())
        self.locations: tuple[Path, ...] = tuple(locations)
        self._kernels: dict[str, Kernel] = {}
        for location in self.locations:
            here: dict[str, Kernel] = {}
            for file in _kernel_files(location):
                for k in load_kernel_file(file):
                    if k.name in here:
                        raise KernelFileError(
                            f"{file}: kernel {k.name!r}",
                            f"is also defined in {here[k.name].origin}",
                            "rename one",
                        )
                    here[k.name] = k
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
                    f"{path_part}: kernel {name_part!r}",
                    "is not in the file",
                    f"use one of: {', '.join(k.name for k in kernels)}",
                )
            return chosen
        if text in self._kernels:
            return [self._kernels[text]]
        tagged = self.tags().get(text)
        if tagged:
            return [self._kernels[n] for n in tagged]
        raise KernelFileError(
            text,
            "is not a kernel, tag, kernel file or parametric kernel",
            f"see `featmap kernels list`, or write e.g. gaussian:size=5,sigma=1.2 ({', '.join(GENERATORS)})",
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
