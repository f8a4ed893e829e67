"""Which ONNX tensors become a mapped layer's weights, and in which layout (featmap's is PyTorch's).

============================  ==============================================================================
ONNX node                     featmap weights
============================  ==============================================================================
``Conv``                      ``weight`` = input 1 (O, I/groups, kh, kw), ``bias`` = input 2
``Gemm``                      ``weight`` = input 1 (transposed unless ``transB``), ``bias`` = input 2
``MatMul`` (+ ``Add``)        ``weight`` = input 1 transposed (stored in × out), ``bias`` = the Add's vector
``BatchNormalization``        ``weight``, ``bias``, ``running_mean``, ``running_var`` = inputs 1–4
``LayerNormalization``        ``weight`` = input 1, ``bias`` = input 2 (zeros when absent)
``Mul`` by a constant         ``weight`` = the constant, flattened (ConvNeXt's C×1×1 layer scale)
============================  ==============================================================================
"""

from __future__ import annotations

from typing import Any

from featmap.net.layers import LayerSpec
from featmap.net.onnx.operators import Context, attrs
from featmap.net.onnx.tensors import TensorRef

__all__ = ["weight_refs"]


def _optional(node: Any, index: int) -> str | None:
    return node.input[index] if len(node.input) > index and node.input[index] else None


def weight_refs(node: Any, layer: LayerSpec, ctx: Context, follower: Any) -> dict[str, TensorRef]:
    """The tensors behind ``layer``'s weights (by featmap's names), for the ONNX ``node`` it was mapped from;
    ``follower`` is the node after it (a MatMul's bias ``Add``)."""
    op = node.op_type
    kind = type(layer).__name__
    refs: dict[str, TensorRef] = {}
    if op == "Conv" and kind == "Conv2d":
        refs["weight"] = TensorRef(node.input[1])
        if _optional(node, 2):
            refs["bias"] = TensorRef(node.input[2])
    elif op == "Gemm" and kind == "Dense":
        refs["weight"] = TensorRef(node.input[1], transpose=not attrs(node).get("transB", 0))
        if _optional(node, 2):
            refs["bias"] = TensorRef(node.input[2], flatten=True)
    elif op == "MatMul" and kind == "Dense":
        refs["weight"] = TensorRef(node.input[1], transpose=True)
        if getattr(layer, "bias", False) and follower is not None:
            other = [name for name in follower.input if name != node.output[0]]
            refs["bias"] = TensorRef(other[0], flatten=True)
    elif op == "BatchNormalization" and kind == "BatchNorm":
        for index, name in enumerate(("weight", "bias", "running_mean", "running_var"), start=1):
            refs[name] = TensorRef(node.input[index])
    elif op == "LayerNormalization" and kind == "LayerNorm":
        refs["weight"] = TensorRef(node.input[1], flatten=True)
        refs["bias"] = TensorRef(_optional(node, 2), flatten=True)  # None: zeros
    elif op == "Mul" and kind == "LayerScale":
        constant = next(name for name in node.input if name in ctx.shapes)
        refs["weight"] = TensorRef(constant, flatten=True)
    return refs
