"""PyTorch checkpoints (``torch.save``) read as named tensors (`featmap.net.weights.torchfile`): a state_dict in
both of torch's formats, a training checkpoint unwrapped, a wrapped model's prefix; a whole pickled model, an
optimiser's state, a single tensor and a plain pickle refused in one line; the extra named when torch is
missing. Skipped without torch (``pip install '.[torch]'``), except the missing-torch message."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from featmap.cli import cli
from featmap.errors import SpecError
from featmap.net.weights import ELEMENTS_ENV, load_weights
from featmap.run.executor import WeightSource, run_network


def _torch():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch", reason="torch is not installed (pip install '.[torch]')")


def _net(torch):  # type: ignore[no-untyped-def]
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 1.5)
    return net.eval()


TOKENS = ["conv:4@3x3", "bn", "relu", "flatten", "dense:5"]


@pytest.mark.parametrize("zipped", [True, False])
def test_a_state_dict_in_either_format_runs_as_torch_does(tmp_path: Path, zipped: bool) -> None:
    torch = _torch()
    net = _net(torch)
    path = tmp_path / "net.pth"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=zipped)
    tensors = load_weights(path)
    assert list(tensors) == list(net.state_dict())  # file order, num_batches_tracked included (matching skips it)
    assert tensors["1.num_batches_tracked"].dtype == np.float32
    x = np.random.default_rng(0).random((6, 6, 3), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])[0].numpy()
    from featmap.net.spec import parse_tokens

    source = WeightSource(tensors, source=path.name)
    result = run_network(parse_tokens(TOKENS), x, source)
    np.testing.assert_allclose(result.logits, expected, rtol=1e-5, atol=1e-6)
    assert source.warnings == []


def test_half_precision_is_widened_and_float64_kept(tmp_path: Path) -> None:
    torch = _torch()
    path = tmp_path / "w.pt"
    values = torch.tensor([0.5, -1.25, 3.0])
    torch.save({"a": values.half(), "b": values.bfloat16(), "c": values.double(), "d": torch.tensor([1, 2])}, path)
    got = load_weights(path)
    assert [got[k].dtype for k in "abcd"] == [np.float32, np.float32, np.float64, np.float32]
    for k in "abc":
        np.testing.assert_array_equal(got[k], [0.5, -1.25, 3.0])


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_a_training_checkpoint_is_unwrapped(tmp_path: Path, key: str) -> None:
    torch = _torch()
    net = _net(torch)
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 7, key: net.state_dict(), "optimizer": optimiser.state_dict(), "acc": 0.5}, path)
    assert list(load_weights(path)) == list(net.state_dict())


def test_a_wrapped_models_prefix_is_read_without_it(tmp_path: Path) -> None:
    torch = _torch()
    net = _net(torch)
    path = tmp_path / "dp.pth"
    torch.save(torch.nn.DataParallel(net).state_dict(), path)  # every name starts with module.
    from featmap.net.spec import parse_tokens

    source = WeightSource(load_weights(path), source=path.name)
    x = np.zeros((6, 6, 3), np.float32)
    run_network(parse_tokens(TOKENS), x, source)
    assert source.warnings == [
        "dp.pth: every name starts with `module.` (a wrapped model's state_dict): read without it"
    ]


def test_what_is_not_a_state_dict_is_one_line(tmp_path: Path) -> None:
    torch = _torch()
    net = _net(torch)
    cases = {
        "whole.pth": (net, r"holds a whole pickled model \(torch\.nn\.modules\.container\.Sequential\), which featmap"),
        "optim.pth": (
            torch.optim.SGD(net.parameters(), lr=0.1).state_dict(),
            r"holds an optimizer's state \(state, param_groups\), not the model's weights",
        ),
        "one.pt": (torch.zeros(3, 2), r"holds a single tensor of shape \(3, 2\), not named tensors"),
        "list.pt": ([torch.zeros(2)], "holds a list, not a state_dict"),
        "mixed.pt": ({"a": torch.zeros(2), "epoch": 3}, r"holds a dict \(a, epoch\) that is neither a state_dict"),
        "mask.pt": ({"m": torch.zeros(2, dtype=torch.bool)}, "tensor `m`: has dtype bool; store float tensors"),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(SpecError, match=message) as info:
            load_weights(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
        if name != "mask.pt":
            assert str(info.value).endswith("save the weights alone: torch.save(model.state_dict(), path)")


def test_a_plain_pickle_is_never_unpickled(tmp_path: Path) -> None:
    _torch()
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(SpecError, match=r"is not a PyTorch checkpoint featmap can read \(Unsupported operand 149\)"):
        load_weights(path)


def test_limits_are_checked_on_the_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = _torch()
    torch.save({"big": torch.zeros(40, 40)}, tmp_path / "w.pth")
    monkeypatch.setenv(ELEMENTS_ENV, "1000")
    with pytest.raises(SpecError, match="tensor `big`: has 1,600 elements, over the limit of 1,000"):
        load_weights(tmp_path / "w.pth")


def test_without_torch_the_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "net.pth"
    path.write_bytes(b"\x80\x02}q\x00.")  # what a legacy torch.save starts with: a pickle
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(SpecError) as info:
        load_weights(path)
    assert str(info.value) == (
        f"{path}: is a PyTorch checkpoint (torch.save) and torch is not installed; "
        "pip install 'featmap[torch]' (in a clone: pip install '.[torch]')"
    )


def test_cli_refuses_a_whole_model_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    torch = _torch()
    torch.save(_net(torch), tmp_path / "whole.pth")
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 6x6x3\nlayers: [conv:4@3x3, bn, relu, flatten, dense:5]\n")
    from PIL import Image

    Image.new("RGB", (6, 6)).save(tmp_path / "in.png")
    out = tmp_path / "out"
    args = ["apply", str(tmp_path / "in.png"), "--spec", str(spec), "--weights", str(tmp_path / "whole.pth")]
    result = CliRunner().invoke(cli, [*args, "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "holds a whole pickled model" in result.stderr
    assert not out.exists()
