import pickle
from functools import partial

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from scipy import linalg
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sk_decaf import GeodesicFlowKernel
from sk_decaf.domain import _gfk
from sk_decaf.domain._gfk import _gfk_factor, _gfk_factor_from_svd
from tests.domain.conftest import rotated_domains

_two_domains = partial(rotated_domains, n_source=40, n_target=30, n_features=10)


def _geodesic_integral(Ps, Pt, n_nodes=40):
    """int_0^1 Phi(t) Phi(t)^T dt by Gauss-Legendre quadrature.

    Independent of the closed form: the geodesic from span(Ps) to span(Pt)
    (Edelman, Arias and Smith 1998) is Y(t) = Ps V cos(T t) + U sin(T t) with
    U tan(T) V^T the thin SVD of (I - Ps Ps^T) Pt (Ps^T Pt)^-1, and
    Phi(t) Phi(t)^T = Y(t) Y(t)^T is the projection on the subspace at t.
    """
    n_features = Ps.shape[0]
    tangent = (np.eye(n_features) - Ps @ Ps.T) @ Pt @ np.linalg.inv(Ps.T @ Pt)
    U, tan_theta, Vt = np.linalg.svd(tangent, full_matrices=False)
    theta = np.arctan(tan_theta)
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    G = np.zeros((n_features, n_features))
    for t, w in zip((nodes + 1) / 2, weights / 2):
        Y = Ps @ Vt.T * np.cos(theta * t) + U * np.sin(theta * t)
        G += w * Y @ Y.T
    return G


def _paper_closed_form(Ps, Pt):
    """Gong et al. 2012 eq. 6 with an explicit complement Rs (times 1/2)."""
    Rs = linalg.null_space(Ps.T)
    U1, cos_theta, Vt = np.linalg.svd(Ps.T @ Pt)
    theta = np.arccos(np.clip(cos_theta, -1, 1))
    U2 = -(Rs.T @ Pt @ Vt.T) / np.sin(theta)  # Rs^T Pt = -U2 Sigma V^T
    lam1 = 0.5 * (1 + np.sin(2 * theta) / (2 * theta))
    lam2 = 0.5 * (np.cos(2 * theta) - 1) / (2 * theta)
    lam3 = 0.5 * (1 - np.sin(2 * theta) / (2 * theta))
    Omega = np.hstack([Ps @ U1, Rs @ U2])
    Lam = np.block([[np.diag(lam1), np.diag(lam2)], [np.diag(lam2), np.diag(lam3)]])
    return Omega @ Lam @ Omega.T


def _random_bases(n_features, d, seed):
    rng = np.random.RandomState(seed)
    return (linalg.orth(rng.normal(size=(n_features, d))) for _ in range(2))


@pytest.mark.parametrize("n_features, d", [(12, 3), (10, 5), (6, 4), (30, 1)])
def test_kernel_matches_geodesic_integral_and_closed_form(n_features, d):
    # (6, 4) has d > n_features / 2, where the paper's Rs has fewer than d
    # columns: the factorisation does not need it.
    Ps, Pt = _random_bases(n_features, d, seed=n_features + d)
    L, theta = _gfk_factor(Ps, Pt)
    G = L @ L.T
    assert L.shape == (n_features, 2 * d)
    # Tolerances leave room for other BLAS / CPUs (values are O(1), float64).
    assert_allclose(G, _geodesic_integral(Ps, Pt), atol=1e-10)
    if 2 * d <= n_features:
        assert_allclose(G, _paper_closed_form(Ps, Pt), atol=1e-10)
    # The angles' cosines are the singular values of Ps^T Pt, their sines those of (I - Ps Ps^T) Pt.
    # Compared through cos and sin (well conditioned), not arccos: with d > n_features / 2,
    # 2d - n_features angles are exactly 0, whose cosines come out of the SVD as 1 +- a few eps, and
    # arccos(1 - k eps) = sqrt(2 k eps) amplifies that rounding to 1e-8.
    assert_allclose(np.cos(theta), linalg.svdvals(Ps.T @ Pt), rtol=0, atol=1e-12)
    sines = linalg.svdvals(Pt - Ps @ (Ps.T @ Pt))[::-1]
    assert_allclose(np.sin(theta), sines, rtol=0, atol=1e-12)
    assert (np.diff(theta) >= -1e-12).all()  # ascending, up to the rounding of equal angles
    assert_allclose(G, G.T, atol=1e-12)
    assert np.linalg.eigvalsh(G).min() > -1e-10
    # int cos^2 + int sin^2 = 1 for every angle: trace(G) = d.
    assert_allclose(np.trace(G), d, rtol=1e-10)


@pytest.mark.parametrize("n_features, d", [(9, 3), (6, 4)])
def test_cosines_just_above_one_give_zero_angles(n_features, d, monkeypatch):
    # Subspaces equal up to rounding: the SVD of Ps^T Pt may return cosines slightly above 1 (whether
    # it does depends on the LAPACK), where a plain arccos gives NaN. The factor is given such cosines
    # here, so that the case exists on every machine; it must stay finite and give the projection.
    Ps, _ = _random_bases(n_features, d, seed=3)
    rotation = np.linalg.qr(np.random.RandomState(4).normal(size=(d, d)))[0]
    Pt = Ps @ rotation
    U, cosines, Vt = linalg.svd(Ps.T @ Pt)
    assert_allclose(cosines, 1.0, rtol=0, atol=1e-12)
    above_one = 1 + np.arange(1, d + 1) * 2 * np.finfo(float).eps  # 1 + 2 eps, 1 + 4 eps, ...
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.arccos(above_one)).all()
    L, theta = _gfk_factor_from_svd(Ps, Pt, U, above_one, Vt)
    assert np.isfinite(L).all() and np.isfinite(theta).all()
    assert_allclose(theta, 0.0, atol=1e-7)
    assert_allclose(L @ L.T, Ps @ Ps.T, atol=1e-10)

    # The same through the estimator (two domains with the same rows), its SVD returning cosines above 1.
    seen = []

    def factor_with_cosines_above_one(basis_source, basis_target):
        U, cosines, Vt = linalg.svd(basis_source.T @ basis_target)
        cosines = np.maximum(cosines, 1.0) + 4 * np.finfo(float).eps
        seen.append(cosines)
        return _gfk_factor_from_svd(basis_source, basis_target, U, cosines, Vt)

    monkeypatch.setattr(_gfk, "_gfk_factor", factor_with_cosines_above_one)
    X = np.random.RandomState(5).normal(size=(20, n_features))
    domain = ["amazon"] * 20 + ["webcam"] * 20
    gfk = GeodesicFlowKernel(d, target_domain="webcam").fit(np.vstack([X, X]), sample_domain=domain)
    assert len(seen) == 1 and (seen[0] > 1).all()
    assert np.isfinite(gfk.projection_).all()
    assert_allclose(gfk.principal_angles_, 0.0, atol=1e-7)
    Pt = gfk.components_target_.T
    assert_allclose(gfk.projection_ @ gfk.projection_.T, Pt @ Pt.T, atol=1e-10)


def test_identical_subspaces_give_the_projection():
    Ps, _ = _random_bases(9, 3, seed=0)
    L, theta = _gfk_factor(Ps, Ps)
    assert_allclose(theta, 0.0, atol=1e-7)
    assert_allclose(L @ L.T, Ps @ Ps.T, atol=1e-12)
    # Same subspace, another basis of it: still the projection.
    rotation = np.linalg.qr(np.random.RandomState(1).normal(size=(3, 3)))[0]
    L, _ = _gfk_factor(Ps, Ps @ rotation)
    assert_allclose(L @ L.T, Ps @ Ps.T, atol=1e-12)
    # Nearly identical subspaces (angle 1e-7): continuous, no cancellation.
    Pt = linalg.orth(Ps + 1e-7 * np.random.RandomState(2).normal(size=Ps.shape))
    L, _ = _gfk_factor(Ps, Pt)
    assert_allclose(L @ L.T, _geodesic_integral(Ps, Pt), atol=1e-10)


def test_transform_gives_the_kernel_inner_product():
    X, domain = _two_domains()
    gfk = GeodesicFlowKernel(3, target_domain="webcam").fit(X, sample_domain=domain)
    Ps, Pt = gfk.components_source_.T, gfk.components_target_.T
    G = _geodesic_integral(Ps, Pt)
    Z = gfk.transform(X, sample_domain=domain)
    assert Z.shape == (70, 6)
    assert_allclose(Z @ Z.T, X @ G @ X.T, rtol=1e-10, atol=1e-9)
    # The bases are those of each domain's PCA.
    assert_allclose(np.abs(Ps.T @ Ps), np.eye(3), atol=1e-12)
    Xc = X[:40] - X[:40].mean(axis=0)
    top = np.linalg.svd(Xc, full_matrices=False)[2][:3].T
    assert_allclose(np.abs(top.T @ Ps), np.eye(3), atol=1e-10)


def test_center_uses_each_domain_mean():
    X, domain = _two_domains()
    gfk = GeodesicFlowKernel(2, target_domain="webcam", center=True)
    Z = gfk.fit_transform(X, sample_domain=domain)
    L = gfk.projection_
    assert_allclose(Z[:40], (X[:40] - X[:40].mean(axis=0)) @ L, atol=1e-10)
    assert_allclose(Z[40:], (X[40:] - X[40:].mean(axis=0)) @ L, atol=1e-10)
    uncentred = GeodesicFlowKernel(2, target_domain="webcam").fit(X, sample_domain=domain)
    assert_allclose(uncentred.transform(X), X @ L, atol=1e-10)


def test_without_domain_is_projection_on_target_pca():
    X, _ = _two_domains()
    gfk = GeodesicFlowKernel(3).fit(X)
    Pt = gfk.components_target_.T
    assert_allclose(gfk.principal_angles_, 0.0, atol=1e-7)
    # First block: an orthonormal basis of span(Pt) (the SVD of Pt^T Pt = I
    # may rotate it); second block: zero. So G = Pt Pt^T and Z Z^T = X G X^T.
    first = gfk.projection_[:, :3]
    assert_allclose(first.T @ first, np.eye(3), atol=1e-12)
    assert_allclose(first @ first.T, Pt @ Pt.T, atol=1e-12)
    assert_allclose(gfk.projection_[:, 3:], 0.0, atol=1e-12)


def test_errors_and_defaults():
    X, domain = _two_domains(n_source=40, n_target=4)
    gfk = GeodesicFlowKernel(target_domain="webcam").fit(X, sample_domain=domain)
    assert gfk.n_components_ == 4  # min(40 source, 4 target, 10 features)
    with pytest.raises(ValueError, match="n_components=5 must be"):
        GeodesicFlowKernel(5, target_domain="webcam").fit(X, sample_domain=domain)
    with pytest.raises(ValueError, match="Unknown domain label"):
        gfk.transform(X[:1], sample_domain=["dslr"])
    with pytest.raises(NotFittedError):
        GeodesicFlowKernel().transform(X)


def test_float32_pandas_pickle_clone():
    pd = pytest.importorskip("pandas")
    X, domain = _two_domains()
    gfk = GeodesicFlowKernel(2, target_domain="webcam")
    out32 = gfk.fit_transform(X.astype(np.float32), sample_domain=domain)
    assert out32.dtype == np.float32
    out64 = clone(gfk).fit_transform(X, sample_domain=domain)
    assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)
    names = [f"geodesicflowkernel{i}" for i in range(4)]
    assert list(gfk.get_feature_names_out()) == names
    restored = pickle.loads(pickle.dumps(gfk))
    X32 = X.astype(np.float32)
    assert_array_equal(restored.transform(X32), gfk.transform(X32))
    df = clone(gfk).set_output(transform="pandas").fit_transform(pd.DataFrame(X), sample_domain=domain)
    assert list(df.columns) == names
    assert_allclose(df.to_numpy(), out64)


def test_metadata_routing_in_pipeline():
    X, domain = _two_domains()
    y = (np.arange(len(X)) % 2).astype(int)
    with sklearn.config_context(enable_metadata_routing=True):
        gfk = GeodesicFlowKernel(3, target_domain="webcam", center=True)  # requested by default
        pipe = make_pipeline(gfk, LogisticRegression()).fit(X, y, sample_domain=domain)
        reference = GeodesicFlowKernel(3, target_domain="webcam", center=True)
        Z = reference.fit_transform(X, sample_domain=domain)
        by_hand = LogisticRegression().fit(Z, y)
        assert_allclose(pipe.decision_function(X, sample_domain=domain), by_hand.decision_function(Z))
        assert_allclose(pipe.decision_function(X[:5]), by_hand.decision_function(reference.transform(X[:5])))


def test_transductive_use_with_frozen_estimator():
    # Unsupervised DA: learn the subspaces from all (unlabelled) target rows,
    # then train the classifier on the labelled rows only, without refitting.
    from sklearn.frozen import FrozenEstimator

    X, domain = _two_domains()
    y = (np.arange(len(X)) % 2).astype(int)
    labelled = np.r_[0:40, 40:46]
    with sklearn.config_context(enable_metadata_routing=True):
        gfk = GeodesicFlowKernel(3, target_domain="webcam").fit(X, sample_domain=domain)
        # FrozenEstimator reads the requests of the instance only, not class-level defaults.
        gfk.set_fit_request(sample_domain=True).set_transform_request(sample_domain=True)
        pipe = make_pipeline(FrozenEstimator(gfk), LogisticRegression())
        pipe.fit(X[labelled], y[labelled], sample_domain=domain[labelled])
    assert_array_equal(pipe[0].estimator.projection_, gfk.projection_)
    by_hand = LogisticRegression().fit(gfk.transform(X[labelled]), y[labelled])
    expected = by_hand.decision_function(gfk.transform(X[46:]))
    assert_allclose(pipe.decision_function(X[46:]), expected)
