"""Inline layer tokens → `featmap.net.layers` objects (see README for the full grammar)::

    conv:64@3x3/s2/same   conv:6@5x5/p2/nobias   dwconv:3x3/s2/p1   conv1d:16@5/same
    maxpool:3/s2/p1/ceil  avgpool:2   gap   gmp   adaptiveavgpool:7x7
    flatten   dense:10   bn   relu   act:leaky_relu,slope=0.2   dropout:0.5
    silu   hardswish   hardsigmoid   gelu   softmax   layernorm:eps=1e-6   layerscale
    chunk:2/1   split:16,48/0   shuffle:2   droppath:0.1   combine:magnitude   combine:max/8

Examples
--------
>>> parse_token("conv:64@3x3/s2/same")
Conv2d(filters=64, kernel=(3, 3), stride=(2, 2), padding='same', ...)
>>> parse_shape("224x224x3")
(224, 224, 3)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from featmap.enums import Activation, Combine, PoolKind, parse_enum
from featmap.errors import SpecError
from featmap.net.layers import (
    Act,
    AdaptiveAvgPool2d,
    BatchNorm,
    ChannelShuffle,
    CombineMaps,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    DropPath,
    Flatten,
    GlobalPool2d,
    LayerNorm,
    LayerScale,
    LayerSpec,
    Pool2d,
    Softmax,
    Split,
)

__all__ = ["ALIASES", "GRAMMAR_HINT", "parse_shape", "parse_token", "parse_tokens"]

Shape = tuple[int, ...]

_INT = r"\d+"
_PAIR = rf"{_INT}(?:[x×,]{_INT})?"
_CONV = re.compile(rf"^(?P<filters>{_INT})@(?P<kernel>{_PAIR})$")
_CONV1D = re.compile(rf"^(?P<filters>{_INT})@(?P<kernel>{_INT})$")
ALIASES = {
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
    "softmax": "softmax",
    "layernorm": "layernorm",
    "layer_norm": "layernorm",
    "ln": "layernorm",
    "layerscale": "layerscale",
    "layer_scale": "layerscale",
    "droppath": "droppath",
    "drop_path": "droppath",
    "stochastic_depth": "droppath",
    "stochasticdepth": "droppath",
    "chunk": "chunk",
    "split": "split",
    "shuffle": "shuffle",
    "channel_shuffle": "shuffle",
    "combine": "combine",
}
#: Other names for activations: ``swish`` is SiLU.
ACTIVATION_ALIASES = {"swish": "silu", "hard_swish": "hardswish", "hard_sigmoid": "hardsigmoid"}
_KINDS = sorted(set(ALIASES) | {a.value for a in Activation} | set(ACTIVATION_ALIASES))
GRAMMAR_HINT = "e.g. conv:64@3x3/s2/same, maxpool:2, dense:10 (see README, 'layer-spec language')"


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
    values = tuple(text) if not isinstance(text, str) else _ints(text.strip().lower(), "`input`")
    if not 1 <= len(values) <= 3 or any(not isinstance(v, int) or v < 1 for v in values):
        raise SpecError(
            "`input`", f"{text!r} is not a shape", "write HxWxC (e.g. 224x224x3), LxC for 1-D, or N features"
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
    kind_word = ACTIVATION_ALIASES.get(kind_word, kind_word)
    if kind_word in {a.value for a in Activation}:
        if rest:
            raise SpecError(what, f"{kind_word} takes no arguments", f"use act:{kind_word},slope=0.1 for parameters")
        return Act(parse_enum(Activation, kind_word, "activation"))
    kind = ALIASES.get(kind_word)
    if kind is None:
        import difflib

        close = difflib.get_close_matches(kind_word, _KINDS, n=3, cutoff=0.6)
        fix = f"did you mean {' or '.join(close)}?" if close else f"use one of: {', '.join(_KINDS)}"
        raise SpecError(what, f"unknown layer type {head!r}", fix)
    main, *opt_parts = rest.split("/") if rest else [""]
    try:
        return _build(kind, main.strip(), opt_parts, what)
    except SpecError as exc:
        if exc.what == what:
            raise
        raise SpecError(what, f"{exc.what.strip('`')} {exc.problem}".strip(), exc.fix or GRAMMAR_HINT) from None


def _need_no_args(kind: str, main: str, opts: Sequence[str], what: str) -> None:
    if main or opts:
        raise SpecError(what, f"{kind} takes no arguments", f"write just `{kind}`")


_CONV_OPTIONS = {"stride", "padding", "dilation", "groups", "bias", "depthwise"}


def _only(opts: dict[str, Any], allowed: set[str], what: str, kind: str) -> dict[str, Any]:
    """``opts`` when each is one ``kind`` takes; else a `SpecError` naming the first that is not."""
    extra = sorted(set(opts) - allowed)
    if extra:
        word = {"ceil_mode": "ceil", "depthwise": "dw", "bias": "bias/nobias"}.get(extra[0], extra[0])
        raise SpecError(what, f"a {kind} takes no `{word}` option", "use sN, pN / same / valid / full, dN, gN, nobias")
    return opts


def _build(kind: str, main: str, opt_parts: Sequence[str], what: str) -> LayerSpec:
    if kind in ("conv", "dwconv"):
        if kind == "dwconv":
            opts = _only(_options(opt_parts, what), _CONV_OPTIONS - {"groups", "depthwise"}, what, kind)
            return Conv2d(filters=None, kernel=_single(_ints(main, what)), depthwise=True, **opts)  # type: ignore[arg-type]
        match = _CONV.match(main.replace(" ", ""))
        if not match:
            raise SpecError(what, "a conv is FILTERS@KxK", "e.g. conv:64@3x3/s2/same")
        opts = _only(_options(opt_parts, what), _CONV_OPTIONS, what, kind)
        return Conv2d(int(match["filters"]), _single(_ints(match["kernel"], what)), **opts)  # type: ignore[arg-type]
    if kind == "conv1d":
        match = _CONV1D.match(main.replace(" ", ""))
        if not match:
            raise SpecError(what, "a conv1d is FILTERS@K", "e.g. conv1d:16@5/s2/same")
        opts = _only(_options(opt_parts, what), _CONV_OPTIONS - {"depthwise"}, what, kind)
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
        pointwise = any(part.strip().lower() == "pointwise" for part in opt_parts)
        opts = _options([part for part in opt_parts if part.strip().lower() != "pointwise"], what)
        if set(opts) - {"bias"}:
            raise SpecError(what, "a dense layer takes only /nobias and /pointwise")
        return Dense(int(main), pointwise=pointwise, **opts)
    if kind == "bn":
        _need_no_args(kind, main, opt_parts, what)
        return BatchNorm()
    if kind in ("softmax", "layerscale"):
        _need_no_args(kind, main, opt_parts, what)
        return Softmax() if kind == "softmax" else LayerScale()
    if kind == "layernorm":
        if opt_parts or (main and not main.startswith("eps=")):
            raise SpecError(what, "a layer norm takes only eps", "e.g. layernorm or layernorm:eps=1e-6")
        return LayerNorm(_number(main[4:], what, "eps")) if main else LayerNorm()
    if kind == "droppath":
        return DropPath(_number(main, what, "rate") if main else 0.0)
    if kind == "shuffle":
        if opt_parts or not main.isdigit():
            raise SpecError(what, "a channel shuffle is shuffle:GROUPS", "e.g. shuffle:2")
        return ChannelShuffle(int(main))
    if kind in ("chunk", "split"):
        return _split(kind, main, opt_parts, what)
    if kind == "combine":
        return _combine(main, opt_parts, what)
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


def _number(text: str, what: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SpecError(what, f"{key} {text!r} is not a number") from None


def _combine(main: str, opt_parts: Sequence[str], what: str) -> CombineMaps:
    """``combine:MODE[/N]``: N maps (2 by default) side by side on the channels merged into one (``--combine``)."""
    modes = ", ".join(mode.value for mode in Combine)
    if len(opt_parts) > 1 or (opt_parts and not opt_parts[0].strip().isdigit()):
        raise SpecError(what, "a combine takes one option, the number of maps", "e.g. combine:magnitude/2")
    if main.strip().lower() not in {mode.value for mode in Combine}:
        raise SpecError(what, f"combine mode {main!r} is not one of {modes}", "e.g. combine:magnitude or combine:max/8")
    maps = int(opt_parts[0]) if opt_parts else 2
    if maps < 1:
        raise SpecError(what, f"combine of {maps} maps", "give 1 or more maps, e.g. combine:max/8")
    return CombineMaps(Combine(main.strip().lower()), maps)


def _split(kind: str, main: str, opt_parts: Sequence[str], what: str) -> Split:
    """``chunk:N/I`` (the I-th of N equal chunks) or ``split:A,B,…/I`` (the I-th part of sizes A, B, …)."""
    example = "chunk:2/1" if kind == "chunk" else "split:16,48/1"
    index_text = opt_parts[0].strip() if len(opt_parts) == 1 else ""
    if not index_text.isdigit():
        raise SpecError(what, f"a {kind} names the part it keeps after a slash, from 0", f"e.g. {example}")
    if kind == "chunk":
        if not main.isdigit():
            raise SpecError(what, "a chunk is chunk:PARTS/INDEX", "e.g. chunk:2/1")
        return Split(int(index_text), chunks=int(main))
    return Split(int(index_text), sizes=_ints(main, what))


def parse_tokens(tokens: Sequence[str]) -> tuple[LayerSpec, ...]:
    """Parse inline tokens in order; errors name the layer's index (1-based) and token.

    Examples
    --------
    >>> [type(layer).__name__ for layer in parse_tokens(["conv:6@5x5", "avgpool:2", "flatten", "dense:10"])]
    ['Conv2d', 'Pool2d', 'Flatten', 'Dense']
    """
    return tuple(parse_token(t, where=f"layer {i}") for i, t in enumerate(tokens, start=1))
