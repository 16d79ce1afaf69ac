"""The shape of the project's code: no module over 500 lines, no function over 60 lines unless its
docstring says why.

Read with ast from the source tree of every package (edge/, export/, training/, devices/). A function is
measured from its ``def`` line to its last line (decorators excluded, nested functions inside it included),
so a long function cannot hide its length in a closure. One that must stay long (a declarative argparse
table, say) carries a docstring line starting with ``Long because:`` and the reason.

Each failure lists every offender with its size, so one run shows the whole list to fix.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "export", "training", "devices")
SKIP_PARTS = {"build", ".venv", "tests", "__pycache__"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
REASON_PREFIX = "Long because:"


def source_files(repo: Path = REPO) -> list[Path]:
    """Python files of the packages, without build output, virtualenvs or tests."""
    return [
        p
        for pkg in PACKAGES
        for p in sorted((repo / pkg).rglob("*.py"))
        if not SKIP_PARTS & set(p.relative_to(repo).parts)
    ]


def long_modules(paths: list[Path], limit: int = MAX_MODULE_LINES) -> list[str]:
    """``"path: N lines"`` for every module longer than ``limit`` lines."""
    out = []
    for path in paths:
        n = len(path.read_text().splitlines())
        if n > limit:
            out.append(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {n} lines")
    return out


def has_reason(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether the function's docstring has a line starting with ``Long because:``."""
    doc = ast.get_docstring(node) or ""
    return any(line.strip().startswith(REASON_PREFIX) for line in doc.splitlines())


def long_functions(paths: list[Path], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``"path:line name: N lines"`` for every function over ``limit`` lines without a stated reason."""
    out = []
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            n = node.end_lineno - node.lineno + 1
            if n > limit and not has_reason(node):
                out.append(f"{shown}:{node.lineno} {node.name}: {n} lines")
    return sorted(out)


def test_the_walk_covers_every_package_and_skips_tests_and_builds():
    files = source_files()
    tops = {p.relative_to(REPO).parts[0] for p in files}
    assert tops == set(PACKAGES)
    assert not any(SKIP_PARTS & set(p.relative_to(REPO).parts) for p in files)
    assert REPO / "edge" / "loop.py" in files


def test_no_module_over_500_lines():
    offenders = long_modules(source_files())
    assert not offenders, "modules over %d lines:\n  %s" % (MAX_MODULE_LINES, "\n  ".join(offenders))


def test_no_function_over_60_lines_without_a_reason():
    offenders = long_functions(source_files())
    assert not offenders, (
        "functions over %d lines whose docstring has no line starting with %r:\n  %s"
        % (MAX_FUNCTION_LINES, REASON_PREFIX, "\n  ".join(offenders))
    )


def _function(lines: int, doc: str | None) -> str:
    body = f'    """{doc}"""'.splitlines() if doc is not None else []
    body += ["    x = 0"] * (lines - 1 - len(body))
    return "\n".join(["def f():", *body]) + "\n"


@pytest.mark.parametrize(
    ("lines", "doc", "flagged"),
    [
        (60, None, False),
        (61, None, True),
        (61, "Short.", True),
        (61, "Builds a table.\n\n    Long because: one row per flag.", False),
        (61, "Builds a table; Long because: not at a line start.", True),
    ],
)
def test_the_function_check_counts_def_to_end_and_reads_the_reason(tmp_path, lines, doc, flagged):
    path = tmp_path / "m.py"
    path.write_text(_function(lines, doc))
    assert len(path.read_text().splitlines()) == lines
    assert bool(long_functions([path])) is flagged


def test_the_function_check_finds_methods_and_nested_functions(tmp_path):
    inner = _function(61, None).replace("\n", "\n    ").rstrip() + "\n"
    path = tmp_path / "m.py"
    path.write_text("class C:\n    " + inner)
    assert [line.split(" ")[1] for line in long_functions([path])] == ["f:"]


@pytest.mark.parametrize(("lines", "flagged"), [(500, False), (501, True)])
def test_the_module_check_counts_lines(tmp_path, lines, flagged):
    path = tmp_path / "m.py"
    path.write_text("x = 0\n" * lines)
    assert bool(long_modules([path])) is flagged
