"""featmap on a Dask LocalCluster of 2 single-threaded workers against the local ``-j 2`` pool, and the
images-per-task granularity, in interleaved rounds (medians).

    python bench/cluster_bench.py                       # 200 JPEGs of 1024², chunks 1 2 4 8 16
    python bench/cluster_bench.py --count 64 --chunks 2 4 --rounds 5

The cluster is started once and warmed (each worker has imported featmap), as a user's running cluster
would be; its start-up is printed apart. Outputs go to a local folder the workers share with the client.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import batch_bench
from distributed import Client, LocalCluster

from featmap.io.discover import discover
from featmap.kernels import KernelLibrary
from featmap.net.layers import Act, Conv2d, Pool2d
from featmap.run.backends.dask import DaskBackend
from featmap.run.batch import ApplyJob, OutputOptions, run_batch
from featmap.run.workers import keep_freed_memory


def _warm() -> None:
    import featmap.run.batch  # noqa: F401


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="featmap-cluster-bench-"))
    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    )
    with Client(cluster) as client:
        client.run(_warm)
    started = time.perf_counter() - start
    try:
        photos = work / "photos"
        photos.mkdir()
        batch_bench.make_photos(photos, args.count)
        items, _, _ = discover([photos])
        job = ApplyJob(
            KernelLibrary().bank(batch_bench.KERNELS), Conv2d(padding="same"), Act("relu"), Pool2d("max", 2),
            output=OutputOptions(work / "out", png_compress=1),
        )  # fmt: skip
        keep_freed_memory()
        rows: dict[str, object] = {"local pool -j 2": None}
        rows.update(
            {f"LocalCluster 2×1, {c} per task": DaskBackend(cluster.scheduler_address, chunk=c) for c in args.chunks}
        )
        times: dict[str, list[float]] = {label: [] for label in rows}
        for _ in range(args.rounds):
            for label, backend in rows.items():
                shutil.rmtree(work / "out", ignore_errors=True)
                begin = time.perf_counter()
                report = run_batch(items, job, jobs=2, backend=backend)  # type: ignore[arg-type]
                times[label].append(time.perf_counter() - begin)
                assert len(report.processed) == args.count and not report.failed
        print(f"{args.count} JPEGs of 1024², median of {args.rounds} interleaved rounds "
              f"(LocalCluster start-up + warm-up: {started:.1f} s, not counted)")  # fmt: skip
        pool = statistics.median(times["local pool -j 2"])
        for label, values in times.items():
            seconds = statistics.median(values)
            print(f"  {label:32s} {args.count / seconds:6.1f} img/s  {pool / seconds:5.2f}× the pool  "
                  f"(runs: {', '.join(f'{t:.2f}' for t in values)} s)")  # fmt: skip
    finally:
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
