"""Property tests over hostile input: kernel strings, kernel files, layer specs, command-line option
combinations and file-system situations. Every outcome is a success or a featmap error (one line, a
documented exit code), within a time limit, and never leaves a partial file.

Cases per test in CI: ``EXAMPLES`` below (scaled by ``FEATMAP_FUZZ_SCALE``, default 1). A long session:
``tools/fuzz.sh`` (``FEATMAP_FUZZ_SCALE=40``, with the kill tests 20 times each).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from featmap.cli import cli
from featmap.errors import FeatmapError
from featmap.kernels import KernelLibrary, load_kernel_file
from featmap.kernels.generators import GENERATORS
from featmap.net.spec import parse_file, parse_shape, parse_tokens
from featmap.net.summary import summarize

SCALE = int(os.environ.get("FEATMAP_FUZZ_SCALE", "1"))
#: Cases each test runs in CI (FEATMAP_FUZZ_SCALE=1).
EXAMPLES = {"kernel_strings": 150, "kernel_files": 120, "tokens": 150, "spec_files": 100, "cli": 25, "fs": 15}
SECONDS = 20.0  # per case: a case still running after this is a hang (generous: CI machines are shared)
EXIT_CODES = {0, 1, 2, 3, 4, 5}  # README's exit codes, interruptions aside


def _settings(name: str) -> settings:
    return settings(
        max_examples=EXAMPLES[name] * SCALE,
        deadline=None,  # timing is the time limit's job: shared machines are noisy
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
        database=None,
    )


class Hang(BaseException):
    """A case that ran past the time limit (a BaseException, so that no handler under test swallows it)."""


@contextmanager
def time_limit(seconds: float = SECONDS) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(func: Any, *args: Any, **kwargs: Any) -> Any:
    """``func(...)``'s result, or None after a `FeatmapError` with a one-line message; anything else fails."""
    with time_limit():
        try:
            return func(*args, **kwargs)
        except FeatmapError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 1000, str(exc)[:300]
            return None


# ----------------------------------------------------------------------------------------------- values

NUMBERS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 3, 5, 7, 0.5, 1e-3, 1e-300, 1e300, -1, 2**31, 2**63, 10**100]),
)
NUMBER_TEXT = st.one_of(
    NUMBERS.map(str), st.sampled_from(["inf", "-inf", "nan", "1e400", "1_000", "0x10", "", " ", "1e-3"])
)
JSON_LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12))
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
GEN_KEYS = ["size", "sigma", "sigma2", "theta", "lambd", "gamma", "psi", "length", "angle", "height", "foo", ""]


@st.composite
def kernel_strings(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=40))
    gen = draw(st.sampled_from([*GENERATORS, "gauss", "GAUSSIAN", ""]))
    args = draw(st.lists(st.tuples(st.sampled_from(GEN_KEYS), NUMBER_TEXT), max_size=4))
    sep = draw(st.sampled_from([",", ", ", ";"]))
    return f"{gen}:" + sep.join(f"{k}={v}" for k, v in args)


MATRICES = st.integers(1, 6).flatmap(
    lambda w: st.lists(st.lists(NUMBERS, min_size=w, max_size=w), min_size=1, max_size=6)
)
KERNEL_ENTRIES = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["k", "a-b", "x_1", "_bad", "a" * 70]), JSON_LEAVES)},
    optional={
        "weights": st.one_of(MATRICES, st.lists(MATRICES, min_size=1, max_size=3), JSON_VALUES),
        "generate": st.one_of(kernel_strings(), JSON_LEAVES),
        "scale": NUMBERS,
        "normalize": st.one_of(st.booleans(), JSON_LEAVES),
        "bias": NUMBERS,
        "rotations": st.one_of(st.sampled_from([1, 2, 4, 8, 3, 0]), JSON_LEAVES),
        "tags": st.one_of(st.lists(st.sampled_from(["edges", "a b", ""]), max_size=3), JSON_LEAVES),
        "description": JSON_LEAVES,
        "colour": JSON_LEAVES,
    },
)
KERNEL_DOCS = st.one_of(
    KERNEL_ENTRIES,
    st.lists(KERNEL_ENTRIES, max_size=3),
    st.fixed_dictionaries({"kernels": st.lists(KERNEL_ENTRIES, max_size=3)}),
    JSON_VALUES,
)


def _hostile_yaml(kind: str, n: int) -> str:
    """Documents that attack the parser: deep nesting, alias expansion, many anchors."""
    if kind == "deep-flow":
        return "[" * n + "]" * n
    if kind == "deep-block":
        return "".join(" " * i + "- \n" for i in range(min(n, 3000)))
    if kind == "bomb":
        lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, min(n, 12))]
        return "\n".join(lines) + "\n"
    return "name: k\nweights: " + "[" * n + "1" + "]" * n + "\n"


def _write_document(folder: Path, doc: Any, form: str) -> Path:
    if form == "json":
        path = folder / "doc.json"
        path.write_text(json.dumps(doc))  # Python's JSON: NaN and Infinity included, as a careless tool writes them
    else:
        path = folder / "doc.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


@pytest.fixture(scope="module")
def library() -> KernelLibrary:
    return KernelLibrary(use_env=False)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "tiny.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (12, 16), dtype=np.uint8)).save(path)
    return path


# ----------------------------------------------------------------------------------------------- tests


@_settings("kernel_strings")
@given(text=kernel_strings())
def test_kernel_strings_succeed_or_fail_cleanly(library: KernelLibrary, text: str) -> None:
    kernels = outcome(library.select, text)
    for kernel in kernels or ():
        assert np.isfinite(kernel.weights).all() and max(kernel.size) <= 2048


@_settings("kernel_files")
@given(doc=KERNEL_DOCS, form=st.sampled_from(["yaml", "json"]))
def test_kernel_files_succeed_or_fail_cleanly(doc: Any, form: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        kernels = outcome(load_kernel_file, _write_document(Path(folder), doc, form))
    for kernel in kernels or ():
        assert np.isfinite(kernel.weights).all()


@pytest.mark.parametrize("kind", ["deep-flow", "deep-block", "bomb", "deep-weights"])
@pytest.mark.parametrize("n", [10, 100, 1000, 100_000])
def test_hostile_yaml_is_refused_quickly(tmp_path: Path, kind: str, n: int) -> None:
    path = tmp_path / "k.yaml"
    path.write_text(_hostile_yaml(kind, n))
    outcome(load_kernel_file, path)
    spec = tmp_path / "s.yaml"
    spec.write_text("layers:\n  - " + _hostile_yaml(kind, n).replace("\n", "\n    "))
    outcome(parse_file, spec)


LAYER_KINDS = [
    "conv", "dwconv", "conv1d", "maxpool", "avgpool", "minpool", "gap", "gmp", "flatten", "dense", "relu",
    "dropout", "bn", "adaptiveavgpool", "softmax", "zzz", "",
]  # fmt: skip
OPTIONS = st.one_of(
    st.sampled_from(["same", "valid", "full", "ceil", "nobias", "dw", "bias"]),
    st.tuples(st.sampled_from("spdg"), NUMBER_TEXT).map("".join),
)


@st.composite
def tokens(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(LAYER_KINDS))
    main = draw(
        st.one_of(
            st.just(""),
            NUMBER_TEXT,
            st.tuples(NUMBER_TEXT, NUMBER_TEXT, NUMBER_TEXT).map(lambda t: f"{t[0]}@{t[1]}x{t[2]}"),
        )
    )
    options = draw(st.lists(OPTIONS, max_size=3))
    return "/".join([f"{kind}:{main}" if main else kind, *options])


SHAPES = st.one_of(
    st.tuples(st.integers(1, 300), st.integers(1, 300), st.integers(1, 8)).map(lambda s: "x".join(map(str, s))),
    NUMBER_TEXT,
)


@_settings("tokens")
@given(layer_tokens=st.lists(tokens(), min_size=1, max_size=6), shape=SHAPES)
def test_layer_tokens_succeed_or_fail_cleanly(layer_tokens: list[str], shape: str) -> None:
    layers = outcome(parse_tokens, layer_tokens)
    size = outcome(parse_shape, shape)
    if layers is not None and size is not None:
        summary = outcome(summarize, layers, size)
        if summary is not None:
            json.dumps(str(summary), allow_nan=False)


SPEC_LAYERS = st.recursive(
    st.one_of(tokens(), JSON_LEAVES, st.dictionaries(st.sampled_from(["conv", "maxpool", "dense"]), JSON_VALUES)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.fixed_dictionaries({"repeat": st.one_of(NUMBERS, st.just(3)), "layers": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"residual": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"parallel": st.fixed_dictionaries({"branches": st.lists(st.lists(inner), max_size=3)})}),
        st.fixed_dictionaries({"block": st.sampled_from(["b", "c", "nope"])}),
    ),
    max_leaves=15,
)
SPEC_DOCS = st.fixed_dictionaries(
    {"layers": st.one_of(st.lists(SPEC_LAYERS, max_size=5), JSON_VALUES)},
    optional={
        "input": SHAPES,
        "blocks": st.dictionaries(
            st.sampled_from(["b", "c"]), st.one_of(st.lists(SPEC_LAYERS, max_size=3), JSON_VALUES)
        ),
        "name": JSON_LEAVES,
    },
)


@_settings("spec_files")
@given(doc=st.one_of(SPEC_DOCS, JSON_VALUES), form=st.sampled_from(["yaml", "json"]))
def test_spec_files_succeed_or_fail_cleanly(doc: Any, form: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        model = outcome(parse_file, _write_document(Path(folder), doc, form))
    if model is not None and model.input_shape is not None:
        outcome(summarize, model.layers, model.input_shape)


CLI_OPTIONS = st.fixed_dictionaries(
    {
        "-k": st.lists(
            st.one_of(st.sampled_from(["sobel_x", "box_3", "laplacian", "edges"]), kernel_strings()),
            min_size=1,
            max_size=3,
        )
    },
    optional={
        "--stride": NUMBER_TEXT,
        "--padding": st.one_of(st.sampled_from(["valid", "same", "full", "1,2", "1,2,3,4"]), NUMBER_TEXT),
        "--dilation": NUMBER_TEXT,
        "--pad-mode": st.sampled_from(["zeros", "reflect", "symmetric", "replicate", "circular", "mirror", "x"]),
        "--pad-value": NUMBER_TEXT,
        "--activation": st.sampled_from(["none", "relu", "leaky_relu", "sigmoid", "tanh", "abs", "relu6", "x"]),
        "--slope": NUMBER_TEXT,
        "--pool": st.sampled_from(["max", "avg", "min", "global-avg", "none", "x"]),
        "--pool-size": NUMBER_TEXT,
        "--pool-stride": NUMBER_TEXT,
        "--combine": st.sampled_from(["magnitude", "max"]),
        "--normalize": st.sampled_from(["minmax", "clip", "abs", "symmetric"]),
        "--bit-depth": st.sampled_from(["8", "16", "12"]),
        "--raw": st.sampled_from(["npy", "tiff"]),
        "--max-pixels": NUMBER_TEXT,
        "--name": st.sampled_from(
            ["{stem}/{kernel}.png", "{kernel}", "../{kernel}", "{stem}", "{nope}{kernel}", "/{kernel}"]
        ),
        "--json": st.just(None),
        "--color": st.just(None),
        "--strict": st.just(None),
    },
)


def _argv(options: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for flag, value in options.items():
        if value is None:
            argv.append(flag)
        elif isinstance(value, list):
            for item in value:
                argv += [flag, item]
        else:
            argv += [flag, value]
    return argv


def _invoke(args: list[str]) -> Any:
    with time_limit():
        return CliRunner().invoke(cli, args, catch_exceptions=False)


def _clean_outcome(result: Any, out: Path, args: list[str], stale_lock: bool = False) -> None:
    assert result.exit_code in EXIT_CODES, (result.exit_code, result.stderr[-500:])
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr[-500:]
    for line in result.stderr.splitlines():
        assert line.startswith(("featmap: ", "Usage:", "Try ", "Error:", "")), line
    if "--json" in args and result.exit_code in (0, 3):
        json.loads(result.stdout)  # strict JSON: no NaN or Infinity
    if not stale_lock or result.exit_code in (0, 3):  # a run that did not start leaves stale files as they were
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == ".featmap.lock"]


@_settings("cli")
@given(options=CLI_OPTIONS)
def test_cli_option_combinations(image: Path, options: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        args = ["apply", str(image), "-o", str(out), *_argv(options)]
        result = _invoke(args)
        _clean_outcome(result, out, args)
        if result.exit_code != 0:  # a failed single-image run leaves nothing
            assert not out.exists() or not [p for p in out.rglob("*") if p.suffix in (".png", ".npy", ".tiff")]


FS_SITUATIONS = st.fixed_dictionaries(
    {
        "out": st.sampled_from(["absent", "empty", "file", "map-folder-is-file", "stale-lock", "stale-temp", "input"]),
        "inputs": st.lists(
            st.sampled_from(["png", "dots", "hidden", "loop", "dangling", "text-as-png", "subfolder", "empty-png"]),
            max_size=5,
        ),
        "recursive": st.booleans(),
        "skip": st.booleans(),
    }
)


@_settings("fs")
@given(situation=FS_SITUATIONS)
def test_file_system_situations(image: Path, situation: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        src = root / "in"
        src.mkdir()
        for i, kind in enumerate(situation["inputs"]):
            if kind == "png":
                (src / f"p{i}.png").write_bytes(image.read_bytes())
            elif kind == "dots":
                (src / "...png").write_bytes(image.read_bytes())
            elif kind == "hidden":
                (src / f".h{i}.png").write_bytes(image.read_bytes())
            elif kind == "loop":
                (src / f"la{i}").symlink_to(src / f"lb{i}")
                (src / f"lb{i}").symlink_to(src / f"la{i}")
            elif kind == "dangling":
                (src / f"d{i}.png").symlink_to(root / "missing.png")
            elif kind == "text-as-png":
                (src / f"t{i}.png").write_text("not an image")
            elif kind == "empty-png":
                (src / f"e{i}.png").write_bytes(b"")
            else:
                (src / f"sub{i}").mkdir()
                (src / f"sub{i}" / "s.png").write_bytes(image.read_bytes())
        out = src if situation["out"] == "input" else root / "out"
        if situation["out"] == "file":
            out.write_text("x")
        elif situation["out"] != "absent" and situation["out"] != "input":
            out.mkdir()
            if situation["out"] == "map-folder-is-file":
                (out / "p0").write_text("x")
            elif situation["out"] == "stale-lock":
                (out / ".featmap.lock").write_text('{"pid": 999999, "started": "then"}')
            elif situation["out"] == "stale-temp":
                (out / "p0").mkdir()
                (out / "p0" / ".sobel_x.png.999999.tmp").write_bytes(b"half")
                (out / ".featmap.lock").write_text("")  # the killed run's lock file, before its pid was written
        args = ["apply", str(src), "-k", "sobel_x", "-o", str(out), "-j", "1", "-q"]
        args += ["-r"] if situation["recursive"] else []
        args += ["--skip-existing"] if situation["skip"] else []
        result = _invoke(args)
        if situation["out"] == "file":
            assert result.exit_code == 2 and "is a file" in result.stderr
            return
        stale = situation["out"] in ("stale-lock", "stale-temp")
        _clean_outcome(result, out if out.is_dir() else root, args, stale_lock=stale)
        pngs = [p for p in situation["inputs"] if p == "png"]  # `...png` in a folder is hidden: not taken
        if pngs and situation["out"] != "input":
            assert result.exit_code in (0, 3), result.stderr
