"""featmap.net.weights: reading .npz/.safetensors, validation, layouts, matching and seeded initialisation."""

from __future__ import annotations

import io
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from featmap.errors import ShapeError, SpecError
from featmap.net.weights import (
    BYTES_ENV,
    ELEMENTS_ENV,
    init_weights,
    load_weights,
    match_weights,
    reorder_flatten_columns,
    to_torch_layout,
)

RNG = np.random.default_rng(7)


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _npz_member(path: Path, name: str, header: dict[str, object], data: bytes) -> Path:
    """An .npz whose member has a hand-made header (for shapes and dtypes numpy would not write)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}.npy", buf.getvalue() + data)
    return path


# --- reading ---------------------------------------------------------------------------------------


def test_npz_round_trip_keeps_order_and_converts_dtypes(tmp_path: Path) -> None:
    w = RNG.standard_normal((6, 1, 5, 5)).astype(np.float32)
    d = RNG.standard_normal(3)
    path = _npz(
        tmp_path / "w.npz",
        **{"C1.weight": w, "C1.bias": np.arange(6, dtype=np.int64), "x": d, "h": np.ones(2, np.float16)},
    )
    got = load_weights(path)
    assert list(got) == ["C1.weight", "C1.bias", "x", "h"]
    np.testing.assert_array_equal(got["C1.weight"], w)
    assert got["C1.weight"].dtype == np.float32 and got["x"].dtype == np.float64
    assert got["C1.bias"].dtype == np.float32 and got["C1.bias"].tolist() == [0, 1, 2, 3, 4, 5]
    assert got["h"].dtype == np.float32


def test_compressed_npz_and_any_suffix(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    with path.open("wb") as fh:
        np.savez_compressed(fh, a=np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(load_weights(path)["a"], np.eye(3))


def test_safetensors_whose_header_starts_like_a_pickle_is_read_as_safetensors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header length with low byte 0x80 (a pickle's first byte) is still a .safetensors file, torch or not."""
    st = pytest.importorskip("safetensors.numpy")
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    for pad in range(64):  # vary the header length until its low byte is 0x80
        st.save_file({"0.weight": w}, str(tmp_path / "w.safetensors"), metadata={"p": "x" * pad})
        if (tmp_path / "w.safetensors").read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no header length with low byte 0x80 in the range tried")

    def no_torch(path: object) -> None:
        raise AssertionError("read as a PyTorch checkpoint")

    monkeypatch.setattr("featmap.net.weights.files.read_torch", no_torch)
    np.testing.assert_array_equal(load_weights(tmp_path / "w.safetensors")["0.weight"], w)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    st.save_file({"0.weight": w, "0.bias": np.zeros(4, np.float64)}, str(tmp_path / "w.safetensors"))
    got = load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(got["0.weight"], w)
    assert got["0.bias"].dtype == np.float64


@pytest.mark.parametrize("suffix", ["npz", "safetensors", "pt"])
def test_tensors_featmap_loads_for_its_runs_are_frozen(tmp_path: Path, suffix: str) -> None:
    """Read-only arrays nothing else can change: a network run need not re-read them (`featmap.core.memo`);
    `load_weights` itself hands out writeable arrays (torch.from_numpy warns on read-only ones)."""
    from featmap.core.memo import fingerprint, frozen
    from featmap.net.networks import load_network_weights

    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    path = tmp_path / f"w.{suffix}"
    if suffix == "npz":
        _npz(path, **{"0.weight": w})
    elif suffix == "safetensors":
        pytest.importorskip("safetensors.numpy").save_file({"0.weight": w}, str(path))
    else:
        torch = pytest.importorskip("torch")
        torch.save({"0.weight": torch.from_numpy(w)}, path)
    assert load_weights(path)["0.weight"].flags.writeable
    got = load_network_weights(path)["0.weight"]
    np.testing.assert_array_equal(got, w)
    assert frozen(got) and fingerprint(got) == ()
    with pytest.raises(ValueError):
        got[0, 0, 0, 0] = 1


def test_safetensors_missing_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path = tmp_path / "w.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0\0\0\0")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(SpecError, match=r"safetensors package is not installed; pip install 'featmap\[weights\]'"):
        load_weights(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"hello, world\n", r"is not a weights file \(.safetensors, .npz, .pt/.pth, Keras .weights.h5\); save it"),
    ],
)
def test_not_weights_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "w.npz"
    path.write_bytes(content)
    with pytest.raises(SpecError, match=message) as info:
        load_weights(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_directory_and_npy(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_weights(tmp_path / "none.npz")
    with pytest.raises(SpecError, match="is not a file"):
        load_weights(tmp_path)
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(SpecError, match="single .npy array, not named tensors"):
        load_weights(tmp_path / "one.npy")


def test_foreign_zip_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        zf.writestr("readme.txt", b"hi")
    with pytest.raises(SpecError, match="not a numpy .npz: it holds 'readme.txt'"):
        load_weights(tmp_path / "x.zip")


@pytest.mark.parametrize("cut", [30, 200, -8])
def test_truncated_npz(tmp_path: Path, cut: int) -> None:
    full = _npz(tmp_path / "w.npz", a=RNG.standard_normal((20, 20)).astype(np.float32)).read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(full[:cut])
    with pytest.raises(SpecError, match="corrupt or truncated"):
        load_weights(path)


def test_truncated_and_corrupt_safetensors(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    st.save_file({"a": np.ones((8, 8), np.float32)}, str(tmp_path / "w.safetensors"))
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(SpecError, match="cut.safetensors: is corrupt or truncated"):
        load_weights(tmp_path / "cut.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(data[:8] + b"{" + b"x" * (len(data) - 9))
    with pytest.raises(SpecError, match="corrupt or truncated"):
        load_weights(tmp_path / "bad.safetensors")
    header = int.from_bytes(data[:8], "little")
    (tmp_path / "head.safetensors").write_bytes(data[: 8 + header // 2])  # cut inside the header
    with pytest.raises(SpecError, match=rf"head.safetensors: is corrupt or truncated \(its header says {header} bytes"):
        load_weights(tmp_path / "head.safetensors")


@pytest.mark.parametrize(
    "array", [np.array(["a", "b"]), np.array([True, False]), np.array([1 + 2j]), np.zeros(2, "datetime64[s]")]
)
def test_non_numeric_tensors(tmp_path: Path, array: np.ndarray) -> None:
    path = _npz(tmp_path / "w.npz", ok=np.ones(2), **{"bad.weight": array})
    with pytest.raises(SpecError, match=re.escape(f"tensor `bad.weight`: has non-numeric dtype {array.dtype}")):
        load_weights(path)


def test_object_array_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SpecError, match="tensor `obj`: has non-numeric dtype object"):
        load_weights(path)


def test_non_finite_names_tensor_and_first_index(tmp_path: Path) -> None:
    w = np.zeros((2, 3, 4), np.float32)
    w[1, 2, 0] = np.inf
    w[1, 2, 3] = np.nan
    path = _npz(tmp_path / "w.npz", **{"F6.weight": w})
    with pytest.raises(SpecError, match=r"tensor `F6.weight`: holds inf at index \(1, 2, 0\)"):
        load_weights(path)


def test_safetensors_nan(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    st.save_file({"b": np.array([0.0, np.nan], np.float32)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(SpecError, match=r"tensor `b`: holds nan at index \(1,\)"):
        load_weights(tmp_path / "w.safetensors")


def test_non_finite_scalar_and_late_block(tmp_path: Path) -> None:
    late = np.zeros(5_000_000, np.float32)
    late[4_999_999] = -np.inf
    with pytest.raises(SpecError, match=r"tensor `late`: holds -inf at index \(4999999,\)"):
        load_weights(_npz(tmp_path / "a.npz", late=late))
    with pytest.raises(SpecError, match=r"tensor `s`: holds nan at index \(\)"):
        load_weights(_npz(tmp_path / "b.npz", s=np.array(np.nan)))


def test_bfloat16_safetensors_says_how_to_convert(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    st.save_file({"w": torch.ones(3, dtype=torch.bfloat16)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(SpecError, match="tensor `w`: has dtype BF16, which numpy cannot hold; save float32"):
        load_weights(tmp_path / "w.safetensors")


def test_file_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _npz(tmp_path / "w.npz", a=np.ones(1000, np.float32))
    monkeypatch.setenv(BYTES_ENV, "1K")
    with pytest.raises(SpecError, match=rf"bytes, over the limit of 1,024; set {BYTES_ENV}="):
        load_weights(path)
    monkeypatch.setenv(BYTES_ENV, "lots")
    with pytest.raises(SpecError, match=f"{BYTES_ENV}: must be a whole number"):
        load_weights(path)


def test_header_checked_before_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The header claims 10**9 float32 elements (4 GB) but the member holds 16 bytes: refused from the header.
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**9,)}
    path = _npz_member(tmp_path / "bomb.npz", "w", header, b"\0" * 16)
    with pytest.raises(SpecError, match=rf"tensor `w`: has 1,000,000,000 elements, over .*; set {ELEMENTS_ENV}="):
        load_weights(path)
    monkeypatch.setenv(ELEMENTS_ENV, str(2 * 10**9))
    with pytest.raises(SpecError, match="bytes of tensors \\(at `w`\\), over the limit of 2,147,483,648"):
        load_weights(path)


def test_element_limit_on_safetensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = pytest.importorskip("safetensors.numpy")
    st.save_file({"a": np.ones(100, np.float32)}, str(tmp_path / "w.safetensors"))
    monkeypatch.setenv(ELEMENTS_ENV, "99")
    with pytest.raises(SpecError, match="tensor `a`: has 100 elements, over the limit of 99"):
        load_weights(tmp_path / "w.safetensors")


# --- layouts ---------------------------------------------------------------------------------------


def test_keras_conv_and_dense_layouts() -> None:
    k = RNG.standard_normal((3, 5, 2, 4))  # kh, kw, I, O
    t = to_torch_layout(k, "conv", "keras")
    assert t.shape == (4, 2, 3, 5) and t.flags.c_contiguous
    assert t[3, 1, 2, 4] == k[2, 4, 1, 3]
    d = RNG.standard_normal((7, 3))
    np.testing.assert_array_equal(to_torch_layout(d, "dense", "keras"), d.T)
    c1 = RNG.standard_normal((5, 2, 4))  # k, I, O
    assert to_torch_layout(c1, "conv1d", "keras")[3, 1, 4] == c1[4, 1, 3]
    b = np.arange(4.0)
    assert to_torch_layout(b, "bn", "keras") is b and to_torch_layout(k, "conv", "torch") is k


def test_keras_depthwise_channel_order() -> None:
    k = RNG.standard_normal((3, 3, 4, 2))  # kh, kw, I, multiplier
    t = to_torch_layout(k, "depthwise", "keras")
    assert t.shape == (8, 1, 3, 3)
    for i in range(4):
        for m in range(2):
            np.testing.assert_array_equal(t[i * 2 + m, 0], k[:, :, i, m])


def test_layout_errors() -> None:
    with pytest.raises(SpecError, match="`layout`: must be torch or keras"):
        to_torch_layout(np.ones((2, 2)), "dense", "caffe")
    with pytest.raises(SpecError, match="`kind`: must be one of"):
        to_torch_layout(np.ones((2, 2)), "lstm", "keras")
    with pytest.raises(ShapeError, match="a Keras conv weight is 4-D"):
        to_torch_layout(np.ones((2, 2)), "conv", "keras")


def test_reorder_flatten_columns_matches_chw_flatten() -> None:
    h, w, c, out = 3, 4, 5, 6
    x = RNG.standard_normal((h, w, c))
    weight = RNG.standard_normal((out, c * h * w))  # a PyTorch Linear after Flatten of (C, H, W)
    torch_style = weight @ x.transpose(2, 0, 1).reshape(-1)
    featmap_style = reorder_flatten_columns(weight, (h, w, c)) @ x.reshape(-1)
    np.testing.assert_allclose(featmap_style, torch_style, rtol=1e-12)
    with pytest.raises(ShapeError, match=r"expected \(out, 60\) for 3×4×5"):
        reorder_flatten_columns(weight[:, :10], (h, w, c))


# --- matching --------------------------------------------------------------------------------------

LENET = {
    "C1.weight": (6, 1, 5, 5),
    "C1.bias": (6,),
    "bn.weight": (6,),
    "bn.bias": (6,),
    "bn.running_mean": (6,),
    "bn.running_var": (6,),
    "F6.weight": (84, 120),
    "F6.bias": (84,),
}


def _arrays(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    return {k: RNG.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def test_match_in_expected_order_with_extras_warned() -> None:
    found = _arrays(LENET)
    found = dict(reversed(list(found.items())))
    found["bn.num_batches_tracked"] = np.array(7.0)
    found["head.weight"] = np.ones((2, 2))
    got, warnings = match_weights(LENET, found, source="net.npz")
    assert list(got) == list(LENET)
    assert all(got[k] is found[k] for k in LENET)
    assert warnings == ["net.npz: 1 tensor not used by the network: head.weight"]


def test_missing_tensor_names_layer_and_shape() -> None:
    found = _arrays({k: s for k, s in LENET.items() if k != "F6.bias"})
    with pytest.raises(SpecError) as info:
        match_weights(LENET, found, source="net.npz", labels={"F6": "4 F6"})
    assert str(info.value) == (
        "net.npz: does not fit the network: 8 tensors: 7 found, 1 missing, 0 mis-shaped (first: F6.bias missing); "
        "`featmap weights check` lists every tensor; see README, 'Weights files'"
    )
    # no unused tensor to be near: the names the other layers took
    assert info.value.details == ("missing: F6.bias 84 (layer 4 F6); nearest in the file: bn.bias, C1.bias",)


def test_misshaped_tensor_names_both_shapes() -> None:
    found = _arrays({**LENET, "C1.weight": (6, 1, 3, 3)})
    with pytest.raises(ShapeError) as info:
        match_weights(LENET, found, source="net.npz")
    assert "1 mis-shaped" in str(info.value)
    assert info.value.details == ("mis-shaped: C1.weight: the network needs 6×1×5×5, the file has 6×1×3×3",)


def test_keras_layout_in_a_torch_file_gets_a_hint() -> None:
    found = _arrays({**LENET, "C1.weight": (5, 5, 1, 6)})
    with pytest.raises(ShapeError, match="look like Keras layout; declare the Keras layout") as info:
        match_weights(LENET, found)
    assert info.value.details[0].endswith("the file has 5×5×1×6; Keras layout?")


def test_keras_layout_names_and_conversion() -> None:
    torch_side = _arrays(LENET)
    keras_file = {
        "C1.kernel": torch_side["C1.weight"].transpose(2, 3, 1, 0),
        "C1.bias": torch_side["C1.bias"],
        "bn.gamma": torch_side["bn.weight"],
        "bn.beta": torch_side["bn.bias"],
        "bn.moving_mean": torch_side["bn.running_mean"],
        "bn.moving_variance": torch_side["bn.running_var"],
        "F6.kernel": torch_side["F6.weight"].T,
        "F6.bias": torch_side["F6.bias"],
    }
    got, warnings = match_weights(LENET, keras_file, layout="keras")
    assert warnings == []
    for key in LENET:
        np.testing.assert_array_equal(got[key], torch_side[key])
    with pytest.raises(ShapeError) as info:
        match_weights(LENET, {**keras_file, "F6.kernel": torch_side["F6.weight"]}, layout="keras")
    assert info.value.details == (
        "mis-shaped: F6.weight (`F6.kernel`): the network needs 84×120, the file has 84×120; PyTorch layout after "
        "conversion",
    )


# --- initialisation --------------------------------------------------------------------------------


def test_kaiming_bounds_and_moments() -> None:
    shape = (256, 128, 3, 3)  # fan_in 1152
    w = init_weights({"c.weight": shape, "c.bias": (256,)}, {"c": "conv"}, "kaiming", seed=3)
    bound = 1 / np.sqrt(128 * 9)
    x = w["c.weight"].astype(np.float64)
    assert w["c.weight"].dtype == np.float32 and np.abs(x).max() <= bound
    assert np.abs(x).max() > 0.999 * bound
    n = x.size
    assert abs(x.mean()) < 5 * bound / np.sqrt(3 * n)
    np.testing.assert_allclose(x.var(), bound**2 / 3, rtol=0.01)  # uniform: variance b²/3
    assert np.abs(w["c.bias"]).max() <= bound and w["c.bias"].std() > 0


def test_glorot_bounds_moments_and_zero_bias() -> None:
    shape = (64, 32, 5, 5)  # fan_in 800, fan_out 1600
    w = init_weights(
        {"c.weight": shape, "c.bias": (64,), "d.weight": (300, 700)}, {"c": "conv", "d": "dense"}, "glorot"
    )
    limit = np.sqrt(6 / (800 + 1600))
    x = w["c.weight"].astype(np.float64)
    assert np.abs(x).max() <= limit and np.abs(x).max() > 0.999 * limit
    np.testing.assert_allclose(x.var(), limit**2 / 3, rtol=0.01)
    assert not w["c.bias"].any()
    assert np.abs(w["d.weight"]).max() <= np.sqrt(6 / 1000)


def test_grouped_and_dense_fans() -> None:
    w = init_weights({"g.weight": (8, 2, 3, 3), "d.weight": (10, 50), "d.bias": (10,)}, {"g": "conv", "d": "dense"})
    assert np.abs(w["g.weight"]).max() <= 1 / np.sqrt(18) < np.abs(w["g.weight"]).max() / 0.9
    assert np.abs(w["d.bias"]).max() <= 1 / np.sqrt(50)


def test_batch_norm_init() -> None:
    names = {f"bn.{s}": (4,) for s in ("weight", "bias", "running_mean", "running_var")}
    for method in ("kaiming", "glorot"):
        w = init_weights(names, {"bn": "bn"}, method)
        assert [w[k].tolist() for k in names] == [[1] * 4, [0] * 4, [0] * 4, [1] * 4]


def test_reproducible_and_independent_of_earlier_layers() -> None:
    shapes = {"C3.weight": (16, 6, 5, 5), "C3.bias": (16,)}
    kinds = {"C1": "conv", "C3": "conv"}
    a = init_weights(shapes, kinds, seed=5)
    b = init_weights({"C1.weight": (6, 1, 5, 5), "C1.bias": (6,), **shapes}, kinds, seed=5)
    for key in shapes:
        np.testing.assert_array_equal(a[key], b[key])
    c = init_weights(shapes, kinds, seed=6)
    assert not np.array_equal(a["C3.weight"], c["C3.weight"])
    renamed = init_weights({"X.weight": (16, 6, 5, 5)}, {"X": "conv"}, seed=5)
    assert not np.array_equal(a["C3.weight"], renamed["X.weight"])


def test_init_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SpecError, match="`init`: must be kaiming or glorot"):
        init_weights({}, {}, "xavier")
    with pytest.raises(SpecError, match="`seed`: must be a whole number >= 0"):
        init_weights({}, {}, seed=-1)
    with pytest.raises(SpecError, match="tensor `a.weight`: has layer kind 'lstm'"):
        init_weights({"a.weight": (2, 2)}, {"a": "lstm"})
    with pytest.raises(SpecError, match="is not a dense weight or bias"):
        init_weights({"a.bias": (2,)}, {"a": "dense"})
    monkeypatch.setenv(ELEMENTS_ENV, "1000")
    with pytest.raises(SpecError, match="tensor `a.weight`: has 1,024 elements, over the limit of 1,000"):
        init_weights({"a.weight": (32, 32)}, {"a": "dense"})


# --- against PyTorch, where installed ----------------------------------------------------------------


def test_state_dict_names_and_init_statistics_match_torch() -> None:
    torch = pytest.importorskip("torch")
    from scipy.stats import ks_2samp

    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.BatchNorm2d(64), nn.Flatten(), nn.Linear(64 * 4, 500))
    state = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert list(state) == [
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
        "2.running_mean",
        "2.running_var",
        "4.weight",
        "4.bias",
    ]
    ours = init_weights(state, {"0": "conv", "2": "bn", "4": "dense"}, "kaiming", seed=1)
    matched, _ = match_weights(state, ours)
    assert list(matched) == list(state)
    bounds = {"0": 1 / np.sqrt(27), "4": 1 / np.sqrt(256)}  # 1/sqrt(fan_in), weight and bias alike
    for key, tensor in net.state_dict().items():
        if key in ("0.weight", "0.bias", "4.weight", "4.bias"):
            t, bound = tensor.numpy().ravel(), bounds[key[0]]
            assert np.abs(t).max() <= bound and np.abs(ours[key]).max() <= bound
            if t.size > 1000:
                assert np.abs(t).max() > 0.99 * bound and np.abs(ours[key]).max() > 0.99 * bound
            assert ks_2samp(t, ours[key].ravel()).pvalue > 1e-3
        elif key in ours:
            np.testing.assert_array_equal(ours[key], tensor.numpy())
    glorot = torch.empty(64, 3, 3, 3)
    nn.init.xavier_uniform_(glorot)
    g = init_weights({"0.weight": (64, 3, 3, 3)}, {"0": "conv"}, "glorot")["0.weight"]
    assert ks_2samp(glorot.numpy().ravel(), g.ravel()).pvalue > 1e-3
    assert np.abs(g).max() <= np.sqrt(6 / (27 + 576))


def test_reorder_flatten_columns_against_torch() -> None:
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((4, 3, 5)).astype(np.float32)  # H, W, C
    lin = torch.nn.Linear(60, 7)
    with torch.no_grad():
        expect = lin(torch.flatten(torch.from_numpy(x.transpose(2, 0, 1).copy()))).numpy()
    weight = reorder_flatten_columns(lin.weight.detach().numpy(), (4, 3, 5))
    np.testing.assert_allclose(weight @ x.reshape(-1) + lin.bias.detach().numpy(), expect, atol=1e-5)
