"""System time per image: ``featmap apply`` against the file work alone, the kernel's floor for the same files.

    python bench/file_bench.py                    # 100 crops of the sample photographs, 5 alternating rounds
    python bench/file_bench.py --count 200 --rounds 7

issue 22 asks for at most 1 ms of system time per image. Most of what is left is the kernel's own work for the
files a batch reads and writes (copying ~0.5 MB of PNG an image into the page cache, allocating 4 inodes and a
folder, reading the JPEG), which no change to featmap's numerics can remove. This bench measures that floor
beside the command, in alternating rounds of fresh processes (CPU time of each process and every process it
started, as `command_bench.timed` counts it):

- ``featmap -j 1``: the batch command of `command_bench` (``-k sobel_x -k sobel_y -k laplacian_4 -k
  gaussian:size=5,sigma=1 --padding same --activation relu --pool max``) on ``--count`` JPEGs;
- ``featmap -j 1, 2 images``: the same on two of them: its system time is the start-up's (imports, libraries,
  the first image's buffers), so ``(count-run - 2-image run) / (count - 2)`` is the system time of one more image;
- ``file work alone``: a plain Python loop, no numpy, that for each image reads the JPEG (one read), makes the
  image's folder and writes files of exactly the sizes featmap wrote for it (learnt from an untimed run), each
  through a temporary name and a rename, and appends a manifest line: featmap's file operations and bytes, with
  no decoding, filtering or encoding;
- ``file work + featmap's user CPU``: the same loop, each image also spending featmap's user CPU time an image
  (from the untimed run) in additions that make no system call. The kernel bills interrupts, the work it does for
  other processes in this one's time (block I/O completions, softirqs) and the ticks in which it switches tasks to
  whichever process is running, as its system time: on a busy machine that grows with the time a process runs,
  not with what it asks of the kernel.

Every run's output folder is set aside before the next run, not deleted (`command_bench.set_aside`: deleting it
made the next run's new inodes skip the freed ones, one by one, on this VM's ext4 without a journal). Set
``FEATMAP_BENCH_PYTHONPATH`` to time another checkout's featmap.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import batch_bench
from command_bench import FEATMAP, Run, become_subreaper, timed

FILE_WORK = r"""
import json, os, resource, sys, time
photos, sizes_file, out, said, spin_ms = sys.argv[1:6]


def spin(steps):  # user time only: no system call
    total = 0
    for step in range(steps):
        total += step
    return total


started = time.process_time()
spin(1_000_000)
steps = int(float(spin_ms) / 1000 / ((time.process_time() - started) / 1_000_000))
plan = json.load(open(sizes_file))  # [[image name, [[file name, size], ...]], ...]
blank = memoryview(bytes(max(size for _, files in plan for _, size in files)))
os.mkdir(out)
start = resource.getrusage(resource.RUSAGE_SELF).ru_stime
for image, files in plan:
    fd = os.open(os.path.join(photos, image), os.O_RDONLY)
    os.read(fd, os.fstat(fd).st_size)
    os.close(fd)
    folder = os.path.join(out, os.path.splitext(image)[0])
    os.mkdir(folder)
    for name, size in files:
        temp = os.path.join(folder, "." + name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.write(fd, blank[:size])
        os.close(fd)
        os.rename(temp, os.path.join(folder, name))
    fd = os.open(os.path.join(out, "manifest.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.write(fd, json.dumps({"input": image, "outputs": [name for name, _ in files]}).encode() + b"\n")
    os.close(fd)
    spin(steps)
with open(said, "a") as fh:  # the loop's own system time (this interpreter's start-up left out)
    fh.write(f"{spin_ms} {resource.getrusage(resource.RUSAGE_SELF).ru_stime - start}\n")
"""


def output_sizes(out: Path) -> list[tuple[str, list[tuple[str, int]]]]:
    """Each image's folder under ``out`` with the names and sizes of the PNGs featmap wrote in it."""
    return [
        (folder.name + ".jpg", [(png.name, png.stat().st_size) for png in sorted(folder.glob("*.png"))])
        for folder in sorted(p for p in out.iterdir() if p.is_dir())
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.environ.get("FEATMAP_BENCH_PYTHONPATH") or str(Path(__file__).resolve().parent.parent)
    if not become_subreaper():
        print("note: not a subreaper (not Linux): the CPU of a command's orphaned processes is not counted")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    work = Path(tempfile.mkdtemp(prefix="featmap-file-bench-"))
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")  # bytecode cached, as an installed featmap has it
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        photos, two = work / "photos", work / "two"
        photos.mkdir()
        two.mkdir()
        batch_bench.make_photos(photos, args.count)
        for photo in sorted(photos.iterdir())[:2]:
            shutil.copy(photo, two / photo.name)
        out, said = work / "out", str(work / "loop-system.txt")
        featmap = [sys.executable, "-m", "featmap", "apply"]
        file_work = [sys.executable, "-c", FILE_WORK, str(photos), str(work / "sizes.json"), str(out), said]
        rows = {
            "featmap -j 1": [*featmap, str(photos), *FEATMAP, "-j", "1", "-o", str(out)],
            "featmap -j 1, 2 images": [*featmap, str(two), *FEATMAP, "-j", "1", "-o", str(out)],
            "file work alone": [*file_work, "0"],
        }
        first = timed(rows["featmap -j 1"], out, env)  # untimed: fills the caches, tells the sizes and the CPU
        rows["file work + featmap's user CPU"] = [*file_work, f"{first.user / args.count * 1000:.2f}"]
        sizes = output_sizes(out)
        (work / "sizes.json").write_text(json.dumps(sizes))
        written = sum(size for _, files in sizes for _, size in files) / len(sizes)
        timed(rows["featmap -j 1, 2 images"], out, env)
        runs: dict[str, list[Run]] = {name: [] for name in rows}
        for i in range(args.rounds):
            for name in list(rows) if i % 2 == 0 else list(reversed(rows)):
                runs[name].append(timed(rows[name], out, env))
        loops: dict[str, list[float]] = {"0": [], "spun": []}
        for line in Path(said).read_text().splitlines():
            spun, system = line.split()
            loops["0" if spun == "0" else "spun"].append(float(system))
        report(runs, args.count, args.rounds, written, loops)
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(runs: dict[str, list[Run]], count: int, rounds: int, written: float, loops: dict[str, list[float]]) -> None:
    """Medians of system time per image; the file work's loops alone beside their whole processes."""
    system = {name: statistics.median(r.system for r in rs) for name, rs in runs.items()}
    print(f"\n{count} JPEGs of 1024² ({written / 1024:.0f} KB of PNG an image), median of {rounds} alternating rounds")
    print(f"  {'row':30s} {'sys ms/img':>11s}   system s of each run")
    for name, rs in runs.items():
        images = 2 if "2 images" in name else count
        spread = ", ".join(f"{r.system:.3f}" for r in rs)
        print(f"  {name:30s} {system[name] / images * 1000:11.2f}   ({spread})")
    more = (system["featmap -j 1"] - system["featmap -j 1, 2 images"]) / (count - 2)
    floor, spun = (statistics.median(loops[key]) / count for key in ("0", "spun"))
    print(f"  the file work's loop alone (its interpreter's start-up left out): {floor * 1000:.2f} ms an image,")
    print(f"  the same spending featmap's user CPU an image in a loop of additions: {spun * 1000:.2f} ms an image")
    print(f"  featmap, one more image: {more * 1000:.2f} ms of system time ({more / floor:.1f}x the file work alone)")
    print(f"  featmap's start-up (2-image run): {system['featmap -j 1, 2 images'] * 1000:.0f} ms of system time")


if __name__ == "__main__":
    main()
