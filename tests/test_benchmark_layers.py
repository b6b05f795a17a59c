"""benchmark/ is a stack: each module imports only modules below it (suites, layout, tasks, pool,
carry, ray_backend, report, then the run_suite command on top), at module level, so no import cycle
can come back hidden in a function, and a local suite does not load Ray."""

import ast
import subprocess
import sys

from helpers import ROOT

STACK = ["suites", "baselines", "layout", "tasks", "pool", "carry", "ray_backend", "report", "run_suite"]
"""benchmark's modules that import one another, lowest first."""


def benchmark_imports(path) -> list[tuple[str, bool]]:
    """(benchmark module imported, whether the import is inside a function) for each import in `path`."""
    tree = ast.parse(path.read_text())
    nested = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(f)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "benchmark":
            names = [f"benchmark.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        else:
            continue
        out += [(n.split(".")[1], id(node) in nested) for n in names if n.startswith("benchmark.")]
    return out


def test_each_module_imports_only_modules_below_it_at_module_level():
    files = sorted((ROOT / "benchmark").rglob("*.py"))
    assert {f.stem for f in files} >= set(STACK)
    for path in files:
        imports = benchmark_imports(path)
        assert not [m for m, nested in imports if nested], f"{path}: a benchmark import inside a function"
        if path.parent.name == "benchmark" and path.stem in STACK:
            below = STACK[: STACK.index(path.stem)]
            assert {m for m, _ in imports} <= set(below), f"{path} imports from above it: {imports}"
        else:  # the measurement scripts, baselines, demo, ...: none builds on the command
            assert "run_suite" not in {m for m, _ in imports}, path
    # the rule is not vacuous: the command sits on every layer it names
    assert {m for m, _ in benchmark_imports(ROOT / "benchmark" / "run_suite.py")} == {
        "carry", "layout", "pool", "ray_backend", "suites", "tasks"
    }  # fmt: skip


def test_importing_the_stack_bottom_up_loads_one_module_at_a_time():
    """In a fresh interpreter, importing each module after those below it loads that module alone,
    and the command loads no Ray (ray_backend imports it when a Ray pool is made)."""
    code = (
        "import importlib, sys\n"
        f"for name in {STACK!r}:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module('benchmark.' + name)\n"
        "    print(name, sorted(m for m in set(sys.modules) - before if m.startswith('benchmark')))\n"
        "print('ray' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "suites ['benchmark', 'benchmark.suites']"
    assert lines[1:-1] == [f"{name} ['benchmark.{name}']" for name in STACK[1:]]
    assert lines[-1] == "False"
