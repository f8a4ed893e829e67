"""The Python API: `apply`, `shape` and `kernel`, re-exported as ``featmap.apply`` and so on.

The command line calls these (and, for files and batches, `featmap.batch_api`) and only renders what they
return; `apply` and `featmap.build_job` hand their options to the same job builder, `featmap.run.jobs.make_job`.
Options are keyword-only and errors name them (``pool_size``), never command-line flags.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from featmap.errors import SpecError

if TYPE_CHECKING:
    from featmap.kernels import Kernel
    from featmap.net.spec import Model
    from featmap.net.summary import Summary
    from featmap.net.weights import WeightsCheck
    from featmap.run.executor import NetworkResult
    from featmap.run.pipeline import FeatureMaps

__all__ = ["apply", "check_weights", "forward", "kernel", "resolve_layers", "shape"]


def apply(
    image: ArrayLike | str | os.PathLike[str],
    kernels: Any,
    *,
    kernel_dirs: Iterable[str | os.PathLike[str]] = (),
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = "valid",
    pad_mode: str = "zeros",
    pad_value: float = 0.0,
    dilation: int | Sequence[int] = 1,
    flip: bool = False,
    activation: str = "none",
    slope: float = 0.01,
    pool: str | None = None,
    pool_size: int | Sequence[int] | None = None,
    pool_stride: int | Sequence[int] | None = None,
    pool_padding: str = "valid",
    combine: str | None = None,
    strict: bool = False,
    color: bool = False,
    background: str | tuple[float, float, float] = "white",
    max_pixels: int | None = None,
) -> FeatureMaps:
    """Run kernels over an image: convolution, activation, pooling, as ``featmap apply`` does, without files.

    Parameters
    ----------
    image : array_like or path
        ``(H, W)`` or ``(H, W, C)`` values (used as given, float32 unless float64), or an image file,
        read as ``featmap apply`` reads it (gray unless ``color``: BT.601 luma, a JPEG's own luma plane; alpha on
        ``background``).
    kernels : str, Kernel, KernelBank or sequence of str / Kernel
        Kernel names, tags, kernel files or parametric specs (``"gaussian:size=5,sigma=1.2"``), or `Kernel`
        objects (see `kernel`).
    kernel_dirs : paths, optional
        Extra kernel folders or files, searched before the built-ins.
    stride, padding, pad_mode, pad_value, dilation, flip
        The convolution, as in `featmap.conv2d`.
    activation : str
        ``none``, ``relu``, ``leaky_relu`` (with ``slope``), ``abs``, ``sigmoid``, ``tanh``, ...
    pool : {None, "max", "avg", "min", "global-avg", "global-max", "global-min"}
        Pooling after the activation; ``pool_size`` (default 2), ``pool_stride`` (default the size) and
        ``pool_padding`` (``valid`` or ``same``) go with a windowed pool.
    combine : {None, "magnitude", "max"}
        Also make one map merging every kernel's response before the activation.
    strict : bool
        Raise `ShapeError` when a stride leaves input rows or columns unused (otherwise a warning).
    color, background, max_pixels
        How an image file is read (``max_pixels`` defaults to the command's decompression-bomb guard).

    Returns
    -------
    FeatureMaps
        ``maps``: one `FeatureMap` per kernel (then the combined one), each with ``values`` (float
        ``(H', W', C)``) and ``info`` (shapes, geometry, parameters, statistics: the table's facts);
        ``input_shape``; ``warnings`` (strides that leave rows unused).

    Examples
    --------
    >>> import numpy as np, featmap
    >>> image = np.zeros((8, 8), np.float32); image[:, 4:] = 1   # a vertical edge
    >>> result = featmap.apply(image, ["sobel_x", "sobel_y"], stride=2, padding="same", pool="max")
    >>> [(m.info.name, m.values.shape) for m in result.maps]
    [('sobel_x', (2, 2, 1)), ('sobel_y', (2, 2, 1))]
    >>> result.maps[0].info.stats.max, result.maps[1].info.stats.max
    (4.0, 0.0)
    >>> featmap.apply(image, "box_3", pool_size=3)
    Traceback (most recent call last):
    ...
    featmap.errors.OptionError: `pool_size` and `pool_stride` need `pool` max, avg or min
    """
    from featmap.core.ops import as_float_image
    from featmap.io.images import DEFAULT_MAX_PIXELS, load_image
    from featmap.run.jobs import make_job, taken_by
    from featmap.run.pipeline import run

    given = {**locals(), "max_pixels": DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels}
    job = make_job(**taken_by(make_job, given))  # every option by its name, as the command line's
    if isinstance(image, (str, os.PathLike)):
        loaded = load_image(image, color=job.color, background=job.background, max_pixels=job.max_pixels)
        pixels = loaded.pixels
    else:
        pixels = as_float_image(image, "image")
    return run(pixels, job.bank, job.conv, job.act, job.pool, combine=job.combine, strict=job.strict)


def resolve_layers(layers: Any) -> Model:
    """A `featmap.net.spec.Model` from a preset name, a spec file, layer tokens or layer objects.

    A string is a built-in preset (``"vgg16"``), a YAML/JSON spec file, an ONNX file (``featmap[onnx]``,
    its own input shape) or a Keras 3 ``.keras`` model (``featmap[keras]``); a sequence of strings is
    layer tokens (``["conv:6@5x5", "maxpool:2"]``); a `Model` is returned as it is; anything else is
    taken as layer objects.
    """
    from featmap.net.spec import Model, list_models, load_model, parse_tokens

    if isinstance(layers, Model):
        return layers
    if isinstance(layers, (str, os.PathLike)):
        text = str(layers)
        if Path(text).suffix.lower() == ".onnx":  # before the presets: naming one reads them all
            from featmap.net.onnx import load_onnx

            return load_onnx(text)
        if isinstance(layers, str) and text in {m.name for m in list_models()}:
            return load_model(text)
        if Path(text).suffix.lower() in (".yaml", ".yml", ".json", ".keras") or Path(text).exists():
            from featmap.net.networks import load_network_file

            return load_network_file(text)  # a spec, or an ONNX model by its first bytes
        return load_model(text)  # its error lists the presets
    items = tuple(layers)
    if not items:
        raise SpecError("`layers`", "no layers given", "give layer tokens, a preset name or a spec file")
    if all(isinstance(t, str) for t in items):
        return Model("", parse_tokens(items))
    return Model("", items)


def shape(
    layers: Any,
    *,
    input: str | Sequence[int] | None = None,  # noqa: A002 - the word users know (`featmap shape --input`)
    batch: int = 1,
) -> Summary:
    """Shapes, parameters, multiply-adds, receptive fields and memory of a layer stack, without running it.

    Parameters
    ----------
    layers : str, sequence of str, Model, or sequence of layers
        A built-in preset (``"lenet5"``), a YAML/JSON spec file, layer tokens
        (``["conv:6@5x5", "avgpool:2"]``), a parsed `featmap.net.spec.Model` or `featmap.net.layers` objects.
    input : str or sequence of int, optional
        ``"HxWxC"``, ``"LxC"``, ``"N"`` or a tuple; defaults to a preset's or spec file's own input.
    batch : int
        Batch size for MACs and memory.

    Returns
    -------
    Summary
        One `LayerInfo` row per layer, the `Totals` and the warnings (what ``featmap shape`` prints).

    Examples
    --------
    >>> import featmap
    >>> s = featmap.shape(["conv:6@5x5", "maxpool:2"], input="32x32x1")
    >>> [row.out_shape for row in s.layers], s.totals.params
    ([(28, 28, 6), (14, 14, 6)], 156)
    >>> featmap.shape("lenet5").totals.macs
    416520
    >>> featmap.shape(["conv:6@5x5"])
    Traceback (most recent call last):
    ...
    featmap.errors.SpecError: `input`: is needed to work out shapes; e.g. `input` 224x224x3 (HxWxC)
    """
    from featmap.net.spec import parse_shape
    from featmap.net.summary import summarize

    model = resolve_layers(layers)
    if input is None and model.input_shape is None:
        raise SpecError("`input`", "is needed to work out shapes", "e.g. `input` 224x224x3 (HxWxC)")
    input_shape = parse_shape(input) if input is not None else model.input_shape
    assert input_shape is not None  # one of the two above
    return summarize(model.layers, input_shape, batch=batch)


def forward(
    image: ArrayLike | str | os.PathLike[str],
    layers: Any,
    *,
    weights: str | os.PathLike[str] | dict[str, Any] | None = None,
    init: str | None = None,
    seed: int = 0,
    layout: str = "torch",
    upto: str | None = None,
    preprocess: str | None = None,
    resize: str | None = None,
    outputs: str = "all",
) -> NetworkResult:
    """Run a whole layer stack on an image: every layer's output, the summary of the same plans, the warnings.

    Parameters
    ----------
    image : array_like or path
        ``(H, W, C)`` (or ``(H, W)``) values, or an image file, read gray or RGB as the network's input says
        (and resized to it when the spec declares one).
    layers : str, sequence of str, Model, or sequence of layers
        As `shape` takes them: a preset (``"lenet5-digits"``), a spec file, tokens or layer objects.
    weights : path or dict, optional
        A ``.npz``/``.safetensors`` file, a Keras 3 ``.weights.h5``/``.keras`` file (Keras layout, found by
        content), or tensors by key (``{"C1.weight": ...}``, PyTorch's ``state_dict``
        names and layout; see README, 'Weights files'); a trained preset brings its own.
    init, seed : {"kaiming", "glorot"}, int
        Seeded random weights (PyTorch's or Keras' default initialisation) when there is no weights file.
    layout : {"torch", "keras"}
        Names and layout of ``weights``.
    upto : str, optional
        Stop after this layer (number, key or name, as `shape` shows).
    preprocess, resize : str, optional
        The input transform over the model's own (`featmap.net.preprocess`: ``imagenet``, ``imagenet-299``,
        ``white-on-black``, ``none``) and its resize mode (``crop``, ``stretch``, ``pad``). A preset applies its
        own: torchvision's resize, centre crop and ImageNet normalisation, LeNet-5's white-on-black digits.
    outputs : {"all", "final"}
        ``final`` keeps only the last output, faster (`featmap.run.logits`: batch norms folded, equal to float32
        rounding).

    Returns
    -------
    NetworkResult
        ``outputs`` (one `LayerOutput` per layer and merge: ``values``, ``stats``, ``node.plan``),
        ``summary`` and ``warnings``; ``logits`` is the last output.

    Examples
    --------
    >>> import numpy as np, featmap
    >>> digit = np.zeros((32, 32, 1), np.float32)
    >>> result = featmap.forward(digit, "lenet5-digits")
    >>> [o.values.shape for o in result.outputs][-3:]
    [(84,), (84,), (10,)]
    >>> featmap.forward(digit, ["conv:2@3x3", "relu"], init="kaiming").outputs[0].values.shape
    (30, 30, 2)
    """
    from featmap.core.ops import as_float_image
    from featmap.net.preprocess import prepare
    from featmap.net.preprocess import resolve as resolve_preprocess
    from featmap.run.executor import WeightSource, run_network
    from featmap.run.netinput import load_for_network

    if outputs not in ("all", "final"):
        raise SpecError("`outputs`", f"must be all or final; got {outputs!r}", "use outputs='final' for the logits")
    model = resolve_layers(layers)
    if isinstance(image, (str, os.PathLike)):
        pixels, _, notes = load_for_network(image, model, preprocess=preprocess, resize=resize)
    else:
        pre = resolve_preprocess(model.preprocess, preprocess, resize)
        prepared = prepare(as_float_image(image, "image"), model.input_shape, pre)
        pixels, notes = prepared.tensor, prepared.notes
    tensors: dict[str, Any] = {}
    if isinstance(weights, dict):
        tensors = weights
    elif weights is not None or (init is None and model.weights is not None):
        from featmap.net.networks import load_network_weights
        from featmap.net.weights import is_keras_file

        file = weights if weights is not None else model.weights
        tensors = load_network_weights(file)  # type: ignore[arg-type]
        layout = "keras" if is_keras_file(file) else layout  # type: ignore[arg-type]
    source = WeightSource(tensors, init, seed, layout)
    from dataclasses import replace

    from featmap.run.logits import run_final

    result = (run_final if outputs == "final" else run_network)(model.layers, pixels, source, upto=upto)
    return replace(result, warnings=(*notes, *result.warnings)) if notes else result


def kernel(
    spec: str | ArrayLike, *, kernel_dirs: Iterable[str | os.PathLike[str]] = (), name: str = "kernel"
) -> Kernel:
    """One `Kernel`: a library name, ``FILE.yaml:NAME``, a parametric spec, or a weight matrix.

    Examples
    --------
    >>> import featmap
    >>> featmap.kernel("sobel_x").weights.tolist()
    [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
    >>> featmap.kernel("gaussian:size=3,sigma=1").size
    (3, 3)
    >>> featmap.kernel([[0, 1], [1, 0]], name="cross").name
    'cross'
    >>> featmap.kernel("edges")
    Traceback (most recent call last):
    ...
    featmap.errors.SpecError: `spec`: 'edges' selects 13 kernels (a tag or a file); give one name; ...
    """
    from featmap.kernels import Kernel, KernelLibrary

    if not isinstance(spec, str):
        return Kernel(name, np.asarray(spec, dtype=np.float64))
    chosen = KernelLibrary(kernel_dirs).select(spec)
    if len(chosen) != 1:
        raise SpecError(
            "`spec`",
            f"{spec!r} selects {len(chosen)} kernels (a tag or a file); give one name",
            f"e.g. {chosen[0].name!r}" if chosen else None,
        )
    return chosen[0]


def check_weights(
    layers: Any,
    weights: str | os.PathLike[str] | dict[str, Any],
    *,
    input: str | Sequence[int] | None = None,  # noqa: A002 - as `shape` names it
    layout: str | None = None,
) -> WeightsCheck:
    """Every tensor a network needs against a weights file, without running anything: what
    ``featmap weights check`` prints.

    Parameters
    ----------
    layers : str, sequence of str, Model, or sequence of layers
        As `shape` takes them: a preset (``"resnet18"``), a spec file, tokens or layer objects.
    weights : path or dict
        A ``.safetensors``/``.npz``/``.pt``/``.pth`` file (PyTorch ``state_dict`` names), a Keras 3 file, an ONNX
        file (its initializers, keyed by the layers mapped from it), or tensors by name.
    input : str or sequence of int, optional
        The input shape the network is planned on (a dense layer after ``flatten`` depends on it); defaults to
        the preset's or spec's own.
    layout : {"torch", "keras"}, optional
        Names and layout of ``weights``; a Keras file is recognised by its content.

    Returns
    -------
    WeightsCheck
        One row per tensor in the network's order (``ok``, ``missing`` with the file's nearest names, ``shape``
        with both shapes), then one per tensor of the file no layer takes (``unused``); ``ok`` is whether the
        network can run on the file.

    Examples
    --------
    >>> import numpy as np, featmap
    >>> check = featmap.check_weights(["conv:2@3x3"], {"0.weight": np.zeros((2, 1, 3, 3))}, input="8x8x1")
    >>> [(row.key, row.status) for row in check.rows]
    [('0.weight', 'ok'), ('0.bias', 'missing')]
    """
    from featmap.net.networks import load_network_weights
    from featmap.net.plan import plan_layers
    from featmap.net.spec import parse_shape
    from featmap.net.weights import NetworkTensors, check_tensors, is_keras_file

    model = resolve_layers(layers)
    if input is None and model.input_shape is None:
        raise SpecError("`input`", "is needed to plan the network", "e.g. `input` 224x224x3 (HxWxC)")
    input_shape = parse_shape(input) if input is not None else model.input_shape
    assert input_shape is not None  # one of the two above
    if isinstance(weights, dict):
        tensors, source = weights, "weights"
    else:
        tensors, source = load_network_weights(str(weights)), str(weights)  # the reader of `apply --weights`
        if layout is None and is_keras_file(Path(weights)):
            layout = "keras"
    wanted = NetworkTensors.of(plan_layers(model.layers, input_shape))
    return check_tensors(
        wanted.expected,
        tensors,
        layout=layout or "torch",
        kinds=wanted.kinds,
        labels=wanted.labels,
        source=source,
    )
