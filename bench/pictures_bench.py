"""What ``--sheet`` and ``--report`` cost: the whole ``featmap apply`` command, timed as a user times it.

One 1024×1024 photo (a crop of samples/coffee.png, upscaled, saved as JPEG like bench/batch_bench.py's),
8 kernels with 'same' reflect padding, the PNGs written as usual; then the same command with ``--sheet``,
with ``--report``, with both, and with ``--colormap auto``. Runs are interleaved (the machine's speed
drifts) and the median of each is printed with its ratio to the plain run and the size of what it wrote.

    python bench/pictures_bench.py               # 7 rounds
    python bench/pictures_bench.py --rounds 11 --input my_photo.jpg
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
KERNELS = ["sobel_x", "sobel_y", "laplacian_4", "gaussian_5", "gabor_0", "gabor_45", "log_9", "emboss"]
VARIANTS = {
    "plain": [],
    "--sheet": ["--sheet"],
    "--report": ["--report"],
    "--sheet --report": ["--sheet", "--report"],
    "--colormap auto": ["--colormap", "auto"],
}


def make_photo(path: Path, size: int = 1024) -> None:
    """A 1024² JPEG from the coffee photograph (a crop, upscaled)."""
    im = Image.open(SAMPLES / "coffee.png").convert("RGB")
    w, h = im.size
    im.crop((w // 8, 0, w // 8 + h, h)).resize((size, size), Image.Resampling.BICUBIC).save(path, quality=90)


def run_once(photo: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one whole command."""
    command = [sys.executable, "-m", "featmap", "apply", str(photo), *[a for k in KERNELS for a in ("-k", k)]]
    command += ["--padding", "same", "--pad-mode", "reflect", "-o", str(out), "--overwrite", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median kept)")
    parser.add_argument("--input", type=Path, default=None, help="a photo instead of the 1024² coffee crop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photo = args.input or root / "photo.jpg"
        if args.input is None:
            make_photo(photo)
        with Image.open(photo) as im:
            size = f"{im.width}×{im.height}"
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
        run_once(photo, root / "warm", [])  # page cache and .pyc files
        for _ in range(args.rounds):
            for name, extra in VARIANTS.items():
                wall, used = run_once(photo, root / name.replace(" ", "_").strip("-"), extra)
                times[name].append(wall)
                cpu[name].append(used)
        base = statistics.median(times["plain"])
        base_cpu = statistics.median(cpu["plain"])
        print(f"featmap apply on a {size} photo, {len(KERNELS)} kernels, same/reflect; median of {args.rounds} runs")
        print("wall: elapsed time; cpu: user + system time of the command (steadier on a shared machine)")
        print(
            f"{'options':<20} {'wall s':>7} {'extra':>6} {'ratio':>6} {'cpu s':>6} {'extra':>6} {'ratio':>6}  outputs"
        )
        for name, samples in times.items():
            median = statistics.median(samples)
            folder = root / name.replace(" ", "_").strip("-")
            notes = []
            sheet = next(folder.glob("*/sheet.png"), None)
            if sheet is not None:
                with Image.open(sheet) as im:
                    notes.append(f"sheet {im.width}×{im.height} {sheet.stat().st_size / 1e6:.2f} MB")
            report = folder / "report.html"
            if report.is_file():
                notes.append(f"report {report.stat().st_size / 1e6:.2f} MB")
            used = statistics.median(cpu[name])
            print(
                f"{name:<20} {median:>7.3f} {median - base:>6.3f} {median / base:>6.2f} "
                f"{used:>6.3f} {used - base_cpu:>6.3f} {used / base_cpu:>6.2f}  {', '.join(notes)}"
            )
        print("targets (issue 12): --sheet ratio <= 1.25; --report < 1 s extra and < 5 MB")


if __name__ == "__main__":
    main()
