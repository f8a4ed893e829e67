"""Rendering: Rich renderables, JSON-ready dicts and Markdown from result objects; nothing here prints.

Names load on first use, so ``featmap kernels`` does not pay for the batch and summary modules.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOME = {
    "apply_dict": "apply",
    "apply_view": "apply",
    "batch_dict": "apply",
    "batch_view": "apply",
    "examples_dict": "explain_json",
    "examples_view": "explain",
    "explain_dict": "explain_json",
    "explain_view": "explain",
    "kernel_dict": "kernels",
    "kernel_list": "kernels",
    "kernel_show": "kernels",
    "network_dict": "network",
    "network_view": "network",
    "summary_dict": "summary",
    "summary_explain": "summary",
    "summary_markdown": "summary",
    "summary_view": "summary",
    "weights_dict": "weights",
    "weights_view": "weights",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOME[name]}", __name__), name)


def __dir__() -> list[str]:
    """The package's names, the views imported on first use included."""
    return sorted({*globals(), *_HOME})
