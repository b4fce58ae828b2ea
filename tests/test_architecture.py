"""The house rules, checked on the source: imports run one way, one home per concern.

Read statically (``ast``), so a rule holds for imports inside function bodies too:

* no import cycle between modules of the package, and no module imports the top-level package's re-exports;
* no module reaches into another public subpackage's private names or modules (``datasets._base``,
  ``parallel._worker``); the internal packages shared on purpose are listed in :data:`SHARED`;
* only the image reader (``sk_decaf/_images``) and the deploy runtime's own copy open image files;
* only ``sk_decaf/_sklearn_compat.py`` imports scikit-learn's private names;
* the reader, the deploy runtime and ``_torch`` keep to their side: no torch in the first two, no
  scikit-learn in ``_torch``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sk_decaf"

#: Internal modules and packages every subpackage may use (they have no public counterpart).
SHARED = {"_torch", "_cache", "_progress", "_images", "_sklearn_compat", "_docstrings", "_version"}


def _modules():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name, path):
    """``[(imported module, imported attribute or None, line)]`` of a module, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                out.append((full, None, node.lineno) if full in MODULES else (module, alias.name, node.lineno))
    return out


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _internal_graph():
    graph = {}
    for name, imports in IMPORTS.items():
        if MODULES[name].name == "__init__.py":
            continue  # a package re-exporting its own modules is not a dependency of them
        targets = set()
        for module, _, _ in imports:
            while module and module not in MODULES:
                module = module.rsplit(".", 1)[0] if "." in module else ""
            if module and module != name and MODULES[module].name != "__init__.py":
                targets.add(module)
        graph[name] = targets
    return graph


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def _subpackage(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_modules_are_found():
    assert {"sk_decaf._images._decode", "sk_decaf.transformers._decaf", "sk_decaf.deploy.runtime"} <= set(MODULES)


def test_no_import_cycles():
    assert _cycles(_internal_graph()) == []


def test_no_reach_into_another_subpackage_s_private_names():
    found = []
    for name, imports in IMPORTS.items():
        for module, attr, line in imports:
            if not module.startswith("sk_decaf.") or _subpackage(module) in SHARED | {_subpackage(name)}:
                continue
            private_module = any(part.startswith("_") for part in module.split(".")[2:])
            private_name = attr is not None and attr.startswith("_") and not attr.startswith("__")
            if private_module or private_name:
                found.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {module}.{attr or ''}")
    assert found == []


def test_no_module_imports_the_top_level_package():
    """``sk_decaf`` re-exports the subpackages' names; a module importing them back through it closes a cycle."""
    found = [
        f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {attr} from sk_decaf"
        for name, imports in IMPORTS.items()
        if name != "sk_decaf"
        for module, attr, line in imports
        if module == "sk_decaf" and attr is not None
    ]
    assert found == []


def test_only_the_reader_and_the_runtime_open_images():
    openers = {name for name, path in MODULES.items() if "Image.open(" in path.read_text()}
    assert openers == {"sk_decaf._images._decode", "sk_decaf.deploy.runtime"}


def test_scikit_learn_private_names_are_imported_in_one_module():
    found = []
    for name, imports in IMPORTS.items():
        for module, attr, line in imports:
            if module.split(".")[0] != "sklearn" or name == "sk_decaf._sklearn_compat":
                continue
            if any(part.startswith("_") for part in module.split(".")) or (attr or "x").startswith("_"):
                found.append(f"{name}:{line} {module} {attr}")
    assert found == []


@pytest.mark.parametrize(
    "prefix, forbidden",
    [
        ("sk_decaf._images", {"torch", "torchvision", "timm", "sklearn"}),
        ("sk_decaf.deploy.runtime", {"torch", "torchvision", "timm", "sklearn", "sk_decaf"}),
        ("sk_decaf._torch", {"sklearn", "skorch"}),
    ],
)
def test_layers_keep_to_their_side(prefix, forbidden):
    found = []
    for name, imports in IMPORTS.items():
        if name != prefix and not name.startswith(prefix + "."):
            continue
        for module, _, line in imports:
            top = module.split(".")[0]
            inside = module == prefix or module.startswith(prefix + ".")
            if top in forbidden and not (top == "sk_decaf" and inside):
                found.append(f"{name}:{line} imports {module}")
    assert found == []
