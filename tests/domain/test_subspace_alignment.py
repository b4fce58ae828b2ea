import pickle
from functools import partial

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sk_decaf import SubspaceAlignment
from tests.domain.conftest import rotated_domains

_two_domains = partial(rotated_domains, n_source=50, n_target=30, n_features=8)


def _pca_basis(X, d):
    """Principal axes from numpy's SVD of the centred data (columns)."""
    Xc = X - X.mean(axis=0)
    return np.linalg.svd(Xc, full_matrices=False)[2][:d].T


@pytest.mark.parametrize("d", [1, 3, 8])
def test_matches_algorithm_1(d):
    X, domain = _two_domains()
    sa = SubspaceAlignment(d, target_domain="webcam")
    Z = sa.fit_transform(X, sample_domain=domain)
    Ps, Pt = _pca_basis(X[:50], d), _pca_basis(X[50:], d)
    # Fernando et al.: X_a = Ps Ps^T Pt; source -> S X_a, target -> T Pt.
    expected_source = (X[:50] - X[:50].mean(axis=0)) @ Ps @ Ps.T @ Pt
    expected_target = (X[50:] - X[50:].mean(axis=0)) @ Pt
    # The SVD fixes each axis up to its sign; both outputs are expressed in
    # the target axes, so one sign per column: compare Gram matrices.
    expected = np.vstack([expected_source, expected_target])
    assert_allclose(Z @ Z.T, expected @ expected.T, atol=1e-9)
    # And with sklearn's PCA (same sign convention) column by column.
    pca_s = PCA(d, svd_solver="full").fit(X[:50])
    pca_t = PCA(d, svd_solver="full").fit(X[50:])
    M = pca_s.components_ @ pca_t.components_.T
    assert_allclose(sa.alignment_, M, atol=1e-12)
    assert_allclose(Z[:50], pca_s.transform(X[:50]) @ M, atol=1e-10)
    assert_allclose(Z[50:], pca_t.transform(X[50:]), atol=1e-10)


def test_alignment_minimises_frobenius_distance():
    X, domain = _two_domains()
    sa = SubspaceAlignment(3, target_domain="webcam").fit(X, sample_domain=domain)
    Ps, Pt = sa.components_source_.T, sa.components_target_.T
    assert_allclose(Ps.T @ Ps, np.eye(3), atol=1e-12)
    assert_allclose(Pt.T @ Pt, np.eye(3), atol=1e-12)
    least_squares = np.linalg.lstsq(Ps, Pt, rcond=None)[0]
    assert_allclose(sa.alignment_, least_squares, atol=1e-12)
    best = np.linalg.norm(Ps @ sa.alignment_ - Pt)
    rng = np.random.RandomState(1)
    for _ in range(5):
        other = sa.alignment_ + 0.01 * rng.normal(size=(3, 3))
        assert np.linalg.norm(Ps @ other - Pt) > best


def test_same_data_in_both_domains_gives_identity_alignment():
    X, _ = _two_domains()
    X_twice = np.vstack([X, X])
    domain = ["amazon"] * len(X) + ["webcam"] * len(X)
    sa = SubspaceAlignment(4, target_domain="webcam")
    Z = sa.fit_transform(X_twice, sample_domain=domain)
    assert_allclose(sa.alignment_, np.eye(4), atol=1e-12)
    assert_allclose(Z[: len(X)], Z[len(X) :], atol=1e-12)


def test_without_domain_is_target_pca():
    X, _ = _two_domains()
    sa = SubspaceAlignment(3).fit(X)
    assert_allclose(sa.alignment_, np.eye(3), atol=1e-12)
    assert list(sa.domains_) == [-1]
    assert_allclose(sa.transform(X), PCA(3, svd_solver="full").fit_transform(X), atol=1e-10)


def test_default_and_too_many_components():
    X, domain = _two_domains(n_source=50, n_target=6, n_features=8)
    sa = SubspaceAlignment(target_domain="webcam").fit(X, sample_domain=domain)
    assert sa.n_components_ == 6  # min(50 source, 6 target, 8 features)
    assert sa.transform(X).shape == (56, 6)
    with pytest.raises(ValueError, match=r"n_components=7 must be <= .* = 6"):
        SubspaceAlignment(7, target_domain="webcam").fit(X, sample_domain=domain)
    with pytest.raises(ValueError, match="No target sample in fit"):
        SubspaceAlignment(2, target_domain="dslr").fit(X, sample_domain=domain)
    with pytest.raises(NotFittedError):
        SubspaceAlignment().transform(X)


def test_unknown_domain_at_transform():
    X, domain = _two_domains()
    sa = SubspaceAlignment(2, target_domain="webcam").fit(X, sample_domain=domain)
    with pytest.raises(ValueError, match="Unknown domain label.*'dslr'"):
        sa.transform(X[:2], sample_domain=["dslr", "amazon"])


def test_float32_pandas_and_feature_names():
    pd = pytest.importorskip("pandas")
    X, domain = _two_domains()
    sa = SubspaceAlignment(2, target_domain="webcam")
    out32 = sa.fit_transform(X.astype(np.float32), sample_domain=domain)
    assert out32.dtype == np.float32
    out64 = clone(sa).fit_transform(X, sample_domain=domain)
    assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)
    assert list(sa.get_feature_names_out()) == ["subspacealignment0", "subspacealignment1"]
    sa.set_output(transform="pandas")
    df = sa.fit_transform(pd.DataFrame(X), sample_domain=domain)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["subspacealignment0", "subspacealignment1"]


def test_pickle_and_clone():
    X, domain = _two_domains()
    sa = SubspaceAlignment(3, target_domain="webcam").fit(X, sample_domain=domain)
    restored = pickle.loads(pickle.dumps(sa))
    assert_array_equal(restored.transform(X, sample_domain=domain), sa.transform(X, sample_domain=domain))
    fresh = clone(sa)
    assert fresh.get_params() == sa.get_params()
    assert not hasattr(fresh, "alignment_")


def test_metadata_routing_in_pipeline():
    X, domain = _two_domains()
    y = (np.arange(len(X)) % 2).astype(int)
    with sklearn.config_context(enable_metadata_routing=True):
        sa = SubspaceAlignment(3, target_domain="webcam")  # sample_domain requested by default
        pipe = make_pipeline(sa, LogisticRegression()).fit(X, y, sample_domain=domain)
        reference = SubspaceAlignment(3, target_domain="webcam")
        Z = reference.fit_transform(X, sample_domain=domain)
        by_hand = LogisticRegression().fit(Z, y)
        assert_allclose(pipe.decision_function(X, sample_domain=domain), by_hand.decision_function(Z))
        # No domain at predict time: target rows, projected on the target basis.
        assert_allclose(
            pipe.decision_function(X[:50]),
            by_hand.decision_function(reference.transform(X[:50])),
        )
