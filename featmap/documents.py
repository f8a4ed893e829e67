"""Reading the YAML and JSON files featmap takes (kernel files, layer-spec files), with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import FeatmapError

__all__ = ["read_document"]


def read_document(path: Path, error: type[FeatmapError], missing_fix: str) -> Any:
    """Parse ``path`` as JSON (``.json``) or YAML (safe loader, anything else).

    Every failure raises ``error`` naming the file; syntax errors give the line and column.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(str(path), "no such file", missing_fix) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(str(path), f"cannot be read ({exc})", "give a UTF-8 YAML or JSON file") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(
                str(path), f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", "fix the syntax"
            ) from None
    import yaml  # imported here so that `featmap --help` stays fast

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader is ~10x faster
    try:
        return yaml.load(text, Loader=loader)  # a safe loader either way
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(str(path), f"invalid YAML{at}: {problem}", "fix the syntax") from None
