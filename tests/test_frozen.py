"""featmap.frozen.frozen_dataclass against the standard ``dataclasses.dataclass(frozen=True)``: each class is
declared twice, once by each decorator, and every instance must repr, compare, hash, pickle and refuse
assignment the same way."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

import featmap.frozen
from featmap.frozen import frozen_dataclass


def _both(body: dict[str, Any], *, eq: bool = True, base: tuple[type, ...] = ()) -> tuple[type, type]:
    """The class ``body`` describes, made by the standard decorator and by ours (each its own class)."""
    made: list[type] = []
    for decorate in (dataclasses.dataclass(frozen=True, eq=eq), frozen_dataclass(eq=eq)):
        cls = type("Record", base[len(made) : len(made) + 1] if base else (), dict(body))
        cls.__qualname__ = "Outer.Record"
        made.append(decorate(cls))
    return made[0], made[1]


def _hash_or_error(record: object) -> int | str:
    try:
        return hash(record)
    except TypeError as error:
        return str(error)


PLAIN = {"__annotations__": {"a": "int", "b": "object", "c": "str"}, "c": "z"}
TUNED = {
    "__annotations__": {"a": "int", "hidden": "object", "loose": "object", "unhashed": "object", "k": "int"},
    "hidden": dataclasses.field(default=0, repr=False),
    "loose": dataclasses.field(default=0, compare=False),
    "unhashed": dataclasses.field(default=0, hash=False),
    "k": dataclasses.field(default=5, kw_only=True),
}
ONE = {"__annotations__": {"only": "object"}}
NONE: dict[str, Any] = {"__annotations__": {}}


@pytest.mark.parametrize(
    ("body", "args"),
    [
        (PLAIN, [(1, 2.5), (1, 2.5, "y"), (2, (1, [2])), (0, float("nan")), (1, None, "it's")]),
        (TUNED, [(1,), (1, "h"), (1, 0, 9), (1, 0, 0, 7), (2, 1, 2, 3), (1, 0, 0, 0)]),
        (ONE, [(1,), (1.0,), ((1, 2),), ("x",), (float("nan"),), (True,)]),
        (NONE, [()]),
    ],
)
def test_instances_repr_compare_and_hash_as_the_standard_decorators(
    body: dict[str, Any], args: list[tuple[Any, ...]]
) -> None:
    standard, ours = _both(body)
    pairs = [(standard(*a), ours(*a)) for a in args]
    for s, o in pairs:
        assert repr(o) == repr(s)
        assert _hash_or_error(o) == _hash_or_error(s)
        for s2, o2 in pairs:  # every pair, including an instance with itself
            assert (o == o2) == (s == s2)
            assert (o != o2) == (s != s2)
    assert (ours(*args[0]) == standard(*args[0])) is False  # another class: not equal, as between two dataclasses
    assert ours(*args[0]).__eq__(1) is NotImplemented


def test_a_nan_field_is_equal_to_itself_only_in_the_same_object_as_with_tuples() -> None:
    standard, ours = _both(ONE)
    nan = float("nan")
    assert (ours(nan) == ours(nan)) is (standard(nan) == standard(nan)) is True  # the same float object
    assert (ours(float("nan")) == ours(float("nan"))) is (standard(float("nan")) == standard(float("nan")))


def test_eq_false_means_identity_as_with_the_standard_decorator() -> None:
    standard, ours = _both(PLAIN, eq=False)
    assert repr(ours(1, 2)) == repr(standard(1, 2)) == "Outer.Record(a=1, b=2, c='z')"
    a, b = ours(1, 2), ours(1, 2)
    assert a == a and a != b and (standard(1, 2) != standard(1, 2))
    assert hash(a) == object.__hash__(a)
    assert "__eq__" not in ours.__dict__ and "__hash__" not in ours.__dict__


def test_frozen_pickled_copied_and_replaced_as_the_standard_decorators() -> None:
    standard, ours = _both(TUNED)
    for cls in (standard, ours):
        record = cls(1, [1, 2], k=3)
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.a = 2
        with pytest.raises(dataclasses.FrozenInstanceError):
            del record.a
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.other = 1
        assert dataclasses.replace(record, a=4) == cls(4, [1, 2], k=3)
        assert copy.deepcopy(record) == record and copy.copy(record) == record
        assert [f.name for f in dataclasses.fields(cls)] == ["a", "hidden", "loose", "unhashed", "k"]
    globals()["Record"] = ours  # pickle finds a class by its module and name
    ours.__qualname__ = "Record"
    try:
        record = ours(1, (2,), 3, 4, k=6)
        assert pickle.loads(pickle.dumps(record)) == record
        assert repr(pickle.loads(pickle.dumps(record))) == repr(record)
    finally:
        del globals()["Record"]


def test_assignment_and_deletion_refused_as_by_the_standard_decorator_also_in_a_subclass() -> None:
    standard, ours = _both(PLAIN)

    def outcome(action: Any, *args: Any) -> str:
        try:
            action(*args)
        except dataclasses.FrozenInstanceError as error:
            return f"refused: {error}"
        return "done"

    assert standard.__setattr__.__qualname__ == ours.__setattr__.__qualname__ == "Outer.Record.__setattr__"
    seen = []
    # a subclass that is not a dataclass: its own attributes may be set and deleted, the fields may not
    for cls in (standard, ours, type("Sub", (standard,), {}), type("Sub", (ours,), {})):
        record = cls(1, 2)
        seen.append(
            [
                outcome(setattr, record, "a", 3),
                outcome(setattr, record, "extra", 3),
                outcome(delattr, record, "b"),
                outcome(delattr, record, "extra"),
                getattr(record, "extra", None),
            ]
        )
    assert (
        seen[0]
        == seen[1]
        == [
            "refused: cannot assign to field 'a'",
            "refused: cannot assign to field 'extra'",
            "refused: cannot delete field 'b'",
            "refused: cannot delete field 'extra'",
            None,
        ]
    )
    assert (
        seen[2]
        == seen[3]
        == [
            "refused: cannot assign to field 'a'",
            "done",
            "refused: cannot delete field 'b'",
            "done",
            None,
        ]
    )


def test_a_recursive_repr_shows_dots_as_the_standard_decorators() -> None:
    standard, ours = _both(ONE)
    for cls in (standard, ours):
        box: list[Any] = []
        record = cls(box)
        box.append(record)
        assert repr(record) == "Outer.Record(only=[...])"


def test_methods_the_body_defines_are_kept_and_a_subclass_gets_its_own_fields() -> None:
    def shown(self: Any) -> str:
        return "mine"

    def same(self: Any, other: object) -> bool:
        return True

    standard, ours = _both({**PLAIN, "__repr__": shown, "__eq__": same})
    for cls in (standard, ours):
        assert repr(cls(1, 2)) == "mine" and cls(1, 2) == cls(3, 4)
    assert hash(ours(1, 2)) == hash(standard(1, 2))  # __eq__ alone in the body: the hash is made as usual
    explicit = {**PLAIN, "__hash__": lambda self: 7}
    standard, ours = _both(explicit)
    assert hash(ours(1, 2)) == hash(standard(1, 2)) == 7

    base_standard, base_ours = _both(PLAIN)
    standard, ours = _both({"__annotations__": {"d": "int"}, "d": 4}, base=(base_standard, base_ours))
    assert repr(ours(1, 2)) == repr(standard(1, 2)) == "Outer.Record(a=1, b=2, c='z', d=4)"
    assert ours(1, 2) != ours(1, 2, d=5) and ours(1, 2) != base_ours(1, 2)
    assert hash(ours(1, 2)) == hash(standard(1, 2))


def test_declaring_compiles_nothing_and_the_first_use_compiles_init_once() -> None:
    compiled: list[str] = []
    original = dataclasses._create_fn  # type: ignore[attr-defined]

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        compiled.append(name)
        return original(name, *args, **kwargs)

    dataclasses._create_fn = counting  # type: ignore[attr-defined]
    try:
        standard, ours = _both({**PLAIN, "__doc__": "A record."})  # without a docstring, signature() makes one
        if not compiled:  # a Python whose dataclasses compile differently (3.13 makes one exec per class)
            pytest.skip("dataclasses._create_fn is not used on this Python")
        assert sorted(compiled) == sorted(["__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"])
        del compiled[:]
        assert isinstance(vars(ours)["__init__"], featmap.frozen._DeferredInit)  # declared: nothing compiled
        assert repr(ours(1, 2)) == repr(standard(1, 2))
        assert compiled == ["__init__"]  # the first instance compiled it, from the standard decorator's text
        ours(3, 4), ours(a=5, b=6, c="w")
        assert compiled == ["__init__"]  # and set it on the class: later instances use the plain function
        assert vars(ours)["__init__"].__qualname__ == vars(standard)["__init__"].__qualname__ == "Outer.Record.__init__"
    finally:
        dataclasses._create_fn = original  # type: ignore[attr-defined]
    assert dataclasses._frozen_get_del_attr is featmap.frozen._STANDARD_FROZEN_METHODS  # type: ignore[attr-defined]
    assert dataclasses._create_fn is featmap.frozen._STANDARD_CREATE_FN  # type: ignore[attr-defined]


@pytest.mark.parametrize("first", ["signature", "subclass", "super", "replace", "thread"])
def test_a_deferred_init_is_made_by_whatever_reads_it_first(first: str) -> None:
    import inspect
    import threading

    standard, ours = _both({**TUNED, "__doc__": "A record."})
    assert isinstance(vars(ours)["__init__"], featmap.frozen._DeferredInit)
    if first == "signature":
        text = "(a: 'int', hidden: 'object' = 0, loose: 'object' = 0, unhashed: 'object' = 0, *, k: 'int' = 5) -> None"
        assert str(inspect.signature(ours)) == str(inspect.signature(standard)) == text
    elif first == "subclass":  # a plain subclass: the stand-in is found on the record, and replaced there
        sub = type("Sub", (ours,), {})
        assert repr(sub(1, k=2)) == repr(type("Sub", (standard,), {})(1, k=2))
        assert not isinstance(vars(ours)["__init__"], featmap.frozen._DeferredInit) and "__init__" not in vars(sub)
    elif first == "super":  # a subclass's own __init__ calling the record's through super()

        def __init__(self: Any, a: int) -> None:
            super(sub, self).__init__(a, 1, k=9)  # type: ignore[misc]

        sub = type("Sub", (ours,), {"__init__": __init__})
        made = sub(3)
        assert (made.a, made.hidden, made.k) == (3, 1, 9)
    elif first == "replace":
        assert dataclasses.replace(ours(1), a=2) == ours(2)
    else:  # several threads at once: each instance made right, the class left with a plain function
        made: list[Any] = []
        threads = [threading.Thread(target=lambda i=i: made.append(ours(i, k=i))) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted((m.a, m.k) for m in made) == [(i, i) for i in range(8)]
    assert inspect.isfunction(vars(ours)["__init__"])
    assert repr(ours(7, k=1)) == repr(standard(7, k=1))
    with pytest.raises(TypeError) as theirs:
        standard()
    with pytest.raises(TypeError) as mine:
        ours()
    assert str(mine.value) == str(theirs.value)


def test_the_package_declares_its_frozen_records_with_it() -> None:
    from pathlib import Path

    package = Path(featmap.frozen.__file__).parent
    standard = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "@dataclass(frozen=True" in path.read_text() and path.name != "frozen.py"
    ]
    assert standard == []
