"""A manifest at scale: size, read time and resume time at 10⁶ lines (250,000 images × 4 kernels).

    python bench/manifest_bench.py                 # 10⁶ lines; the resume pass on 20,000 images with files
    python bench/manifest_bench.py --lines 200000 --resume-images 5000

Generates a manifest line for line as `featmap.run.batch.process_image` writes them (records of a real run as
templates, with distinct inputs), then times: `json.loads` on every line (what the reader did before);
`featmap.io.manifest_index.index_lines`; opening `featmap.io.outputs.Manifest` on the bare manifest (every line
read, the index beside it written) and again (what a resume does after a run, whose `Manifest.append` keeps the
index current: the index, then the lines after it); and the skip check of ``--skip-existing`` on images whose
outputs exist on disk, one image at a time (`targets_for` + `Manifest.complete`) and for the batch at once
(`featmap.run.resume`, what a batch runs), reported per image and scaled to the manifest's image count. The
whole command is timed by bench/resume_bench.py. ``--skip-json`` leaves out the two reader comparisons (slow
at 10⁶ lines).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from featmap.io.discover import InputImage
from featmap.io.manifest_index import index_lines
from featmap.io.outputs import Manifest
from featmap.kernels import KernelLibrary
from featmap.net.layers import Act, Conv2d, Pool2d
from featmap.run.batch import ApplyJob, OutputOptions, process_image, targets_for
from featmap.run.resume import Recorded, done_items

KERNELS = ["sobel_x", "sobel_y", "laplacian_4", "gaussian_5"]
PER_FOLDER = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--resume-images", type=int, default=20_000)
    parser.add_argument("--skip-json", action="store_true", help="leave out json.loads and index_lines")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="featmap-manifest-bench-"))
    try:
        run(work, args.lines, args.resume_images, args.skip_json)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _item(photos: Path, i: int) -> InputImage:
    folder = f"d{i // PER_FOLDER:04d}"
    return InputImage(photos / folder / f"img{i:07d}.jpg", Path(folder), f"img{i:07d}")


def run(work: Path, lines: int, resume_images: int, skip_json: bool = False) -> None:
    photos, out = work / "photos", work / "out"
    job = ApplyJob(
        KernelLibrary().bank(KERNELS), Conv2d(padding="same"), Act("relu"), Pool2d("max", 2),
        output=OutputOptions(out),
    )  # fmt: skip
    sample = photos / "sample.png"
    photos.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(sample)
    template = process_image(InputImage(sample, Path(), "sample"), job).records
    images = lines // len(KERNELS)
    start = time.perf_counter()
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as fh:
        for i in range(images):
            item = _item(photos, i)
            where = str(item.path)
            for rec in template:
                png = f"{item.rel_dir.as_posix()}/{item.stem}/{rec['kernel']}.png"
                fh.write(json.dumps({**rec, "input": where, "png": png}, sort_keys=True) + "\n")
    size = (out / "manifest.jsonl").stat().st_size
    print(f"manifest: {images * len(KERNELS):,} lines ({images:,} images × {len(KERNELS)} maps), "
          f"{size / 1e6:.0f} MB, {size / (images * len(KERNELS)):.0f} bytes a line "
          f"(generated in {time.perf_counter() - start:.1f} s)")  # fmt: skip

    if not skip_json:
        start = time.perf_counter()
        with open(out / "manifest.jsonl", encoding="utf-8") as fh:
            for line in fh:
                json.loads(line)
        print(f"  json.loads on every line:            {time.perf_counter() - start:6.2f} s")
        start = time.perf_counter()
        with open(out / "manifest.jsonl", encoding="utf-8") as fh:
            index = index_lines(fh)
        took = time.perf_counter() - start
        print(f"  featmap.io.manifest_index.index_lines:  {took:6.2f} s  ({len(index):,} outputs)")
    start = time.perf_counter()
    Manifest(out)
    print(f"  Manifest(out), no index yet (every line read): {time.perf_counter() - start:5.2f} s")
    start = time.perf_counter()
    manifest = Manifest(out)
    opened = time.perf_counter() - start
    print(f"  Manifest(out) again (a resume's first step):   {opened:5.2f} s")

    # The skip check needs the outputs on disk (the sample's PNGs): make them for the first `resume_images` inputs.
    count = min(resume_images, images)
    items = [_item(photos, i) for i in range(count)]
    pngs = {rec["kernel"]: (out / rec["png"]).read_bytes() for rec in template}
    for item in items:
        for kernel, path in targets_for(item, job).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pngs[kernel])
            item.path.parent.mkdir(parents=True, exist_ok=True)
    for item in items:  # the manifest records resolved input paths; these exist, as a user's inputs do
        item.path.touch()
    digest = job.options_hash()
    start = time.perf_counter()
    skipped = sum(manifest.complete(list(targets_for(item, job).values()), item.path, digest) for item in items)
    per_image = (time.perf_counter() - start) / count
    assert skipped == count, (skipped, count)
    print(f"  per-image check (Manifest.complete): {per_image * 1e6:.0f} µs an image (on {count:,} with their "
          f"files) → {per_image * images:.1f} s for all {images:,}")  # fmt: skip
    for _ in range(2):  # the first pass fingerprints the files (none known: made here), the second compares
        start = time.perf_counter()
        done = done_items(Recorded(items, job, digest, manifest), out)
        bulk = (time.perf_counter() - start) / count
        assert sum(done) == count, (sum(done), count)
    print(f"  --skip-existing check (featmap.run.resume, the batch at once): {bulk * 1e6:.1f} µs an image "
          f"→ {bulk * images:.1f} s for all {images:,}")  # fmt: skip
    per_image = bulk
    print(f"resume at {images * len(KERNELS):,} lines: manifest read {opened:.2f} s + skip checks "
          f"{per_image * images:.1f} s = {opened + per_image * images:.1f} s before the first new image")  # fmt: skip


if __name__ == "__main__":
    main()
