"""The code's shape: imports go one way (cli → pipeline → i2pmae) without cycles; modules stay small;
test modules hold tests and share helpers only through tests/conftest.py and tests/builders.py."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"i2pmae": 0, "pipeline": 1, "cli": 2}  # a module may import its own layer or a lower one
# pipeline's sub-packages, bottom to top: a package imports itself or the packages before it, never after.
PACKAGES = [
    "core",
    "storage",
    "sources",
    "prepare",
    "render",
    "features",
    "evaluate",
    "train",
    "show",
    "runner",
]


def modules() -> dict[str, Path]:
    files = [*ROOT.glob("cli*.py"), *ROOT.glob("pipeline/**/*.py"), *ROOT.glob("i2pmae/**/*.py")]
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in files}


def layer(module: str) -> int:
    return (
        LAYERS["i2pmae"]
        if module.startswith("i2pmae")
        else LAYERS["pipeline"]
        if module.startswith("pipeline")
        else LAYERS["cli"]
    )


def import_graph() -> dict[str, set[str]]:
    """module → the project modules it imports anywhere in its body (function-level imports included)."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                    for a in node.names
                ]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def test_imports_point_down_the_layers_only():
    upward = [f"{a} → {b}" for a, deps in import_graph().items() for b in deps if layer(b) > layer(a)]
    assert upward == []


def package(module: str) -> str | None:
    """``pipeline.<package>.<module>`` → ``<package>``; None outside pipeline's sub-packages."""
    parts = module.split(".")
    return parts[1] if parts[0] == "pipeline" and len(parts) > 2 else None


def test_pipeline_holds_only_the_declared_packages():
    found = {p.name for p in (ROOT / "pipeline").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    loose = [p.name for p in (ROOT / "pipeline").glob("*.py") if p.name != "__init__.py"]
    assert found == set(PACKAGES) and loose == []


def test_pipeline_packages_import_only_packages_below_them():
    upward = [
        f"{a} → {b}"
        for a, deps in import_graph().items()
        for b in deps
        if (pa := package(a)) and (pb := package(b)) and PACKAGES.index(pb) > PACKAGES.index(pa)
    ]
    assert upward == []


def test_there_is_no_import_cycle():
    graph, state, cycles = import_graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" → ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_typer_lives_only_in_the_cli_layer():
    users = [
        m
        for m, deps in import_graph().items()
        if layer(m) < LAYERS["cli"] and "typer" in modules()[m].read_text()
    ]
    assert users == []


def test_no_module_is_over_300_lines():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}


def test_the_code_follows_the_linter_configuration():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--quiet", str(ROOT)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_code_follows_the_formatter_configuration():
    """``ruff format --check``: the layout is the formatter's (pyproject.toml), bar the few ``# fmt: skip`` tables."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", str(ROOT)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def suite_files(kind: str) -> dict[str, Path]:
    """Files under tests/ (relative posix path → Path) that pytest collects by its default ``python_files``
    (``test_*.py``, ``*_test.py``) when ``kind`` is "test"; the support modules (conftest, builders, ...) else."""
    files = {p.relative_to(ROOT).as_posix(): p for p in (ROOT / "tests").rglob("*.py")}
    collected = {n: p.name.startswith("test_") or p.name.endswith("_test.py") for n, p in files.items()}
    return {n: p for n, p in files.items() if collected[n] == (kind == "test")}


def test_no_file_under_tests_imports_a_test_module():
    """Shared helpers live in tests/conftest.py (fixtures) or tests/builders.py, never in a test module."""
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                targets = [base, *(f"{base}{'' if base.endswith('.') else '.'}{a.name}" for a in node.names)]
            else:
                continue
            if any(t.lstrip(".").startswith(("test_", "tests.test_")) for t in targets):
                found.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    assert found == []


def test_test_modules_hold_the_tests_and_support_modules_none():
    """Every file pytest collects under tests/ defines a test; no other file there does (a helper module
    named test_*.py would be collected, a test module named otherwise would never run)."""

    def defines_tests(path: Path) -> bool:
        body = ast.parse(path.read_text()).body
        funcs = [n.name for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        classes = [n.name for n in body if isinstance(n, ast.ClassDef)]
        return any(f.startswith("test") for f in funcs) or any(c.startswith("Test") for c in classes)

    assert [n for n, p in suite_files("test").items() if not defines_tests(p)] == []
    assert [n for n, p in suite_files("support").items() if defines_tests(p)] == []
