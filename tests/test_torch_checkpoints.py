"""PyTorch checkpoints load as ``model.state_dict()`` writes them (issue 20): every preset with a torchvision twin
takes its twin's names and shapes; ``torch.save`` / safetensors / npz files of seeded twins (random batch-norm
statistics, biases and scales) run to torch's logits; README's naming example loads from a real ``nn.Module``.
Skipped, saying why, where torch or torchvision cannot be imported (``tests/torchvision_models.py``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featmap.net.layers import without_aux
from featmap.net.plan import plan_layers
from featmap.net.spec import load_model, parse_file
from featmap.net.weights import NetworkTensors, check_tensors, load_weights
from featmap.run.executor import WeightSource, run_network

from .conftest import REPO
from .torchvision_models import TWIN_KWARGS, seeded_twin, torch_and_torchvision

#: Every preset with a torchvision twin.
TWINS = [
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "googlenet",
    "inception_v3",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "regnet_y_400mf",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext50_32x4d",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "vgg11",
    "vgg13_bn",
    "vgg16",
    "vgg19",
    "wide_resnet50_2",
]

#: The twins run to logits, each on a small input (one torch and one featmap forward each), and the format each
#: is saved in. The VGGs and AlexNet (100-140 M parameters, 0.25-0.55 GB a file, almost all in the classifier) and
#: the ResNets that repeat resnet18's blocks as bottlenecks are checked by name and shape above;
#: `tools/torch_checkpoints.py` runs all twenty.
RUNS: dict[str, tuple[int, str]] = {
    "resnet18": (48, "checkpoint"),  # {"epoch": …, "state_dict": …, "optimizer": …}
    "mobilenet_v2": (32, "safetensors"),
    "mobilenet_v3_small": (32, "pt"),
    "efficientnet_b0": (32, "pth"),
    "shufflenet_v2_x1_0": (32, "npz"),
    "squeezenet1_1": (48, "pth"),
    "densenet121": (32, "pth"),
    "regnet_y_400mf": (32, "safetensors"),
    "convnext_tiny": (32, "pth"),  # layer_scale as torch keeps it, (C, 1, 1)
    "googlenet": (32, "pth"),
    "inception_v3": (75, "pth"),  # torchvision's smallest input
}


def _save(torch: Any, model: Any, path: Path, how: str) -> Path:
    state = model.state_dict()
    if how in ("pth", "pt"):
        torch.save(state, path.with_suffix(f".{how}"))
        return path.with_suffix(f".{how}")
    if how == "checkpoint":
        torch.save({"epoch": 3, "state_dict": state, "optimizer": {"lr": 0.1}}, path.with_suffix(".pth"))
        return path.with_suffix(".pth")
    if how == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path.with_suffix(".safetensors")))
        return path.with_suffix(".safetensors")
    np.savez(path.with_suffix(".npz"), **{k: v.numpy() for k, v in state.items()})
    return path.with_suffix(".npz")


@pytest.mark.parametrize("name", TWINS)
def test_every_twin_state_dict_fits_its_preset_by_name_and_shape(name: str) -> None:
    """Built on the meta device (shapes, no memory), the twin's ``state_dict`` gives every tensor the preset
    needs, with its shape, and nothing else (``num_batches_tracked`` aside)."""
    torch, torchvision = torch_and_torchvision()
    try:
        with torch.device("meta"):
            twin = getattr(torchvision.models, name)(weights=None, **TWIN_KWARGS.get(name, {}))
    except NotImplementedError:  # regnet works its widths out on tensors: build it for real (4 M parameters)
        twin = getattr(torchvision.models, name)(weights=None, **TWIN_KWARGS.get(name, {}))
    found = {k: np.broadcast_to(np.float32(0), tuple(v.shape)) for k, v in twin.state_dict().items()}
    model = load_model(name)
    assert model.input_shape is not None
    wanted = NetworkTensors.of(plan_layers(model.layers, model.input_shape))
    check = check_tensors(wanted.expected, found, kinds=wanted.kinds, labels=wanted.labels, source=name)
    assert [row.line() for row in check.rows if row.status != "ok"] == []
    assert check.count("ok") == len(wanted.expected) == len(found) - sum(k.endswith("batches_tracked") for k in found)


@pytest.mark.parametrize("name", list(RUNS))
def test_a_saved_twin_runs_to_torchs_logits(tmp_path: Path, name: str) -> None:
    """The file as torch, safetensors or numpy wrote it, read by featmap's loader unchanged, planned on a small
    input: logits within 1e-4 of torch's largest."""
    torch, torchvision = torch_and_torchvision()
    size, how = RUNS[name]
    twin = seeded_twin(torch, torchvision, name, seed=len(name))
    image = np.random.default_rng(7).random((size, size, 3), dtype=np.float32)
    with torch.no_grad():
        expected = twin(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None])[0].numpy()
    path = _save(torch, twin, tmp_path / name, how)
    del twin
    source = WeightSource(load_weights(path), source=path.name)
    layers = load_model(name).layers
    if name == "inception_v3":  # its auxiliary head needs 299×299 (torch runs it in training only): left out here
        layers = without_aux(layers)
    result = run_network(layers, image, source)
    if name == "inception_v3":
        (unused,) = source.warnings
        assert unused.startswith(f"{path.name}: 12 tensors not used by the network: AuxLogits.conv0.conv.weight")
    else:
        assert source.warnings == []  # every tensor taken (num_batches_tracked is no tensor to run)
    error = float(np.abs(result.logits - expected).max() / np.abs(expected).max())
    assert error <= 1e-4, f"{name}: max error {error:.2e} of the largest logit"


def _readme_blocks() -> tuple[str, str]:
    """The Python and YAML blocks under README's 'From PyTorch'."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### From PyTorch", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    python = re.search(r"```python\n(.*?)```", section, re.S)
    yaml = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert python and yaml, "README's 'From PyTorch' lost its example"
    return python[1], yaml[1]


def test_readme_naming_example_loads_from_a_real_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch, _ = torch_and_torchvision()
    python, yaml = _readme_blocks()
    monkeypatch.chdir(tmp_path)
    space: dict[str, Any] = {}
    exec(compile(python, "README.md (From PyTorch)", "exec"), space)  # defines Net, saves net.pth
    net = space["net"]
    assert sorted(net.state_dict()) == sorted(load_weights(tmp_path / "net.pth"))
    (tmp_path / "net.yaml").write_text(yaml)
    model = parse_file(tmp_path / "net.yaml")
    assert model.input_shape is not None
    image = np.random.default_rng(1).random(model.input_shape, dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None])[0].numpy()
    result = run_network(model.layers, image, WeightSource(load_weights(tmp_path / "net.pth")))
    np.testing.assert_allclose(result.logits, expected, rtol=1e-5, atol=1e-6)
