"""Make docs/gallery/explain_conv.gif: the "zero-padding" example as an animation (README's Explain it section).

Run from the repository root: ``python docs/gallery/make_explain_gif.py``; the same as
``featmap explain --example zero-padding --gif docs/gallery/explain_conv.gif``.
"""

from __future__ import annotations

from pathlib import Path

from featmap.explain.examples import explain_example
from featmap.io.writers.gif import write_gif

if __name__ == "__main__":
    target = Path(__file__).resolve().parent / "explain_conv.gif"
    path, frames = write_gif(target, explain_example("zero-padding"))
    print(f"wrote {path} ({frames} frames, {path.stat().st_size:,} bytes)")
