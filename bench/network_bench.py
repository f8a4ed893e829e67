"""Networks on images: whole `featmap apply --model` commands as a user times them, and featmap's executor against
PyTorch's CPU forward pass and ONNX Runtime on the same networks and weights in the same run (torch, torchvision's
model code and onnxruntime optional).

    python bench/network_bench.py [--runs 5] [--threads 1] [--models resnet18,vgg16,mobilenet_v2,convnext_tiny]
        [--no-commands] [--clock wall|cpu]

Prints each command's median wall time and peak memory (``FEATMAP_BENCH_PYTHONPATH`` times another checkout's
featmap; modules byte-compiled as an installed featmap's are, see `as_installed`), then per network at 224×224×3,
interleaved rounds (one of each per round, warm), medians:
featmap's executor with every layer's output and its statistics (what `featmap apply` computes before writing),
featmap's final output alone (``featmap.forward(..., outputs="final")``) with weights featmap read from a file (as
``weights=PATH`` and ``featmap apply --weights`` read them; "final") and with the caller's own arrays ("held", which
each run re-reads to see whether they changed), torch, ONNX Runtime, and the ratios
against issue 22's targets (final ≤ 2× ONNX Runtime, ≤ 0.7× torch). Every peer runs on ``--threads`` threads
(featmap's BLAS through `featmap.core.blas`, ``torch.set_num_threads``, ONNX Runtime's ``intra_op_num_threads``):
``-j 1`` means one core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from featmap.net.spec import load_model

REPO = Path(__file__).resolve().parent.parent
_MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)"
)


def as_installed(env: dict[str, str], pycache: Path) -> dict[str, str]:
    """``env`` with Python's bytecode cache on, kept under ``pycache``: an installed featmap has its modules
    byte-compiled (pip compiles them), so a command should not pay for compiling ~100 modules on every run, as it
    does where ``PYTHONDONTWRITEBYTECODE`` is set and the checkout has no ``__pycache__``. The first (warm-up) run
    fills the cache; the checkout is not written to."""
    env = {**env, "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def whole_command(args: list[str], runs: int, pycache: Path) -> tuple[float, float]:
    """Median wall seconds and the largest peak RSS (MB) of ``featmap ARGS`` run ``runs`` times (one warm-up)."""
    times, peaks = [], []
    env = as_installed(dict(os.environ), pycache)
    env["PYTHONPATH"] = os.environ.get("FEATMAP_BENCH_PYTHONPATH") or str(REPO)  # this checkout's, or the other
    for i in range(runs + 1):
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, sys.executable, "-m", "featmap", *args],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=pycache.parent,  # not a checkout: ``python -m`` puts the working directory first on sys.path
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


def _peers(name: str, threads: int) -> tuple[Any, Any, Any, list[Any], str | None]:
    """torchvision's seeded ``name`` (VGG-16: its first two blocks), its tensors by PyTorch's names twice (read by
    featmap from a ``torch.save`` file, as ``weights=PATH`` reads them, and the caller's own arrays of the model's
    ``state_dict``), an ONNX Runtime session on it (or None), featmap's layers and the ``upto`` that ends them where
    torch's does."""
    sys.path.append(str(REPO))  # tests/onnx_zoo.py: seeded torchvision models and the ONNX export
    import torch

    from featmap.net.networks import load_network_weights
    from tests.onnx_zoo import export, seeded_model

    model = seeded_model(name)
    layers, upto = list(load_model(name).layers), None
    state = model.state_dict()
    held = {k: v.numpy() for k, v in state.items()}  # featmap binds the whole preset's tensors
    if name == "vgg16":
        layers, upto = vgg16_two_blocks()
        model = model.features[:10]
    session = None
    with tempfile.TemporaryDirectory() as folder:  # the same weights as `featmap.forward(..., weights=PATH)` reads them
        torch.save(state, Path(folder) / "w.pt")
        loaded = load_network_weights(Path(folder) / "w.pt")
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as folder:
            path = export(model, Path(folder) / f"{name}.onnx", 224)
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except ImportError:
        pass
    return model, (loaded, held), session, layers, upto


def executor_vs_peers(runs: int, threads: int, names: list[str]) -> None:
    """featmap (every output; the final output alone), torch and ONNX Runtime on each network, one of each per
    round so that all see the same machine; medians of the times and of the per-round ratios."""
    from featmap.net.plan import plan_layers

    try:
        from featmap.run.logits import final_output
    except ImportError:  # a checkout from before outputs="final"
        final_output = None
    try:
        import torch
    except ImportError:
        print("  torch is not installed: no peers (pip install torch; torchvision with --no-deps)")
        return
    torch.set_num_threads(threads)
    try:
        from featmap.core import blas

        blas.set_threads(threads)
    except ImportError:  # a checkout from before featmap.core.blas: set OPENBLAS_NUM_THREADS instead
        pass
    x = np.random.default_rng(0).random((224, 224, 3), dtype=np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    print(f"{'network, 224²':14s} {'every output':>12s} {'final':>8s} {'held':>8s} {'torch':>8s} {'ORT':>8s}"
          f"   {'final/ORT':>9s} {'held/ORT':>8s} {'final/torch':>11s} {'every/torch':>11s}"
          f"   (ms; {threads} thread(s))")  # fmt: skip
    for name in names:
        model, (loaded, held), session, layers, upto = _peers(name, threads)
        nodes = plan_layers(layers, x.shape)

        rounds = [_round(nodes, x, loaded, held, upto, final_output, model, xt, session) for _ in range(runs + 1)][1:]
        ms = [statistics.median(r[k] for r in rounds) * 1000 for k in range(5)]

        def ratio(a: int, b: int, have: bool, rounds: list[tuple[float, ...]] = rounds) -> str:
            return f"{statistics.median(r[a] / r[b] for r in rounds):.2f}" if have else "n/a"

        has_final, has_ort = final_output is not None, session is not None
        nan = float("nan")
        print(
            f"{name:14s} {ms[0]:12.1f} {ms[1] if has_final else nan:8.1f} {ms[2] if has_final else nan:8.1f} "
            f"{ms[3]:8.1f} {ms[4] if has_ort else nan:8.1f}   {ratio(1, 4, has_final and has_ort):>9s} "
            f"{ratio(2, 4, has_final and has_ort):>8s} {ratio(1, 3, has_final):>11s} {ratio(0, 3, True):>11s}"
        )
    print("final: weights featmap read from a file; held: the caller's own (writeable) arrays, which a run re-reads")
    print("targets (issue 22): final/ORT <= 2, final/torch <= 0.7")


def _round(
    nodes: Any,
    x: Any,
    loaded: Any,
    held: Any,
    upto: str | None,
    final_output: Any,
    model: Any,
    xt: Any,
    session: Any,
) -> tuple[float, float, float, float, float]:
    """One round: featmap every output, featmap final output (weights it loaded, then the caller's arrays), torch,
    ONNX Runtime (0 for what is missing)."""
    import torch

    from featmap.run.executor import WeightSource, iter_network

    def every() -> None:
        for _ in iter_network(nodes, x, WeightSource(loaded), upto=upto):
            pass

    def theirs() -> None:
        with torch.no_grad():
            model(xt)

    final = held_final = 0.0
    if final_output is not None:
        final = _timed(lambda: final_output(nodes, x, WeightSource(loaded), upto=upto))
        held_final = _timed(lambda: final_output(nodes, x, WeightSource(held), upto=upto))
    runtime = 0.0
    if session is not None:
        feed = {session.get_inputs()[0].name: xt.numpy()}
        runtime = _timed(lambda: session.run(None, feed))
    return _timed(every), final, held_final, _timed(theirs), runtime


# The clock of every timing: wall (perf_counter) or this thread's CPU time (``--clock cpu``: on a shared, loaded
# machine, one thread's CPU seconds move less than the wall; every peer runs its one thread on the calling thread).
_CLOCK = time.perf_counter


def _timed(func: object) -> float:
    start = _CLOCK()
    func()  # type: ignore[operator]
    return _CLOCK() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="threads of every peer (default 1: one core)")
    parser.add_argument("--models", default="resnet18,vgg16,mobilenet_v2,convnext_tiny")
    parser.add_argument("--no-commands", action="store_true", help="only the executor against its peers")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time the in-process rounds by the wall or by this thread's CPU time (with --threads 1)",
    )
    args = parser.parse_args()
    if args.clock == "cpu":
        if args.threads != 1:
            parser.error("--clock cpu times the calling thread: use it with --threads 1")
        global _CLOCK
        _CLOCK = time.thread_time
    runs = args.runs
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not args.no_commands:
        whole_commands(runs)
    print(f"networks in process, interleaved, median of {runs} rounds after a warm-up, {args.clock} clock")
    executor_vs_peers(runs, args.threads, args.models.split(","))


def whole_commands(runs: int) -> None:
    """The three `featmap apply --model` commands, timed whole."""
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
                0.35,
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
            seconds, peak = whole_command(args, runs, Path(tmp) / "pycache")
            verdict = "ok" if seconds <= target else "MISS"
            print(f"  {label:42s} {seconds:6.2f} s  {peak:7.0f} MB   target < {target} s: {verdict}")


if __name__ == "__main__":
    main()
