"""Train featmap's shipped LeNet-5 on scikit-learn's digits and write the weights, data and samples.

Run once by a maintainer, never at install (needs torch and scikit-learn, not featmap dependencies)::

    pip install torch==2.13.0 scikit-learn && pip install -e .
    python tools/train_lenet5_digits.py

Data: ``sklearn.datasets.load_digits`` (1,797 8×8 digits, 16 gray levels, bundled in scikit-learn's wheel),
a copy of the test set of the UCI "Optical Recognition of Handwritten Digits" data (E. Alpaydin and
C. Kaynak, 1998; CC BY 4.0). Each digit is upsampled to 32×32 by `digit_to_pixels` (the one function that
makes the images, for training, the held-out file and the sample PNGs alike) and fed to the network as
featmap reads an 8-bit PNG (`pixels_to_input`), so training sees exactly what ``featmap apply`` will see.

Network: featmap's ``lenet5`` preset (``featmap/net/models/lenet5.yaml``) as a ``torch.nn.Sequential`` whose
module names are featmap's layer keys (a layer's ``name``, else its 0-based index), so ``state_dict()``
gives ``C1.weight``, ``C1.bias``, ``C3.weight`` … ``output.bias`` in PyTorch layout.

Split: stratified, 20 % held out, ``random_state=0``. Training: AdamW (weight decay 1e-4) with a one-cycle
learning rate peaking at 3e-3, batch 32, 60 epochs, cross-entropy, every image shifted by a random
-2..2 px in each direction (zero fill), seed 0, deterministic algorithms, one thread.

Writes (paths relative to the repository root):

- ``featmap/net/models/lenet5-digits.npz``: float32 weights, ``state_dict`` names and layout;
- ``featmap/net/models/lenet5-digits.yaml``: the preset (the lenet5 layers, ``weights``, ``labels``);
- ``tests/data/digits_heldout.npz``: the held-out digits (``images`` uint8 (N, 32, 32), ``labels`` uint8,
  ``index`` into ``load_digits``);
- ``samples/digits/digit_<d>.png``: the first held-out digit of each class, 32×32 8-bit gray;
- ``tests/data/lenet5_digits_reference.npz``: torch's outputs of every layer for those 10 samples.

Then it checks the saved weights with an independent numpy forward (``tools/lenet5_numpy.py``) against
torch's logits and prints both held-out accuracies.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lenet5_numpy import LAYERS, forward  # noqa: E402 (the tools folder is not a package)

ROOT = Path(__file__).resolve().parent.parent
SEED = 0
HELD_OUT = 0.2
EPOCHS = 60
BATCH = 32
LR = 3e-3
WEIGHT_DECAY = 1e-4
SHIFT = 2
YAML_NAME = "lenet5-digits.yaml"


def digit_to_pixels(digit: NDArray[np.floating]) -> NDArray[np.uint8]:
    """One 8×8 ``load_digits`` image (0..16, ink high) → 32×32 uint8 (ink white on black).

    Scale 0..16 to 0..255 and round to uint8, then Pillow's bilinear resize to 32×32 (Pillow rounds the
    result to 8 bits). This is the only place images are made.
    """
    small = np.rint(np.asarray(digit, dtype=np.float64) * (255 / 16)).astype(np.uint8)
    return np.asarray(Image.fromarray(small, mode="L").resize((32, 32), Image.Resampling.BILINEAR))


def pixels_to_input(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """uint8 pixels → float32 in [0, 1] exactly as ``featmap.io.images.load_image`` reads an 8-bit PNG."""
    return np.multiply(pixels, np.float32(1 / 255), dtype=np.float32)


def save_npz(path: Path, **arrays: NDArray[np.generic]) -> None:
    """``numpy.savez_compressed`` with fixed member dates, so a re-run writes byte-identical files."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            zf.writestr(
                zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                buffer.getvalue(),
                compress_type=zipfile.ZIP_DEFLATED,
            )


def build_model():  # type: ignore[no-untyped-def]
    """featmap's lenet5 preset as torch modules named by featmap's layer keys."""
    from torch import nn

    make = {
        "C1": lambda: nn.Conv2d(1, 6, 5),
        "S2": lambda: nn.AvgPool2d(2),
        "C3": lambda: nn.Conv2d(6, 16, 5),
        "S4": lambda: nn.AvgPool2d(2),
        "C5": lambda: nn.Conv2d(16, 120, 5),
        "F6": lambda: nn.Linear(120, 84),
        "output": lambda: nn.Linear(84, 10),
    }
    modules = OrderedDict(
        (key, make[key]() if key in make else nn.Flatten() if kind == "flatten" else nn.Tanh()) for key, kind in LAYERS
    )
    return nn.Sequential(modules)


def torch_outputs(model, x: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:  # type: ignore[no-untyped-def]
    """Every layer's output for ``x`` (N, 32, 32, 1), in featmap's layout ((N, H, W, C) or (N, F))."""
    import torch

    out: dict[str, NDArray[np.float32]] = {}
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        for key, module in model.named_children():
            t = module(t)
            a = t.numpy()
            out[key] = np.ascontiguousarray(a.transpose(0, 2, 3, 1) if a.ndim == 4 else a, dtype=np.float32)
    return out


def shifted(padded, rng):  # type: ignore[no-untyped-def]
    """Each image of a zero-padded batch cropped back to 32×32 at a random offset: shifts of ±SHIFT px."""
    import torch

    offsets = torch.randint(0, 2 * SHIFT + 1, (len(padded), 2), generator=rng).tolist()
    return torch.stack([p[:, r : r + 32, c : c + 32] for p, (r, c) in zip(padded, offsets, strict=True)])


def train(model, x: NDArray[np.float32], y: NDArray[np.int64]) -> None:  # type: ignore[no-untyped-def]
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)
    padded = torch.nn.functional.pad(xt, (SHIFT, SHIFT, SHIFT, SHIFT))
    optimiser = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * -(-len(xt) // BATCH)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=LR, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    order_rng = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        model.train()
        total = 0.0
        for batch in torch.randperm(len(xt), generator=order_rng).split(BATCH):
            optimiser.zero_grad()
            loss = loss_fn(model(shifted(padded[batch], order_rng)), yt[batch])
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += float(loss.detach()) * len(batch)
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            print(f"epoch {epoch + 1:3d}  training loss {total / len(xt):.4f}")


def write_yaml(path: Path, weights_name: str) -> None:
    preset = (ROOT / "featmap" / "net" / "models" / "lenet5.yaml").read_text().splitlines()
    layers = preset[preset.index("layers:") :]
    labels = ", ".join(f'"{d}"' for d in range(10))
    head = [
        "name: lenet5-digits",
        "description: 'LeNet-5 (the lenet5 preset) trained on 32x32 handwritten digits; white ink on black, "
        "outputs the digit 0-9.'",
        "source: 'Architecture: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, \"Gradient-based learning applied "
        'to document recognition", Proc. IEEE 86(11), 1998. Weights: trained by tools/train_lenet5_digits.py '
        "on the UCI Optical Recognition of Handwritten Digits data (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0) "
        "as bundled by scikit-learn (load_digits), upsampled 8x8 -> 32x32.'",
        "input: 32x32x1",
        f"weights: {weights_name}              # relative to this file; PyTorch state_dict names and layout",
        f"labels: [{labels}]",
    ]
    path.write_text("\n".join(head + layers) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    digits = load_digits()
    pixels = np.stack([digit_to_pixels(d) for d in digits.images])
    labels = digits.target.astype(np.int64)
    index = np.arange(len(labels))
    train_idx, held_idx = train_test_split(index, test_size=HELD_OUT, stratify=labels, random_state=SEED)
    x_train = pixels_to_input(pixels[train_idx])[..., None]
    x_held = pixels_to_input(pixels[held_idx])[..., None]
    print(f"digits: {len(labels)}; training {len(train_idx)}, held out {len(held_idx)} (stratified, seed {SEED})")

    model = build_model()
    train(model, x_train, labels[train_idx])
    model.eval()

    held_out = torch_outputs(model, x_held)
    torch_logits = held_out["output"]
    torch_acc = float(np.mean(torch_logits.argmax(1) == labels[held_idx]))
    print(f"torch held-out accuracy: {torch_acc:.4f} ({int(round(torch_acc * len(held_idx)))}/{len(held_idx)})")

    models = ROOT / "featmap" / "net" / "models"
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    weights_path = models / "lenet5-digits.npz"
    save_npz(weights_path, **weights)
    write_yaml(models / YAML_NAME, weights_path.name)
    print(
        f"weights: {weights_path.relative_to(ROOT)}, {weights_path.stat().st_size:,} bytes, "
        f"{sum(v.size for v in weights.values()):,} parameters"
    )

    data = ROOT / "tests" / "data"
    data.mkdir(parents=True, exist_ok=True)
    save_npz(
        data / "digits_heldout.npz",
        images=pixels[held_idx],
        labels=labels[held_idx].astype(np.uint8),
        index=held_idx.astype(np.int16),
    )

    # Samples: the first held-out digit of each class, in held-out order.
    first = np.array([held_idx[np.flatnonzero(labels[held_idx] == d)[0]] for d in range(10)])
    sample_dir = ROOT / "samples" / "digits"
    sample_dir.mkdir(parents=True, exist_ok=True)
    for d, i in enumerate(first):
        Image.fromarray(pixels[i], mode="L").save(sample_dir / f"digit_{d}.png", optimize=True)
    x_samples = pixels_to_input(pixels[first])[..., None]
    reference = torch_outputs(model, x_samples)
    save_npz(
        data / "lenet5_digits_reference.npz",
        input=x_samples,
        labels=np.arange(10, dtype=np.uint8),
        index=first.astype(np.int16),
        **reference,
    )
    print("samples: " + " ".join(f"{d}->{p}" for d, p in enumerate(reference["output"].argmax(1))))

    # The saved file, read back, through an independent numpy forward pass.
    with np.load(weights_path, allow_pickle=False) as saved:
        loaded = {k: saved[k] for k in saved.files}
    numpy_logits = forward(loaded, x_held)["output"]
    diff = float(np.max(np.abs(numpy_logits - torch_logits)))
    numpy_acc = float(np.mean(numpy_logits.argmax(1) == labels[held_idx]))
    print(f"numpy reference held-out accuracy: {numpy_acc:.4f}; max |logit difference| vs torch: {diff:.2e}")
    if diff > 1e-5:
        print("error: the saved weights do not reproduce torch's logits to 1e-5", file=sys.stderr)
        return 1
    try:
        from featmap.io.images import load_image
    except ImportError:
        return 0
    for d in range(10):
        got = load_image(sample_dir / f"digit_{d}.png").pixels
        if not np.array_equal(got, x_samples[d]):
            print(f"error: featmap reads digit_{d}.png differently from the training input", file=sys.stderr)
            return 1
    print("featmap.io.images.load_image reads the sample PNGs bit-identically to the training input")
    return 0


if __name__ == "__main__":
    sys.exit(main())
