"""torch and torchvision's model code for the cross-checks, or a skip saying why they cannot be had; seeded
torchvision twins of the presets.

The package index's torchvision 0.28.0 is a CUDA build: with the CPU torch its compiled operators do not load,
and ``import torchvision`` raises ``RuntimeError: operator torchvision::nms does not exist`` while registering
the meta kernels of ``nms`` and ``qnms``. The model code needs none of the compiled operators, so their two
schemas are declared here (as ``torchvision/csrc/ops/nms.cpp`` declares them) before the import; a build whose
operators do load has them already and is imported as it is. CI installs it with ``pip install --no-deps
torchvision==0.28.0`` next to torch (``.ci/run``). ``tools/torch_checkpoints.py`` uses this module too.
"""

from __future__ import annotations

from typing import Any

import pytest

_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

#: torchvision's constructor arguments for the twin of a preset (the rest are the defaults). GoogLeNet's preset
#: has no auxiliary heads, as torchvision builds it with ImageNet weights; Inception v3's has its one.
TWIN_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": True, "init_weights": False},
}


def declare_torchvision_ops(torch: Any) -> None:
    """Declare the schemas of ``torchvision::nms`` and ``qnms`` unless the installed build defines them."""
    for name, schema in _SCHEMAS.items():
        try:
            torch.ops.torchvision.__getattr__(name)  # the build's own operator, when it loads
        except (AttributeError, RuntimeError):
            try:
                torch.library.define(f"torchvision::{name}", schema)
            except RuntimeError:  # declared already (by this helper or by a partial import)
                pass


def torch_and_torchvision() -> tuple[Any, Any]:
    """``(torch, torchvision)``, or ``pytest.skip`` naming what could not be imported and why."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install '.[torch]')")
    declare_torchvision_ops(torch)
    try:
        import torchvision
    except ImportError:
        pytest.skip("torchvision is not installed (pip install --no-deps torchvision==0.28.0)")
    except RuntimeError as exc:  # a build whose compiled operators fail in another way
        pytest.skip(f"torchvision cannot be imported with this torch: {str(exc)[:120]}")
    return torch, torchvision


def seeded_twin(torch: Any, torchvision: Any, name: str, seed: int = 0) -> Any:
    """torchvision's ``name`` in eval mode with seeded weights and statistics that are not the initial ones: batch
    norm's running mean and variance, every bias, layer norms' scales and ConvNeXt's layer scales (1e-6 at init,
    which would leave its blocks out) drawn at random, so that a tensor read under the wrong name shows."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None, **TWIN_KWARGS.get(name, {})).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.dtype.is_floating_point:
                continue
            leaf = key.rpartition(".")[2]
            if leaf == "running_var":
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif leaf in ("running_mean", "bias"):
                tensor.copy_((torch.rand(tensor.shape, generator=gen) - 0.5) * 0.2)
            elif leaf == "layer_scale" or (leaf == "weight" and tensor.ndim == 1):  # norms' scales, layer scale
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.5)
    return model
