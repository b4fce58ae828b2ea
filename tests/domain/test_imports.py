"""Where the domain classes are imported from: sk_decaf.domain and the top level; the old path warns."""

import importlib
import pkgutil
import warnings

import pytest

import sk_decaf
import sk_decaf.transformers
from sk_decaf import domain

MEMBERS = ["CORAL", "DomainAugment", "GeodesicFlowKernel", "NoAdaptation", "SubspaceAlignment"]
#: Importable from sk_decaf.transformers before the move, for one more release.
MOVED = ["CORAL", "DomainAugment", "GeodesicFlowKernel", "SubspaceAlignment"]


@pytest.mark.parametrize("name", MEMBERS)
def test_members_are_exported_by_domain_and_the_top_level(name):
    assert name in domain.__all__ and name in sk_decaf.__all__
    assert getattr(sk_decaf, name) is getattr(domain, name)


@pytest.mark.parametrize("name", MOVED)
def test_old_import_path_warns_and_gives_the_same_class(name):
    namespace = {}
    with pytest.warns(FutureWarning, match=rf"{name} from sk_decaf.transformers is deprecated.*sk_decaf\.domain"):
        exec(f"from sk_decaf.transformers import {name}", namespace)
    assert namespace[name] is getattr(domain, name)


def test_old_import_path_warning_points_at_the_importing_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sk_decaf.transformers.CORAL  # noqa: B018 - the attribute access is what warns
    assert [(w.category, w.filename) for w in caught] == [(FutureWarning, __file__)]


def test_no_new_name_on_the_old_path():
    # NoAdaptation came after the move: it never had a home in sk_decaf.transformers.
    assert not set(MEMBERS) & set(sk_decaf.transformers.__all__)
    with pytest.raises(ImportError):
        exec("from sk_decaf.transformers import NoAdaptation", {})


def test_no_other_subpackage_exports_a_domain_class():
    checked = []
    for info in pkgutil.iter_modules(sk_decaf.__path__):
        if info.name.startswith("_") or info.name == "domain":
            continue
        try:
            module = importlib.import_module(f"sk_decaf.{info.name}")
        except ImportError:  # a subpackage whose optional dependency is not installed
            continue
        assert not set(MEMBERS) & set(getattr(module, "__all__", ())), info.name
        checked.append(info.name)
    assert "transformers" in checked
