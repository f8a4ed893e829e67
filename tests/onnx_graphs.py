"""Small ONNX graphs built node by node with onnx.helper, for the ONNX reader's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# A helper module, collected for doctests too: without the onnx extra it skips instead of failing collection.
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(5)


class Graph:
    """A small ONNX graph under construction: ``x = g.add("Conv", [x], weights=[(8, 3, 3, 3)], pads=[1] * 4)``."""

    def __init__(self, shape: tuple[int, ...] = (1, 3, 16, 16)) -> None:
        self.nodes: list[object] = []
        self.inits: list[object] = []
        self.shape = shape
        self.count = 0

    def weight(self, shape: tuple[int, ...], values: object = None) -> str:
        name = f"w{len(self.inits)}"
        data = RNG.standard_normal(shape).astype(np.float32) if values is None else np.asarray(values)
        self.inits.append(numpy_helper.from_array(data, name))
        return name

    def add(
        self, op: str, inputs: list[str], weights: tuple[tuple[int, ...], ...] = (), outputs: int = 1, **kw: object
    ) -> str:
        self.count += 1
        names = [f"t{self.count}_{i}" for i in range(outputs)]
        ins = list(inputs) + [self.weight(s) for s in weights]
        self.nodes.append(helper.make_node(op, ins, names, name=f"/{op.lower()}{self.count}/{op}", **kw))
        return names[0] if outputs == 1 else names  # type: ignore[return-value]

    def model(self, output: str, opset: int = 17) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "test",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.shape))],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            self.inits,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

    def save(self, path: Path, output: str, opset: int = 17, **save: object) -> Path:
        onnx.save(self.model(output, opset), path, **save)  # type: ignore[arg-type]
        return path
