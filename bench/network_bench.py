"""Networks on images: whole `featmap apply --model` commands as a user times them, and the executor against
PyTorch's CPU forward pass on the same stack in the same run (torch optional).

    python bench/network_bench.py [--runs 5]

Prints each command's median wall time and peak memory, and featmap's executor time over torch's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
_MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)"
)


def whole_command(args: list[str], runs: int) -> tuple[float, float]:
    """Median wall seconds and the largest peak RSS (MB) of ``featmap ARGS`` run ``runs`` times (one warm-up)."""
    times, peaks = [], []
    for i in range(runs + 1):
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, sys.executable, "-m", "featmap", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if out[2] != "0":
            raise SystemExit(f"featmap {' '.join(args)} failed with exit code {out[2]}")
        if i:
            times.append(float(out[0]))
            peaks.append(float(out[1]) / 1024)
    return statistics.median(times), max(peaks)


def vgg16_two_blocks() -> tuple[list, str]:
    """VGG-16's layers and the path of its second max pool (the end of block 2)."""
    from featmap.net.plan import plan_layers
    from featmap.net.spec import load_model

    model = load_model("vgg16")
    nodes = plan_layers(model.layers, (224, 224, 3))
    pools = [n.path for n in nodes[0].children if n.plan.kind == "MaxPool2d"]
    return list(model.layers), pools[1]


def executor_vs_torch(runs: int) -> None:
    """featmap's executor and torch's forward on VGG-16's first two blocks, 224×224×3, run in turn (one of each
    per round, so that both see the same machine), median of the per-round ratios."""
    from featmap.net.plan import plan_layers
    from featmap.run.executor import WeightSource, iter_network

    layers, upto = vgg16_two_blocks()
    x = np.random.default_rng(0).random((224, 224, 3), dtype=np.float32)
    nodes = plan_layers(layers, x.shape)
    source = WeightSource(init="kaiming", seed=0)

    def ours() -> None:
        for _ in iter_network(nodes, x, source, upto=upto):
            pass

    try:
        import torch
    except ImportError:
        times = [_timed(ours) for _ in range(runs + 1)][1:]
        print(f"  featmap executor   {statistics.median(times) * 1000:8.1f} ms   (torch not installed: no ratio)")
        return
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    ).eval()  # fmt: skip
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    def theirs() -> None:
        with torch.no_grad():
            model(xt)

    pairs = [(_timed(ours), _timed(theirs)) for _ in range(runs + 1)][1:]
    t_ours = statistics.median(p[0] for p in pairs)
    t_torch = statistics.median(p[1] for p in pairs)
    ratio = statistics.median(p[0] / p[1] for p in pairs)
    print(f"  featmap executor   {t_ours * 1000:8.1f} ms   (every layer's output and its statistics)")
    print(f"  torch CPU forward  {t_torch * 1000:8.1f} ms   ({torch.get_num_threads()} threads)")
    print(f"  featmap / torch    {ratio:8.2f}   (median of {runs} interleaved rounds; issue 10's target: <= 1.5)")


def _timed(func: object) -> float:
    start = time.perf_counter()
    func()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    _, upto = vgg16_two_blocks()
    with tempfile.TemporaryDirectory() as tmp:
        photo64 = Path(tmp) / "photo64.png"
        Image.open(REPO / "samples" / "coffee.png").convert("RGB").resize((64, 64)).save(photo64)
        out = str(Path(tmp) / "out")
        cases = [
            (
                "LeNet-5 digits, 32×32 digit",
                [
                    "apply",
                    str(REPO / "samples/digits/digit_7.png"),
                    "--model",
                    "lenet5-digits",
                    "-o",
                    out,
                    "--overwrite",
                ],
                0.4,
            ),
            (
                "Tiny VGG, 64×64 photo, kaiming init",
                ["apply", str(photo64), "--model", "tinyvgg", "--init", "kaiming", "-o", out, "--overwrite"],
                0.5,
            ),
            (
                "VGG-16 blocks 1-2, 224² photo, kaiming",
                [
                    "apply",
                    str(REPO / "samples/coffee.png"),
                    "--model",
                    "vgg16",
                    "--init",
                    "kaiming",
                    "--upto",
                    upto,
                    "-o",
                    out,
                    "--overwrite",
                ],
                2.0,
            ),
        ]
        print(f"whole commands (median of {runs}, wall; peak RSS of the process)")
        for label, args, target in cases:
            seconds, peak = whole_command(args, runs)
            verdict = "ok" if seconds <= target else "MISS"
            print(f"  {label:42s} {seconds:6.2f} s  {peak:7.0f} MB   target < {target} s: {verdict}")
    print("VGG-16 blocks 1-2 on 224×224×3, random weights, in process")
    executor_vs_torch(runs)


if __name__ == "__main__":
    main()
