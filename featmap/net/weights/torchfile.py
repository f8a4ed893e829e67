"""PyTorch checkpoints (``torch.save``: ``.pt``/``.pth``/``.bin``) read as named tensors, never unpickled freely.

`read_torch` opens the file with ``torch.load(weights_only=True)`` (PyTorch's restricted unpickler: tensors,
dicts, lists and numbers only, no code runs), memory-mapped when the file is in the zip format ``torch.save``
has written since PyTorch 1.6, and returns the ``state_dict``'s tensors as numpy arrays. Needs the optional
``torch`` package (``pip install 'featmap[torch]'``).

What it accepts and refuses:

- ``model.state_dict()`` as written: every value a tensor (``num_batches_tracked`` included; matching ignores it);
- a training checkpoint ``{"state_dict": …}`` (also ``model_state_dict``, ``model``, ``net``, ``module``, as
  training scripts name it) beside epochs, optimiser state and the like: the state dict is taken, the rest left;
- a whole pickled model (``torch.save(model, …)``), an optimiser's ``state_dict()``, a single tensor, or any
  other object: one line saying what the file holds and how to save a ``state_dict`` instead.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from featmap.errors import MissingExtraError, SpecError, install_hint
from featmap.net.weights._common import check_size

__all__ = ["INSTALL_HINT", "is_torch_zip", "read_torch"]

INSTALL_HINT = install_hint("torch")
_SAVE = "save the weights alone: torch.save(model.state_dict(), path)"
#: Keys under which training scripts keep the model's state dict in a checkpoint, in the order looked at.
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "module")


def is_torch_zip(path: str | Path) -> bool:
    """Whether a zip file is ``torch.save``'s format (it holds ``…/data.pkl``) rather than an ``.npz``."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(name.endswith("data.pkl") for name in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_torch(path: str | Path) -> dict[str, NDArray[Any]]:
    """The tensors of a PyTorch checkpoint by ``state_dict`` name, in file order, as numpy arrays.

    Floating tensors come back as float32 (float64 kept; float16 and bfloat16 widened), integer tensors as
    float32; boolean and complex tensors are refused. The element and byte limits (`featmap.net.weights`) are
    checked on the tensors' shapes before any data is copied out of the memory map.
    """
    p = Path(path)
    try:
        import torch
    except ImportError:
        raise MissingExtraError(
            str(p), "is a PyTorch checkpoint (torch.save) and torch is not installed", INSTALL_HINT
        ) from None
    obj = _load(torch, p)
    tensors = _state_dict(torch, p, obj)
    total = 0
    for name, t in tensors.items():
        if t.dtype == torch.bool or t.is_complex():
            raise SpecError(
                f"{p}: tensor `{name}`", f"has dtype {str(t.dtype).removeprefix('torch.')}", "store float tensors"
            )
        total += t.numel() * t.element_size()
        check_size(str(p), name, tuple(t.shape), total)
    out: dict[str, NDArray[Any]] = {}
    for name, t in tensors.items():
        t = t.detach().cpu()
        if t.dtype != torch.float64:
            t = t.to(torch.float32)
        out[name] = t.numpy().copy()  # out of the memory map, which closes with the file
    return out


def _load(torch: Any, p: Path) -> Any:
    """``torch.load`` with the restricted unpickler (memory-mapped for the zip format); its refusals as one line."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: the error below says what matters
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True, mmap=is_torch_zip(p))
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        name = found[1] if found else ""
        if name.startswith("torch.nn.") or _is_module_class(name):
            problem = f"holds a whole pickled model ({name}), which featmap never unpickles"
        elif name:
            problem = f"holds a Python object ({name}) besides tensors, which featmap never unpickles"
        else:
            why = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
            problem = f"is not a PyTorch checkpoint featmap can read ({_first_line(why[1] if why else str(exc))})"
        raise SpecError(str(p), problem, _SAVE) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SpecError(
            str(p), f"is not a readable PyTorch checkpoint ({_first_line(exc)})", "re-save or re-download it"
        ) from None


def _is_module_class(name: str) -> bool:
    """``torchvision.models.resnet.ResNet``-like: a class name in a package (a guess from the name only)."""
    return bool(re.fullmatch(r"[\w.]+\.[A-Z]\w*", name))


def _first_line(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text[:100] + ("…" if len(text) > 100 else "")


def _state_dict(torch: Any, p: Path, obj: Any) -> dict[str, Any]:
    """The name → tensor mapping inside what ``torch.load`` returned, unwrapped from a checkpoint dict."""
    if isinstance(obj, torch.Tensor):
        raise SpecError(str(p), f"holds a single tensor of shape {tuple(obj.shape)}, not named tensors", _SAVE)
    if not isinstance(obj, Mapping):
        raise SpecError(str(p), f"holds a {type(obj).__name__}, not a state_dict", _SAVE)
    if "state" in obj and "param_groups" in obj:
        raise SpecError(str(p), "holds an optimizer's state (state, param_groups), not the model's weights", _SAVE)
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {str(k): v for k, v in obj.items()}
    for key in _WRAPPERS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return {str(k): v for k, v in inner.items()}
    keys = ", ".join(map(str, list(obj)[:6])) or "nothing"
    raise SpecError(
        str(p),
        f"holds a dict ({keys}) that is neither a state_dict nor a checkpoint with one under "
        f"{' / '.join(_WRAPPERS[:2])}",
        _SAVE,
    )
