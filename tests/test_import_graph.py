"""The import graph of the project's packages: no cycles, and the device runtime (edge/) never imports
training/ or export/ (they need TensorFlow; a device has only edge/).

Read with ast from the source tree, every import counts: at the top of a module and inside functions
(a lazy import is still a dependency). ``edgecam``'s dispatcher names the training and export
subcommands by module name (edge.cli.HANDLERS) so that only the subcommand that runs is imported;
those names are checked to exist.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "training", "export", "devices")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (itself, or the package holding the imported attribute)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``module`` imports anywhere in its body."""
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from pkg import sub" imports the submodule when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out |= {m for n in names if (m := _resolve(n, modules)) is not None and m != module}
    return out


def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_that():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_from_functions_and_relative_forms(tmp_path):
    modules = {"pkg": tmp_path / "pkg/__init__.py", "pkg.a": tmp_path / "pkg/a.py", "pkg.b": tmp_path / "pkg/b.py",
               "other": tmp_path / "other.py"}
    src = tmp_path / "pkg" / "a.py"
    src.parent.mkdir()
    src.write_text("def f():\n    from . import b\n    import other.thing\n")
    assert imports_of("pkg.a", src, modules) == {"pkg.b", "other"}


def test_no_import_cycles():
    found = cycles(graph())
    assert found == [], "import cycles among project modules: " + "; ".join(" <-> ".join(c) for c in found)


def test_edge_imports_neither_training_nor_export():
    bad = sorted(f"{m} -> {t}" for m, targets in graph().items() if m.split(".")[0] == "edge"
                 for t in targets if t.split(".")[0] in ("training", "export"))
    assert bad == [], "edge/ must run without TensorFlow: " + ", ".join(bad)


def test_the_dispatchers_module_names_exist():
    from edge.cli import HANDLERS

    modules = _modules()
    for command, target in HANDLERS.items():
        module, _, func = target.partition(":")
        assert module in modules, f"{command}: {module} is not a module of the project"
        assert f"def {func}(" in modules[module].read_text(), f"{command}: {module} has no function {func}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_read(package):
    assert any(m.split(".")[0] == package for m in graph())
