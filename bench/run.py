"""Every issue-5 benchmark in one command: the micro-benchmark table, then the end-to-end batch.

python bench/run.py                  # 2048² micro rows, 64 JPEGs end to end
python bench/run.py --size 1024 --count 32 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import batch_bench
import conv_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="micro-benchmark image side")
    parser.add_argument("--repeat", type=int, default=5, help="runs per micro-benchmark cell (median)")
    parser.add_argument("--count", type=int, default=64, help="JPEGs in the end-to-end batch")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the quick batch runs")
    args = parser.parse_args()
    conv_bench.run(args.size, args.repeat)
    print(flush=True)
    # The batch in a fresh process: the micro-benchmarks leave PyTorch's and OpenBLAS's thread pools behind.
    command = [sys.executable, batch_bench.__file__, "--count", str(args.count), "--jobs", str(args.jobs)]
    subprocess.run([*command, "--rounds", str(args.rounds)], check=True)


if __name__ == "__main__":
    main()
