"""The domain-transformer contract (sk_decaf.domain._checks) run over every member of the family."""

import inspect

import numpy as np
import pytest
from sklearn.utils.metadata_routing import UNUSED

from sk_decaf import domain
from sk_decaf.domain import BaseDomainTransformer, check_domain_transformer, yield_domain_transformer_checks

# Small settings per class; subspace methods get d < n_features so that the principal angles are
# distinct and the output is defined up to nothing (with d = n_features every angle is 0).
SETTINGS = {"SubspaceAlignment": {"n_components": 3}, "GeodesicFlowKernel": {"n_components": 3}}


def _members():
    classes = [getattr(domain, name) for name in domain.__all__]
    return [
        cls(**SETTINGS.get(cls.__name__, {}))
        for cls in classes
        if inspect.isclass(cls) and issubclass(cls, BaseDomainTransformer) and cls is not BaseDomainTransformer
    ]


def test_every_member_is_found():
    # Where they are exported from (and the deprecated sk_decaf.transformers path): test_imports.py.
    names = {type(est).__name__ for est in _members()}
    assert names == {"DomainAugment", "CORAL", "SubspaceAlignment", "GeodesicFlowKernel", "NoAdaptation"}


@pytest.mark.parametrize(
    "estimator, check",
    [(est, check) for est in _members() for check in yield_domain_transformer_checks(est)],
    ids=lambda obj: type(obj).__name__ if isinstance(obj, BaseDomainTransformer) else obj.__name__,
)
def test_domain_transformer_contract(estimator, check):
    check(type(estimator).__name__, estimator)


class NotRequested(domain.CORAL):
    """A member that forgot the class-level request: routing would drop its labels."""

    __metadata_request__fit = {"sample_domain": UNUSED}
    __metadata_request__transform = {"sample_domain": UNUSED}


class DropsLabels(domain.CORAL):
    """A member whose fit_transform loses the labels (scikit-learn's default behaviour)."""

    def fit_transform(self, X, y=None, *, sample_domain=None, domain=None):
        return self.fit(X, y, sample_domain=sample_domain).transform(X)


class IgnoresUnlabelled(domain.DomainAugment):
    """A member that gives unlabelled rows the first (source) block instead of the target's."""

    def transform(self, X, *, sample_domain=None, domain=None):
        if sample_domain is None:
            sample_domain = np.full(len(X), self.domains_[0], dtype=object)
        return super().transform(X, sample_domain=sample_domain)


@pytest.mark.parametrize(
    "broken, match",
    [
        (NotRequested(), "does not request sample_domain"),
        (DropsLabels(), "Not equal"),
        (IgnoresUnlabelled(), "Not equal"),
    ],
    ids=["not-requested", "drops-labels", "ignores-unlabelled"],
)
def test_checks_catch_broken_members(broken, match):
    # NotRequested cannot even be built by some checks; the first failing check is enough.
    with pytest.raises((AssertionError, ValueError, TypeError), match=match):
        check_domain_transformer(broken)
