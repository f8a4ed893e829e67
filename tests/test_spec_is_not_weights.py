"""A weights file or an image given where a network is expected (``--spec``, ``featmap shape FILE``) is named for
what it is, with the way to give it: it was "44.6 MiB exceeds the file size limit of 16 MiB; set
FEATMAP_MAX_FILE_SIZE=45M" (advice that only leads to the next error) or "cannot be read ('utf-8' codec …)"."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli
from featmap.errors import SpecError
from featmap.net.networks import load_network_file

TENSORS = {"c1.weight": np.ones((2, 1, 3, 3), np.float32), "c1.bias": np.zeros(2, np.float32)}


def _npz(path: Path) -> None:
    np.savez(path, **TENSORS)


def _safetensors(path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    st.save_file(TENSORS, str(path))


def _torch(path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({k: torch.from_numpy(v) for k, v in TENSORS.items()}, path)


def _h5(path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as fh:
        fh["layers/conv2d/vars/0"] = TENSORS["c1.weight"]


def _png(path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path, format="PNG")


def _jpeg(path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path, format="JPEG")


CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("w.npz", _npz, "a numpy .npz of weights"),
    ("w.safetensors", _safetensors, "a .safetensors weights file"),
    ("w.pth", _torch, "a PyTorch checkpoint"),
    ("w.weights.h5", _h5, "an HDF5 file (Keras weights)"),
    ("net.yaml", _png, "an image"),  # whatever the suffix says
    ("photo.jpg", _jpeg, "an image"),
]


@pytest.mark.parametrize(("name", "make", "held"), CASES, ids=[c[0] for c in CASES])
def test_a_weights_file_or_an_image_is_not_a_network(tmp_path: Path, name: str, make: object, held: str) -> None:
    path = tmp_path / name
    make(path)  # type: ignore[operator]
    with pytest.raises(SpecError, match=re.escape(f"{name}: is {held}, not a network; describe the network")):
        load_network_file(path)
    result = CliRunner().invoke(cli, ["shape", "--spec", str(path)])
    assert result.exit_code == 2 and f"is {held}, not a network" in result.stderr, result.stderr
    assert "FEATMAP_MAX_FILE_SIZE" not in result.stderr and result.stderr.count("\n") == 1


def test_a_big_weights_file_is_not_sent_to_the_file_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.npz"
    np.savez(path, w=np.zeros((5, 1024, 1024), np.float32))  # 20 MiB, over the spec file limit of 16 MiB
    image = tmp_path / "a.png"
    _png(image)
    result = CliRunner().invoke(cli, ["apply", str(image), "--spec", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1, result.stderr
    assert "big.npz: is a numpy .npz of weights, not a network" in result.stderr
    assert "FEATMAP_MAX_FILE_SIZE" not in result.stderr


def test_a_yaml_spec_is_still_read(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 8x8x1\nlayers: [relu]\n")
    assert load_network_file(spec).input_shape == (8, 8, 1)
