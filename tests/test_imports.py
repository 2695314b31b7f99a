"""The package's architecture, checked: the op stands alone, ``import sacolor``
stays light, no import cycles, and no library module imports a command line."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Where each top-level name of the installed package lives in the checkout
# (pyproject.toml's package-dir maps kernels/ to sacolor.kernels).
PACKAGE_DIRS = {"sacolor": REPO / "sacolor", "sacolor.kernels": REPO / "kernels"}
# Compiled modules: no source to walk, and they import nothing of the package.
EXTENSIONS = {"sacolor._C"}
OP_PACKAGES = ("sacolor.attention", "sacolor.kernels")
CLI_PACKAGE = "sacolor.cli"


def module_files(package_dirs: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file under each package directory."""
    modules = {}
    for package, folder in package_dirs.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source (function-local imports included).

    ``from pkg import x`` counts as importing ``pkg.x`` when that is a module
    of the package, else as importing ``pkg``.
    """
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            # `import sacolor.models.layers` imports the deepest module the package has.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package_dirs: dict[str, Path] = PACKAGE_DIRS) -> dict[str, set[str]]:
    files = module_files(package_dirs)
    known = set(files) | EXTENSIONS
    return {name: imports_of(name, path, known) - EXTENSIONS for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_walker_finds_a_cycle_and_a_cli_import(tmp_path):
    # A toy package: a -> b -> (function-local) a, and a library module (a) importing the CLI.
    root = tmp_path / "toy"
    (root / "cli").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "cli" / "__init__.py").write_text("")
    (root / "cli" / "main.py").write_text("x = 1\n")
    (root / "a.py").write_text("from . import b\nfrom .cli.main import x\n")
    (root / "b.py").write_text("def f():\n    from .a import run\n")
    graph = import_graph({"toy": root})
    assert cycles(graph) == [["toy.a", "toy.b"]]
    assert "toy.cli.main" in graph["toy.a"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_library_module_imports_the_command_lines():
    offenders = {
        name: sorted(t for t in targets if in_package(t, CLI_PACKAGE))
        for name, targets in import_graph().items()
        if not in_package(name, CLI_PACKAGE)
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_op_imports_nothing_of_the_application():
    graph = import_graph()
    op_modules = [name for name in graph if any(in_package(name, p) for p in OP_PACKAGES)]
    assert "sacolor.attention.ops" in op_modules and "sacolor.kernels.attention_fwd" in op_modules
    outside = {
        name: sorted(t for t in graph[name] if not any(in_package(t, p) for p in OP_PACKAGES))
        for name in op_modules
    }
    assert {name: found for name, found in outside.items() if found} == {}


LOADED = """
import json, sys
import sacolor
before = sorted(m for m in sys.modules if m.startswith("sacolor"))
heavy = sorted(m for m in ("PIL", "safetensors", "av", "skimage", "yaml") if m in sys.modules)
sacolor.colorize  # the lazy attribute: loads the application, runs nothing
after = "sacolor.inference.photo" in sys.modules
print(json.dumps({"before": before, "heavy": heavy, "after": after}))
"""


def test_import_sacolor_loads_only_the_op():
    # A fresh interpreter: this test process has imported the application already.
    result = subprocess.run([sys.executable, "-c", LOADED], capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout)
    assert loaded["before"], "import sacolor loaded nothing?"
    assert [m for m in loaded["before"] if m != "sacolor" and not any(in_package(m, p) for p in OP_PACKAGES)] == []
    assert loaded["heavy"] == []
    assert loaded["after"]


@pytest.mark.parametrize("name", ["SelfAttention", "self_attention", "explain", "available_backends", "colorize"])
def test_the_public_names_stay(name):
    import sacolor

    assert callable(getattr(sacolor, name))
    assert name in dir(sacolor)
