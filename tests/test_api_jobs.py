"""The batch API's ``jobs`` (`featmap.start_helpers`, `featmap.apply_batch`) is checked like every other
parameter: a whole number >= 1 or None, else one `featmap.SpecError` naming it, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

import featmap
from tests.conftest import SAMPLES


@pytest.mark.parametrize("jobs", ["2", 2.5, 0, -3, True])
def test_a_bad_jobs_is_refused_naming_it(jobs: object, tmp_path: Path) -> None:
    with pytest.raises(featmap.SpecError, match=r"`jobs`: must be a whole number >= 1 \(or None"):
        featmap.start_helpers(jobs)  # type: ignore[arg-type]
    job = featmap.build_job(["sobel_x"], options=featmap.ApplyOptions(out_dir=tmp_path / "out"))
    found = featmap.find_images([SAMPLES / "digits"])
    with pytest.raises(featmap.SpecError, match=r"`jobs`: must be a whole number >= 1 \(or None"):
        featmap.apply_batch(found.items, job, jobs=jobs)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()  # before any work


def test_one_job_starts_no_helper() -> None:
    assert featmap.start_helpers(1) is False
