"""featmap.io.bulk: the cyclic collector waits inside `bulk_objects`, and what the block made is moved out of its way
without a scan: back to the oldest generation, or, where the program froze objects of its own, frozen with them."""

from __future__ import annotations

import gc

import pytest

from featmap.io.bulk import bulk_objects


def _frozen(made: list[list[int]]) -> bool:
    """Whether the first and last of ``made`` are out of the collector's generations (frozen): `gc.get_objects`
    lists the objects of the generations only. (Counting the frozen objects is not a test of that: frozen objects
    freed elsewhere meanwhile lower the count.)"""
    tracked = {id(item) for item in gc.get_objects()}
    return id(made[0]) not in tracked and id(made[-1]) not in tracked


def test_a_block_leaves_nothing_frozen_in_a_program_that_froze_nothing() -> None:
    assert gc.get_freeze_count() == 0
    with bulk_objects():
        assert not gc.isenabled()
        made = [[i] for i in range(5000)]  # lists: objects the collector tracks
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert not _frozen(made)  # back in the collector's oldest generation


def test_a_block_keeps_the_programs_frozen_objects_frozen_and_adds_its_own() -> None:
    """`featmap apply` freezes its start-up's objects (`featmap.launch.start_up_over`): a block must neither give
    those back to the collector nor leave its own 10⁵ objects to be scanned by every full collection."""
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with bulk_objects():
            assert not gc.isenabled()
            made = [[i] for i in range(5000)]
        assert gc.isenabled()
        assert _frozen(made) and frozen > 0
    finally:
        gc.unfreeze()


def test_an_outer_block_decides_and_an_inner_one_changes_nothing() -> None:
    with bulk_objects():
        with bulk_objects():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block did not switch the collector back on
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_after_the_program_froze_for_good_a_block_does_not_count_the_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """``gc.get_freeze_count()`` walks every frozen object (~40 ms for a resume's 10⁶): once the program said it froze
    for good (`featmap.io.bulk.freeze_for_good`, as ``featmap apply``'s start-up does), no block asks it."""
    from featmap.io import bulk

    monkeypatch.setattr(bulk, "_program_froze", False)
    bulk.freeze_for_good()
    try:
        real = gc.get_freeze_count
        frozen = real()
        counted: list[int] = []
        monkeypatch.setattr(gc, "get_freeze_count", lambda: counted.append(1) or real())
        with bulk_objects():
            made = [[i] for i in range(5000)]
        assert counted == []
        assert _frozen(made) and frozen > 0
    finally:
        gc.unfreeze()
