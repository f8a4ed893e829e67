"""`run_url_batch`: the batch of `featmap.run.batch.run_batch` with fsspec URLs for inputs or the output folder.

Kept for the callers that name it; the loop is the one of `featmap.run.batch` (the storage behind
`featmap.run.stores`), so reports, progress, failures, resume and interrupts are the local batch's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from featmap.run.backends.base import Backend

__all__ = ["run_url_batch"]


def run_url_batch(
    items: Sequence[Any],
    job: Any,
    out: str | Path,
    *,
    backend: Backend | None = None,
    jobs: int = 1,
    skip_existing: bool = False,
    on_progress: Callable[[Any], None] = lambda progress: None,
    clock: Callable[[], float] = time.perf_counter,
) -> Any:
    """Apply ``job`` to ``items`` (local `InputImage`s and `UrlImage`s) writing under ``out`` (a URL, or a
    local folder that must then be ``job.output.out_dir``): `featmap.run.batch.run_batch` with ``out``."""
    from featmap.run.batch import run_batch

    return run_batch(
        items,
        job,
        jobs=jobs,
        skip_existing=skip_existing,
        on_progress=on_progress,
        clock=clock,
        backend=backend,
        out=out,
    )
