import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_transformer_general

from sk_decaf import FeatureDropout


@pytest.fixture
def X_pos():
    # Strictly positive so that a zero in the output can only come from dropout.
    return np.random.default_rng(0).uniform(1.0, 2.0, size=(5, 10_000))


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_fit_transform_drops_fraction_p_of_each_sample(X_pos, p):
    Xt = FeatureDropout(p=p, random_state=0).fit_transform(X_pos)
    dropped = Xt == 0
    # Each of the 5 samples loses a fraction p of its 10k features (binomial
    # std <= 0.005, so +-0.02 is four standard deviations).
    assert_allclose(dropped.mean(axis=1), p, atol=0.02)
    # Surviving features are unchanged (no inverted-dropout rescaling).
    assert_array_equal(Xt[~dropped], X_pos[~dropped])


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5])
def test_transform_scales_by_one_minus_p(X_pos, p):
    dropout = FeatureDropout(p=p, random_state=0).fit(X_pos)
    assert_allclose(dropout.transform(X_pos), (1 - p) * X_pos, rtol=1e-15)
    # Test-time scaling equals the expected training-time value.
    train = FeatureDropout(p=p, random_state=0).fit_transform(X_pos)
    assert_allclose(train.mean(), dropout.transform(X_pos).mean(), rtol=0.01)


def test_p_zero_is_identity(X_pos):
    dropout = FeatureDropout(p=0.0, random_state=0)
    assert_array_equal(dropout.fit_transform(X_pos), X_pos)
    assert_array_equal(dropout.transform(X_pos), X_pos)


def test_p_zero_passes_fit_transform_consistency_check():
    # The only reason FeatureDropout is an expected failure of this check in
    # tests/test_common.py is the dropout itself.
    check_transformer_general("FeatureDropout", FeatureDropout(p=0.0, random_state=0))


def test_random_state_reproducible_and_seed_dependent(X_pos):
    a = FeatureDropout(p=0.5, random_state=42).fit_transform(X_pos)
    b = FeatureDropout(p=0.5, random_state=42).fit_transform(X_pos)
    c = FeatureDropout(p=0.5, random_state=43).fit_transform(X_pos)
    assert_array_equal(a, b)
    # Different seeds: masks agree on about half of the entries, not all.
    agreement = ((a == 0) == (c == 0)).mean()
    assert 0.45 < agreement < 0.55


def test_random_state_instance_draws_new_masks(X_pos):
    dropout = FeatureDropout(p=0.5, random_state=np.random.RandomState(0))
    first = dropout.fit_transform(X_pos)
    second = dropout.fit_transform(X_pos)
    assert not np.array_equal(first == 0, second == 0)


def test_input_not_modified(X_pos):
    X_copy = X_pos.copy()
    FeatureDropout(p=0.5, random_state=0).fit_transform(X_pos)
    assert_array_equal(X_pos, X_copy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(X_pos, dtype):
    X = X_pos[:, :50].astype(dtype)
    dropout = FeatureDropout(p=0.5, random_state=0)
    assert dropout.fit_transform(X).dtype == dtype
    assert dropout.transform(X).dtype == dtype


def test_int_input_becomes_float64():
    X = np.ones((3, 4), dtype=np.int64)
    assert FeatureDropout(random_state=0).fit(X).transform(X).dtype == np.float64


@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array])
def test_sparse_input(container):
    rng = np.random.default_rng(0)
    dense = rng.uniform(1.0, 2.0, size=(20, 500))
    dense[rng.random(dense.shape) < 0.5] = 0.0
    X = container(dense.astype(np.float32))
    dropout = FeatureDropout(p=0.3, random_state=0)
    Xt = dropout.fit_transform(X)
    assert sp.issparse(Xt) and Xt.format == "csr" and Xt.dtype == np.float32
    assert isinstance(Xt, container)
    Xt = Xt.toarray()
    was_nonzero = dense != 0
    # Zeros stay zero; a fraction p of the stored entries is dropped.
    assert not Xt[~was_nonzero].any()
    assert_allclose((Xt[was_nonzero] == 0).mean(), 0.3, atol=0.02)
    kept = was_nonzero & (Xt != 0)
    assert_allclose(Xt[kept], dense[kept], rtol=1e-6)
    scaled = dropout.transform(X)
    assert sp.issparse(scaled)
    assert_allclose(scaled.toarray(), 0.7 * dense, rtol=1e-6)


def test_not_fitted(X_pos):
    with pytest.raises(NotFittedError):
        FeatureDropout().transform(X_pos)


def test_n_features_checked(X_pos):
    dropout = FeatureDropout().fit(X_pos)
    assert dropout.n_features_in_ == 10_000
    with pytest.raises(ValueError, match="features"):
        dropout.transform(X_pos[:, :10])


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, "half"])
def test_invalid_p(X_pos, p):
    with pytest.raises(ValueError, match="'p' parameter"):
        FeatureDropout(p=p).fit(X_pos)


def test_feature_names_and_pandas_output():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"fc6_0": [1.0, 2.0], "fc6_1": [3.0, 4.0]}, index=[7, 9])
    dropout = FeatureDropout(p=0.5, random_state=0).set_output(transform="pandas")
    out = dropout.fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["fc6_0", "fc6_1"]
    assert list(out.index) == [7, 9]
    test_out = dropout.transform(df)
    assert_allclose(test_out.to_numpy(), 0.5 * df.to_numpy())
    assert_array_equal(dropout.get_feature_names_out(), ["fc6_0", "fc6_1"])
    assert_array_equal(
        FeatureDropout().fit(np.ones((2, 3))).get_feature_names_out(),
        ["x0", "x1", "x2"],
    )


def test_pickle_and_clone(X_pos):
    dropout = FeatureDropout(p=0.4, random_state=3).fit(X_pos)
    restored = pickle.loads(pickle.dumps(dropout))
    assert_array_equal(restored.transform(X_pos), dropout.transform(X_pos))
    assert_array_equal(
        restored.fit_transform(X_pos),
        FeatureDropout(p=0.4, random_state=3).fit_transform(X_pos),
    )
    cloned = clone(dropout)
    assert cloned.get_params() == {"p": 0.4, "random_state": 3}
    assert not hasattr(cloned, "n_features_in_")


def test_pipeline_trains_on_dropped_and_predicts_on_scaled():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(1.0, 0.3, (30, 40)), rng.normal(-1.0, 0.3, (30, 40))])
    y = np.repeat([0, 1], 30)
    pipe = make_pipeline(FeatureDropout(p=0.5, random_state=0), LogisticRegression())
    pipe.fit(X, y)
    dropout = pipe[0]
    # The classifier was fitted on the dropped-out features ...
    Xt_train = FeatureDropout(p=0.5, random_state=0).fit_transform(X)
    expected = LogisticRegression().fit(Xt_train, y)
    assert_allclose(pipe[-1].coef_, expected.coef_)
    # ... and predicts on the test-time scaled ones.
    assert_allclose(pipe.decision_function(X), expected.decision_function(0.5 * X))
    assert dropout.p == 0.5
    assert pipe.score(X, y) == 1.0
