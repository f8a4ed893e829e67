"""torch and torchvision's model code for the cross-checks, or a skip saying why they cannot be had.

The package index's torchvision 0.28.0 is a CUDA build: with the CPU torch its compiled operators do not load,
and ``import torchvision`` raises ``RuntimeError: operator torchvision::nms does not exist`` while registering
the meta kernels of ``nms`` and ``qnms``. The model code needs none of the compiled operators, so their two
schemas are declared here (as ``torchvision/csrc/ops/nms.cpp`` declares them) before the import; a build whose
operators do load has them already and is imported as it is. CI installs it with ``pip install --no-deps
torchvision==0.28.0`` next to torch (``.ci/run``).
"""

from __future__ import annotations

from typing import Any

import pytest

_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def torch_and_torchvision() -> tuple[Any, Any]:
    """``(torch, torchvision)``, or ``pytest.skip`` naming what could not be imported and why."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install '.[torch]')")
    for name, schema in _SCHEMAS.items():
        try:
            torch.ops.torchvision.__getattr__(name)  # the build's own operator, when it loads
        except (AttributeError, RuntimeError):
            try:
                torch.library.define(f"torchvision::{name}", schema)
            except RuntimeError:  # declared already (by this helper or by a partial import)
                pass
    try:
        import torchvision
    except ImportError:
        pytest.skip("torchvision is not installed (pip install --no-deps torchvision==0.28.0)")
    except RuntimeError as exc:  # a build whose compiled operators fail in another way
        pytest.skip(f"torchvision cannot be imported with this torch: {str(exc)[:120]}")
    return torch, torchvision
