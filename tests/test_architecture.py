"""The house's shape: packages layered low to high, no import cycle, small modules with a stated purpose.

Every featmap module's imports are read with :mod:`ast`, imports inside functions included (a lazy import is
still a dependency). The layers, low to high, are the table in docs/architecture.md; a module may import its
own layer or any lower one, never a higher one, not even for type annotations. The cycle check leaves out
imports made only for the type checker (``if TYPE_CHECKING:``): a recursive type (a `Sequential` holds any
layer, containers included) names its own module's importers without running them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "featmap"

# Low to high. A module belongs to the first entry whose name equals it or is a dotted prefix of it, most
# specific first (so ``featmap.io.writers`` sits above the rest of ``featmap.io``).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        ("featmap.errors", "featmap.enums", "featmap.limits", "featmap.documents", "featmap.frozen", "featmap.digests"),
    ),
    ("core", ("featmap.core",)),
    ("kernels", ("featmap.kernels",)),
    ("net", ("featmap.net",)),
    ("io", ("featmap.io",)),
    ("explain", ("featmap.explain",)),
    ("io.writers", ("featmap.io.writers",)),
    ("run", ("featmap.run",)),
    ("render", ("featmap.render",)),
    ("api", ("featmap", "featmap.api", "featmap.batch_api")),
    ("cli", ("featmap.cli", "featmap.__main__", "featmap.launch")),  # ``python -m featmap`` is the command line
)
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}

MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    best = ("", "")
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            hit = module == prefix or (prefix != "featmap" and module.startswith(prefix + "."))
            if hit and len(prefix) > len(best[1]):
                best = (name, prefix)
    if best[0]:
        return best[0]
    raise AssertionError(f"{module} belongs to no layer; add it to LAYERS in tests/test_architecture.py")


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _resolve(target: str) -> str | None:
    """The featmap module an import names: ``featmap.a.b`` or, for ``from featmap.a import b``, ``a.b``."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


def _typing_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        test = node.test if isinstance(node, ast.If) else None
        name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
        if isinstance(node, ast.If) and name == "TYPE_CHECKING":
            for inner in node.body:
                hidden.update(id(n) for n in ast.walk(inner))
    return hidden


def imports_of(module: str, *, typing: bool = True) -> set[str]:
    """The featmap modules ``module`` imports, anywhere in its body (``typing=False``: at run time only)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    hidden = set() if typing else _typing_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            if not name.startswith("featmap"):
                continue
            # ``from featmap.io import png`` names the module featmap.io.png; ``from featmap.io.png import f``
            # names featmap.io.png. Take the most specific module the name reaches.
            resolved = _resolve(name)
            if resolved is not None and resolved != module:
                found.add(resolved)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}
RUNTIME_GRAPH = {module: imports_of(module, typing=False) for module in MODULES}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_upward_import() -> None:
    upward = [
        f"{src} ({layer_of(src)}) -> {dst} ({layer_of(dst)})"
        for src, targets in GRAPH.items()
        for dst in sorted(targets)
        if RANK[layer_of(dst)] > RANK[layer_of(src)]
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of ``graph`` with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle() -> None:
    cycles = _cycles(RUNTIME_GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle() -> None:
    # The check above can fail: a made-up three-module loop is found, the chain into it is not.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_typing_only_imports_are_known() -> None:
    # containers names LayerSpec for the type checker only: a recursive type, not a run-time cycle.
    assert "featmap.net.layers" in GRAPH["featmap.net.layers.containers"]
    assert "featmap.net.layers" not in RUNTIME_GRAPH["featmap.net.layers.containers"]


def test_layer_of_takes_the_most_specific_prefix() -> None:
    assert layer_of("featmap.io.writers.png") == "io.writers"
    assert layer_of("featmap.io.images") == "io"
    assert layer_of("featmap") == "api"
    assert layer_of("featmap.limits") == "base"
    assert layer_of("featmap.cli.apply") == "cli"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it (limit {MAX_LINES})"


@pytest.mark.parametrize("package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py"))
def test_package_states_its_purpose(package: str) -> None:
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text(encoding="utf-8")))
    assert doc, f"{package}/__init__.py needs a one-line docstring saying what the package is for"
    assert doc.splitlines()[0].strip(), f"{package}: the docstring's first line is empty"


def test_one_png_module() -> None:
    names = sorted(m for m in MODULES if m.rpartition(".")[2] == "png")
    assert len(names) == 1, f"more than one module named png: {names}"


def test_imports_by_name_stay_in_their_layer() -> None:
    # The writer registry and the render package load modules by name, out of the ast's sight: each name must
    # be a module of the same layer (a writer registered from run or cli would be an upward import).
    from featmap import render
    from featmap.io import writers

    named = {f"featmap.io.writers.{w.split(':')[0]}" for w in writers.REGISTRY.values() if "." not in w}
    named |= {w.split(":")[0] for w in writers.REGISTRY.values() if "." in w.split(":")[0]}
    assert all(layer_of(m) == "io.writers" and m in MODULES for m in named), sorted(named)
    homes = {f"featmap.render.{home}" for home in render._HOME.values()}
    assert all(layer_of(m) == "render" and m in MODULES for m in homes), sorted(homes)


def test_the_command_line_calls_only_the_public_api() -> None:
    # Click commands parse, call `featmap`'s API and render: nothing of the run layer is theirs to call.
    reached = sorted(
        f"{src} -> {dst}"
        for src, targets in GRAPH.items()
        if layer_of(src) == "cli"
        for dst in targets
        if layer_of(dst) == "run"
    )
    assert not reached, "the command line reaches past the API into featmap.run:\n" + "\n".join(reached)
    assert "featmap.batch_api" in GRAPH["featmap.cli.apply"] or "featmap" in GRAPH["featmap.cli.apply"]
