"""The family's template: BaseDomainTransformer's fit/transform around one hook per member."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import OneToOneFeatureMixin

from sk_decaf import domain
from sk_decaf.domain import (
    CORAL,
    BaseDomainTransformer,
    DomainAugment,
    GeodesicFlowKernel,
    NoAdaptation,
    SubspaceAlignment,
    check_domain_transformer,
)
from sk_decaf.domain._checks import _data

MEMBERS = [CORAL, DomainAugment, GeodesicFlowKernel, NoAdaptation, SubspaceAlignment]


class MeanShift(OneToOneFeatureMixin, BaseDomainTransformer):
    """Source rows moved by the difference of the domain means: a member written with the hooks only."""

    def __init__(self, target_domain=None):
        self.target_domain = target_domain

    def _fit_rows(self, X, labels, is_target):
        self._split_source_target(X, is_target)

    def _transform_rows(self, X, labels, is_target):
        X_new = np.array(X, copy=True)
        X_new[~is_target] += (self.mean_target_ - self.mean_source_).astype(X.dtype)
        return X_new


def test_a_member_with_only_the_hooks_keeps_the_contract():
    check_domain_transformer(MeanShift())
    X, _, d = _data()
    Z = MeanShift("webcam").fit_transform(X, sample_domain=d)
    assert_allclose(Z[d == "amazon"].mean(axis=0), X[d == "webcam"].mean(axis=0), rtol=1e-10, atol=1e-10)
    assert_array_equal(Z[d == "webcam"], X[d == "webcam"])


def test_a_member_without_transform_rows_says_so():
    class Incomplete(BaseDomainTransformer):
        def __init__(self, target_domain=None):
            self.target_domain = target_domain

    X, _, d = _data()
    est = Incomplete("webcam").fit(X, sample_domain=d)
    assert est.domains_.tolist() == ["amazon", "webcam"]
    with pytest.raises(NotImplementedError, match="Incomplete must implement _transform_rows"):
        est.transform(X, sample_domain=d)


@pytest.mark.parametrize("cls", MEMBERS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("method", ["fit", "transform", "fit_transform"])
def test_deprecated_domain_keyword_warns_once_at_the_callers_line(cls, method):
    X, _, d = _data()
    est = cls(target_domain="webcam")
    if method == "transform":
        est.fit(X, sample_domain=d)
    with pytest.warns(FutureWarning, match="`domain` was renamed `sample_domain`") as record:
        getattr(est, method)(X, domain=d)
    assert [w.filename for w in record if issubclass(w.category, FutureWarning)] == [__file__]
    with pytest.raises(TypeError, match="Pass the domain labels once"):
        getattr(est, method)(X, sample_domain=d, domain=d)


def test_subspace_members_share_the_bases():
    X, _, d = _data()
    sa = SubspaceAlignment(3, target_domain="webcam").fit(X, sample_domain=d)
    gfk = GeodesicFlowKernel(3, target_domain="webcam").fit(X, sample_domain=d)
    for name in ("components_source_", "components_target_", "mean_source_", "mean_target_", "n_components_"):
        assert_array_equal(getattr(sa, name), getattr(gfk, name))
    # Orthonormal bases of each domain's principal axes, centred on each domain's mean.
    assert_allclose(sa.components_target_ @ sa.components_target_.T, np.eye(3), atol=1e-12)
    assert_allclose(sa.mean_source_, X[d == "amazon"].mean(axis=0), rtol=1e-12)
    assert_allclose(sa.alignment_, sa.components_source_ @ sa.components_target_.T, rtol=1e-12)


@pytest.mark.parametrize("cls", MEMBERS, ids=lambda cls: cls.__name__)
def test_docstrings_have_the_shared_text(cls):
    docs = [cls.__doc__] + [getattr(cls, m).__doc__ for m in ("fit", "transform", "fit_transform")]
    assert not [doc for doc in docs if "%(" in doc]
    for text in ("target_domain : str, int or None", "domains_ : ndarray", "n_features_in_ : int"):
        assert text in cls.__doc__
    assert cls.__doc__.count("Parameters\n    ----------") == 1
    assert set(domain.__all__) >= {cls.__name__}
