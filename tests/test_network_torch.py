"""featmap's executor against PyTorch on the same weights (optional extra: ``pip install '.[test,torch]'``):
a network's every layer, fed a torch ``state_dict`` by its keys, to 1e-5. Skipped without torch."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from featmap.net.spec import load_model, parse_tokens
from featmap.run.executor import WeightSource, run_network

torch = pytest.importorskip("torch")
nn = torch.nn


def _state(model: object) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}  # type: ignore[attr-defined]


def _randomise(model: object, seed: int) -> None:
    """Random weights and batch-norm statistics (torch's are 0/1 at init, which would hide mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():  # type: ignore[attr-defined]
            if tensor.dtype.is_floating_point:
                values = torch.rand(tensor.shape, generator=gen) * 0.5 + (0.5 if "running_var" in name else -0.25)
                tensor.copy_(values)


def _torch_layers(model: object, x: np.ndarray) -> list[np.ndarray]:
    """Every leaf module's output, in order, as (H, W, C) or flat arrays."""
    outputs: list[np.ndarray] = []

    def keep(module: object, args: object, out: object) -> None:
        value = out.detach()[0].numpy()  # type: ignore[attr-defined]
        outputs.append(value.transpose(1, 2, 0) if value.ndim == 3 else value)

    for module in model.modules():  # type: ignore[attr-defined]
        if not list(module.children()):
            module.register_forward_hook(keep)
    model.eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        model(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None])  # type: ignore[operator]
    return outputs


def test_a_cnn_matches_torch_layer_by_layer():
    tokens = [
        "conv:8@3x3/s2/p1",
        "bn",
        "relu",
        "maxpool:3/s2/p1/ceil",
        "conv:8@3x3/p2/d2/g2/nobias",
        "act:leaky_relu,slope=0.1",
        "avgpool:2/s1",
        "conv:6@1x1",
        "tanh",
        "adaptiveavgpool:3x3",
        "flatten",
        "dense:7",
        "sigmoid",
    ]
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False),
        nn.LeakyReLU(0.1),
        nn.AvgPool2d(2, 1),
        nn.Conv2d(8, 6, 1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(3),
        nn.Flatten(),
        nn.Linear(54, 7),
        nn.Sigmoid(),
    )
    _randomise(model, 3)
    x = np.random.default_rng(3).random((23, 19, 3), dtype=np.float32)
    expected = _torch_layers(model, x)
    result = run_network(parse_tokens(tokens), x, WeightSource(_state(model)))
    assert len(result.outputs) == len(expected)
    for ours, theirs in zip(result.outputs, expected, strict=True):
        assert ours.values.shape == theirs.shape, ours.node.path
        scale = max(1.0, float(np.abs(theirs).max()))
        np.testing.assert_allclose(ours.values, theirs, atol=1e-5 * scale, rtol=0, err_msg=ours.node.path)


class _Residual(nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(OrderedDict(conv=nn.Conv2d(4, 4, 3, padding=1), bn=nn.BatchNorm2d(4)))
        self.shortcut = nn.Sequential()

    def forward(self, x: object) -> object:
        return self.main(x) + self.shortcut(x)


def test_a_residual_block_and_named_layers_match_torch(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "layers:\n"
        "  - {conv: '4@3x3/p1', name: stem}\n"
        "  - relu\n"
        "  - name: res\n"
        "    residual:\n"
        "      main: [{name: main, sequential: [{conv: '4@3x3/p1', name: conv}, {bn: , name: bn}]}]\n"
        "  - relu\n"
        "  - gap\n"
        "  - flatten\n"
        "  - {dense: 3, name: fc}\n"
    )
    model = nn.Sequential(
        OrderedDict(
            stem=nn.Conv2d(2, 4, 3, padding=1),
            act=nn.ReLU(),
            res=_Residual(),
            act2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(4, 3),
        )
    )
    _randomise(model, 5)
    model.eval()  # batch norm's running statistics, as featmap runs it
    x = np.random.default_rng(5).random((9, 9, 2), dtype=np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float())[0].numpy()
    from featmap.net.spec import parse_file

    # torch's keys: res.main.conv.weight — the residual adds only its name (res), the branch holds `main`
    result = run_network(parse_file(spec).layers, x, WeightSource(_state(model)))
    np.testing.assert_allclose(result.logits, logits, atol=1e-5)


def test_lenet5_digits_matches_torch_on_the_shipped_weights():
    from featmap.net.weights import load_weights

    model_spec = load_model("lenet5-digits")
    assert model_spec.weights is not None
    tensors = load_weights(model_spec.weights)
    model = nn.Sequential(
        OrderedDict(
            C1=nn.Conv2d(1, 6, 5),
            a1=nn.Tanh(),
            S2=nn.AvgPool2d(2),
            C3=nn.Conv2d(6, 16, 5),
            a3=nn.Tanh(),
            S4=nn.AvgPool2d(2),
            C5=nn.Conv2d(16, 120, 5),
            a5=nn.Tanh(),
            flat=nn.Flatten(),
            F6=nn.Linear(120, 84),
            a6=nn.Tanh(),
            output=nn.Linear(84, 10),
        )
    )
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    x = np.random.default_rng(0).random((32, 32, 1), dtype=np.float32)
    expected = _torch_layers(model, x)
    result = run_network(model_spec.layers, x, WeightSource(tensors))
    for ours, theirs in zip(result.outputs, expected, strict=True):
        np.testing.assert_allclose(ours.values, theirs, atol=1e-5, err_msg=ours.node.path)
