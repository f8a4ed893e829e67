"""What each command imports: the modules it uses and not the rest (lazy imports, pinned without timing).

Start-up is most of a small command's time (LeNet-5 on a digit runs its layers in about a millisecond, the
imports take the rest), so a command must not load what only other commands or options use: the batch loop and
its back ends, the kernel library for a network, the sheet and report drawing without ``--sheet``/``--report``,
ONNX's tensor store, the other commands' modules. Each case runs the command in a fresh interpreter and reads
`sys.modules` when it has finished; a case that asks for the sheet and the report checks that the probe does see
what an option loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, SAMPLES

#: Runs ``featmap ARGS`` in this interpreter, then writes its exit code and every loaded module's name to a file.
_PROBE = """
import json, sys
from featmap.cli import main
code = 0
try:
    main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump({"code": code, "modules": sorted(sys.modules)}, handle)
"""

#: Loaded only by what needs them.
BATCH = ("featmap.run.batch", "featmap.run.backends", "featmap.run.stores", "featmap.run.work")
PICTURES = ("featmap.io.writers.pictures", "featmap.io.writers.sheet", "featmap.io.writers.report")
NETWORK_REPORT = ("featmap.run.netreport", "featmap.io.writers.netreport")
OTHER_COMMANDS = ("featmap.cli.explain", "featmap.cli.kernels", "featmap.cli.shape", "featmap.cli.weights")
OPTIONAL = ("scipy", "dask", "distributed", "fsspec", "onnx", "onnxruntime", "torch", "safetensors", "h5py")


def loaded_by(tmp_path: Path, *args: str) -> set[str]:
    """The modules loaded by ``featmap ARGS`` run in a fresh interpreter (which must succeed)."""
    report = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", _PROBE, str(report), *args],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=120,
    )
    found = json.loads(report.read_text(encoding="utf-8"))
    assert found["code"] in (0, None), found["code"]
    return set(found["modules"])


def test_a_network_on_one_image_loads_only_the_network_path(tmp_path: Path) -> None:
    out = tmp_path / "out"
    modules = loaded_by(
        tmp_path, "apply", str(SAMPLES / "digits" / "digit_7.png"), "--model", "lenet5-digits", "-o", str(out)
    )
    assert (out / "digit_7" / "01-C1" / "000.png").is_file()
    assert {"featmap.run.netimage", "featmap.run.executor", "featmap.render.network", "numpy"} <= modules
    assert "yaml" not in modules  # the preset read from its compiled form (featmap.net.spec.compiled)
    assert "concurrent.futures" not in modules  # 28×28 maps: no PNG threads (io.writers.png.THREADED_FROM)
    unused = (*BATCH, *PICTURES, *NETWORK_REPORT, *OTHER_COMMANDS, *OPTIONAL)
    assert sorted(modules & {*unused, "featmap.kernels", "featmap.run.pipeline", "featmap.net.onnx.tensors"}) == []
    assert "rich.progress" not in modules  # no progress bar for one image
    assert "numpy.ma" not in modules  # the digit check's median (np.median imports numpy's masked arrays)


def test_the_sheet_and_report_load_their_modules_when_asked_for(tmp_path: Path) -> None:
    digit = str(SAMPLES / "digits" / "digit_7.png")
    modules = loaded_by(
        tmp_path, "apply", digit, "--model", "lenet5-digits", "--sheet", "--report", "-o", str(tmp_path)
    )
    assert (tmp_path / "report.html").is_file()
    assert {*PICTURES, *NETWORK_REPORT} <= modules
    assert sorted(modules & {*BATCH, *OTHER_COMMANDS}) == []


def test_kernels_on_one_image_load_neither_the_batch_nor_the_network_path(tmp_path: Path) -> None:
    out = tmp_path / "out"
    modules = loaded_by(tmp_path, "apply", str(SAMPLES / "camera.png"), "-k", "sobel_x", "-o", str(out))
    assert (out / "camera" / "sobel_x.png").is_file()
    assert {"featmap.run.pipeline", "featmap.kernels", "featmap.render.apply"} <= modules
    unused = (*BATCH, *PICTURES, *OTHER_COMMANDS, *OPTIONAL)
    assert sorted(modules & {*unused, "featmap.run.netimage", "featmap.net.onnx"}) == []
    assert "yaml" not in modules  # built-in kernels come from their compiled form (featmap.kernels.compiled)


def test_kernels_on_a_folder_load_the_batch_loop_but_not_the_network_path(tmp_path: Path) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.new("L", (16, 12), 40 * i).save(photos / f"p{i}.png")
    out = tmp_path / "out"
    modules = loaded_by(tmp_path, "apply", str(photos), "-k", "sobel_x", "-j", "1", "-q", "-o", str(out))
    assert (out / "p1" / "sobel_x.png").is_file()
    assert {"featmap.run.batch", "featmap.run.pipeline"} <= modules
    network = {"featmap.run.netjob", "featmap.run.netimage", "featmap.run.netinput", "featmap.net.preprocess"}
    assert sorted(modules & {*network, *PICTURES, *OTHER_COMMANDS, *OPTIONAL, "yaml"}) == []
    # a network's summary and the layer kinds only a network uses
    assert sorted(modules & {"featmap.net.summary", "featmap.net.layers.channels", "featmap.net.layers.dense"}) == []
    assert "difflib" not in modules  # Click's suggestions for an unknown long option: none was asked for
    assert "_hashlib" not in modules  # digests of small data from Python's own modules (featmap.digests): no OpenSSL


@pytest.mark.parametrize(
    "args",
    [
        ["a.png", "-k", "sobel_x", "-k", "gaussian:size=5", "-q", "-j", "2", "-o", "out"],
        ["a.png", "-ksobel_x", "-k=sobel_x", "-qj2", "--jobs=3", "--kernel", "x"],
        ["a.png", "-x"],
        ["a.png", "-qx"],
        ["a.png", "-k"],
        ["a.png", "--kernl", "sobel_x"],
        ["a.png", "--qiet"],
        ["a.png", "-j", "--pool"],
        ["a.png", "--", "-k", "-q"],
    ],
)
def test_featmap_commands_parse_as_clicks_own_parser(args: list[str]) -> None:
    """`FeatmapCommand.make_parser` spares Click's parser its long-name suggestions for short options: every
    command line parses to the same options, arguments and order, or fails with the same message."""
    import click

    from featmap.cli.apply import apply

    def outcome(make_parser: Any) -> tuple[Any, ...]:
        ctx = click.Context(apply)
        try:
            options, rest, order = make_parser(ctx).parse_args(list(args))
        except click.UsageError as error:
            return (type(error).__name__, error.format_message())
        return (options, rest, [param.name for param in order])

    assert outcome(apply.make_parser) == outcome(lambda ctx: click.Command.make_parser(apply, ctx))


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_load_no_numpy_pillow_or_rich(tmp_path: Path, args: list[str]) -> None:
    modules = loaded_by(tmp_path, *args)
    assert sorted(modules & {"numpy", "PIL", "rich", "yaml", "cv2"}) == []
    if args == ["--version"]:
        assert sorted(modules & {"featmap.cli.apply", *OTHER_COMMANDS}) == []


def test_a_command_loads_only_its_own_module(tmp_path: Path) -> None:
    modules = loaded_by(tmp_path, "shape", "conv:6@5x5", "--input", "32x32x1")
    assert "featmap.cli.shape" in modules
    assert sorted(modules & {"featmap.cli.apply", "featmap.cli.explain", "featmap.cli.kernels", *BATCH}) == []


#: Starts the helpers' fork server for one kind of batch (``{network}``); a helper forked from it evaluates
#: ``{expression}`` (text of Python) and this prints what it answered as JSON.
_HELPER_PROBE = """
import json
from featmap.run.workers import Helpers, start_server
start_server(network={network})
helpers = Helpers(1, eval, [{expression!r}])
helpers.start()
helpers.give(0)
found = []
while not found and helpers.working:
    found = helpers.collect(wait=True)[0]
print(json.dumps(found[0]))
helpers.close()
"""
KERNEL_PATH = ("featmap.run.work", "featmap.run.pipeline", "featmap.kernels", "featmap.io.writers.png")
NETWORK_PATH = ("featmap.run.work", "featmap.run.netimage", "featmap.run.executor", "featmap.net.weights")


def test_the_helpers_server_preload_names_both_kinds_of_image() -> None:
    """A command imports only its own path, so the helpers' fork server names both in `PRELOAD` (a server started
    before the batch's kind is known): the kernel and the network path, the PNG writer and the pool's helper loop."""
    code = (
        "import importlib, json, sys\n"
        "from featmap.run.workers import PRELOAD\n"
        "for name in PRELOAD:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    modules = set(json.loads(proc.stdout))
    assert set(KERNEL_PATH) | set(NETWORK_PATH) | {"featmap.io.pngencode", "multiprocessing.sharedctypes"} <= modules


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork server here: helpers are spawned")
@pytest.mark.parametrize(
    ("network", "own", "other"),
    [
        (
            False,
            KERNEL_PATH,
            # nor what only the command uses: digests (OpenSSL), a network's summary, name suggestions
            ("featmap.run.netimage", "featmap.run.netjob", "featmap.run.netreport", "hashlib", "featmap.net.summary")
            + ("difflib", "featmap.net.layers.channels", "featmap.net.layers.dense"),
        ),
        (True, NETWORK_PATH, ("featmap.run.pipeline", "featmap.kernels")),
    ],
)
def test_a_batchs_helpers_start_with_its_own_kinds_path(
    network: bool, own: tuple[str, ...], other: tuple[str, ...]
) -> None:
    """The server started for one kind of batch (``featmap apply`` knows it) imports that kind's path only, so a
    kernel batch's helpers start without the network path's imports and the other way round; the helper has
    the path its images need without importing it."""
    code = _HELPER_PROBE.format(network=network, expression="sorted(__import__('sys').modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    modules = set(json.loads(proc.stdout.splitlines()[-1]))
    assert set(own) <= modules
    assert sorted(set(other) & modules) == []


#: A helper's modules imported since its fork are those the cyclic collector tracks (the server froze its own:
#: `featmap.run.warm`); its parent is the server, whose thread count it reads.
#: Evaluated in the helper: (modules the collector tracks, i.e. not frozen by the server, the server's thread count).
_IN_HELPER = (
    "(lambda gc, os, sys: (lambda tracked, tasks: ("
    "sorted(name for name, module in sys.modules.items() if id(module) in tracked),"
    " len(os.listdir(tasks)) if os.path.isdir(tasks) else None))"
    "({id(item) for item in gc.get_objects()}, os.path.join('/proc', str(os.getppid()), 'task')))"
    "(__import__('gc'), __import__('os'), __import__('sys'))"
)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork server here: helpers are spawned")
@pytest.mark.parametrize("network", [False, True])
def test_a_helper_imports_nothing_after_its_fork_and_its_server_has_one_thread(network: bool) -> None:
    """Everything a helper loads before and for its first image (the pool's helper loop, OpenCV, ISA-L,
    Pillow's decoders) is loaded once in the server, which still holds a single thread when it forks (importing
    OpenCV starts none; a server with OpenCV's thread pool would hand helpers a pool that hangs)."""
    code = _HELPER_PROBE.format(network=network, expression=_IN_HELPER)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    since_fork, server_threads = json.loads(proc.stdout.splitlines()[-1])
    assert since_fork == []
    assert server_threads in (1, None)


#: Runs ``featmap ARGS`` with `featmap.start_helpers` replaced by a recorder of its arguments and of numpy's state.
_START_PROBE = """
import json, sys
import featmap
from featmap.cli import main
seen = []
def start_helpers(jobs=None, *, network=None):
    seen.append({"jobs": jobs, "network": network, "numpy": "numpy" in sys.modules})
    return False
featmap.start_helpers = start_helpers
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(seen))
"""


@pytest.mark.parametrize(("args", "network"), [(["-k", "sobel_x"], False), (["--model", "lenet5-digits"], True)])
def test_a_batch_starts_its_helpers_server_for_its_kind_before_numpy_loads(
    tmp_path: Path, args: list[str], network: bool
) -> None:
    """``featmap apply`` over a folder asks for the helpers' server first, with the batch's kind, while its options
    (``--stride 1`` and the other defaults included) are parsed without loading numpy: the server's imports start
    ~50 ms sooner, beside this process's own."""
    command = ["apply", str(SAMPLES / "digits"), *args, "-q", "-j", "2", "-o", str(tmp_path / "out")]
    proc = subprocess.run([sys.executable, "-c", _START_PROBE, *command], cwd=tmp_path, capture_output=True, text=True)
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen[0] == {"jobs": 2, "network": network, "numpy": False}  # the command's, first
    assert [(call["jobs"], call["network"]) for call in seen[1:]] == [(2, network)]  # then apply_batch's


@pytest.mark.parametrize("module", ["featmap", "featmap.batch_api", "featmap.render"])
def test_names_imported_on_first_use_are_listed_and_resolve(module: str) -> None:
    """`__all__` is whole, `dir()` lists what a module imports only on first use, and each of those names
    resolves to the object of the module that defines it."""
    code = (
        "import importlib, json, sys\n"
        f"m = importlib.import_module({module!r})\n"
        "missing = [n for n in m.__all__ if n not in dir(m)]\n"
        "homes = {n: getattr(m, n).__module__ for n in m.__all__ if hasattr(getattr(m, n), '__module__')}\n"
        "print(json.dumps({'missing': missing, 'homes': homes}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    found = json.loads(proc.stdout)
    assert found["missing"] == []
    assert found["homes"].get("BatchInterrupted", "featmap.run.batch") == "featmap.run.batch"
    assert all(home.startswith("featmap") for home in found["homes"].values())


def test_the_layer_kinds_only_networks_use_load_on_first_use() -> None:
    """`featmap.net.layers` loads the kinds a kernel bank never uses (channel ops, dense) when one is named, and
    `LayerSpec` and `LEAF_KINDS` when asked for: every kind, containers walked rather than run."""
    code = (
        "import json, sys, typing\n"
        "import featmap.net.layers as layers\n"
        "loaded = {m: m in sys.modules for m in ('featmap.net.layers.channels', 'featmap.net.layers.dense')}\n"
        "kinds = {k.__name__ for k in typing.get_args(layers.LayerSpec)}\n"
        "leaves = {k.__name__ for k in layers.LEAF_KINDS}\n"
        "named = sorted(set(layers.__all__) - set(dir(layers)))\n"
        "print(json.dumps([loaded, sorted(kinds), sorted(leaves), named, layers.Dense.__module__]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded, kinds, leaves, missing, dense_home = json.loads(proc.stdout)
    assert loaded == {"featmap.net.layers.channels": False, "featmap.net.layers.dense": False}
    assert len(kinds) == 19 and {"Softmax", "Dense", "Conv2d", "Sequential", "Parallel"} <= set(kinds)
    assert sorted(leaves) == sorted(set(kinds) - {"Sequential", "Parallel"})
    assert missing == []
    assert dense_home == "featmap.net.layers.dense"


_BLAS_PROBE = """
import json, os, sys
import featmap.cli as cli
def main():  # what the command would find as it starts
    seen = {"timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"), "numpy_loaded": "numpy" in sys.modules}
    print(json.dumps(seen))
cli.main = main
cli.run()
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "4"), ("20", "20")])
def test_the_command_tells_openblas_not_to_spin_before_numpy_loads(given: str | None, expected: str) -> None:
    import os

    environment = {key: value for key, value in os.environ.items() if key != "OPENBLAS_THREAD_TIMEOUT"}
    if given is not None:
        environment["OPENBLAS_THREAD_TIMEOUT"] = given  # a user's own setting is kept
    done = subprocess.run(
        [sys.executable, "-c", _BLAS_PROBE], cwd=REPO, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"timeout": expected, "numpy_loaded": False}


_FROZEN_PROBE = """
import gc, json
from featmap.run.workers import Helpers, start_server
start_server(network=False)
here = (list(gc.get_threshold()), gc.get_freeze_count())
probe = "(list(__import__('gc').get_threshold()), __import__('gc').get_freeze_count())"
helpers = Helpers(1, eval, [probe])
helpers.start()
helpers.give(0)
found = []
while not found and helpers.working:
    found = helpers.collect(wait=True)[0]
print(json.dumps({"helper": found[0], "here": here}))
helpers.close()
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork server here: helpers are spawned")
def test_a_helper_starts_with_its_servers_imports_frozen_and_pythons_collector() -> None:
    """The server imports the per-image modules with the collector held back and freezes them before it forks
    (`featmap.run.warm`): a helper's collections never scan (and copy) them; its thresholds are Python's."""
    proc = subprocess.run([sys.executable, "-c", _FROZEN_PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    found = json.loads(proc.stdout.splitlines()[-1])
    (thresholds, frozen), here = found["helper"], found["here"]
    assert thresholds == here[0]
    assert frozen > 10_000
    assert here[1] == 0  # the process that asked for helpers froze nothing of its own


#: ``python -m featmap ARGS`` with `featmap.start_helpers` replaced by a recorder of its arguments and of what was
#: loaded when it was called.
_EARLY_PROBE = """
import json, runpy, sys
import featmap
def start_helpers(jobs=None, *, network=None):
    seen = {"jobs": jobs, "network": network, "click": "click" in sys.modules, "numpy": "numpy" in sys.modules}
    print("asked", json.dumps(seen), flush=True)  # the command ends with os._exit
    return False
featmap.start_helpers = start_helpers
sys.argv = ["featmap", *sys.argv[1:]]
runpy.run_module("featmap", run_name="__main__")
"""


@pytest.mark.parametrize(
    ("args", "first"),
    [
        (["-k", "sobel_x", "-j", "2"], {"jobs": 2, "network": False, "click": False, "numpy": False}),
        (["--model", "lenet5-digits", "--jobs=2"], {"jobs": 2, "network": True, "click": False, "numpy": False}),
    ],
)
def test_python_m_featmap_asks_for_a_batchs_helpers_before_click_loads(
    tmp_path: Path, args: list[str], first: dict[str, object]
) -> None:
    """The command line of a batch over a folder (its kind and ``-j`` certain) starts the helpers' server before
    Click and the command's options load; ``featmap apply`` asks again later (a running server is kept)."""
    command = ["apply", str(SAMPLES / "digits"), *args, "-q", "-o", str(tmp_path / "out")]
    proc = subprocess.run([sys.executable, "-c", _EARLY_PROBE, *command], cwd=tmp_path, capture_output=True, text=True)
    seen = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("asked ")]
    assert seen[0] == first
    assert len(seen) >= 2  # the command asks again
    assert all(call["click"] and (call["jobs"], call["network"]) == (2, first["network"]) for call in seen[1:])


@pytest.mark.parametrize(
    "args",
    [
        ["apply", str(SAMPLES / "camera.png"), "-k", "sobel_x", "-o", "OUT"],  # one image; -o names a folder
        ["apply", str(SAMPLES / "camera.png"), "-q", str(SAMPLES), "-k", "sobel_x"],  # after a flag: not sure
        ["apply", str(SAMPLES), "-k", "sobel_x", "--help"],
        ["apply", str(SAMPLES), "-k", "sobel_x", "-j", "two"],  # Click's to refuse
        ["apply", str(SAMPLES)],  # neither kernels nor a network named
        ["apply", str(SAMPLES), "-k", "sobel_x", "--scheduler", "tcp://host:8786"],
        ["shape", str(SAMPLES), "--model", "lenet5"],
    ],
)
def test_a_command_line_that_is_not_surely_a_local_batch_starts_nothing_early(args: list[str]) -> None:
    from featmap.launch import batch_helpers

    assert batch_helpers([str(SAMPLES) if a == "OUT" else a for a in args]) is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["apply", str(SAMPLES), "-k", "sobel_x"], (None, False)),  # every core
        (["--debug", "apply", "-k", "sobel_x", str(SAMPLES), "-j", "1", "--jobs", "3"], (3, False)),  # the last -j
        (["apply", "--spec=net.yaml", "--", str(SAMPLES)], (None, True)),
        (["apply", "-o", "out", str(SAMPLES), "--model", "lenet5", "-j4"], (4, True)),
    ],
)
def test_a_local_batchs_command_line_gives_its_jobs_and_kind(args: list[str], expected: tuple[object, bool]) -> None:
    from featmap.launch import batch_helpers

    assert batch_helpers(args) == expected


#: ``python -m featmap ARGS`` printing the collector's thresholds and frozen count when the images start.
_COLLECTOR_PROBE = """
import gc, json, runpy, sys
import featmap
seen = {"at start": list(gc.get_threshold())}
def watched(name):
    real = getattr(featmap, name)
    def call(*args, **kwargs):
        print("images", json.dumps({**seen, "then": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}))
        return real(*args, **kwargs)
    return call
featmap.apply_file, featmap.apply_batch = watched("apply_file"), watched("apply_batch")
sys.argv = ["featmap", *sys.argv[1:]]
runpy.run_module("featmap", run_name="__main__")
"""


@pytest.mark.parametrize("images", [SAMPLES / "camera.png", SAMPLES / "digits"])
def test_the_collector_is_held_back_during_start_up_only(tmp_path: Path, images: Path) -> None:
    """The command's start-up runs with the cyclic collector held back; by the first image its objects are frozen
    and the thresholds are Python's again, so images are collected as before."""
    command = ["apply", str(images), "-k", "sobel_x", "-j", "1", "-q", "-o", str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, "-c", _COLLECTOR_PROBE, *command], cwd=tmp_path, capture_output=True, text=True
    )
    seen = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("images ")]
    assert len(seen) == 1, proc.stderr
    assert seen[0]["then"] == seen[0]["at start"]
    assert seen[0]["frozen"] > 10_000  # the modules, classes and functions the start-up made


def test_a_command_run_inside_another_program_leaves_its_collector_alone() -> None:
    import gc

    from featmap.launch import start_up_over

    before = (gc.get_threshold(), gc.get_freeze_count())
    start_up_over()  # nothing held it back: nothing to undo, nothing frozen
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


#: A stand-in for the helpers' server: an exit handler registered before the preload, then the preload of one
#: small module; the handler says whether Python's exit went on past the preload's own handler.
_SERVER_EXIT_PROBE = """
import atexit, os
atexit.register(lambda: os.write(1, b"handlers registered before the preload ran"))
import featmap.run.warm
print("preloaded", flush=True)
"""


def test_the_helpers_server_exits_without_pythons_teardown() -> None:
    """The server's exit skips the teardown (freeing what the preload made): it ends at its own exit handler,
    exit status 0, what it printed flushed. Imported without a preload (anywhere else) it changes nothing."""
    import os

    env = {**os.environ, "FEATMAP_HELPERS_PRELOAD": "json"}
    server = subprocess.run([sys.executable, "-c", _SERVER_EXIT_PROBE], env=env, capture_output=True, text=True)
    assert (server.returncode, server.stdout, server.stderr) == (0, "preloaded\n", "")
    env.pop("FEATMAP_HELPERS_PRELOAD")
    other = subprocess.run([sys.executable, "-c", _SERVER_EXIT_PROBE], env=env, capture_output=True, text=True)
    assert (other.returncode, other.stdout) == (0, "preloaded\nhandlers registered before the preload ran")


#: ``python -m featmap ARGS``, then (an exit handler) the resource tracker's process id: None when none started.
_TRACKER_PROBE = """
import atexit, os, runpy, sys
from multiprocessing import resource_tracker
atexit.register(lambda: os.write(1, f"tracker {resource_tracker._resource_tracker._pid}\\n".encode()))
sys.argv = ["featmap", *sys.argv[1:]]
runpy.run_module("featmap", run_name="__main__")
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork server here: helpers are spawned")
@pytest.mark.parametrize("where", ["before Click", "featmap apply"])
def test_a_batchs_helpers_server_starts_no_resource_tracker(tmp_path: Path, where: str) -> None:
    """The command's server is started without multiprocessing's resource tracker (a third interpreter with
    nothing to track), whether the command line showed a batch before Click loaded (`featmap.launch`) or
    ``featmap apply`` found one (here a glob, which the early look leaves to it)."""
    images = str(SAMPLES / "digits") if where == "before Click" else str(SAMPLES / "digits" / "digit_*.png")
    command = ["apply", images, "-k", "sobel_x", "-j", "2", "-q", "-o", str(tmp_path / "out")]
    proc = subprocess.run([sys.executable, "-c", _TRACKER_PROBE, *command], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "tracker None"
    assert len(list((tmp_path / "out").glob("*/*.png"))) == len(list((SAMPLES / "digits").glob("digit_*.png")))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork server here: helpers are spawned")
def test_helpers_work_without_a_resource_tracker_and_a_running_one_is_kept() -> None:
    """A helper forked from a server started after `no_resource_tracker` runs its task and sends its outcome,
    and no tracker process starts; where a tracker runs already it is left as it is."""
    code = (
        "from multiprocessing import resource_tracker\n"
        "from featmap.launch import no_resource_tracker\n"
        "print(no_resource_tracker(), no_resource_tracker())\n"
        + _HELPER_PROBE.format(network=False, expression="6 * 7")
        + "print(resource_tracker._resource_tracker._pid)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["True False", "42", "None"]
    code = (
        "from multiprocessing import resource_tracker\n"
        "from featmap.launch import no_resource_tracker\n"
        "resource_tracker.ensure_running()\n"
        "print(no_resource_tracker(), resource_tracker._resource_tracker._pid is not None)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["False True"]


#: ``python -m featmap ARGS`` writing the Rich and featmap.render modules loaded when the first input image opens.
_FIRST_IMAGE_PROBE = """
import atexit, json, os, runpy, sys
seen = []
def hook(event, args):
    if event == "open" and not seen and str(args[0]).startswith(os.environ["FIRST_INPUT"]):
        seen.append(sorted([name for name in list(sys.modules) if name.split(".")[0] == "rich" or "render" in name]))
sys.addaudithook(hook)
atexit.register(lambda: print("modules", json.dumps(seen), flush=True))
sys.argv = ["featmap", *sys.argv[1:]]
runpy.run_module("featmap", run_name="__main__")
"""


@pytest.mark.parametrize("args", [["-k", "sobel_x"], ["--model", "lenet5-digits"]])
def test_a_batch_loads_its_table_rich_included_once_its_images_are_done(tmp_path: Path, args: list[str]) -> None:
    """The table at the end of a batch (featmap.render, Rich: ~15 ms) is loaded after the images, not before the
    first: the start-up before the first image is the batch's critical path."""
    from PIL import Image

    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(2):
        Image.new("L", (28, 28), 40 * i).save(photos / f"p{i}.png")
    command = ["apply", str(photos), *args, "-j", "1", "-q", "-o", str(tmp_path / "out")]
    env = {**__import__("os").environ, "FIRST_INPUT": str(photos / "p")}
    proc = subprocess.run(
        [sys.executable, "-c", _FIRST_IMAGE_PROBE, *command], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert "processed" in proc.stdout, proc.stderr  # the table was printed
    assert proc.stdout.splitlines()[-1] == "modules [[]]"
