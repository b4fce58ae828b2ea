import pickle

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from scipy import linalg
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sk_decaf import CORAL


def _two_domains(n_source=60, n_target=40, n_features=6, seed=0):
    """Source and target with different means and correlated covariances."""
    rng = np.random.RandomState(seed)
    mix_s = rng.normal(size=(n_features, n_features))
    mix_t = rng.normal(scale=0.3, size=(n_features, n_features))
    X_source = rng.normal(size=(n_source, n_features)) @ mix_s + 2.0
    X_target = rng.normal(size=(n_target, n_features)) @ mix_t - 1.0
    X = np.vstack([X_source, X_target])
    domain = np.array(["amazon"] * n_source + ["webcam"] * n_target, dtype=object)
    return X, domain


def _algorithm_1(X_source, X_target, reg):
    """Sun et al. 2016, Algorithm 1, with scipy's generic sqrtm / inv."""
    n_features = X_source.shape[1]
    Cs = np.cov(X_source, rowvar=False) + reg * np.eye(n_features)
    Ct = np.cov(X_target, rowvar=False) + reg * np.eye(n_features)
    A = np.real(linalg.sqrtm(linalg.inv(Cs))) @ np.real(linalg.sqrtm(Ct))
    return X_source @ A


# More samples than features: eigendecomposition of the covariance; fewer:
# the low-rank SVD route. Both must be Algorithm 1. (reg=0 needs full rank.)
CASES = [(reg, 60, 40, 6) for reg in (1.0, 0.1, 0.0)] + [
    (reg, n_source, n_target, 20) for reg in (1.0, 0.1) for n_source, n_target in [(12, 5), (60, 4), (1, 30)]
]


@pytest.mark.parametrize("reg, n_source, n_target, n_features", CASES)
def test_matches_algorithm_1_and_keeps_target_rows(reg, n_source, n_target, n_features):
    X, domain = _two_domains(n_source, n_target, n_features)
    Xt = CORAL(target_domain="webcam", reg=reg).fit_transform(X, sample_domain=domain)
    if n_source == 1:  # Matlab's cov of one row is 0 (numpy's is NaN)
        Cs = reg * np.eye(n_features)
        Ct = np.cov(X[1:], rowvar=False) + reg * np.eye(n_features)
        A = np.real(linalg.sqrtm(linalg.inv(Cs))) @ np.real(linalg.sqrtm(Ct))
        assert_allclose(Xt[:1], X[:1] @ A, rtol=1e-8, atol=1e-8)
    else:
        expected = _algorithm_1(X[:n_source], X[n_source:], reg)
        assert_allclose(Xt[:n_source], expected, rtol=1e-8, atol=1e-8)
    assert_array_equal(Xt[n_source:], X[n_source:])


@pytest.mark.parametrize("reg", [1.0, 0.5, 0.0])
def test_regularised_covariances_match(reg):
    X, domain = _two_domains()
    coral = CORAL(target_domain="webcam", reg=reg).fit(X, sample_domain=domain)
    A = coral.alignment_
    eye = np.eye(X.shape[1])
    Cs = np.cov(X[:60], rowvar=False) + reg * eye
    Ct = np.cov(X[60:], rowvar=False) + reg * eye
    # Whitening then re-colouring: A^T Cs A = Ct.
    assert_allclose(A.T @ Cs @ A, Ct, rtol=1e-9, atol=1e-9)
    Xt = coral.transform(X, sample_domain=domain)
    # Equivalently cov(X_s A) = Ct - reg A^T A (exactly Ct for reg=0).
    assert_allclose(np.cov(Xt[:60], rowvar=False), Ct - reg * A.T @ A, rtol=1e-9, atol=1e-9)


def test_few_target_samples_are_well_posed():
    # 5 target rows in 20 dimensions: cov(X_target) has rank 4, reg=1 fixes it.
    X, domain = _two_domains(n_source=50, n_target=5, n_features=20)
    coral = CORAL(target_domain="webcam").fit(X, sample_domain=domain)
    Cs = np.cov(X[:50], rowvar=False) + np.eye(20)
    Ct = np.cov(X[50:], rowvar=False) + np.eye(20)
    assert np.isfinite(coral.alignment_).all()
    assert_allclose(coral.alignment_.T @ Cs @ coral.alignment_, Ct, atol=1e-9)


def test_center_matches_first_and_second_moments():
    X, domain = _two_domains()
    coral = CORAL(target_domain="webcam", reg=0.0, center=True)
    Xt = coral.fit_transform(X, sample_domain=domain)
    assert_allclose(coral.mean_source_, X[:60].mean(axis=0))
    assert_allclose(coral.mean_target_, X[60:].mean(axis=0))
    assert_allclose(Xt[:60].mean(axis=0), X[60:].mean(axis=0), atol=1e-10)
    assert_allclose(np.cov(Xt[:60], rowvar=False), np.cov(X[60:], rowvar=False), atol=1e-9)
    assert_array_equal(Xt[60:], X[60:])
    # Without centring the source mean is mapped, not moved to the target's.
    Xu = CORAL(target_domain="webcam", reg=0.0).fit_transform(X, sample_domain=domain)
    assert_allclose(Xu[:60].mean(axis=0), X[:60].mean(axis=0) @ coral.alignment_)


def test_without_domain_everything_is_target_and_unchanged():
    X, _ = _two_domains()
    coral = CORAL().fit(X)
    assert_array_equal(coral.alignment_, np.eye(X.shape[1]))
    assert list(coral.domains_) == [-1]  # skada's label of unlabelled (target) rows
    assert_array_equal(coral.transform(X), X)
    # None / NaN entries are target rows too.
    X_aligned, domain = _two_domains()
    coral = CORAL(target_domain="webcam").fit(X_aligned, sample_domain=domain)
    mixed = np.array(["amazon", None, np.nan, "webcam"], dtype=object)
    out = coral.transform(X_aligned[:4], sample_domain=mixed)
    assert_allclose(out[0], X_aligned[0] @ coral.alignment_)
    assert_array_equal(out[1:], X_aligned[1:4])


def test_several_source_labels_are_pooled():
    X, domain = _two_domains()
    split = domain.copy()
    split[:30] = "dslr"
    pooled = CORAL(target_domain="webcam").fit(X, sample_domain=domain)
    several = CORAL(target_domain="webcam").fit(X, sample_domain=split)
    assert list(several.domains_) == ["amazon", "dslr", "webcam"]
    assert_allclose(several.alignment_, pooled.alignment_)
    assert_allclose(several.transform(X, sample_domain=split), pooled.transform(X, sample_domain=domain))


def test_errors():
    X, domain = _two_domains()
    with pytest.raises(ValueError, match="No target sample in fit \\(target_domain='dslr'\\)"):
        CORAL(target_domain="dslr").fit(X, sample_domain=domain)
    coral = CORAL(target_domain="webcam").fit(X, sample_domain=domain)
    with pytest.raises(ValueError, match="Unknown domain label.*'caltech'"):
        coral.transform(X[:2], sample_domain=["caltech", "webcam"])
    with pytest.raises(ValueError, match="one domain label per sample"):
        coral.transform(X[:3], sample_domain=["webcam"])
    with pytest.raises(NotFittedError):
        CORAL().transform(X)
    with pytest.raises(ValueError, match="reg"):
        CORAL(reg=-1.0).fit(X)


def test_float32_stays_float32():
    X, domain = _two_domains()
    out64 = CORAL(target_domain="webcam").fit_transform(X, sample_domain=domain)
    out32 = CORAL(target_domain="webcam").fit_transform(X.astype(np.float32), sample_domain=domain)
    assert out32.dtype == np.float32
    assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)


def test_pandas_output_and_feature_names():
    pd = pytest.importorskip("pandas")
    X, domain = _two_domains()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    coral = CORAL(target_domain="webcam").set_output(transform="pandas")
    out = coral.fit_transform(df, sample_domain=domain)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(df.columns)
    assert_array_equal(coral.get_feature_names_out(), df.columns)


def test_pickle_and_clone():
    X, domain = _two_domains()
    coral = CORAL(target_domain="webcam", reg=0.5, center=True).fit(X, sample_domain=domain)
    restored = pickle.loads(pickle.dumps(coral))
    assert_array_equal(restored.transform(X, sample_domain=domain), coral.transform(X, sample_domain=domain))
    fresh = clone(coral)
    assert fresh.get_params() == coral.get_params()
    assert not hasattr(fresh, "alignment_")


def test_metadata_routing_in_pipeline():
    X, domain = _two_domains()
    y = (X[:, 0] > np.median(X[:, 0])).astype(int)
    with sklearn.config_context(enable_metadata_routing=True):
        coral = CORAL(target_domain="webcam")  # sample_domain requested by default
        pipe = make_pipeline(coral, LogisticRegression()).fit(X, y, sample_domain=domain)
        by_hand = LogisticRegression().fit(CORAL(target_domain="webcam").fit_transform(X, sample_domain=domain), y)
        step = pipe[0]
        # Test rows without domain are target rows: passed through unchanged.
        assert_array_equal(pipe.predict(X[60:]), by_hand.predict(X[60:]))
        aligned = step.transform(X, sample_domain=domain)
        assert_array_equal(pipe.predict(X, sample_domain=domain), by_hand.predict(aligned))
        assert_allclose(pipe.decision_function(X, sample_domain=domain), by_hand.decision_function(aligned))
