"""The per-layer colour rule (featmap.io.display.layer_scale): one colormap and range per layer, 0 at 0's colour."""

from __future__ import annotations

import numpy as np
import pytest

from featmap.errors import SpecError
from featmap.io.colormaps import get_colormap
from featmap.io.display import DisplayRange, layer_scale


def _colours(scale, channel, values):  # type: ignore[no-untyped-def]
    return scale.colormap.colours8(scale.range_of(channel).positions(np.asarray(values, np.float32)))


def test_mixed_sign_layer_gets_one_diverging_map_and_one_value_to_colour_rule() -> None:
    a = np.array([[-3.0, 1.0], [0.5, 2.0]], np.float32)  # mixed signs
    b = np.array([[0.0, 0.25], [0.5, 1.5]], np.float32)  # non-negative on its own (auto would have said viridis)
    scale = layer_scale([a, b], "minmax")
    assert scale.colormap.name == "RdBu_r" and scale.colormap.diverging
    assert scale.ranges[0] == scale.ranges[1] == DisplayRange(-3.0, 3.0, "minmax", centred=True)
    probe = [-3.0, -1.0, 0.0, 0.5, 1.5, 3.0]
    assert np.array_equal(_colours(scale, 0, probe), _colours(scale, 1, probe))  # same value, same colour
    centre = get_colormap("RdBu_r").lut8[128]  # position 0.5 -> entry floor(256 * 0.5)
    assert _colours(scale, 1, [0.0])[0].tolist() == centre.tolist()
    # 1.5 sits at (1.5 + 3) / 6 = 0.75 -> entry 192
    assert _colours(scale, 1, [1.5])[0].tolist() == get_colormap("RdBu_r").lut8[192].tolist()


def test_all_negative_layer_is_never_drawn_on_a_sequential_map() -> None:
    layer = [np.array([[-5.0, -1.0]], np.float32), np.array([[-2.0, -0.5]], np.float32)]
    scale = layer_scale(layer, "minmax")
    assert scale.colormap.name == "RdBu_r"
    assert (scale.ranges[0].low, scale.ranges[0].high) == (-5.0, 5.0)
    least = _colours(scale, 0, [-0.5])[0]  # the least negative value is pale blue, not the top (red/yellow)
    assert least.tolist() == get_colormap("RdBu_r").lut8[int(256 * 0.45)].tolist()
    assert least[2] >= least[0]  # blue side


def test_non_negative_layer_is_sequential_from_zero_and_a_dead_channel_is_zeros_colour() -> None:
    live = np.array([[0.5, 2.0], [1.0, 4.0]], np.float32)
    dead = np.zeros((2, 2), np.float32)  # a dead ReLU channel: "0 to 0"
    for mode in ("per-layer", "per-channel"):
        scale = layer_scale([live, dead], "minmax", scale=mode)
        assert scale.colormap.name == "viridis"
        assert scale.ranges[0].low == 0.0  # anchored at 0, not at the minimum 0.5
        assert _colours(scale, 1, [0.0])[0].tolist() == get_colormap("viridis").lut8[0].tolist()
    per_channel = layer_scale([live, dead], "minmax", scale="per-channel")
    assert (per_channel.ranges[0].low, per_channel.ranges[0].high) == (0.0, 4.0)
    assert (per_channel.ranges[1].low, per_channel.ranges[1].high) == (0.0, 0.0)
    assert per_channel.colormap is layer_scale([live], "minmax").colormap  # one map for the layer


def test_per_layer_percentiles_are_taken_over_all_channels() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, (40, 50)).astype(np.float32), rng.normal(2, 3, (40, 50)).astype(np.float32)
    scale = layer_scale([a, b], "percentile", percentiles=(2, 98))
    low, high = np.percentile(np.concatenate([a.ravel(), b.ravel()]), (2, 98))
    peak = max(abs(low), abs(high))
    assert scale.ranges[0].low == pytest.approx(-peak) and scale.ranges[0].high == pytest.approx(peak)
    assert scale.text().startswith("RdBu_r, ") and "one scale for the layer" in scale.text()


def test_explicit_colormap_and_bad_scale() -> None:
    scale = layer_scale([np.array([[-1.0, 3.0]])], "minmax", "magma")
    assert scale.colormap.name == "magma" and (scale.ranges[0].low, scale.ranges[0].high) == (-1.0, 3.0)
    with pytest.raises(SpecError, match="per-layer or per-channel"):
        layer_scale([np.zeros((1, 1))], "minmax", scale="global")
