"""Spec files (YAML/JSON) → `featmap.net.layers` objects: composition (``repeat``, ``residual``, ``parallel``,
named and parameterised ``blocks``), conv layers whose weights are named kernels, and the presets shipped in
``featmap/net/models``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from featmap.documents import read_document
from featmap.errors import FeatmapError, OptionError, SpecError, brief
from featmap.limits import LAYERS, REPEAT
from featmap.net.layers import (
    AdaptiveAvgPool2d,
    BatchNorm,
    ChannelShuffle,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    DropPath,
    LayerNorm,
    LayerSpec,
    Parallel,
    Pool2d,
    Sequential,
    Split,
)
from featmap.net.spec.compiled import PRESETS, compiled_document
from featmap.net.spec.foreign import check_spec_bytes
from featmap.net.spec.model import Model
from featmap.net.spec.tokens import ALIASES, GRAMMAR_HINT, parse_shape, parse_token

__all__ = ["MODEL_DIR", "Model", "list_models", "load_model", "parse_file"]

MODEL_DIR = PRESETS
Shape = tuple[int, ...]

_FIELDS: dict[str, tuple[type[Any], set[str]]] = {
    "conv": (
        Conv2d,
        {"filters", "kernel", "stride", "padding", "pad_mode", "dilation", "groups", "bias", "depthwise", "kernels"},
    ),
    "dwconv": (Conv2d, {"filters", "kernel", "stride", "padding", "pad_mode", "dilation", "bias", "kernels"}),
    "conv1d": (Conv1d, {"filters", "kernel", "stride", "padding", "dilation", "groups", "bias"}),
    "maxpool": (Pool2d, {"size", "stride", "padding", "ceil_mode"}),
    "avgpool": (Pool2d, {"size", "stride", "padding", "ceil_mode", "count_include_pad"}),
    "minpool": (Pool2d, {"size", "stride", "padding", "ceil_mode"}),
    "adaptiveavgpool": (AdaptiveAvgPool2d, {"output"}),
    "dense": (Dense, {"units", "bias", "pointwise"}),
    "dropout": (Dropout, {"rate"}),
    "bn": (BatchNorm, {"eps"}),
    "layernorm": (LayerNorm, {"eps"}),
    "droppath": (DropPath, {"rate"}),
    "shuffle": (ChannelShuffle, {"groups"}),
    "chunk": (Split, {"chunks", "index"}),
    "split": (Split, {"sizes", "index"}),
}


class _FileParser:
    def __init__(self, path: str, blocks: Mapping[str, Any], kernel_dirs: Sequence[str | Path] = ()) -> None:
        self.path = path
        self.blocks = blocks
        self.kernel_dirs = tuple(kernel_dirs)

    def bank(self, names: Any, where: str) -> Any:
        """The kernels a conv layer names (anything ``-k`` takes), as a `KernelBank`."""
        from featmap.kernels import KernelLibrary

        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise self.err(
                where, f"must be a list of kernel names or specs; got {brief(names)}", "e.g. [sobel_x, sobel_y]"
            )
        try:
            return KernelLibrary(self.kernel_dirs).bank(names)
        except FeatmapError as exc:
            raise self.err(where, str(exc)) from None

    def err(self, where: str, problem: str, fix: str | None = None) -> SpecError:
        return SpecError(f"{self.path}: {where}", problem, fix)

    def layers(self, items: Any, where: str, args: Mapping[str, Any], depth: int = 0) -> tuple[LayerSpec, ...]:
        if depth > 32:
            raise self.err(where, "blocks nest more than 32 deep", "check for a block that uses itself")
        if not isinstance(items, list):
            raise self.err(where, f"must be a list of layers; got {type(items).__name__}")
        out: list[LayerSpec] = []
        count = 0
        for i, item in enumerate(items):
            spec = self.layer(item, f"{where}[{i}]", args, depth)
            count += _count(spec)
            LAYERS.check(count, f"{self.path}: {where}[{i}]: layers so far")  # blocks of blocks grow fast
            if isinstance(item, Mapping) and "repeat" in item and item.get("name") is None:
                assert isinstance(spec, Sequential)
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
                raise self.err(where, f"{brief(item)}: {exc.problem}", exc.fix) from None
        if not isinstance(item, Mapping) or not item:
            raise self.err(where, f"must be a token string or a mapping; got {brief(item)}", GRAMMAR_HINT)
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            raise self.err(f"{where}.name", f"must be text; got {brief(name)}")
        keys = set(item) - {"name"}
        if "repeat" in item:
            return self.repeat(item, where, args, depth, name)
        if "block" in item:
            return self.block(item, where, depth, name)
        if len(keys) != 1:
            raise self.err(
                where, f"has keys {brief(sorted(map(str, keys)))}; a layer is one `type: options` pair (plus `name`)"
            )
        (key,) = keys
        value = item[key]
        kind = str(key).lower()
        if kind in ("sequential", "layers"):
            return Sequential(self.layers(value, f"{where}.{key}", args, depth + 1), name)
        if kind == "residual":
            return self.residual(value, f"{where}.residual", args, depth, name)
        if kind == "parallel":
            return self.parallel(value, f"{where}.parallel", args, depth, name)
        if kind in ("gate", "aux"):
            return self.side(kind, value, f"{where}.{kind}", args, depth, name)
        canonical = ALIASES.get(kind, kind)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) or value is None:
            token = kind if value is None or value == "" else f"{kind}:{value}"
            try:
                spec = parse_token(token)
            except SpecError as exc:
                raise self.err(f"{where}.{key}", f"{token!r}: {exc.problem}", exc.fix) from None
            return _named(spec, name)
        if canonical not in _FIELDS or not isinstance(value, Mapping):
            raise self.err(
                f"{where}.{key}", f"unknown layer type or options {brief(key)}: {brief(value)}", GRAMMAR_HINT
            )
        cls, allowed = _FIELDS[canonical]
        unknown = set(value) - allowed
        if unknown:
            raise self.err(
                f"{where}.{key}",
                f"unknown option {sorted(map(str, unknown))[0]!r}",
                f"use: {', '.join(sorted(allowed))}",
            )
        fields = {k: tuple(v) if isinstance(v, list) and k != "kernels" else v for k, v in value.items()}
        if "kernels" in fields:
            fields["bank"] = self.bank(fields.pop("kernels"), f"{where}.{key}.kernels")
        if canonical in ("maxpool", "avgpool", "minpool"):
            fields["kind"] = canonical[:3]
        if canonical == "dwconv":
            fields["depthwise"] = True
        try:
            return cls(**fields, name=name)  # type: ignore[no-any-return]
        except TypeError as exc:
            raise self.err(f"{where}.{key}", f"missing or bad options ({exc})", GRAMMAR_HINT) from None
        except FeatmapError as exc:
            raise self.err(f"{where}.{key}", str(exc)) from None

    def repeat(
        self, item: Mapping[str, Any], where: str, args: Mapping[str, Any], depth: int, name: str | None
    ) -> LayerSpec:
        times = item["repeat"]
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise self.err(f"{where}.repeat", f"must be a whole number >= 1; got {brief(times)}")
        REPEAT.check(times, f"{self.path}: {where}.repeat")
        pattern = item.get("names")
        if pattern is not None and (not isinstance(pattern, str) or not re.search(r"\{[in]\}", pattern)):
            raise self.err(
                f"{where}.names",
                f"must be a name pattern with {{i}} (0-based) or {{n}} (1-based); got {brief(pattern)}",
                'e.g. names: "denselayer{n}"',
            )
        body = {k: v for k, v in item.items() if k not in ("repeat", "name", "names")}
        if set(body) == {"layers"}:
            one = Sequential(self.layers(body["layers"], f"{where}.layers", args, depth + 1))
        elif "block" in body and set(body) <= {"block", "args"}:
            one = self.block(body, where, depth, None)
        else:
            raise self.err(where, "a repeat needs `layers: [...]` or `block: NAME`")
        LAYERS.check(_count(one) * times, f"{self.path}: {where}: {times} repeats of {_count(one)} layers")
        base = name or one.label or "repeat"
        copies = tuple(replace(one, name=_copy_name(pattern, i), label=f"{base}.{i}") for i in range(times))
        return Sequential(copies, name)  # unnamed: spliced into the enclosing list

    def block(self, item: Mapping[str, Any], where: str, depth: int, name: str | None) -> Sequential:
        ref = item["block"]
        call_args = item.get("args", {})
        if isinstance(ref, Mapping):
            call_args, ref = ref.get("args", {}), ref.get("name")
        if not isinstance(ref, str) or ref not in self.blocks:
            known = ", ".join(self.blocks) or "none defined"
            raise self.err(f"{where}.block", f"unknown block {brief(ref)}", f"define it under `blocks:` ({known})")
        if not isinstance(call_args, Mapping):
            raise self.err(f"{where}.args", f"must be a mapping; got {brief(call_args)}")
        definition = self.blocks[ref]
        if not isinstance(definition, (list, Mapping)):
            raise self.err(
                f"blocks.{ref}", f"must be a layer list or a mapping with `layers:`; got {brief(definition)}"
            )
        body, params = (
            (definition, [])
            if isinstance(definition, list)
            else (definition.get("layers"), definition.get("params", []))
        )
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise self.err(f"blocks.{ref}.params", f"must be a list of names; got {brief(params)}", "e.g. params: [c]")
        missing = [p for p in params if p not in call_args]
        extra = [a for a in call_args if a not in params]
        if missing or extra:
            raise self.err(
                f"{where}.block",
                f"block {ref!r} takes {params}; got {sorted(map(str, call_args))}",
                "give exactly its params",
            )
        return Sequential(self.layers(body, f"blocks.{ref}", call_args, depth + 1), name, ref)

    def residual(self, value: Any, where: str, args: Mapping[str, Any], depth: int, name: str | None) -> LayerSpec:
        if isinstance(value, list):
            value = {"main": value}
        if not isinstance(value, Mapping) or "main" not in value or set(value) - {"main", "shortcut"}:
            raise self.err(where, "needs `main: [...]` and optionally `shortcut: [...]` (identity when absent)")
        main = Sequential(self.layers(value["main"], f"{where}.main", args, depth + 1), None, "main")
        shortcut = Sequential(
            self.layers(value.get("shortcut") or [], f"{where}.shortcut", args, depth + 1), None, "shortcut"
        )
        return Parallel((main, shortcut), "add", name, "residual")

    def side(
        self, kind: str, value: Any, where: str, args: Mapping[str, Any], depth: int, name: str | None
    ) -> LayerSpec:
        """``gate: [...]``: a branch whose output multiplies the main path (squeeze-and-excitation);
        ``aux: [...]``: an auxiliary head fed from here whose output feeds nothing."""
        if kind == "gate":  # the name is the gate's (like a residual's); the branch is "gate"
            branch = Sequential(self.layers(value, where, args, depth + 1), None, "gate")
            return Parallel((Sequential((), None, "main"), branch), "mul", name, "gate")
        branch = Sequential(self.layers(value, where, args, depth + 1), name, "head")  # the head carries the name
        return Parallel((Sequential((), None, "main"), branch), "aux", None, "aux")

    def parallel(self, value: Any, where: str, args: Mapping[str, Any], depth: int, name: str | None) -> LayerSpec:
        if not isinstance(value, Mapping) or not isinstance(value.get("branches"), list):
            raise self.err(where, "needs `branches: [[...], [...]]` and `merge:` add, concat, mul or aux")
        # each branch counts as a layer at least (a merge input): 400,000 empty branches are refused at once
        LAYERS.check(len(value["branches"]), f"{self.path}: {where}: {len(value['branches']):,} branches")
        branches: list[Sequential] = []
        count = 0
        for i, b in enumerate(value["branches"]):
            layers = self.layers(b, f"{where}.branches[{i}]", args, depth + 1)
            branches.append(Sequential(layers, None, f"branch{i + 1}"))
            count += max(_count(branches[-1]), 1)
            LAYERS.check(count, f"{self.path}: {where}.branches[{i}]: layers so far")
        try:
            return Parallel(tuple(branches), value.get("merge", "concat"), name, "parallel")
        except SpecError as exc:
            raise self.err(where, f"{exc.what} {exc.problem}") from None


def _count(spec: LayerSpec) -> int:
    """The layers ``spec`` holds once containers are opened (a container counts as none)."""
    if isinstance(spec, Sequential):
        return sum(_count(child) for child in spec.layers)
    if isinstance(spec, Parallel):
        return sum(_count(branch) for branch in spec.branches)
    return 1


def _copy_name(pattern: str | None, index: int) -> str | None:
    """A repeat's copy's name from ``names:`` (``denselayer{n}``: ``{i}`` counts from 0, ``{n}`` from 1)."""
    if pattern is None:
        return None
    return pattern.replace("{i}", str(index)).replace("{n}", str(index + 1))


def _named(spec: LayerSpec, name: str | None) -> LayerSpec:
    return spec if name is None else replace(spec, name=name)


_PARAM = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _walk(value: Any, args: Mapping[str, Any], missing: Any) -> Any:
    """Replace ``$param`` and ``${param}`` in block bodies (``${k}`` may be followed by letters:
    ``conv:$c@${k}x${k}``); a whole-string reference keeps the argument's type."""
    if isinstance(value, list):
        return [_walk(v, args, missing) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, args, missing) for k, v in value.items()}
    if isinstance(value, str) and "$" in value:

        def arg(match: re.Match[str]) -> Any:
            key = match[1] or match[2]
            if key not in args:
                raise missing(key)
            return args[key]

        whole = _PARAM.fullmatch(value)
        if whole:
            return arg(whole)
        return _PARAM.sub(lambda match: str(arg(match)), value)
    return value


_SPEC_KEYS = ("name", "description", "source", "input", "blocks", "layers", "weights", "labels", "preprocess")


def parse_file(path: str | Path, *, kernel_dirs: Sequence[str | Path] = ()) -> Model:
    """Parse a YAML/JSON spec file: a list of layers, or a mapping with ``layers`` (and ``input``,
    ``blocks``, ``name``, ``description``, ``source``, ``weights``, ``labels``).

    ``weights`` names a weights file relative to the spec; ``labels`` lists the class names of the last
    layer's outputs (or names a label file beside the spec, or ``imagenet-1k``: `featmap.net.labels`);
    ``preprocess`` is the input transform the network was trained with (`featmap.net.preprocess`). Kernels
    named by conv layers (``kernels: [sobel_x, sobel_y]``) are looked up in
    ``kernel_dirs`` before the built-in library.
    """
    p = Path(path)
    doc = compiled_document(p)  # a preset: its compiled form, while it holds the file's very text
    if doc is None:
        check_spec_bytes(p)  # a weights file or an image said as such, before the size limit and the text
        doc = read_document(p, SpecError, "check the path, or see --list-models")
    if isinstance(doc, list):
        doc = {"layers": doc}
    if not isinstance(doc, Mapping) or "layers" not in doc:
        raise SpecError(str(p), "is not a layer list or a mapping with `layers:`", "see README, 'spec files'")
    unknown = set(doc) - set(_SPEC_KEYS)
    if unknown:
        raise SpecError(f"{p}: `{sorted(map(str, unknown))[0]}`", "is not a spec key", f"use {', '.join(_SPEC_KEYS)}")
    blocks = doc.get("blocks") or {}
    if not isinstance(blocks, Mapping):
        raise SpecError(f"{p}: blocks", "must map block names to layer lists")
    parser = _FileParser(str(p), blocks, kernel_dirs)
    layers = parser.layers(doc["layers"], "layers", {})
    shape = None
    if doc.get("input") is not None:
        try:
            shape = parse_shape(str(doc["input"]))
        except SpecError as exc:
            raise SpecError(f"{p}: input", exc.problem, exc.fix) from None
    weights = doc.get("weights")
    if weights is not None and (not isinstance(weights, str) or not weights.strip()):
        raise SpecError(f"{p}: weights", f"must be a file name; got {brief(weights)}", "e.g. weights: my_net.npz")
    from featmap.net.labels import spec_labels
    from featmap.net.preprocess import check_spec_preprocess

    labels = spec_labels(doc["labels"], p) if doc.get("labels") else ()
    preprocess = check_spec_preprocess(doc.get("preprocess"), str(p))
    return Model(
        str(doc.get("name") or p.stem),
        layers,
        shape,
        str(doc.get("description") or ""),
        str(doc.get("source") or ""),
        None if weights is None else p.resolve().parent / weights,
        labels,
        preprocess,
    )


def list_models() -> list[Model]:
    """The presets shipped with featmap, sorted by name."""
    return sorted((parse_file(p) for p in MODEL_DIR.glob("*.yaml")), key=lambda m: m.name)


def load_model(name: str) -> Model:
    """A preset by name (``lenet5``, ``vgg16``, ``resnet50``…)."""
    path = MODEL_DIR / f"{name.lower()}.yaml"
    if not path.is_file() or "/" in name or "\\" in name:
        import difflib

        known = sorted(p.stem for p in MODEL_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
        listing = "`featmap shape --list-models` lists them all"
        fix = f"did you mean {' or '.join(close)}? ({listing})" if close else listing
        # a usage error, exit 2, under `featmap apply` as under `featmap shape`
        raise OptionError("`model`", f"no preset named {name!r}", fix)
    return parse_file(path)
