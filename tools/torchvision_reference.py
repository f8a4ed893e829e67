"""Ground truth for the model-zoo presets: torchvision's parameter counts and shapes, printed or saved.

Not part of the test suite (it needs torch and torchvision). For each model it gives the trainable
parameter count, the final output shape, each stage's output shape (top-level modules, and the
children of a top-level ``Sequential`` such as ``features.3`` or ``features.denseblock2``), and every
module that holds parameters, in the order the forward pass runs them, with its output shape and its own
parameter count. Shapes are printed as featmap writes them: ``H×W×C`` (channels last), batch dropped.

Usage::

    python tools/torchvision_reference.py                     # every model, as text
    python tools/torchvision_reference.py convnext_tiny --layers
    python tools/torchvision_reference.py --json ref.json     # everything, as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

MODELS: dict[str, tuple[int, dict[str, Any]]] = {
    "mobilenet_v2": (224, {}),
    "mobilenet_v3_small": (224, {}),
    "efficientnet_b0": (224, {}),
    "shufflenet_v2_x1_0": (224, {}),
    "squeezenet1_1": (224, {}),
    "densenet121": (224, {}),
    "resnext50_32x4d": (224, {}),
    "wide_resnet50_2": (224, {}),
    "vgg13_bn": (224, {}),
    "inception_v3": (299, {"aux_logits": True, "init_weights": False}),
    "regnet_y_400mf": (224, {}),
    "convnext_tiny": (224, {}),
}


def channels_last(module: Any, shape: tuple[int, ...]) -> list[int]:
    """A torch output shape as featmap writes it: NCHW → HWC, except where torch already works NHWC."""
    import torch.nn as nn

    dims = list(shape[1:])
    if len(dims) == 3 and type(module) not in (nn.Linear, nn.LayerNorm):
        dims = [dims[1], dims[2], dims[0]]
    return dims


def reference(name: str, device: str = "cpu") -> dict[str, Any]:
    """Run one torchvision model on a zero image in eval mode and record what it does.

    ``device="meta"`` works the shapes out without weights or arithmetic (what the tests use: fast, no memory);
    a model whose construction needs real numbers (regnet) raises ``NotImplementedError`` there.
    """
    import torch
    import torchvision

    size, kwargs = MODELS[name]
    with torch.device(device):
        model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    names = {module: path for path, module in model.named_modules()}
    stage_modules = {}
    for child_name, child in model.named_children():
        stage_modules[child_name] = child
        if isinstance(child, torch.nn.Sequential) and child_name in ("features", "trunk_output", "classifier"):
            for grand_name, grand in child.named_children():
                stage_modules[f"{child_name}.{grand_name}"] = grand
    stages: dict[str, dict[str, Any]] = {}
    layers: list[dict[str, Any]] = []
    aux_output: list[Any] = []

    def hook(module: Any, _inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        path = names[module]
        own = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
        if own:
            layers.append(
                {
                    "name": path,
                    "type": type(module).__name__,
                    "out_shape": channels_last(module, tuple(output.shape)),
                    "params": own,
                }
            )
        if path in stage_modules:
            stages[path] = {
                "out_shape": channels_last(module, tuple(output.shape)),
                "params": sum(p.numel() for p in module.parameters() if p.requires_grad),
                "type": type(module).__name__,
            }

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    if name == "inception_v3":  # the auxiliary head runs only in training mode; run it on its own input
        handles.append(model.Mixed_6e.register_forward_hook(lambda _m, _i, out: aux_output.append(out)))
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size, size, device=device))
        if aux_output:
            model.AuxLogits(aux_output[0])
    for h in handles:
        h.remove()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result = {
        "input": [size, size, 3],
        "trainable": trainable,
        "output": list(out.shape[1:]),
        "stages": stages,
        "layers": layers,
    }
    if name == "inception_v3":
        result["trainable_without_aux"] = trainable - sum(p.numel() for p in model.AuxLogits.parameters())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help=f"default: all of {', '.join(MODELS)}")
    parser.add_argument("--layers", action="store_true", help="also print every module holding parameters")
    parser.add_argument("--json", metavar="FILE", help="write everything as JSON to FILE")
    args = parser.parse_args(argv)
    chosen = args.models or list(MODELS)
    unknown = [m for m in chosen if m not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; use one of {', '.join(MODELS)}")
    results = {}
    for name in chosen:
        data = results[name] = reference(name)
        extra = (
            f" ({data['trainable_without_aux']:,} without the auxiliary head)"
            if "trainable_without_aux" in data
            else ""
        )
        print(f"{name}: {data['trainable']:,} trainable{extra}; output {data['output']}")
        for stage, info in data["stages"].items():
            shape = "×".join(map(str, info["out_shape"]))
            print(f"  {stage:28} {info['type']:24} {shape:>14} {info['params']:>12,}")
        if args.layers:
            for layer in data["layers"]:
                shape = "×".join(map(str, layer["out_shape"]))
                print(f"    {layer['name']:44} {layer['type']:20} {shape:>14} {layer['params']:>10,}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
