"""No module of `keras_tips` or `training` imports one that imports it back.

Every `.py` file under the two packages is parsed with `ast` and ALL its
imports are collected, module-level and function-level alike (a lazy import
still makes the two modules depend on each other; it only hides the cycle
until run time). The import graph between the packages' own modules must
then be acyclic.

How an import becomes an edge:
- `import a.b.c` and `from a.b.c import name` depend on `a.b.c`;
  `from a.b import c`, where `a.b.c` is a module, depends on `a.b.c`.
  Relative imports are resolved against the importing module's package.
- Importing `a.b.c` also runs the `__init__` of `a` and `a.b`; those
  implicit parent imports are not edges. Every submodule of a package
  triggers its package's `__init__`, and a package's `__init__` imports
  its submodules to re-export them: counting both would make every
  re-export a cycle, which is how Python packages work, not a design loop.
- An explicit import of a package (`import keras_tips`,
  `from keras_tips import TIPSBackbone`, `from keras_tips.tasks import
  TIPSZeroShotClassifier`) depends on that package's `__init__`. So a
  submodule that imports its own package for a re-exported name forms a
  cycle exactly when that `__init__` imports the submodule back, directly
  or through other modules.
"""

import ast

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.backend_independent

PACKAGES = ("keras_tips", "training")


def _module_name(path):
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules():
    """`{module name: path}` of every module of the checked packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


def _imported_modules(node, module, is_package, modules):
    """The package modules one `import` / `from ... import` node names."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        if node.level:
            package = module.split(".")
            if not is_package:
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module
        targets = []
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            targets.append(submodule if submodule in modules else base)
    found = set()
    for target in targets:
        # `import a.b.c` where only `a.b` is ours (c a name): the longest
        # prefix that is a module of the packages.
        parts = target.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        if parts:
            found.add(".".join(parts))
    return found


def import_graph():
    """`{module: set of package modules it imports}`, lazy imports included."""
    modules = package_modules()
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _imported_modules(node, module, is_package, modules)
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycle(graph):
    """One import cycle as a list `[a, b, ..., a]`, or `None`."""
    state = {}  # 1: on the current path, 2: finished
    path = []

    def visit(module):
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                return path[path.index(imported):] + [imported]
            if imported not in state:
                cycle = visit(imported)
                if cycle:
                    return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_the_packages_import_graph_has_no_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_sees_lazy_relative_and_package_imports():
    graph = import_graph()
    # A function-level import in one module of the checked packages.
    assert any(
        isinstance(node, (ast.Import, ast.ImportFrom))
        for path in package_modules().values()
        for function in ast.walk(ast.parse(path.read_text()))
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
    )
    # The package re-exports count as edges of its `__init__`.
    assert "keras_tips.backbone" in graph["keras_tips"]
    assert "keras_tips.tasks" in graph["keras_tips"]


def test_find_cycle_reports_the_loop():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_lazy_and_relative_imports_are_edges():
    modules = {"pkg": None, "pkg.a": None, "pkg.b": None, "pkg.sub": None,
               "pkg.sub.c": None}
    tree = ast.parse(
        "def f():\n"
        "    from . import b\n"
        "    from .sub.c import name\n"
        "    import pkg.sub\n"
        "    from pkg import exported_name\n"
    )
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= _imported_modules(node, "pkg.a", False, modules)
    assert found == {"pkg.b", "pkg.sub.c", "pkg.sub", "pkg"}
