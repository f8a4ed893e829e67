"""featmap.io.writers.gif: frames, layout, exact colours and limits of an explanation's animation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featmap.errors import ShapeError
from featmap.explain import explain
from featmap.explain.examples import explain_example
from featmap.io.writers.gif import COLORS, MAX_FRAMES, frame_colors, gif_frames, gif_layout, write_gif
from featmap.net.layers import Conv2d, Pool2d


def test_frames_cover_every_position_of_every_stage() -> None:
    e = explain(np.arange(16.0).reshape(4, 4), [[1.0, 0.0], [0.0, -1.0]], pool=Pool2d("avg", 3))
    frames = gif_frames(e)
    assert len(frames) == 9 + 1 + 2  # 3×3 conv positions, one pooled cell, first and last frame
    assert len({f.size for f in frames}) == 1
    layout = gif_layout(e)
    assert len(layout.rows) == 2 and layout.rows[0].output.rows == 3 and layout.rows[1].output.rows == 1


def test_frames_hold_only_the_palette_colours(tmp_path: Path) -> None:
    path, count = write_gif(tmp_path / "rgb.gif", explain_example("rgb"))
    assert count == 4 + 2
    allowed = {tuple(c) for c in COLORS.values()}
    for index in (0, 3, count - 1):
        pixels = frame_colors(path, index).reshape(-1, 3)
        assert {tuple(int(v) for v in p) for p in np.unique(pixels, axis=0)} <= allowed


def test_window_is_drawn_on_every_channel(tmp_path: Path) -> None:
    e = explain_example("rgb")
    layout = gif_layout(e)
    path, _ = write_gif(tmp_path / "w.gif", e)
    frame = frame_colors(path, 1)  # position (0, 0): window rows 0–2, columns 0–2 of each channel
    for panel in layout.rows[0].inputs:
        x0, y0, _, _ = panel.box(1, 1)
        assert tuple(frame[y0 + 3, x0 + 3]) == COLORS["window"]
        x0, y0, _, _ = panel.box(3, 3)
        assert tuple(frame[y0 + 3, x0 + 3]) == COLORS["background"]


def test_padding_and_unused_rows_are_coloured(tmp_path: Path) -> None:
    e = explain(
        np.ones((4, 4)),
        np.ones((3, 3)),
        conv=Conv2d(stride=2, padding=1),
    )
    layout = gif_layout(e)
    path, _ = write_gif(tmp_path / "p.gif", e)
    first = frame_colors(path, 0)
    panel = layout.rows[0].inputs[0]
    x0, y0, _, _ = panel.box(0, 1)  # the top padding row
    assert tuple(first[y0 + 3, x0 + 3]) == COLORS["padding"]
    x0, y0, _, _ = panel.box(5, 2)  # padded row 5: the stride 2 never reaches it ((6 - 3) / 2 floored)
    assert tuple(first[y0 + 3, x0 + 3]) == COLORS["unused"]


def test_limits() -> None:
    side = int(np.sqrt(MAX_FRAMES)) + 1
    with pytest.raises(ShapeError, match=f"over the limit of {MAX_FRAMES}"):
        gif_layout(explain(np.zeros((side, side)), [[1.0]]))


def test_titles_fit_text_is_legible_and_the_rgb_caption_names_its_numbers() -> None:
    from featmap.io.writers.gif import _caption, _font, _header, _width

    box = _font().getbbox("H")
    assert box[3] - box[1] >= 13  # capitals 13 px tall (the old 14-px font gave 10)
    for name in ("max-pool", "avg-pool", "rgb", "zero-padding", "stride-2"):
        e = explain_example(name)
        layout = gif_layout(e)
        for index, row in enumerate(layout.rows):
            assert row.header[0] + _width(_header(row.stage, index > 0)) <= layout.size[0]  # never cut off
            panels = (*row.inputs, *row.kernels, row.output)
            for left, right in zip(panels, panels[1:], strict=False):
                assert left.x + _width(left.label) < right.x  # labels never run into the next panel
    rgb = explain_example("rgb")
    assert rgb.conv is not None
    text = _caption(rgb.conv, 0, 1)  # channel sums 2, -1, -3; bias 1; relu(-1) = 0
    assert text == "(0, 1): channel sums 2 (ch 0) - 1 (ch 1) - 3 (ch 2) = -2; + bias 1 = -1; relu -> 0"


def test_scale_enlarges_every_frame_by_whole_pixels(tmp_path: Path) -> None:
    e = explain_example("max-pool")
    one, _ = write_gif(tmp_path / "one.gif", e)
    two, count = write_gif(tmp_path / "two.gif", e, scale=2)
    for index in (0, 2, count - 1):
        small, big = frame_colors(one, index), frame_colors(two, index)
        assert big.shape == (small.shape[0] * 2, small.shape[1] * 2, 3)
        assert np.array_equal(big, np.repeat(np.repeat(small, 2, axis=0), 2, axis=1))
    with pytest.raises(ShapeError, match="scale 5"):
        write_gif(tmp_path / "bad.gif", e, scale=5)
    assert not (tmp_path / "bad.gif").exists()
