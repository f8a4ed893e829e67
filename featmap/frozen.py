"""`frozen_dataclass`: featmap's records, ``dataclasses.dataclass(frozen=True)`` at half its cost to declare.

On CPython before 3.13 the standard decorator writes each generated method as source text and compiles it
separately: six ``exec`` calls per frozen class (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__``, ``__delattr__``), ~0.1 ms each, so the ~50 records a kernel bank's command declares before its
first image cost ~30 ms of its start-up, and as much again in the helpers' fork server. Here the standard
decorator makes ``__init__`` alone (the instances are the same objects, made the same way), and the other five
are closures over the class and its field names, made without compiling anything: ``__repr__``, ``__eq__`` and
``__hash__`` set on the class afterwards, the frozen ``__setattr__``/``__delattr__`` handed to the standard
decorator in place of the ones it would compile (on Pythons 3.10-3.12, whose `dataclasses` asks one function
for both; elsewhere it compiles its own). They answer as the generated ones do: the same text, the same
comparison of the same tuples (``other.__class__ is self.__class__``, else ``NotImplemented``), the same hash, the
same refusals; a method the class body defines is kept, as the standard decorator keeps it.

``__init__`` is the standard decorator's own, compiled from the same text, but when the class is first used
rather than when it is declared: a `_DeferredInit` stands in the class until something reads ``__init__`` (the
first instance, `inspect.signature`, a subclass's ``super().__init__``), then makes the function and puts it in
its place. A command declares every record of the modules it imports and builds a fraction of them (a network's
digit: ~30 of ~90; the helpers' fork server: none), and the PEG parser's work on ``__init__``'s text was ~12 % of
a small command's instructions.
"""

from __future__ import annotations

import dataclasses
import reprlib
import sys
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:  # read by type checkers only (typing has it from Python 3.11)

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda decorator: decorator


__all__ = ["frozen_dataclass"]

_Class = TypeVar("_Class", bound=type)


@overload
def frozen_dataclass(cls: _Class, /) -> _Class: ...
@overload
def frozen_dataclass(*, eq: bool = True) -> Callable[[_Class], _Class]: ...
@dataclass_transform(frozen_default=True)
def frozen_dataclass(cls: Any = None, /, *, eq: bool = True) -> Any:
    """``@dataclass(frozen=True)``, or with ``eq=False`` ``@dataclass(frozen=True, eq=False)`` (instances equal
    only to themselves, hashed by identity): the same class, declared without compiling its ``__repr__``,
    ``__eq__`` and ``__hash__``."""

    def declare(cls: _Class) -> _Class:
        if _STANDARD_FROZEN_METHODS is None or _STANDARD_CREATE_FN is None:
            made = cast(_Class, dataclasses.dataclass(frozen=True, repr=False, eq=False)(cls))
        else:
            # Another thread declaring a dataclass meanwhile gets either function of each pair: both make the
            # same methods (its __init__ deferred too, made from the same text on first use).
            create = dataclasses._create_fn  # type: ignore[attr-defined]
            dataclasses._frozen_get_del_attr = _frozen_methods  # type: ignore[attr-defined]
            dataclasses._create_fn = _deferring_init(create)  # type: ignore[attr-defined]
            try:
                made = cast(_Class, dataclasses.dataclass(frozen=True, repr=False, eq=False)(cls))
            finally:
                dataclasses._frozen_get_del_attr = _STANDARD_FROZEN_METHODS  # type: ignore[attr-defined]
                dataclasses._create_fn = create  # type: ignore[attr-defined]
        _add_methods(made, eq)
        return made

    return declare if cls is None else declare(cls)


#: The standard decorator's maker of a frozen class's ``__setattr__`` and ``__delattr__``, ``(cls, fields, globals)``
#: on Pythons 3.10-3.12 (3.13 compiles all of a class's methods at once); None where it is not that function.
_STANDARD_FROZEN_METHODS: Callable[..., Any] | None = (
    getattr(dataclasses, "_frozen_get_del_attr", None) if sys.version_info < (3, 13) else None
)


#: The standard decorator's function that compiles each generated method from its text, ``(name, args, body, *,
#: globals, locals, return_type)`` on Pythons 3.10-3.12; None where it is not that function.
_STANDARD_CREATE_FN: Callable[..., Any] | None = (
    getattr(dataclasses, "_create_fn", None) if sys.version_info < (3, 13) else None
)


def _deferring_init(create: Callable[..., Any]) -> Callable[..., Any]:
    """``create`` (`dataclasses._create_fn`), but ``__init__`` is not compiled yet: its arguments are kept in a
    `_DeferredInit`, which compiles it from the same text on first use (the standard decorator hands the
    function its own ``locals`` and never reads them again)."""

    def create_fn(name: str, *args: Any, **kwargs: Any) -> Any:
        if name != "__init__":
            return create(name, *args, **kwargs)
        return _DeferredInit(lambda: create(name, *args, **kwargs))

    return create_fn


class _DeferredInit:
    """A record's ``__init__`` before its first use: a descriptor that, read through the class or an instance,
    makes the function (`_deferring_init`), names it as the standard decorator does, sets it on the class that
    holds this stand-in and answers as that function would. Read once per class; from then on the class has the
    plain function, so instances cost what they did."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[], Callable[..., None]]) -> None:
        self._make = make

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        function = self._make()
        holder = next((c for c in (owner or type(instance)).__mro__ if c.__dict__.get("__init__") is self), None)
        if holder is not None:
            function.__qualname__ = f"{holder.__qualname__}.{function.__name__}"
            type.__setattr__(holder, "__init__", function)  # two threads first at once set equal functions
        return function if instance is None else function.__get__(instance, owner)


def _frozen_methods(cls: Any, fields: list[dataclasses.Field[Any]], globals: Any) -> tuple[Any, Any]:
    """The frozen ``__setattr__`` and ``__delattr__`` the standard decorator would compile: on the class itself
    every assignment and deletion fails, on a subclass those of the class's fields."""
    names = frozenset(field.name for field in fields)

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __setattr__, __delattr__


def _add_methods(cls: type, eq: bool) -> None:
    """The methods the standard decorator would generate, where the class body defines none."""
    fields = dataclasses.fields(cls)
    own = cls.__dict__
    if "__repr__" not in own:
        _set(cls, "__repr__", _repr_of([field.name for field in fields if field.repr]))
    if not eq:
        return
    # A body that defines __eq__ alone gets __hash__ = None from Python: the standard decorator replaces that.
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    if "__eq__" not in own:
        _set(cls, "__eq__", _eq_of(_values_of([field.name for field in fields if field.compare])))
    if not explicit_hash:
        hashed = [field.name for field in fields if (field.compare if field.hash is None else field.hash)]
        _set(cls, "__hash__", _hash_of(_values_of(hashed)))


def _set(cls: type, name: str, method: Callable[..., Any]) -> None:
    method.__qualname__ = f"{cls.__qualname__}.{name}"
    setattr(cls, name, method)


def _values_of(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """A function from an instance to the tuple of its ``names``' values, in order."""
    if len(names) >= 2:
        return attrgetter(*names)  # a tuple for two names or more
    if names:
        one = attrgetter(names[0])
        return lambda instance: (one(instance),)
    return lambda instance: ()


def _repr_of(names: list[str]) -> Callable[[Any], str]:
    values = _values_of(names)

    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(names, values(self), strict=True))
        return f"{self.__class__.__qualname__}({shown})"

    return __repr__


def _eq_of(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, object], Any]:
    def __eq__(self: Any, other: object) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return __eq__


def _hash_of(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(values(self))

    return __hash__
