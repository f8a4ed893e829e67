"""Every preset with a torchvision twin against its twin's saved ``state_dict``: does it load unchanged, and how far
are featmap's logits from torch's?

Not part of the test suite (``tests/test_torch_checkpoints.py`` runs eleven twins on small inputs). For each
twin: seeded weights with random batch-norm statistics, biases and scales (``tests/torchvision_models.py``),
``torch.save(model.state_dict())`` to a temporary ``.pth``, ``featmap weights check`` (API), then one forward
pass of each on the same random image at the preset's own input size (``--size`` to change it; Inception v3's
auxiliary head needs 299). Prints a Markdown table: architecture | loads unchanged | max error vs torch (the
largest absolute logit difference over the largest absolute logit).

Usage::

    python tools/torch_checkpoints.py                 # all twenty (a few minutes, ~2 GB of memory for VGG-19)
    python tools/torch_checkpoints.py resnet18 vgg16 --size 64
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TWINS = (
    "resnet18 resnet34 resnet50 vgg11 vgg13_bn vgg16 vgg19 alexnet googlenet inception_v3 mobilenet_v2 "
    "mobilenet_v3_small efficientnet_b0 shufflenet_v2_x1_0 squeezenet1_1 densenet121 resnext50_32x4d "
    "wide_resnet50_2 regnet_y_400mf convnext_tiny"
).split()


def row(name: str, size: int | None, torch: object, torchvision: object) -> tuple[str, str, str, float]:
    import featmap
    from featmap.net.layers import without_aux
    from featmap.net.spec import load_model
    from featmap.net.weights import load_weights
    from featmap.run.executor import WeightSource, run_network
    from tests.torchvision_models import seeded_twin

    twin = seeded_twin(torch, torchvision, name, seed=len(name))
    model = load_model(name)
    assert model.input_shape is not None
    side = size or model.input_shape[0]
    image = np.random.default_rng(7).random((side, side, 3), dtype=np.float32)
    with torch.no_grad():  # type: ignore[attr-defined]
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]  # type: ignore[attr-defined]
        expected = twin(x)[0].numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pth"
        torch.save(twin.state_dict(), path)  # type: ignore[attr-defined]
        del twin
        check = featmap.check_weights(name, path)
        loads = "yes" if check.ok and not check.count("unused") else f"no: {check.summary()}"
        layers = model.layers if side >= 299 or name != "inception_v3" else without_aux(model.layers)
        result = run_network(layers, image, WeightSource(load_weights(path), source=path.name))
    error = float(np.abs(result.logits - expected).max() / np.abs(expected).max())
    return name, f"{side}×{side}", loads, error if np.isfinite(error) else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="default: all twenty")
    parser.add_argument("--size", type=int, default=None, help="input side (default: the preset's own)")
    args = parser.parse_args(argv)
    import pytest

    from tests.torchvision_models import torch_and_torchvision

    try:
        torch, torchvision = torch_and_torchvision()
    except pytest.skip.Exception as exc:
        print(f"torch_checkpoints: {exc}", file=sys.stderr)
        return 1
    print("| architecture | input | loads unchanged | max error vs torch |")
    print("|---|---|---|---|")
    for name in args.models or TWINS:
        name, shape, loads, error = row(name, args.size, torch, torchvision)
        print(f"| {name} | {shape} | {loads} | {error:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
