"""Reading the YAML and JSON files featmap takes (kernel files, layer-spec files), safely, with one-line errors.

Before a document is built, its size, nesting depth, YAML alias expansion and number of values are
checked against `featmap.limits` (a billion-laughs file, 100,000 nested brackets, an alias inside its
own anchor or a 2300×2300 matrix is refused within a second, not expanded, recursed into or parsed
for minutes). Numbers are read as a user writes them: YAML 1.1 takes ``1e-3`` for a string (its
float rule wants a dot), here it is the float 0.001, as in YAML 1.2 and JSON.
"""

from __future__ import annotations

import json
import re
import stat
from functools import lru_cache
from pathlib import Path
from typing import Any

from featmap.errors import FeatmapError
from featmap.limits import DEPTH, FILE_SIZE, FILE_VALUES, YAML_ALIAS_NODES

__all__ = ["check_depth", "parse_yaml", "read_document"]

# YAML 1.2 core schema floats that YAML 1.1 misses: an exponent without a dot (1e-3, 2E+5, -3e2) or without a
# sign (1.0e30, .5e3; YAML 1.1's float rule wants ``1.0e+30``).
_FLOAT_WITHOUT_DOT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


def read_document(path: Path, error: type[FeatmapError], missing_fix: str) -> Any:
    """Parse ``path`` as JSON (``.json``) or YAML (safe loader, anything else).

    Every failure raises ``error`` naming the file; syntax errors give the line and column; a file
    over a limit raises `LimitError`.
    """
    if "\x00" in str(path):  # no file can have that name (os.stat would raise ValueError)
        raise error(str(path), "is not a valid path (it holds a NUL character)", missing_fix)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):  # a pipe would be read forever
            raise error(str(path), "is not a regular file (a pipe or a device)", "give a YAML or JSON file")
        FILE_SIZE.check(info.st_size, str(path))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(str(path), "no such file", missing_fix) from None
    except IsADirectoryError:
        raise error(str(path), "is a folder, not a file", missing_fix) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(str(path), f"cannot be read ({exc})", "give a UTF-8 YAML or JSON file") from None
    FILE_SIZE.check(len(text.encode("utf-8")), str(path))  # a special file (a pipe) has no size up front
    check_values(text, str(path))
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(
                str(path), f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", "fix the syntax"
            ) from None
        except RecursionError:
            DEPTH.check(DEPTH.value() + 1, f"{path}: nesting")
            raise  # not reached: the check above raises
        check_depth(doc, str(path))
        return doc
    return parse_yaml(text, str(path), error)


def check_depth(doc: Any, where: str) -> None:
    """Raise `LimitError` when lists and mappings in ``doc`` nest deeper than the depth limit.

    Iterative, so a deep document cannot exhaust the stack. Shared values (YAML aliases) are
    visited once.

    Examples
    --------
    >>> check_depth({"a": [[1, 2], {"b": 3}]}, "x.yaml")
    >>> deep = []
    >>> for _ in range(100):
    ...     deep = [deep]
    >>> check_depth(deep, "x.yaml")
    Traceback (most recent call last):
    ...
    featmap.errors.LimitError: x.yaml: nesting: 65 exceeds the nesting depth limit of 64 (levels); ...
    """
    limit = DEPTH.value()
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, (list, dict)) or id(value) in seen:
            continue
        if depth > limit:
            DEPTH.check(depth, f"{where}: nesting")
        seen.add(id(value))
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))


@lru_cache(maxsize=1)
def _loader() -> Any:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader is ~10x faster

    class Loader(base):  # type: ignore[misc,valid-type]  # a runtime-chosen base
        """The safe loader, with YAML 1.2's exponent floats."""

    Loader.yaml_implicit_resolvers = {k: list(v) for k, v in base.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+.0123456789"))
    return Loader


def _scan(text: str, where: str, loader: Any, error: type[FeatmapError]) -> None:
    """Walk the parser's events (no recursion, nothing built) to enforce depth and alias-expansion limits.

    Each node counts 1; an alias counts the size of what its anchor holds, as if expanded.
    """
    import yaml

    depth_limit, alias_limit = DEPTH.value(), YAML_ALIAS_NODES.value()
    open_anchors: set[str] = set()
    sizes: dict[str, int] = {}
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, size so far) of each open collection
    added = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            open_nodes.append((event.anchor, 1))
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            if len(open_nodes) > depth_limit:
                line = event.start_mark.line + 1 if event.start_mark else 0
                DEPTH.check(len(open_nodes), f"{where}: line {line}: nesting")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, size = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = size
                open_anchors.discard(anchor)
            if open_nodes:
                parent_anchor, parent_size = open_nodes[-1]
                open_nodes[-1] = (parent_anchor, parent_size + size)
        elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
            size = 1
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in open_anchors:  # `&a [*a]`: a value that holds itself, endless when walked
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    raise error(
                        f"{where}: line {line}: alias *{event.anchor}",
                        f"refers to its own anchor &{event.anchor} (a value that contains itself)",
                        "write the value out, or point the alias at a finished value",
                    )
                size = sizes.get(event.anchor or "", 1)
                added += size
                if added > alias_limit:
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    YAML_ALIAS_NODES.check(added, f"{where}: line {line}: alias *{event.anchor}")
            elif event.anchor is not None:
                sizes[event.anchor] = 1
            if open_nodes:
                parent_anchor, parent_size = open_nodes[-1]
                open_nodes[-1] = (parent_anchor, parent_size + size)


def check_values(text: str, where: str) -> None:
    """Refuse a YAML or JSON document holding more values than the limit, before parsing it (a YAML
    parser builds ~40,000 Python values a second: a 2300×2300 matrix would take minutes; JSON parses
    fast, but 400,000 branches of a spec still take seconds to walk).

    The count is an estimate from separators (commas and line ends), so it costs one pass over the
    text: ~30 ms for the largest file the size limit allows.

    Examples
    --------
    >>> check_values("weights: [[1, 2], [3, 4]]", "k.yaml")
    >>> check_values("[" + ", ".join(["1"] * 300_000) + "]", "k.yaml")
    Traceback (most recent call last):
    ...
    featmap.errors.LimitError: k.yaml: values (estimated from commas and lines): 300,000 exceeds the file values ...
    """
    count = text.count(",") + text.count("\n") + 1
    if count > FILE_VALUES.value():
        FILE_VALUES.check(count, f"{where}: values (estimated from commas and lines)")


def parse_yaml(text: str, where: str, error: type[FeatmapError]) -> Any:
    """Parse YAML ``text`` safely (limits first, then the safe loader); errors name ``where``.

    Examples
    --------
    >>> parse_yaml("scale: 1e-3\\nsize: 5", "k.yaml", FeatmapError)
    {'scale': 0.001, 'size': 5}
    """
    import yaml

    check_values(text, where)
    loader = _loader()
    try:
        _scan(text, where, loader, error)
        return yaml.load(text, Loader=loader)  # a safe loader either way
    except FeatmapError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(where, f"invalid YAML{at}: {str(problem)[:200]}", "fix the syntax") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor's own error: a bad date, a huge base-60
        raise error(where, f"invalid YAML value ({str(exc)[:200]})", "fix the value") from None
