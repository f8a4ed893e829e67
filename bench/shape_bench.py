"""`featmap shape` timed as a user times it (the whole command, a fresh process each run): the largest preset
(convnext_tiny) and a generated ONNX file of about 100 MB, with the peak memory of the process, against peers
run in the same session: ``onnx.load`` of the same file (weights and all) and, where installed, building the
torchvision model and counting its parameters.

python bench/shape_bench.py                 # 5 runs each, medians
python bench/shape_bench.py --repeat 9 --megabytes 200
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak resident megabytes of one fresh process (from wait4;
    this script stays small, so the fork before exec does not inflate the peak)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def make_onnx(path: Path, megabytes: int) -> None:
    """A VGG-like stack of 3x3 convolutions whose weights add up to about ``megabytes``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x, channels, total, i = [], [], "input", 3, 0, 0
    while total < megabytes * 2**20:
        out = min(64 * 2 ** min(i, 3), 512)
        weight = rng.standard_normal((out, channels, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        total += weight.nbytes
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1], name=f"/conv{i}/Conv"))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"/conv{i}/Relu"))
        x, channels, i = f"r{i}", out, i + 1
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def median_of(command: list[str], repeat: int) -> tuple[float, float, float]:
    runs = [run(command) for _ in range(repeat)]
    return (
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
        max(r[2] for r in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--make", metavar="PATH", help=argparse.SUPPRESS)  # writes the ONNX file, in a child
    args = parser.parse_args()
    if args.make:
        make_onnx(Path(args.make), args.megabytes)
        return
    featmap = [sys.executable, "-m", "featmap", "shape"]
    rows: list[tuple[str, float, float, float]] = []
    rows.append(
        ("featmap shape --model convnext_tiny", *median_of([*featmap, "--model", "convnext_tiny"], args.repeat))
    )
    if importlib.util.find_spec("torchvision") is not None:
        peer = "import torchvision; m = torchvision.models.convnext_tiny(); sum(p.numel() for p in m.parameters())"
        rows.append(("torchvision: build convnext_tiny, count", *median_of([sys.executable, "-c", peer], args.repeat)))
    if importlib.util.find_spec("onnx") is not None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "big.onnx"
            subprocess.run(
                [sys.executable, __file__, "--make", str(path), "--megabytes", str(args.megabytes)], check=True
            )
            size = path.stat().st_size / 2**20
            rows.append((f"featmap shape big.onnx ({size:.0f} MB)", *median_of([*featmap, str(path)], args.repeat)))
            load = f"import onnx; onnx.load({str(path)!r})"
            rows.append(("onnx.load of the same file", *median_of([sys.executable, "-c", load], args.repeat)))
    rows.append(("python -c pass (interpreter start)", *median_of([sys.executable, "-c", "pass"], args.repeat)))
    print(f"{'command':48} {'wall s':>7} {'CPU s':>7} {'peak RSS MB':>12}")
    for name, seconds, cpu, megabytes in rows:
        print(f"{name:48} {seconds:7.2f} {cpu:7.2f} {megabytes:12.0f}")
    load_avg = os.getloadavg()[0]
    print(f"(medians of {args.repeat} fresh processes; load average {load_avg:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
