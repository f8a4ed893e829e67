"""torchvision's GoogLeNet and Inception v3 ``transform_input`` (on with their ImageNet weights): the presets
declare it, featmap's preprocessing applies it as torchvision's model does, and the logits match torchvision's
model built with ``transform_input=True`` (skipped, saying why, without torch or torchvision)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from featmap.errors import SpecError
from featmap.net.layers import without_aux
from featmap.net.preprocess import prepare, resolve
from featmap.net.spec import load_model
from featmap.run.executor import WeightSource, run_network

from .torchvision_models import seeded_twin, torch_and_torchvision

#: Each preset, the small input it runs at here (inception_v3: torchvision's smallest).
SIZES = {"googlenet": 40, "inception_v3": 75}


def test_it_is_the_half_normalisation_and_stays_under_an_override() -> None:
    """ImageNet's normalisation then ``transform_input`` is ``(x - 0.5) / 0.5``; ``--preprocess none`` keeps the
    model's own step (the network still re-scales what it is given), other presets never have it."""
    pre = resolve(load_model("googlenet").preprocess)
    assert pre.transform_input and pre.name == "imagenet" and pre.resize == 256
    assert resolve(load_model("inception_v3").preprocess).resize == 342
    pixels = np.random.default_rng(1).uniform(0, 1, (24, 24, 3)).astype(np.float32)
    out = prepare(pixels, (24, 24, 3), replace(pre, mode="stretch")).tensor
    np.testing.assert_allclose(out, (pixels - 0.5) / 0.5, rtol=0, atol=2e-6)
    kept = resolve(load_model("googlenet").preprocess, "none")
    assert kept.name == "none" and kept.transform_input
    np.testing.assert_allclose(prepare(pixels, None, kept).tensor[..., 0], pixels[..., 0] * 0.458 - 0.03, atol=1e-6)
    assert not resolve(load_model("resnet18").preprocess, "none").transform_input
    assert "transform_input" not in repr(resolve("imagenet"))  # other transforms' options hash is unchanged
    with pytest.raises(SpecError, match="needs an RGB input"):
        prepare(pixels[..., :1], None, kept)
    with pytest.raises(SpecError, match="must be true or false"):
        resolve({"name": "imagenet", "transform_input": "yes"})


@pytest.mark.parametrize("name", list(SIZES))
def test_presets_match_torchvision_with_transform_input(name: str) -> None:
    """The preset's input transform on a photo-sized array, then the network: torchvision's model with
    ``transform_input=True`` given the ImageNet-normalised tensor (featmap's, checked against torchvision's
    transforms in tests/test_preprocess.py) gives the same logits; without the step they differ."""
    torch, torchvision = torch_and_torchvision()
    size = SIZES[name]
    twin = seeded_twin(torch, torchvision, name, seed=3)
    model = load_model(name)
    pre = resolve(model.preprocess)
    pixels = np.random.default_rng(5).uniform(0, 1, (size + 13, size + 29, 3)).astype(np.float32)
    normalised = prepare(pixels, (size, size, 3), replace(pre, transform_input=False)).tensor
    seen = prepare(pixels, (size, size, 3), pre).tensor
    batch = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))[None]
    first = twin.conv1.conv if name == "googlenet" else twin.Conv2d_1a_3x3.conv
    seen_by_conv: list[np.ndarray] = []
    hook = first.register_forward_hook(lambda m, i, o: seen_by_conv.append(o[0].numpy().transpose(1, 2, 0)))
    with torch.no_grad():
        twin.transform_input = True  # torchvision's default with its ImageNet weights
        np.testing.assert_array_equal(twin._transform_input(batch)[0].numpy().transpose(1, 2, 0), seen)
        want = twin(batch)[0].numpy()
        twin.transform_input = False
        twin(batch)
    hook.remove()
    state = {k: v.numpy() for k, v in twin.state_dict().items() if not k.endswith("num_batches_tracked")}
    result = run_network(without_aux(model.layers), seen, WeightSource(state))
    assert float(np.abs(result.logits - want).max()) <= 1e-4 * float(np.abs(want).max())
    conv = result.outputs[0]
    assert conv.node.key == f"{'conv1' if name == 'googlenet' else 'Conv2d_1a_3x3'}.conv"
    with_step, without_step = seen_by_conv
    np.testing.assert_allclose(conv.values, with_step, rtol=1e-5, atol=1e-5 * float(np.abs(with_step).max()))
    assert float(np.abs(without_step - with_step).max()) > 0.1 * float(np.abs(with_step).max())  # the step shows
