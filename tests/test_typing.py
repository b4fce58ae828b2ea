"""The type contract: every public callable of sk_decaf is annotated.

``py.typed`` ships, so users' type checkers read our signatures; mypy (run in CI, settings in
pyproject.toml) checks that the annotations agree with the code, and this test that none is missing.
Public callables are discovered, never listed: the ``__all__`` of ``sk_decaf`` and of every public
module (a subpackage or module whose dotted path has no part starting with ``_``), and of each exported
class its ``__init__``, public methods and properties (and the protocol methods ``__call__``, ``__len__``,
``__getitem__``, ``__iter__``) defined in sk_decaf. Every parameter but ``self``/``cls`` needs an
annotation, and every callable a return annotation. A name that a module loads on first use (PEP 562
``__getattr__``) must also be imported under ``if TYPE_CHECKING:``, or checkers would see it as ``Any``.
"""

import ast
import importlib
import inspect
import pkgutil

import pytest

import sk_decaf

#: Public subpackages whose API is not annotated yet (none: keep it empty).
NOT_YET_ANNOTATED: set[str] = set()

PROTOCOL_METHODS = ("__init__", "__call__", "__len__", "__getitem__", "__iter__")


def _excluded(module_name):
    return any(module_name == m or module_name.startswith(m + ".") for m in NOT_YET_ANNOTATED)


def _public_modules():
    """``sk_decaf`` and every importable public module below it (``__main__`` modules run on import)."""
    modules = [sk_decaf]
    for info in pkgutil.walk_packages(sk_decaf.__path__, "sk_decaf.", onerror=lambda name: None):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts[1:]) or _excluded(info.name):
            continue
        modules.append(importlib.import_module(info.name))
    return modules


def _exported(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", None)]
        names = [n for n in names if getattr(module, n).__module__ == module.__name__]
    return [(f"{module.__name__}.{name}", getattr(module, name)) for name in names]


def _members(qualname, cls):
    """The public methods and properties of ``cls`` defined in sk_decaf (inherited ones included)."""
    seen = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("sk_decaf.") or _excluded(klass.__module__):
            continue
        for name, value in vars(klass).items():
            if name in seen or (name.startswith("_") and name not in PROTOCOL_METHODS):
                continue
            seen.add(name)
            if isinstance(value, property):
                yield f"{qualname}.{name}", value.fget, True
            elif isinstance(value, (staticmethod, classmethod)):
                yield f"{qualname}.{name}", value.__func__, False
            elif inspect.isfunction(value):
                yield f"{qualname}.{name}", value, False


def _public_callables():
    found = {}
    for module in _public_modules():
        for qualname, obj in _exported(module):
            defined_in = getattr(obj, "__module__", "") or ""
            if not defined_in.startswith("sk_decaf") or _excluded(defined_in):
                continue  # a constant, the version string, or a name not yet annotated
            if inspect.isclass(obj):
                qualname = f"{obj.__module__}.{obj.__qualname__}"
                for name, func, is_property in _members(qualname, obj):
                    found[name] = (func, is_property)
            elif callable(obj):
                found[f"{obj.__module__}.{obj.__qualname__}"] = (obj, False)
    return found


PUBLIC_CALLABLES = _public_callables()


def _missing_annotations(func, is_property):
    signature = inspect.signature(func, eval_str=False)  # annotations as written (strings under PEP 563)
    missing = []
    for i, (name, param) in enumerate(signature.parameters.items()):
        if i == 0 and name in ("self", "cls"):
            continue
        if param.annotation is inspect.Parameter.empty:
            missing.append(name)
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def test_discovery_finds_the_public_api():
    names = set(PUBLIC_CALLABLES)
    for expected in (
        "sk_decaf.transformers._decaf.DeCAFTransformer.transform",
        "sk_decaf.transformers._decaf.DeCAFTransformer.__init__",
        "sk_decaf.model_selection._split.PerClassSplit.split",
        "sk_decaf.deploy.runtime.OnnxPipeline.predict",
        "sk_decaf.deploy._export.to_onnx",
        "sk_decaf.datasets._base.CroppedImages.__getitem__",
        "sk_decaf.cli.main",
        "sk_decaf.plotting._plots.plot_tsne",
    ):
        assert expected in names
    assert len(names) > 80


def _statically_bound(source):
    """Names a type checker sees in a module's source: its top-level definitions, imports and assignments,
    with those under ``if TYPE_CHECKING:``."""
    names = set()
    body = list(ast.parse(source).body)
    while body:
        node = body.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            body.extend(node.body)
    return names


@pytest.mark.parametrize("module", _public_modules(), ids=lambda m: m.__name__)
def test_exported_names_are_visible_to_type_checkers(module):
    missing = sorted(set(getattr(module, "__all__", [])) - _statically_bound(inspect.getsource(module)))
    assert not missing, f"{module.__name__} exports names a type checker cannot see: {missing}"


def test_a_lazy_export_without_a_type_checking_import_is_caught():
    lazy = (
        "import importlib\n"
        "__all__ = ['Thing']\n"
        "def __getattr__(name):\n"
        "    return getattr(importlib.import_module('._thing', __name__), name)\n"
    )
    assert "Thing" not in _statically_bound(lazy)
    seen = lazy + "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._thing import Thing as Thing\n"
    assert "Thing" in _statically_bound(seen)
    # The top level loads its names on first use, and shows them to type checkers.
    assert {"DeCAFTransformer", "to_onnx", "CORAL"} <= _statically_bound(inspect.getsource(sk_decaf))


@pytest.mark.parametrize("name", sorted(PUBLIC_CALLABLES))
def test_public_callable_is_annotated(name):
    func, is_property = PUBLIC_CALLABLES[name]
    missing = _missing_annotations(func, is_property)
    assert not missing, f"{name} lacks annotations for: {', '.join(missing)}"
