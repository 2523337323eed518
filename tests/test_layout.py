"""The package's layout shows its flow: stages import only earlier stages, with no circle.

config -> measure, models -> tasks -> engines -> results -> analysis -> verdicts -> report -> run -> cli.
An import inside a function hides a dependency from the reader; it is allowed only where the imported
stage pulls a heavy optional library (torch, matplotlib, lm-eval, llama.cpp) that the importer must not
load at start-up.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "harness"

# A module may import its own stage and any stage before it.
STAGES = [
    "errors",
    "serialize",
    "registry",
    "config",
    "measure",
    "models",
    "tasks",
    "engines",
    "results",
    "analysis",
    "verdicts",
    "report",
    "run",
    "cli",
]

# (importer, imported module): why the import waits until a function runs
LAZY = {
    ("harness", "harness.run.runner"): "importing harness must not import torch",
    ("harness", "harness.report.build"): "importing harness must not import torch",
    ("harness", "harness.errors"): "the package's public names are resolved on first use",
    ("harness.engines", "harness.engines.llamacpp"): "llama-cpp-python is optional",
    ("harness.tasks.resolve", "harness.tasks.lmeval"): "lm-eval's import takes seconds; only lmeval: tasks need it",
    ("harness.report.build", "harness.report.plots"): "matplotlib",
}
LAZY_MODULES = {"harness.cli": "each sub-command imports its stage when it runs: `harness --help` starts without torch"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported harness module, inside a function?) for every import in the module."""
    tree = ast.parse(path.read_text())
    inside = {
        id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(fn)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            for alias in node.names:  # `from harness.tasks import lmeval` imports the submodule
                target = f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                found.append((target, id(node) in inside))
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in inside) for a in node.names if a.name.startswith("harness")]
    return [(t, lazy) for t, lazy in found if t in modules and t != name]


def _stage(module: str) -> int:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 else len(STAGES)  # the package itself comes last


def test_every_module_belongs_to_a_stage() -> None:
    for name in _modules():
        parts = name.split(".")
        assert len(parts) == 1 or parts[1] in STAGES + ["__main__"], f"{name} is in no stage: put it in one of {STAGES}"


def test_stages_import_only_earlier_stages() -> None:
    modules = _modules()
    wrong = [
        f"{name} imports {target}"
        for name, path in modules.items()
        if not name.endswith("__main__")
        for target, _ in _imports(name, path, modules)
        if _stage(target) > _stage(name)
    ]
    assert not wrong, "an earlier stage imports a later one:\n" + "\n".join(wrong)


def test_the_import_graph_has_no_circle() -> None:
    modules = _modules()
    graph = {name: {t for t, _ in _imports(name, path, modules)} for name, path in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own submodules
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_imports_inside_functions_are_only_for_heavy_optional_dependencies() -> None:
    modules = _modules()
    hidden = [
        f"{name} imports {target} inside a function"
        for name, path in modules.items()
        if not any(name == m or name.startswith(m + ".") for m in LAZY_MODULES)
        for target, lazy in _imports(name, path, modules)
        if lazy and (name, target) not in LAZY
    ]
    assert not hidden, "move these imports to the top of the module (or justify them in LAZY):\n" + "\n".join(hidden)
