"""torchvision models exported to ONNX and run by featmap and by ONNX Runtime, layer by layer (used by
tests/test_onnx_runtime.py and bench/onnx_parity.py).

torchvision 0.28.0 from the package index is a CUDA build: its compiled operators do not load with the CPU torch,
and ``import torchvision`` raises RuntimeError unless the two operator schemas its Python code registers kernels
for are defined first (`import_torchvision` does that; the model code itself is pure Python).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from featmap.net.onnx.graph import unique_names

#: Each architecture's constructor arguments and the smallest input (square) its export runs at in the tests.
ARCHITECTURES: dict[str, tuple[dict[str, Any], int]] = {
    "resnet18": ({}, 32),
    "mobilenet_v2": ({}, 32),
    "efficientnet_b0": ({}, 32),
    "shufflenet_v2_x1_0": ({}, 32),
    "squeezenet1_1": ({}, 32),
    "densenet121": ({}, 32),
    "convnext_tiny": ({}, 32),
    "googlenet": ({"aux_logits": False, "init_weights": True}, 32),
    "inception_v3": ({"aux_logits": False, "init_weights": True}, 75),
    "mobilenet_v3_small": ({}, 32),
    # torchvision's ConvNeXt code (CNBlock, LayerNorm2d, layer scale, GELU) at two small stages: a quick export
    "convnext_mini": ({"block_setting": "mini"}, 32),
}


def import_torchvision() -> tuple[Any, Any]:
    """``(torch, torchvision)``; raises ImportError (with the reason) where either cannot be imported."""
    try:
        import torch
    except (ImportError, OSError) as exc:
        raise ImportError(f"torch cannot be imported ({exc})") from None
    for op in ("nms", "qnms"):
        try:
            torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # defined already (by torchvision's own extension, or an earlier call)
    try:
        import torchvision
    except (ImportError, RuntimeError, OSError) as exc:
        raise ImportError(f"torchvision cannot be imported ({str(exc)[:120]})") from None
    return torch, torchvision


def seeded_model(name: str, seed: int = 0) -> Any:
    """torchvision's ``name`` with seeded weights, random biases and batch-norm statistics, in eval mode."""
    torch, torchvision = import_torchvision()
    kwargs, _ = ARCHITECTURES.get(name, ({}, 64))
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "convnext_mini":
            from torchvision.models.convnext import CNBlockConfig, ConvNeXt

            model = ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 1)], num_classes=10)
        else:
            model = getattr(torchvision.models, name)(weights=None, **kwargs)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.2)
            elif getattr(module, "bias", None) is not None and isinstance(module.bias, torch.nn.Parameter):
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
            if hasattr(module, "layer_scale"):  # ConvNeXt: 1e-6 at init would hide the block's branch
                module.layer_scale.copy_(torch.rand(module.layer_scale.shape, generator=generator) * 0.5 + 0.25)
    return model.eval()


def export(model: Any, path: Path, size: int, *, exporter: str = "legacy", opset: int = 17, fold: bool = True) -> Path:
    """``model`` exported to ``path`` for a 1×3×size×size input: ``legacy`` (TorchScript, ``dynamo=False``) or
    ``dynamo`` (torch's default exporter; constant folding is its optimiser's)."""
    torch, _ = import_torchvision()
    x = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, do_constant_folding=fold)
        else:
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
                torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset, optimize=fold)
    return path


_EXPORTS: dict[tuple[Any, ...], Path] = {}


def cached_export(
    folder: Path, name: str, *, exporter: str = "legacy", opset: int = 17, fold: bool = True, size: int | None = None
) -> Path:
    """torchvision's seeded ``name`` exported once per test session (into ``folder``) for each setting."""
    size = size or ARCHITECTURES[name][1]
    key = (name, exporter, opset, fold, size)
    if key not in _EXPORTS:
        path = folder / f"{name}-{exporter}-{opset}-{'fold' if fold else 'nofold'}-{size}.onnx"
        _EXPORTS[key] = export(seeded_model(name), path, size, exporter=exporter, opset=opset, fold=fold)
    return _EXPORTS[key]


def runtime_outputs(path: Path, x: np.ndarray, tensors: list[str]) -> dict[str, np.ndarray]:
    """ONNX Runtime's values of ``tensors`` (node outputs) for the input ``x`` (N×C×H×W), every one made a graph
    output; graph optimisations off, so that each tensor is the one the graph defines."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in have:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
            have.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def _channels_last(reference: np.ndarray, like: tuple[int, ...]) -> np.ndarray | None:
    """ONNX Runtime's N×C×H×W (or N×H×W×C, N×F) value in featmap's shape ``like``, or None if it cannot be."""
    value = reference[0] if reference.ndim and reference.shape[0] == 1 else reference
    if value.ndim == 3 and (value.shape[1], value.shape[2], value.shape[0]) == like:
        return value.transpose(1, 2, 0)  # N×C×H×W first: an exporter's layout unless it transposed (ConvNeXt)
    if value.shape == like:
        return value
    if value.size == int(np.prod(like)) and len(like) == 1:
        return value.reshape(-1)
    if value.ndim == 3 and len(like) == 3 and value.shape[1:] == (1, 1) and like[:2] == (1, 1):
        return value.reshape(like)
    return None


def compare(path: Path, image: np.ndarray) -> tuple[dict[str, float], list[str]]:
    """featmap's output of every layer named after an ONNX node against ONNX Runtime's value of that node's
    output: max |featmap − runtime| / max |runtime| per layer name, in run order (``(final)`` last); and the
    layers that are not named after a node's output (only the first parts of a node mapped to several layers,
    ``NODE:kind``, may be)."""
    import onnx

    import featmap

    graph = onnx.load(str(path), load_external_data=False).graph
    outputs: dict[str, str] = {}
    for name, node in zip(unique_names(graph.node), graph.node, strict=True):
        outputs[name] = node.output[0]
        for j, out in enumerate(node.output):  # the parts of a Split are named NODE:j
            outputs[f"{name}:{j}"] = out
    result = featmap.forward(image, str(path))
    layers = [(o.node.plan.name, o.values) for o in result.outputs if o.node.plan.name in outputs]
    unmatched = [
        o.node.plan.name
        for o in result.outputs
        if o.node.plan.name not in outputs and o.node.plan.name.rpartition(":")[0] not in outputs
    ]
    reference = runtime_outputs(path, image.transpose(2, 0, 1)[None].copy(), [outputs[n] for n, _ in layers])
    errors: dict[str, float] = {}
    for name, values in layers:
        ref = _channels_last(reference[outputs[name]], values.shape)
        if ref is None:
            raise AssertionError(f"{name}: featmap {values.shape} vs runtime {reference[outputs[name]].shape}")
        errors[name] = float(np.max(np.abs(values - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
    ref = _channels_last(reference[graph.output[0].name], result.logits.shape)
    assert ref is not None
    errors["(final)"] = float(np.max(np.abs(result.logits - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
    return errors, unmatched
