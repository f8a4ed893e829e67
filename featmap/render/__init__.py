"""Rendering: Rich renderables, JSON-ready dicts and Markdown from result objects; nothing here prints."""

from __future__ import annotations

from .apply import apply_dict, apply_view, batch_dict, batch_view, kernel_dict, kernel_list, kernel_show
from .summary import summary_dict, summary_explain, summary_markdown, summary_view

__all__ = [
    "apply_dict",
    "apply_view",
    "batch_dict",
    "batch_view",
    "kernel_dict",
    "kernel_list",
    "kernel_show",
    "summary_dict",
    "summary_explain",
    "summary_markdown",
    "summary_view",
]
