"""The layer-spec language: inline tokens and YAML/JSON files → `featmap.layers` objects.

One parser feeds both ``featmap shape`` and the pipeline. Tokens (see README for the full grammar)::

    conv:64@3x3/s2/same   conv:6@5x5/p2/nobias   dwconv:3x3/s2/p1   conv1d:16@5/same
    maxpool:3/s2/p1/ceil  avgpool:2   gap   gmp   adaptiveavgpool:7x7
    flatten   dense:10   bn   relu   act:leaky_relu,slope=0.2   dropout:0.5

Files add composition: ``repeat``, ``residual`` (``add``), ``parallel`` (``add``/``concat``) and named,
parameterised ``blocks``.

Examples
--------
>>> parse_token("conv:64@3x3/s2/same")
Conv2d(filters=64, kernel=(3, 3), stride=(2, 2), padding='same', ...)
>>> parse_shape("224x224x3")
(224, 224, 3)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .documents import read_document
from .enums import Activation, PoolKind, parse_enum
from .errors import FeatmapError, SpecError
from .layers import (
    Act,
    AdaptiveAvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GlobalPool2d,
    LayerSpec,
    Parallel,
    Pool2d,
    Sequential,
)

__all__ = [
    "MODEL_DIR",
    "Model",
    "list_models",
    "load_model",
    "parse_file",
    "parse_shape",
    "parse_token",
    "parse_tokens",
]

MODEL_DIR = Path(__file__).resolve().parent / "models"
Shape = tuple[int, ...]

_INT = r"\d+"
_PAIR = rf"{_INT}(?:[x×,]{_INT})?"
_CONV = re.compile(rf"^(?P<filters>{_INT})@(?P<kernel>{_PAIR})$")
_CONV1D = re.compile(rf"^(?P<filters>{_INT})@(?P<kernel>{_INT})$")
_ALIASES = {
    "conv2d": "conv",
    "dwconv": "dwconv",
    "depthwise": "dwconv",
    "maxpool": "maxpool",
    "max_pool": "maxpool",
    "avgpool": "avgpool",
    "avg_pool": "avgpool",
    "minpool": "minpool",
    "gap": "gap",
    "globalavgpool": "gap",
    "global_avg_pool": "gap",
    "gmp": "gmp",
    "globalmaxpool": "gmp",
    "global_max_pool": "gmp",
    "adaptiveavgpool": "adaptiveavgpool",
    "adaptive_avg_pool": "adaptiveavgpool",
    "adaptivepool": "adaptiveavgpool",
    "flatten": "flatten",
    "dense": "dense",
    "fc": "dense",
    "linear": "dense",
    "bn": "bn",
    "batchnorm": "bn",
    "dropout": "dropout",
    "act": "act",
    "activation": "act",
    "conv": "conv",
    "conv1d": "conv1d",
}
_KINDS = sorted(set(_ALIASES) | {a.value for a in Activation})
_GRAMMAR_HINT = "e.g. conv:64@3x3/s2/same, maxpool:2, dense:10 (see README, 'layer-spec language')"


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in re.split(r"[x×,]", text))
    except ValueError:
        raise SpecError(what, f"{text!r} is not a number or NxM") from None


def parse_shape(text: str | Sequence[int]) -> Shape:
    """An input shape: ``HxWxC`` (image), ``LxC`` (1-D signal) or ``N`` (flat features).

    Examples
    --------
    >>> parse_shape("32x32x1"), parse_shape("100x16"), parse_shape("784")
    ((32, 32, 1), (100, 16), (784,))
    """
    values = tuple(text) if not isinstance(text, str) else _ints(text.strip().lower(), "--input")
    if not 1 <= len(values) <= 3 or any(not isinstance(v, int) or v < 1 for v in values):
        raise SpecError(
            "--input", f"{text!r} is not a shape", "write HxWxC (e.g. 224x224x3), LxC for 1-D, or N features"
        )
    return tuple(int(v) for v in values)


def _options(parts: Sequence[str], what: str) -> dict[str, Any]:
    """Parse the ``/``-separated options shared by conv and pool tokens."""
    opts: dict[str, Any] = {}
    for part in parts:
        word = part.strip().lower()
        if word in ("same", "valid", "full"):
            opts["padding"] = word
        elif word in ("nobias", "no_bias"):
            opts["bias"] = False
        elif word == "bias":
            opts["bias"] = True
        elif word == "ceil":
            opts["ceil_mode"] = True
        elif word == "dw":
            opts["depthwise"] = True
        elif re.fullmatch(rf"s{_PAIR}", word):
            opts["stride"] = _single(_ints(word[1:], what))
        elif re.fullmatch(rf"d{_PAIR}", word):
            opts["dilation"] = _single(_ints(word[1:], what))
        elif re.fullmatch(rf"g{_INT}", word):
            opts["groups"] = int(word[1:])
        elif re.fullmatch(r"p\d+(?:,\d+){0,3}", word):
            values = _ints(word[1:], what)
            if len(values) == 3:
                raise SpecError(what, f"padding {word!r} takes 1, 2 or 4 numbers")
            opts["padding"] = values[0] if len(values) == 1 else values
        else:
            raise SpecError(
                what,
                f"unknown option {part!r}",
                "use sN (stride), pN / same / valid / full (padding), dN (dilation), gN (groups), nobias, ceil",
            )
    return opts


def _single(values: tuple[int, ...]) -> int | tuple[int, ...]:
    return values[0] if len(values) == 1 else values


def parse_token(token: str, *, where: str = "") -> LayerSpec:
    """Parse one inline layer token (``conv:6@5x5``, ``maxpool:2``, ``dense:10``, ``relu``…).

    Raises `SpecError` naming ``where`` (e.g. ``layer 3``) and the token, with the fix.
    """
    text = token.strip()
    what = f"{where} ({text!r})" if where else repr(text)
    head, _, rest = text.partition(":")
    kind_word = head.strip().lower()
    if kind_word in {a.value for a in Activation}:
        if rest:
            raise SpecError(what, f"{kind_word} takes no arguments", f"use act:{kind_word},slope=0.1 for parameters")
        return Act(parse_enum(Activation, kind_word, "activation"))
    kind = _ALIASES.get(kind_word)
    if kind is None:
        raise SpecError(what, f"unknown layer type {head!r}", f"use one of: {', '.join(_KINDS)}")
    main, *opt_parts = rest.split("/") if rest else [""]
    try:
        return _build(kind, main.strip(), opt_parts, what)
    except SpecError as exc:
        if exc.what == what:
            raise
        raise SpecError(what, f"{exc.what.strip('`')} {exc.problem}".strip(), exc.fix or _GRAMMAR_HINT) from None


def _need_no_args(kind: str, main: str, opts: Sequence[str], what: str) -> None:
    if main or opts:
        raise SpecError(what, f"{kind} takes no arguments", f"write just `{kind}`")


def _build(kind: str, main: str, opt_parts: Sequence[str], what: str) -> LayerSpec:
    if kind in ("conv", "dwconv"):
        if kind == "dwconv":
            opts = _options(opt_parts, what)
            return Conv2d(filters=None, kernel=_single(_ints(main, what)), depthwise=True, **opts)  # type: ignore[arg-type]
        match = _CONV.match(main.replace(" ", ""))
        if not match:
            raise SpecError(what, "a conv is FILTERS@KxK", "e.g. conv:64@3x3/s2/same")
        opts = _options(opt_parts, what)
        return Conv2d(int(match["filters"]), _single(_ints(match["kernel"], what)), **opts)  # type: ignore[arg-type]
    if kind == "conv1d":
        match = _CONV1D.match(main.replace(" ", ""))
        if not match:
            raise SpecError(what, "a conv1d is FILTERS@K", "e.g. conv1d:16@5/s2/same")
        opts = _options(opt_parts, what)
        for key in ("stride", "dilation"):
            if isinstance(opts.get(key), tuple):
                raise SpecError(what, f"a 1-D {key} is one number")
        return Conv1d(int(match["filters"]), int(match["kernel"]), **opts)
    if kind in ("maxpool", "avgpool", "minpool"):
        if not main:
            raise SpecError(what, "a pool needs a window size", f"e.g. {kind}:2 or {kind}:3/s2")
        opts = _options(opt_parts, what)
        extra = set(opts) - {"stride", "padding", "ceil_mode"}
        if extra:
            raise SpecError(what, f"a pool takes no {sorted(extra)[0]}", "use sN, pN / same / valid, ceil")
        stride = opts.pop("stride", None)
        return Pool2d(kind[:3], _single(_ints(main, what)), stride, **opts)  # type: ignore[arg-type]
    if kind in ("gap", "gmp"):
        _need_no_args(kind, main, opt_parts, what)
        return GlobalPool2d(PoolKind.AVG if kind == "gap" else PoolKind.MAX)
    if kind == "adaptiveavgpool":
        return AdaptiveAvgPool2d(_single(_ints(main or "1", what)))  # type: ignore[arg-type]
    if kind == "flatten":
        _need_no_args(kind, main, opt_parts, what)
        return Flatten()
    if kind == "dense":
        if not main.isdigit():
            raise SpecError(what, "a dense layer is dense:UNITS", "e.g. dense:10 or dense:10/nobias")
        opts = _options(opt_parts, what)
        if set(opts) - {"bias"}:
            raise SpecError(what, "a dense layer takes only /nobias")
        return Dense(int(main), **opts)
    if kind == "bn":
        _need_no_args(kind, main, opt_parts, what)
        return BatchNorm()
    if kind == "dropout":
        try:
            rate = float(main) if main else 0.5
        except ValueError:
            raise SpecError(what, f"rate {main!r} is not a number", "e.g. dropout:0.5") from None
        return Dropout(rate)
    # act:NAME[,slope=0.1]
    name, *params = [p.strip() for p in main.split(",")]
    values: dict[str, float] = {}
    for item in params:
        key, eq, value = item.partition("=")
        try:
            values[key] = float(value)
        except ValueError:
            raise SpecError(what, f"activation parameter {item!r} is not key=number") from None
    return Act(parse_enum(Activation, name, "activation"), tuple(values.items()))


def parse_tokens(tokens: Sequence[str]) -> tuple[LayerSpec, ...]:
    """Parse inline tokens in order; errors name the layer's index (1-based) and token.

    Examples
    --------
    >>> [type(layer).__name__ for layer in parse_tokens(["conv:6@5x5", "avgpool:2", "flatten", "dense:10"])]
    ['Conv2d', 'Pool2d', 'Flatten', 'Dense']
    """
    return tuple(parse_token(t, where=f"layer {i}") for i, t in enumerate(tokens, start=1))


# ----------------------------------------------------------------------------------------- files

_FIELDS: dict[str, tuple[type[Any], set[str]]] = {
    "conv": (Conv2d, {"filters", "kernel", "stride", "padding", "dilation", "groups", "bias", "depthwise"}),
    "dwconv": (Conv2d, {"filters", "kernel", "stride", "padding", "dilation", "bias"}),
    "conv1d": (Conv1d, {"filters", "kernel", "stride", "padding", "dilation", "groups", "bias"}),
    "maxpool": (Pool2d, {"size", "stride", "padding", "ceil_mode"}),
    "avgpool": (Pool2d, {"size", "stride", "padding", "ceil_mode", "count_include_pad"}),
    "minpool": (Pool2d, {"size", "stride", "padding", "ceil_mode"}),
    "adaptiveavgpool": (AdaptiveAvgPool2d, {"output"}),
    "dense": (Dense, {"units", "bias"}),
    "dropout": (Dropout, {"rate"}),
}


@dataclass(frozen=True)
class Model:
    """A parsed spec file: its layers, default input shape and description."""

    name: str
    layers: tuple[LayerSpec, ...]
    input_shape: Shape | None = None
    description: str = ""
    source: str = ""


class _FileParser:
    def __init__(self, path: str, blocks: Mapping[str, Any]) -> None:
        self.path = path
        self.blocks = blocks

    def err(self, where: str, problem: str, fix: str | None = None) -> SpecError:
        return SpecError(f"{self.path}: {where}", problem, fix)

    def layers(self, items: Any, where: str, args: Mapping[str, Any], depth: int = 0) -> tuple[LayerSpec, ...]:
        if depth > 32:
            raise self.err(where, "blocks nest more than 32 deep", "check for a block that uses itself")
        if not isinstance(items, list):
            raise self.err(where, f"must be a list of layers; got {type(items).__name__}")
        out: list[LayerSpec] = []
        for i, item in enumerate(items):
            spec = self.layer(item, f"{where}[{i}]", args, depth)
            if isinstance(spec, Sequential) and spec.name is None:
                out.extend(spec.layers)  # an unnamed repeat: its copies join this list
            else:
                out.append(spec)
        return tuple(out)

    def layer(self, item: Any, where: str, args: Mapping[str, Any], depth: int) -> LayerSpec:
        item = _walk(item, args, lambda key: self.err(where, f"uses ${key}, which the block is not given"))
        if isinstance(item, str):
            try:
                return parse_token(item)
            except SpecError as exc:
                raise self.err(where, f"{item!r}: {exc.problem}", exc.fix) from None
        if not isinstance(item, Mapping) or not item:
            raise self.err(where, f"must be a token string or a mapping; got {item!r}", _GRAMMAR_HINT)
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            raise self.err(f"{where}.name", f"must be text; got {name!r}")
        keys = set(item) - {"name"}
        if "repeat" in item:
            return self.repeat(item, where, args, depth, name)
        if "block" in item:
            return self.block(item, where, depth, name)
        if len(keys) != 1:
            raise self.err(where, f"has keys {sorted(keys)}; a layer is one `type: options` pair (plus `name`)")
        (key,) = keys
        value = item[key]
        kind = str(key).lower()
        if kind in ("sequential", "layers"):
            return Sequential(self.layers(value, f"{where}.{key}", args, depth + 1), name)
        if kind == "residual":
            return self.residual(value, f"{where}.residual", args, depth, name)
        if kind == "parallel":
            return self.parallel(value, f"{where}.parallel", args, depth, name)
        canonical = _ALIASES.get(kind, kind)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) or value is None:
            token = kind if value is None or value == "" else f"{kind}:{value}"
            try:
                spec = parse_token(token)
            except SpecError as exc:
                raise self.err(f"{where}.{key}", f"{token!r}: {exc.problem}", exc.fix) from None
            return _named(spec, name)
        if canonical not in _FIELDS or not isinstance(value, Mapping):
            raise self.err(f"{where}.{key}", f"unknown layer type or options {key!r}: {value!r}", _GRAMMAR_HINT)
        cls, allowed = _FIELDS[canonical]
        unknown = set(value) - allowed
        if unknown:
            raise self.err(
                f"{where}.{key}",
                f"unknown option {sorted(unknown)[0]!r}",
                f"use: {', '.join(sorted(allowed))}",
            )
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
        if canonical in ("maxpool", "avgpool", "minpool"):
            fields["kind"] = canonical[:3]
        if canonical == "dwconv":
            fields["depthwise"] = True
        try:
            return cls(**fields, name=name)  # type: ignore[no-any-return]
        except TypeError as exc:
            raise self.err(f"{where}.{key}", f"missing or bad options ({exc})", _GRAMMAR_HINT) from None
        except FeatmapError as exc:
            raise self.err(f"{where}.{key}", str(exc)) from None

    def repeat(
        self, item: Mapping[str, Any], where: str, args: Mapping[str, Any], depth: int, name: str | None
    ) -> LayerSpec:
        times = item["repeat"]
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise self.err(f"{where}.repeat", f"must be a whole number >= 1; got {times!r}")
        body = {k: v for k, v in item.items() if k not in ("repeat", "name")}
        if set(body) == {"layers"}:
            one: LayerSpec = Sequential(self.layers(body["layers"], f"{where}.layers", args, depth + 1))
        elif "block" in body and set(body) <= {"block", "args"}:
            one = self.block(body, where, depth, None)
        else:
            raise self.err(where, "a repeat needs `layers: [...]` or `block: NAME`")
        base = name or (one.name if isinstance(one, Sequential) and one.name else "repeat")
        copies = tuple(_named(one, f"{base}.{i}") for i in range(times))
        return Sequential(copies, name)  # unnamed: spliced into the enclosing list

    def block(self, item: Mapping[str, Any], where: str, depth: int, name: str | None) -> LayerSpec:
        ref = item["block"]
        call_args = item.get("args", {})
        if isinstance(ref, Mapping):
            call_args, ref = ref.get("args", {}), ref.get("name")
        if not isinstance(ref, str) or ref not in self.blocks:
            known = ", ".join(self.blocks) or "none defined"
            raise self.err(f"{where}.block", f"unknown block {ref!r}", f"define it under `blocks:` ({known})")
        if not isinstance(call_args, Mapping):
            raise self.err(f"{where}.args", f"must be a mapping; got {call_args!r}")
        definition = self.blocks[ref]
        body, params = (
            (definition, [])
            if isinstance(definition, list)
            else (definition.get("layers"), definition.get("params", []))
        )
        missing = [p for p in params if p not in call_args]
        extra = [a for a in call_args if a not in params]
        if missing or extra:
            raise self.err(
                f"{where}.block",
                f"block {ref!r} takes {params}; got {sorted(call_args)}",
                "give exactly its params",
            )
        return Sequential(self.layers(body, f"blocks.{ref}", call_args, depth + 1), name or ref)

    def residual(self, value: Any, where: str, args: Mapping[str, Any], depth: int, name: str | None) -> LayerSpec:
        if isinstance(value, list):
            value = {"main": value}
        if not isinstance(value, Mapping) or "main" not in value or set(value) - {"main", "shortcut"}:
            raise self.err(where, "needs `main: [...]` and optionally `shortcut: [...]` (identity when absent)")
        main = Sequential(self.layers(value["main"], f"{where}.main", args, depth + 1), "main")
        shortcut = Sequential(
            self.layers(value.get("shortcut") or [], f"{where}.shortcut", args, depth + 1), "shortcut"
        )
        return Parallel((main, shortcut), "add", name or "residual")

    def parallel(self, value: Any, where: str, args: Mapping[str, Any], depth: int, name: str | None) -> LayerSpec:
        if not isinstance(value, Mapping) or not isinstance(value.get("branches"), list):
            raise self.err(where, "needs `branches: [[...], [...]]` and `merge: add` or `merge: concat`")
        branches = tuple(
            Sequential(self.layers(b, f"{where}.branches[{i}]", args, depth + 1), f"branch{i + 1}")
            for i, b in enumerate(value["branches"])
        )
        try:
            return Parallel(branches, value.get("merge", "concat"), name or "parallel")
        except SpecError as exc:
            raise self.err(where, f"{exc.what} {exc.problem}") from None


def _named(spec: LayerSpec, name: str | None) -> LayerSpec:
    if name is None:
        return spec
    from dataclasses import replace

    return replace(spec, name=name)


def _walk(value: Any, args: Mapping[str, Any], missing: Any) -> Any:
    """Replace ``$param`` in block bodies: a whole-string reference keeps the argument's type."""
    if isinstance(value, list):
        return [_walk(v, args, missing) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, args, missing) for k, v in value.items()}
    if isinstance(value, str) and "$" in value:
        whole = re.fullmatch(r"\$(\w+)", value)
        if whole:
            if whole[1] not in args:
                raise missing(whole[1])
            return args[whole[1]]

        def put(match: re.Match[str]) -> str:
            if match[1] not in args:
                raise missing(match[1])
            return str(args[match[1]])

        return re.sub(r"\$(\w+)", put, value)
    return value


def parse_file(path: str | Path) -> Model:
    """Parse a YAML/JSON spec file: a list of layers, or a mapping with ``layers`` (and ``input``,
    ``blocks``, ``name``, ``description``, ``source``)."""
    p = Path(path)
    doc = read_document(p, SpecError, "check the path, or see --list-models")
    if isinstance(doc, list):
        doc = {"layers": doc}
    if not isinstance(doc, Mapping) or "layers" not in doc:
        raise SpecError(str(p), "is not a layer list or a mapping with `layers:`", "see README, 'spec files'")
    unknown = set(doc) - {"name", "description", "source", "input", "blocks", "layers"}
    if unknown:
        raise SpecError(
            f"{p}: `{sorted(unknown)[0]}`",
            "is not a spec key",
            "use name, description, source, input, blocks, layers",
        )
    blocks = doc.get("blocks") or {}
    if not isinstance(blocks, Mapping):
        raise SpecError(f"{p}: blocks", "must map block names to layer lists")
    parser = _FileParser(str(p), blocks)
    layers = parser.layers(doc["layers"], "layers", {})
    shape = None
    if doc.get("input") is not None:
        try:
            shape = parse_shape(str(doc["input"]))
        except SpecError as exc:
            raise SpecError(f"{p}: input", exc.problem, exc.fix) from None
    return Model(
        str(doc.get("name") or p.stem),
        layers,
        shape,
        str(doc.get("description") or ""),
        str(doc.get("source") or ""),
    )


def list_models() -> list[Model]:
    """The presets shipped with featmap, sorted by name."""
    return sorted((parse_file(p) for p in MODEL_DIR.glob("*.yaml")), key=lambda m: m.name)


def load_model(name: str) -> Model:
    """A preset by name (``lenet5``, ``vgg16``, ``resnet50``…)."""
    path = MODEL_DIR / f"{name.lower()}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in MODEL_DIR.glob("*.yaml")))
        raise SpecError("--model", f"no preset named {name!r}", f"use one of: {known}")
    return parse_file(path)
