"""An image as a network sees it (`load_for_network`: decode, then the model's input transform from
`featmap.net.preprocess`), and the check that a job's class names fit its last layer (`check_job_labels`)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from featmap.errors import FeatmapError
from featmap.io.images import DEFAULT_MAX_PIXELS, LoadedImage, load_image
from featmap.net.plan import output_nodes
from featmap.net.preprocess import prepare
from featmap.net.preprocess import resolve as resolve_preprocess
from featmap.net.spec import Model

if TYPE_CHECKING:
    from featmap.run.netjob import NetworkJob

__all__ = ["GRAY_MODES", "check_job_labels", "load_for_network", "weights_layout", "with_labels"]


def weights_layout(file: Path | None, layout: str) -> str:
    """``keras`` for a Keras 3 weights file (judged by content), else ``layout``."""
    from featmap.net.weights import is_keras_file

    return "keras" if file is not None and layout == "torch" and is_keras_file(file) else layout


def with_labels(model: Model, labels: str | Path | None) -> Model:
    """``model`` with the class names of ``labels`` (a label file or a shipped set), if given."""
    if labels is None:
        return model
    from featmap.net.labels import load_labels

    return replace(model, labels=load_labels(labels))


#: Pillow modes of gray images (an RGB network gets their one channel three times, with a note).
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def load_for_network(
    path: str | os.PathLike[str],
    model: Model,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    preprocess: str | None = None,
    resize: str | None = None,
) -> tuple[NDArray[np.floating], LoadedImage, tuple[str, ...]]:
    """An image file as a network sees it, by the model's input transform (or ``preprocess``/``resize``):
    gray or RGB as its input declares, resized, cropped, normalised. Returns the tensor, the image with the
    picture the network saw (in [0, 1], for drawing) as its pixels, and the notes."""
    color = model.channels == 3
    image = load_image(path, color=color, background=background, max_pixels=max_pixels)
    pre = resolve_preprocess(model.preprocess, preprocess, resize)
    prepared = prepare(image.pixels, model.input_shape, pre, gray=color and image.info.mode in GRAY_MODES)
    return prepared.tensor, LoadedImage(prepared.shown, image.info), prepared.notes


def check_job_labels(job: NetworkJob, where: str) -> None:
    """Refuse class names that are not as many as the last layer's outputs (when its width is known)."""
    if not job.model.labels:
        return
    from featmap.net.labels import check_labels

    try:
        outputs = output_nodes(job.plan(job.nominal_shape))
    except FeatmapError:
        return  # no input declared and the stand-in size does not fit: the run itself says what is wrong
    if outputs and len(outputs[-1].plan.out_shape) == 1:
        check_labels(job.model.labels, outputs[-1].plan.out_shape[0], where)
