"""ONNX models run with their own weights: torchvision's models (seeded, with random biases and batch-norm
statistics) exported to ONNX, run by featmap and by ONNX Runtime, compared at every layer featmap maps (each named
after its ONNX node) and at the output, within 1e-4 of the largest magnitude.

The default suite runs a representative subset (`DEFAULT`): eight architectures from PyTorch's legacy exporter,
constant folding on and off, opsets 13, 17 and 20, and the dynamo exporter on torchvision's ConvNeXt code
(with small stages, `convnext_mini`).
``FEATMAP_ONNX_SWEEP=1 python -m pytest tests/test_onnx_runtime.py`` runs the whole sweep: ten architectures,
opsets 13–20, constant folding on and off, and the dynamo exporter at opsets 18 and 20 (several minutes).
Skipped with the reason where onnxruntime, torch or torchvision cannot be imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from .onnx_zoo import ARCHITECTURES, cached_export, compare, import_torchvision  # noqa: E402

TOLERANCE = 1e-4
EIGHT = [
    "resnet18",
    "mobilenet_v2",
    "efficientnet_b0",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "densenet121",
    "convnext_tiny",
    "googlenet",
]
SWEEP = os.environ.get("FEATMAP_ONNX_SWEEP", "") not in ("", "0")

#: Every architecture once, the settings spread over them: both constant-folding settings, opsets 13, 17 and 20
#: (Gelu as an operator), and torch's dynamo exporter (Erf-spelled GELU, Reshape [-1] + Gather, MatMul + Add).
DEFAULT = [
    ("resnet18", "legacy", 17, False),
    ("mobilenet_v2", "legacy", 17, True),
    ("efficientnet_b0", "legacy", 17, True),
    ("shufflenet_v2_x1_0", "legacy", 17, False),
    ("squeezenet1_1", "legacy", 13, False),
    ("densenet121", "legacy", 17, True),
    ("convnext_tiny", "legacy", 17, False),
    ("googlenet", "legacy", 20, True),
    ("convnext_mini", "legacy", 13, False),  # LayerNorm spelled out (ReduceMean, Sub, Pow, Sqrt, Div)
    ("convnext_mini", "legacy", 20, False),
    ("convnext_mini", "dynamo", 18, True),
]
FULL = [
    *[
        (name, "legacy", opset, fold)
        for name in [*EIGHT, "inception_v3", "mobilenet_v3_small"]
        for opset in range(13, 21)
        for fold in (True, False)
    ],
    *[
        (name, "dynamo", opset, fold)
        for name in [*EIGHT, "convnext_mini"]
        for opset in (18, 20)
        for fold in (True, False)
    ],
]
CASES = FULL if SWEEP else DEFAULT


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import_torchvision()
    except ImportError as exc:
        pytest.skip(str(exc))
    return tmp_path_factory.mktemp("onnx_zoo")


@pytest.mark.filterwarnings("ignore")  # the exporters' deprecation and tracer warnings
@pytest.mark.parametrize(
    ("name", "exporter", "opset", "fold"),
    CASES,
    ids=[f"{n}-{e}-{o}-{'fold' if f else 'nofold'}" for n, e, o, f in CASES],
)
def test_every_layer_matches_onnx_runtime(zoo: Path, name: str, exporter: str, opset: int, fold: bool) -> None:
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    path = cached_export(zoo, name, exporter=exporter, opset=opset, fold=fold)
    size = ARCHITECTURES[name][1]
    image = np.random.default_rng(7).random((size, size, 3), dtype=np.float32)
    errors, unmatched = compare(path, image)
    assert not unmatched, f"featmap layers not named after an ONNX node: {unmatched[:5]}"
    worst = max(errors.items(), key=lambda item: item[1])
    assert worst[1] <= TOLERANCE, f"{worst[0]}: relative error {worst[1]:.2e}"
    assert len(errors) > 10 and errors["(final)"] <= TOLERANCE
