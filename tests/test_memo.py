"""featmap.core.memo: values worked out from weight arrays once, and worked out again when an array changes."""

from __future__ import annotations

import numpy as np
import pytest

from featmap.core.memo import fingerprint, freeze, frozen, owned_frozen, remembered


def counted(array: np.ndarray) -> tuple[list[int], object]:
    calls: list[int] = []

    def compute() -> float:
        calls.append(1)
        return float(array.sum())

    return calls, compute


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8])
@pytest.mark.parametrize("size", [1, 7, 8, 1000])
def test_any_one_changed_value_is_seen(dtype: type, size: int) -> None:
    rng = np.random.default_rng(size)
    array = (rng.random(size) * 100).astype(dtype)
    calls, compute = counted(array)
    remembered("t", (array,), compute)  # type: ignore[arg-type]
    remembered("t", (array,), compute)  # type: ignore[arg-type]
    assert len(calls) == 1
    for index in (0, size // 2, size - 1):
        array[index] += 1  # a float32 sum of large values can miss this; the integer sum of the bytes cannot
        assert remembered("t", (array,), compute) == float(array.sum())  # type: ignore[arg-type]
    assert len(calls) == 4


@pytest.mark.parametrize("size", [16, 4096])  # fingerprinted by its bytes / by the integer sum of them
def test_a_change_far_below_a_float_sums_rounding_is_seen(size: int) -> None:
    array = np.full(size, 1e8, np.float32)
    calls, compute = counted(array)
    remembered("t", (array,), compute)  # type: ignore[arg-type]
    array[5] = np.nextafter(np.float32(1e8), np.float32(np.inf))  # +8: lost in a float sum of 1.6e9 or 4e11
    remembered("t", (array,), compute)  # type: ignore[arg-type]
    assert len(calls) == 2


def test_a_reshaped_or_retyped_array_is_worked_out_again() -> None:
    array = np.arange(12, dtype=np.float32)
    calls, compute = counted(array)
    remembered("t", (array,), compute)  # type: ignore[arg-type]
    array.shape = (3, 4)
    remembered("t", (array,), compute)  # type: ignore[arg-type]
    assert len(calls) == 2
    assert fingerprint(array) != fingerprint(array.view(np.int32))


def test_non_contiguous_arrays_fingerprint_their_values() -> None:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[:, ::2]
    before = fingerprint(view)
    base[0, 1] = -1  # not in the view
    assert fingerprint(view) == before
    base[0, 2] = -1  # in the view
    assert fingerprint(view) != before


def test_frozen_arrays_are_not_read() -> None:
    owner = freeze(np.arange(6, dtype=np.float32))
    assert frozen(owner) and fingerprint(owner) == ()
    view = owner[1:]
    assert frozen(view)  # a view of a read-only owner cannot be made writeable again
    with pytest.raises(ValueError):
        view.flags.writeable = True
    writeable = np.arange(6, dtype=np.float32)
    read_only_view = writeable[:]
    read_only_view.flags.writeable = False
    assert not frozen(read_only_view)  # its owner can still change it
    assert not frozen(writeable)
    assert fingerprint(read_only_view) != ()


def test_owned_frozen_makes_a_view_and_its_owner_read_only_without_a_copy() -> None:
    owner = np.arange(12, dtype=np.float32)
    view = owner.reshape(3, 4)[1:]
    got = owned_frozen(view)
    assert got is view and frozen(got) and fingerprint(got) == ()
    assert not owner.flags.writeable  # nothing can change the view's values any more
    with pytest.raises(ValueError):
        owner[5] = 0


def test_owned_frozen_copies_an_array_over_another_objects_memory() -> None:
    buffer = bytearray(np.arange(4, dtype=np.float32).tobytes())
    over = np.frombuffer(buffer, np.float32)  # its memory is the bytearray's, which stays writeable
    got = owned_frozen(over)
    assert got is not over and frozen(got) and got.tolist() == [0.0, 1.0, 2.0, 3.0]
    buffer[:4] = np.float32(9).tobytes()
    assert over[0] == 9 and got[0] == 0  # the copy does not see the buffer change


def test_values_are_dropped_with_their_arrays() -> None:
    from featmap.core import memo

    array = np.ones(3, np.float32)
    remembered("dropped", (array,), lambda: 1)
    key = ("dropped", id(array))
    assert key in memo._ENTRIES
    del array
    assert key not in memo._ENTRIES
