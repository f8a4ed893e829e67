"""A network's input transform: what an image becomes before the first layer, as the model was trained.

A `Preprocess` resizes (``crop``: the shorter side to ``resize`` then a centre crop to the network's input;
``stretch``: straight to the input, the aspect ratio lost; ``pad``: the longer side to the input, the rest
black, centred), repeats a gray image to three channels for an RGB network, inverts a digit drawn dark on
light for a network trained on white ink on black (``ink="white-on-black"``), and normalises each channel
``(x - mean) / std``. Named transforms:

==================  ==========================================================================================
``imagenet``        torchvision's ImageNet presets: shorter side to 256, centre crop 224, mean (0.485, 0.456,
                    0.406), std (0.229, 0.224, 0.225)
``imagenet-299``    inception_v3's: shorter side to 342, centre crop 299, the same mean and std
``white-on-black``  LeNet-5 digits: stretched to the input, dark-on-light digits inverted (with a note)
``none``            stretched to the input, values kept in [0, 1]
==================  ==========================================================================================

``transform_input: true`` is torchvision's GoogLeNet and Inception v3 step of that name (on by default with
their ImageNet weights, and in the ``googlenet`` and ``inception_v3`` presets): the network re-scales an
ImageNet-normalised input to the (0.5, 0.5, 0.5) normalisation it was trained on, ``x · (std / 0.5) +
(mean − 0.5) / 0.5`` per channel with ImageNet's mean and std, in float32 as torchvision computes it. It is the
model's own step: it stays when ``--preprocess`` replaces the rest of the transform.

Resampling is Pillow's bilinear filter on float32 planes, antialiased when shrinking (the filter's support
grows with the scale), which is what ``torchvision.transforms.Resize`` does to a PIL image and
``torch.nn.functional.interpolate(mode="bilinear", antialias=True)`` to a tensor; the tests compare with the
latter within 1e-4 on [0, 1] values (measured: 1.2e-5 at most, 300×410 → 256×349), and torchvision's 8-bit PIL
path within 1/255 (it rounds the resized image to 8 bits; featmap does not). The shorter-side size and the
crop offsets follow torchvision: the longer side is ``int(size · long / short)``, the crop's top-left
``round((H - h) / 2)``.

A spec declares one with ``preprocess: imagenet`` or a mapping of `Preprocess`'s fields
(``{resize: 256, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}``); an ONNX file's metadata may name one under
the key ``featmap.preprocess`` (`from_metadata`).

Examples
--------
>>> import numpy as np
>>> out = prepare(np.ones((300, 400, 3), np.float32), (224, 224, 3), resolve("imagenet"))
>>> out.tensor.shape, round(float(out.tensor[0, 0, 0]), 4)  # (1 - 0.485) / 0.229
((224, 224, 3), 2.2489)
>>> page = prepare(np.ones((32, 32, 1), np.float32), (32, 32, 1), resolve("white-on-black"))
>>> float(page.tensor.max()), page.notes[0][:48]
(0.0, 'inverted: the digit looks dark on a light page (')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import OptionError, SpecError, brief
from featmap.frozen import frozen_dataclass
from featmap.net.fitting import fit_image, resample

__all__ = [
    "PRESETS",
    "RESIZE_MODES",
    "Prepared",
    "Preprocess",
    "check_preprocess_channels",
    "check_spec_preprocess",
    "from_metadata",
    "prepare",
    "resample",
    "resolve",
]

RESIZE_MODES = ("crop", "stretch", "pad")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The ONNX metadata key whose value names a transform (or holds one as JSON).
METADATA_KEY = "featmap.preprocess"


def _check_float32_range(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Refuse a mean and std whose ``(x - mean) / std`` leaves float32 for an input ``x`` in [0, 1] (a std of 1e-300
    is 0 in float32): the network's first layer would see infinities."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        ends = np.stack([(np.float32(0) - m) / s, (np.float32(1) - m) / s])
    if not np.isfinite(ends).all():
        raise SpecError(
            "`preprocess.std`",
            f"with this mean takes [0, 1] beyond float32 (mean {list(mean)}, std {list(std)})",
            "give the mean and std of the input in [0, 1] units, e.g. ImageNet's std [0.229, 0.224, 0.225]",
        )


@frozen_dataclass
class Preprocess:
    """An input transform. ``resize``: the shorter side before a centre crop (None: the input's own size);
    ``mode``: ``crop``, ``stretch`` or ``pad``; ``mean``/``std`` per channel (None: values kept in [0, 1]);
    ``ink``: ``white-on-black`` inverts a digit that looks dark on light; ``transform_input``: torchvision's
    GoogLeNet / Inception v3 re-scaling after it (see the module's text)."""

    name: str = "custom"
    mode: str = "stretch"
    resize: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    ink: str | None = None
    transform_input: bool = False

    def __repr__(self) -> str:  # the field list as dataclasses writes it; transform_input only when on
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "transform_input"]
        return f"Preprocess({', '.join(shown)}{', transform_input=True' if self.transform_input else ''})"

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise SpecError("`preprocess.mode`", f"must be one of {', '.join(RESIZE_MODES)}; got {self.mode!r}")
        if self.resize is not None and (isinstance(self.resize, bool) or not isinstance(self.resize, int)):
            raise SpecError("`preprocess.resize`", f"must be a whole number; got {brief(self.resize)}")
        if self.resize is not None and not 1 <= self.resize <= 8192:
            raise SpecError("`preprocess.resize`", f"must be 1 … 8192; got {self.resize}")
        if (self.mean is None) != (self.std is None):
            raise SpecError("`preprocess`", "gives mean without std or std without mean", "give both, or neither")
        for key, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and not all(math.isfinite(v) for v in values):
                raise SpecError(f"`preprocess.{key}`", f"must be finite; got {list(values)}")
        if self.std is not None and any(not s > 0 for s in self.std):
            raise SpecError("`preprocess.std`", f"must be > 0; got {list(self.std)}")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std) or not self.mean:
                raise SpecError(
                    "`preprocess`",
                    f"gives {len(self.mean)} means and {len(self.std)} stds",
                    "give one of each a channel",
                )
            _check_float32_range(self.mean, self.std)
        if self.ink not in (None, "white-on-black"):
            raise SpecError("`preprocess.ink`", f"must be white-on-black; got {brief(self.ink)}")
        if not isinstance(self.transform_input, bool):
            raise SpecError("`preprocess.transform_input`", f"must be true or false; got {brief(self.transform_input)}")


PRESETS = {
    "imagenet": Preprocess("imagenet", "crop", 256, IMAGENET_MEAN, IMAGENET_STD),
    "imagenet-299": Preprocess("imagenet-299", "crop", 342, IMAGENET_MEAN, IMAGENET_STD),
    "white-on-black": Preprocess("white-on-black", "stretch", ink="white-on-black"),
    "none": Preprocess("none", "stretch"),
}


def resolve(declared: Any, override: str | None = None, resize: str | None = None) -> Preprocess:
    """The transform in force: ``override`` (a preset name, ``--preprocess``) else the ``declared`` one (a
    name or a mapping from a spec) else ``none``; ``resize`` (``--resize``) replaces its mode."""
    chosen = override if override is not None else declared
    if chosen is None:
        pre = PRESETS["none"]
    elif isinstance(chosen, Preprocess):
        pre = chosen
    elif isinstance(chosen, str):
        if chosen.lower() not in PRESETS:
            raise OptionError("`preprocess`", f"no transform named {chosen!r}", f"use one of: {', '.join(PRESETS)}")
        pre = PRESETS[chosen.lower()]
    elif isinstance(chosen, Mapping):
        pre = _from_mapping(chosen)
    else:
        raise SpecError(
            "`preprocess`", f"must be a name or a mapping; got {brief(chosen)}", f"e.g. {', '.join(PRESETS)}"
        )
    if override is not None and _transforms_input(declared):
        pre = replace(pre, transform_input=True)  # the network's own step, whatever comes before it
    if resize is not None:
        if resize not in RESIZE_MODES:
            raise OptionError("`resize`", f"must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
        pre = replace(pre, mode=resize)
    return pre


def check_preprocess_channels(pre: Preprocess, channels: int, what: str) -> None:
    """Refuse a transform whose mean and std are for another number of channels than the network's input (one
    mean serves every channel): knowable before any image is read (`prepare` would refuse each image)."""
    if pre.mean is not None and len(pre.mean) not in (1, channels):
        raise OptionError(
            what,
            f"has {len(pre.mean)} means for the network's {channels}-channel input",
            "give one mean and std a channel, or another transform (--preprocess none)",
        )


def _transforms_input(declared: Any) -> bool:
    if isinstance(declared, Preprocess):
        return declared.transform_input
    return isinstance(declared, Mapping) and declared.get("transform_input") is True


def _from_mapping(doc: Mapping[str, Any]) -> Preprocess:
    allowed = {f.name for f in fields(Preprocess)}
    unknown = set(doc) - allowed
    if unknown:
        raise SpecError(
            "`preprocess`", f"has unknown key {sorted(map(str, unknown))[0]!r}", f"use {', '.join(sorted(allowed))}"
        )
    base = PRESETS.get(str(doc.get("name", "")).lower(), Preprocess())
    values: dict[str, Any] = {k: _numbers(k, v) if k in ("mean", "std") else v for k, v in doc.items()}
    if "resize" in values and "mode" not in values:
        values["mode"] = "crop"
    try:
        return replace(base, **values)
    except SpecError:
        raise
    except (TypeError, ValueError) as exc:
        raise SpecError("`preprocess`", f"bad options ({exc})") from None


def _numbers(key: str, value: Any) -> tuple[float, ...]:
    """A spec's ``mean`` or ``std``: a list of numbers (one per channel) as floats."""
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise SpecError(
            f"`preprocess.{key}`",
            f"must be a list of numbers, one per channel; got {brief(value)}",
            "e.g. [0.5, 0.5, 0.5]",
        )
    return tuple(float(v) for v in value)


def check_spec_preprocess(value: Any, where: str) -> Any:
    """A spec's ``preprocess:`` checked at parse time (a name or a mapping); returned as written."""
    if value is None:
        return None
    try:
        resolve(value)
    except SpecError as exc:  # `preprocess.mean` → net.yaml: preprocess.mean
        raise SpecError(f"{where}: {exc.what.strip('`')}", exc.problem, exc.fix) from None
    return value


def from_metadata(metadata: Mapping[str, str], source: str = "") -> Any:
    """The transform an ONNX file's ``metadata_props`` declares under ``featmap.preprocess`` (a preset's name,
    or JSON of `Preprocess`'s fields), or None; checked as a spec's ``preprocess:`` is, an error naming ``source``
    (the file) and the key."""
    text = metadata.get(METADATA_KEY)
    if text is None:
        return None
    where = f"{source}: metadata {METADATA_KEY}" if source else f"metadata {METADATA_KEY}"
    text = text.strip()
    if text.startswith("{"):
        import json

        try:
            declared = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(where, f"is not valid JSON ({exc.msg})", "write a preset's name or a JSON object") from None
    else:
        declared = text
    try:
        resolve(declared)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc.what.strip('`')}", exc.problem, exc.fix) from None
    return declared


@frozen_dataclass
class Prepared:
    """What the network sees (``tensor``, normalised), the same picture in [0, 1] (``shown``: what a sheet
    draws as the input) and the notes (a resize, a gray image repeated, an inversion)."""

    tensor: NDArray[np.float32]
    shown: NDArray[np.float32]
    notes: tuple[str, ...]


def prepare(
    pixels: NDArray[np.floating], input_shape: tuple[int, ...] | None, pre: Preprocess, *, gray: bool = False
) -> Prepared:
    """``pixels`` (float ``(H, W, C)`` in [0, 1]) made into the network's input of ``input_shape`` (``(H, W, C)``;
    None keeps the image's size) by ``pre``. ``gray`` says the image was gray (its channels are copies)."""
    x = np.asarray(pixels, dtype=np.float32)
    notes: list[str] = []
    if input_shape is not None and len(input_shape) == 3:
        want_h, want_w, channels = input_shape
        if channels == 3 and x.shape[2] == 1:
            x = np.repeat(x, 3, axis=2)
            gray = True
        if channels == 3 and gray:
            notes.append("a gray image: its one channel repeated to the network's three (RGB)")
        x, note = fit_image(x, (want_h, want_w), pre.mode, pre.resize)
        if note:
            notes.append(note)
    if pre.ink == "white-on-black":
        x, note = _ink(x)
        if note:
            notes.append(note)
    shown = x
    if pre.mean is not None and pre.std is not None:
        c = x.shape[2]
        mean, std = np.asarray(pre.mean, np.float32), np.asarray(pre.std, np.float32)
        if len(mean) != c and len(mean) != 1:
            raise SpecError(
                f"preprocess {pre.name}", f"has {len(mean)} means for an input of {c} channels", "give one per channel"
            )
        x = (x - mean) / std
    if pre.transform_input:
        x = _transform_input(x)
    return Prepared(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(shown), tuple(notes))


def _transform_input(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """torchvision's GoogLeNet / Inception v3 ``_transform_input``: ``x · (std / 0.5) + (mean − 0.5) / 0.5`` per
    channel, ImageNet's mean and std, the two factors rounded to float32 as torch rounds a Python scalar."""
    if x.shape[2] != 3:
        raise SpecError("preprocess transform_input", f"needs an RGB input; got {x.shape[2]} channels", "drop it")
    scale = np.array([s / 0.5 for s in IMAGENET_STD], np.float32)
    shift = np.array([(m - 0.5) / 0.5 for m in IMAGENET_MEAN], np.float32)
    return (x * scale + shift).astype(np.float32)


def _median(values: NDArray[np.floating]) -> float:
    """``np.median`` of ``values`` by the same partition and mean, without importing numpy's masked arrays
    (``np.median`` does, ~10 ms of a LeNet command's start-up)."""
    flat = values.reshape(-1)
    middle = flat.size // 2
    if flat.size % 2:
        return float(np.partition(flat, middle)[middle])
    return float(np.mean(np.partition(flat, (middle - 1, middle))[middle - 1 : middle + 1]))


def _ink(x: NDArray[np.float32]) -> tuple[NDArray[np.float32], str]:
    """Invert a digit drawn dark on light: its border is brighter than its centre, or most of it is light."""
    gray = x.mean(axis=2)
    h, w = gray.shape
    bh, bw = max(1, h // 8), max(1, w // 8)
    ring = np.ones_like(gray, dtype=bool)
    ring[bh : h - bh, bw : w - bw] = False
    border = float(gray[ring].mean())
    centre = float(gray[h // 4 : h - h // 4, w // 4 : w - w // 4].mean()) if h >= 4 and w >= 4 else float(gray.mean())
    median = _median(gray)
    if border > centre or median > 0.5:
        note = (
            f"inverted: the digit looks dark on a light page (border mean {border:.2f} > centre mean {centre:.2f}"
            f" or median {median:.2f} > 0.5); the network was trained on white ink on black"
        )
        return (1.0 - x).astype(np.float32), note
    return x, ""
