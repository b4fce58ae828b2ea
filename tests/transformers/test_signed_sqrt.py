import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from sk_decaf import SignedSqrt

# Rows: a 3-4-0 vector with a negative entry, an all-zero row, a row that is
# already unit length, and one with mixed signs and magnitudes.
X = np.array(
    [
        [3.0, -4.0, 0.0],
        [0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [-9.0, 0.0, 16.0],
    ]
)


def _hand(norm, power, renorm):
    """Hand-written reference, row by row, with plain Python math."""
    norms = {
        "l2": lambda r: sum(v * v for v in r) ** 0.5,
        "l1": lambda r: sum(abs(v) for v in r),
        "max": lambda r: max(abs(v) for v in r),
    }
    out = []
    for row in X.tolist():
        if norm is not None and norms[norm](row) > 0:
            row = [v / norms[norm](row) for v in row]
        row = [(1 if v > 0 else -1) * abs(v) ** power for v in row]
        if renorm is not None and norms[renorm](row) > 0:
            row = [v / norms[renorm](row) for v in row]
        out.append(row)
    return np.array(out)


def test_default_matches_azizpour_recipe():
    Xt = SignedSqrt().fit_transform(X)
    # Row 0: l2 -> [0.6, -0.8, 0]; sqrt -> [sqrt(.6), -sqrt(.8), 0] whose l2
    # norm is sqrt(1.4).
    expected_row0 = np.array([np.sqrt(0.6), -np.sqrt(0.8), 0.0]) / np.sqrt(1.4)
    assert_allclose(Xt[0], expected_row0, rtol=1e-12)
    # Row 3: l2 -> [-9/sqrt(337), 0, 16/sqrt(337)]; sqrt -> [-3, 0, 4] / 337**.25
    assert_allclose(Xt[3], [-0.6, 0.0, 0.8], rtol=1e-12)
    assert_array_equal(Xt[1], 0.0)
    assert_array_equal(Xt[2], [0.0, 1.0, 0.0])
    assert_allclose(np.linalg.norm(Xt[[0, 2, 3]], axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("norm", ["l2", "l1", "max", None])
@pytest.mark.parametrize("renorm", ["l2", "l1", "max", None])
@pytest.mark.parametrize("power", [0.5, 1.0, 0.25, 2.0])
def test_every_switch_matches_hand_computation(norm, power, renorm):
    Xt = SignedSqrt(power=power, norm=norm, renorm=renorm).fit_transform(X)
    assert_allclose(Xt, _hand(norm, power, renorm), rtol=1e-12, atol=1e-15)
    assert not np.isnan(Xt).any()
    assert_array_equal(Xt[1], 0.0)  # the zero row stays zero


def test_all_steps_off_is_identity():
    Xt = SignedSqrt(power=1.0, norm=None, renorm=None).fit_transform(X)
    assert_array_equal(Xt, X)


def test_plain_signed_sqrt():
    Xt = SignedSqrt(norm=None, renorm=None).fit_transform(X)
    assert_allclose(Xt[3], [-3.0, 0.0, 4.0])
    assert_allclose(Xt[0], [np.sqrt(3.0), -2.0, 0.0])


def test_stateless_transform_without_fit():
    assert_allclose(SignedSqrt().transform(X), SignedSqrt().fit_transform(X))
    # ... but feature names need fit (they come from the fitted input).
    with pytest.raises(NotFittedError):
        SignedSqrt().get_feature_names_out()


def test_input_not_modified():
    X_copy = X.copy()
    SignedSqrt().fit_transform(X)
    SignedSqrt(norm=None, renorm=None).fit_transform(X)
    assert_array_equal(X, X_copy)


# Two normalisations and a power, each rounded: a few ulps, summed in an order the CPU's SIMD width decides.
_RTOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    Xt = SignedSqrt().fit_transform(X.astype(dtype))
    assert Xt.dtype == dtype
    assert_allclose(Xt, _hand("l2", 0.5, "l2"), rtol=_RTOL[dtype])


@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array, sp.csc_matrix])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_input_gives_sparse_csr(container, dtype):
    Xs = container(X.astype(dtype))
    Xt = SignedSqrt().fit_transform(Xs)
    assert sp.issparse(Xt) and Xt.format == "csr" and Xt.dtype == dtype
    assert_allclose(Xt.toarray(), _hand("l2", 0.5, "l2"), rtol=_RTOL[dtype])
    assert Xt.nnz == np.count_nonzero(X)


def test_rejects_nan_and_inf():
    with pytest.raises(ValueError, match="NaN|infinity"):
        SignedSqrt().fit_transform(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="NaN|infinity"):
        SignedSqrt().fit_transform(np.array([[np.inf, 1.0]]))


@pytest.mark.parametrize(
    "params",
    [{"power": 0}, {"power": -0.5}, {"norm": "l3"}, {"renorm": True}],
)
def test_invalid_params(params):
    with pytest.raises(ValueError, match="parameter of SignedSqrt"):
        SignedSqrt(**params).fit(X)


def test_n_features_checked_after_fit():
    signed = SignedSqrt().fit(X)
    assert signed.n_features_in_ == 3
    with pytest.raises(ValueError, match="features"):
        signed.transform(X[:, :2])


def test_feature_names_and_pandas_output():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b", "c"], index=[10, 11, 12, 13])
    signed = SignedSqrt().set_output(transform="pandas")
    out = signed.fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["a", "b", "c"]
    assert list(out.index) == [10, 11, 12, 13]
    assert_allclose(out.to_numpy(), _hand("l2", 0.5, "l2"))
    assert_array_equal(signed.get_feature_names_out(), ["a", "b", "c"])


def test_pickle_and_clone():
    signed = SignedSqrt(power=0.3, norm="l1", renorm=None).fit(X)
    restored = pickle.loads(pickle.dumps(signed))
    assert_array_equal(restored.transform(X), signed.transform(X))
    cloned = clone(signed)
    assert cloned.get_params() == {"power": 0.3, "norm": "l1", "renorm": None}
    assert not hasattr(cloned, "n_features_in_")


def test_pipeline_with_linear_svc():
    rng = np.random.default_rng(0)
    centers = rng.uniform(0.0, 5.0, size=(3, 20))
    Xp = np.vstack([c + rng.normal(0.0, 0.2, (15, 20)) for c in centers])
    y = np.repeat([0, 1, 2], 15)
    pipe = make_pipeline(SignedSqrt(), LinearSVC(C=10.0))
    pipe.fit(Xp, y)
    assert pipe.score(Xp, y) == 1.0
    # The classifier sees unit-length rows.
    assert_allclose(np.linalg.norm(pipe[:-1].transform(Xp), axis=1), 1.0)
