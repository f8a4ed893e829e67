"""featmap against ONNX Runtime on torchvision's models exported to ONNX: one table row per export, the largest
relative error of the final output and of any mapped layer (max |featmap − runtime| / max |runtime|).

    python tools/onnx_parity.py                                   # the eight architectures, legacy opset 17
    python tools/onnx_parity.py resnet18,convnext_tiny legacy:13:0,legacy:20:1,dynamo:18:1

Settings are ``exporter:opset:fold`` (fold 1 = constant folding on). Needs torch, torchvision (model code only,
see tests/onnx_zoo.py), onnxruntime, and onnxscript for the dynamo exporter. The tests check the same numbers
(tests/test_onnx_runtime.py; ``FEATMAP_ONNX_SWEEP=1`` for every setting).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.onnx_zoo import ARCHITECTURES, compare, export, seeded_model  # noqa: E402

EIGHT = "resnet18,mobilenet_v2,efficientnet_b0,shufflenet_v2_x1_0,squeezenet1_1,densenet121,convnext_tiny,googlenet"


def main(argv: list[str]) -> int:
    names = (argv[0] if argv else EIGHT).split(",")
    settings = [s.split(":") for s in (argv[1] if len(argv) > 1 else "legacy:17:1").split(",")]
    print("| architecture | exporter, opset, folding | final | worst layer | layers |")
    print("|---|---|---|---|---|")
    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            size = ARCHITECTURES[name][1]
            model = seeded_model(name)
            image = np.random.default_rng(7).random((size, size, 3), dtype=np.float32)
            for exporter, opset, fold in settings:
                path = Path(folder) / f"{name}-{exporter}-{opset}-{fold}.onnx"
                setting = f"{exporter} {opset}, folding {'on' if fold == '1' else 'off'}"
                try:
                    export(model, path, size, exporter=exporter, opset=int(opset), fold=fold == "1")
                    errors, _ = compare(path, image)
                except Exception as exc:  # a row of the table says what went wrong
                    failed += 1
                    print(f"| {name} | {setting} | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]} | | |")
                    continue
                final = errors.pop("(final)")
                worst = max(errors, key=lambda k: errors[k])
                print(f"| {name} | {setting} | {final:.1e} | {errors[worst]:.1e} (`{worst}`) | {len(errors)} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
