import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from sk_decaf import DomainAugment
from sk_decaf.domain._base import check_sample_domain

X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])


def test_two_domains_block_structure():
    aug = DomainAugment(target_domain="webcam")
    Xt = aug.fit_transform(X, sample_domain=["amazon", "webcam", "amazon", "webcam"])
    # Source row -> [x, x, 0], target row -> [x, 0, x].
    expected = np.array(
        [
            [1, 2, 1, 2, 0, 0],
            [3, 4, 0, 0, 3, 4],
            [5, 6, 5, 6, 0, 0],
            [7, 8, 0, 0, 7, 8],
        ],
        dtype=float,
    )
    assert_array_equal(Xt, expected)
    assert_array_equal(aug.domains_, ["amazon", "webcam"])


def test_three_domains_block_structure_and_order():
    # Sources sorted (amazon, dslr), then the target -- whatever the row order
    # and even though the target name sorts first.
    aug = DomainAugment(target_domain="caltech")
    d = ["dslr", "caltech", "amazon", "dslr"]
    Xt = aug.fit_transform(X, sample_domain=d)
    assert list(aug.domains_) == ["amazon", "dslr", "caltech"]
    expected = np.array(
        [
            [1, 2, 0, 0, 1, 2, 0, 0],
            [3, 4, 0, 0, 0, 0, 3, 4],
            [5, 6, 5, 6, 0, 0, 0, 0],
            [7, 8, 0, 0, 7, 8, 0, 0],
        ],
        dtype=float,
    )
    assert_array_equal(Xt, expected)
    assert_array_equal(aug.transform(X, sample_domain=d), expected)


def test_integer_domain_labels():
    aug = DomainAugment(target_domain=0).fit(X, sample_domain=np.array([2, 0, 1, 2]))
    assert aug.domains_.tolist() == [1, 2, 0]
    assert all(type(d) is int for d in aug.domains_)
    Xt = aug.transform(X[:1], sample_domain=[1])
    assert_array_equal(Xt, [[1, 2, 1, 2, 0, 0, 0, 0]])


def test_skada_integer_labels():
    # target_domain=None: skada's convention, >= 0 source, < 0 target; sources first, target last.
    aug = DomainAugment().fit(X, sample_domain=np.array([-2, 0, 1, -2]))
    assert aug.domains_.tolist() == [0, 1, -2] and aug.target_domain_ == -2
    assert_array_equal(aug.transform(X[:1]), [[1, 2, 0, 0, 0, 0, 1, 2]])  # unlabelled: target
    # Floats from a NaN-holding array are the same labels.
    holes = np.array([-2.0, 0.0, np.nan, 1.0])
    assert_array_equal(aug.transform(X, sample_domain=holes), aug.transform(X, sample_domain=[-2, 0, -2, 1]))
    # Several target domains: each has its block, unlabelled samples are ambiguous.
    multi = DomainAugment().fit(X, sample_domain=[-1, -2, 0, 0])
    assert multi.domains_.tolist() == [0, -2, -1] and multi.target_domain_ is None
    with pytest.raises(ValueError, match="several target domains"):
        multi.transform(X)
    with pytest.raises(ValueError, match="target_domain="):
        DomainAugment().fit(X, sample_domain=["amazon", "webcam"] * 2)


def test_missing_domain_means_target():
    aug = DomainAugment(target_domain="webcam")
    aug.fit(X, sample_domain=["amazon", "webcam"] * 2)
    target_layout = np.hstack([X, np.zeros_like(X), X])
    assert_array_equal(aug.transform(X), target_layout)
    assert_array_equal(aug.transform(X, sample_domain=[None] * 4), target_layout)
    d = np.array(["amazon", np.nan, None, "webcam"], dtype=object)
    mixed = aug.transform(X, sample_domain=d)
    assert_array_equal(mixed[0], [1, 2, 1, 2, 0, 0])
    assert_array_equal(mixed[1:], target_layout[1:])


def test_fit_without_domain_only_target():
    aug = DomainAugment().fit(X)
    assert aug.domains_.tolist() == [-1]  # skada's label of unlabelled (target) samples
    assert DomainAugment(target_domain="target").fit(X).domains_.tolist() == ["target"]
    assert_array_equal(aug.transform(X), np.hstack([X, X]))
    assert_array_equal(aug.fit_transform(X), np.hstack([X, X]))


def test_unknown_domain_is_a_clear_error():
    aug = DomainAugment(target_domain="webcam").fit(X, sample_domain=["amazon", "webcam"] * 2)
    msg = r"Unknown domain label\(s\) 'dslr'; known domains are \['amazon', 'webcam'\]"
    with pytest.raises(ValueError, match=msg):
        aug.transform(X, sample_domain=["amazon", "dslr", "webcam", "dslr"])


def test_domains_param_fixes_set_and_order():
    aug = DomainAugment(target_domain="webcam", domains=["webcam", "dslr", "amazon"])
    Xt = aug.fit_transform(X[:2], sample_domain=["amazon", "amazon"])
    assert aug.domains_.tolist() == ["webcam", "dslr", "amazon"]
    assert_array_equal(Xt[0], [1, 2, 0, 0, 0, 0, 1, 2])
    # dslr was never seen in fit, but it is a declared domain.
    Xt_dslr = aug.transform(X[:1], sample_domain=["dslr"])
    assert_array_equal(Xt_dslr, [[1, 2, 0, 0, 1, 2, 0, 0]])
    only_webcam = DomainAugment(target_domain="webcam", domains=["webcam"])
    with pytest.raises(ValueError, match="Unknown domain label"):
        only_webcam.fit(X, sample_domain=["amazon"] * 4)


@pytest.mark.parametrize(
    "domains, match",
    [
        (["amazon", "dslr"], "target_domain='webcam' is not in domains"),
        (["webcam", "amazon", "webcam"], "duplicates"),
        (["webcam", None], "None or NaN"),
    ],
)
def test_invalid_domains_param(domains, match):
    with pytest.raises(ValueError, match=match):
        DomainAugment(target_domain="webcam", domains=domains).fit(X)


@pytest.mark.parametrize(
    "domain, match",
    [
        (["amazon"] * 3, "sample_domain has 3 labels but X has 4 samples"),
        ([["amazon"] * 4], "1-D"),
        ("amazon", "1-D"),
    ],
)
def test_domain_shape_validation(domain, match):
    with pytest.raises(ValueError, match=match):
        DomainAugment(target_domain="webcam").fit(X, sample_domain=domain)


def test_incomparable_labels_error():
    with pytest.raises(ValueError, match="mutually comparable"):
        DomainAugment(target_domain="t").fit(X, sample_domain=["a", 1, "t", 2])


def test_invalid_target_domain_type():
    with pytest.raises(ValueError, match="'target_domain' parameter"):
        DomainAugment(target_domain=1.5).fit(X)


def test_check_sample_domain():
    labels = check_sample_domain(np.array(["a", None, np.nan, "b"], dtype=object), 4)
    assert labels.tolist() == ["a", None, None, "b"]
    assert check_sample_domain(None, 2).tolist() == [None, None]
    codes = check_sample_domain(np.array([1, -2], dtype=np.int64), 2).tolist()
    assert codes == [1, -2] and all(type(c) is int for c in codes)


def test_feature_names_out():
    aug = DomainAugment(target_domain="webcam").fit(X, sample_domain=["amazon", "webcam"] * 2)
    assert aug.get_feature_names_out().tolist() == [
        "shared__x0",
        "shared__x1",
        "amazon__x0",
        "amazon__x1",
        "webcam__x0",
        "webcam__x1",
    ]
    assert aug.get_feature_names_out(["fc6_0", "fc6_1"]).tolist()[2:4] == [
        "amazon__fc6_0",
        "amazon__fc6_1",
    ]


def test_pandas_output_and_input_feature_names():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["f0", "f1"], index=[5, 6, 7, 8])
    aug = DomainAugment(target_domain="webcam").set_output(transform="pandas")
    d = pd.Series(["amazon", "webcam", "amazon", None])
    out = aug.fit_transform(df, sample_domain=d)
    assert isinstance(out, pd.DataFrame)
    blocks = ["shared", "amazon", "webcam"]
    assert list(out.columns) == [f"{b}__{f}" for b in blocks for f in ["f0", "f1"]]
    assert list(out.index) == [5, 6, 7, 8]
    assert_array_equal(out.loc[8].to_numpy(), [7, 8, 0, 0, 7, 8])
    assert list(aug.transform(df).columns) == list(out.columns)


@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array, sp.csc_matrix])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_and_dtype(container, dtype):
    d = ["amazon", "webcam", "dslr", "webcam"]
    aug = DomainAugment(target_domain="webcam")
    dense = aug.fit_transform(X.astype(dtype), sample_domain=d)
    assert dense.dtype == dtype
    Xs = container(X.astype(dtype))
    out = DomainAugment(target_domain="webcam").fit_transform(Xs, sample_domain=d)
    assert sp.issparse(out) and out.format == "csr" and out.dtype == dtype
    assert_array_equal(out.toarray(), dense)
    assert out.nnz == np.count_nonzero(dense)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        DomainAugment().transform(X)
    with pytest.raises(NotFittedError):
        DomainAugment().get_feature_names_out()


def test_n_features_checked():
    aug = DomainAugment().fit(X)
    assert aug.n_features_in_ == 2
    with pytest.raises(ValueError, match="features"):
        aug.transform(np.ones((2, 3)))


def test_pickle_and_clone():
    d = ["amazon", "webcam", "dslr", "webcam"]
    aug = DomainAugment(target_domain="webcam", domains=None).fit(X, sample_domain=d)
    restored = pickle.loads(pickle.dumps(aug))
    assert_array_equal(restored.domains_, aug.domains_)
    assert_array_equal(restored.transform(X, sample_domain=d), aug.transform(X, sample_domain=d))
    cloned = clone(aug)
    assert cloned.get_params() == {"target_domain": "webcam", "domains": None}
    assert not hasattr(cloned, "domains_")


def _office_like(n_per_domain=30, seed=0):
    """Two classes whose class-1 direction is flipped in the source domain."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n_per_domain)  # interleaved: every CV fold sees both
    d = np.tile(["amazon", "amazon", "webcam", "webcam"], n_per_domain // 2)
    sign = np.where(d == "webcam", 1.0, -1.0)
    X = rng.normal(0.0, 0.3, size=(2 * n_per_domain, 6))
    X[:, 0] += sign * (2 * y - 1)  # feature 0 separates classes, domain-dependent
    X[:, 1] += 2 * y - 1  # feature 1 separates classes in both domains
    return X, y, d


def test_pipeline_routing_fit_and_predict():
    X, y, d = _office_like()
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(DomainAugment(target_domain="webcam"), LinearSVC())
        pipe.fit(X, y, sample_domain=d)
        assert pipe[0].domains_.tolist() == ["amazon", "webcam"]
        assert pipe[-1].coef_.shape == (1, 18)
        assert pipe.score(X, y, sample_domain=d) == 1.0
        # Without domain every row is the target (webcam) domain: webcam rows
        # are still right, amazon rows get the webcam-specific weights.
        pred = pipe.predict(X)
        webcam = d == "webcam"
        assert_array_equal(pred[webcam], pipe.predict(X[webcam], sample_domain=d[webcam]))
        assert_array_equal(pred[webcam], y[webcam])
        assert_array_equal(pred, pipe.predict(X, sample_domain=[None] * len(X)))


def test_routing_is_requested_by_default_and_can_be_declined():
    X, y, d = _office_like()
    with sklearn.config_context(enable_metadata_routing=True):
        aug = DomainAugment(target_domain="webcam")
        pipe = make_pipeline(aug, LinearSVC()).fit(X, y, sample_domain=d)  # no set_*_request
        assert pipe[0].domains_.tolist() == ["amazon", "webcam"]
        aug.set_fit_request(sample_domain=False).set_transform_request(sample_domain=False)
        with pytest.raises(TypeError, match="sample_domain"):
            make_pipeline(aug, LinearSVC()).fit(X, y, sample_domain=d)


def test_deprecated_domain_keyword_and_old_requests():
    # Code written for 0.1: `domain=` and set_*_request(domain=True) keep working, with a FutureWarning.
    X, y, d = _office_like()
    with sklearn.config_context(enable_metadata_routing=True):
        old = DomainAugment(target_domain="webcam").set_fit_request(domain=True, sample_domain=False)
        old.set_transform_request(domain=True, sample_domain=False)
        with pytest.warns(FutureWarning, match="renamed `sample_domain`"):
            pipe = make_pipeline(old, LinearSVC()).fit(X, y, domain=d)
        assert pipe[0].domains_.tolist() == ["amazon", "webcam"]
    with pytest.raises(TypeError, match="once"):
        DomainAugment(target_domain="webcam").fit(X, sample_domain=d, domain=d)


def test_grid_search_routes_domain_to_fit_and_score():
    X, y, d = _office_like()
    seen = []

    class Spy(DomainAugment):
        def transform(self, X, *, sample_domain=None, domain=None):
            seen.append(None if sample_domain is None else len(sample_domain))
            return super().transform(X, sample_domain=sample_domain)

    with sklearn.config_context(enable_metadata_routing=True):
        spy = Spy(target_domain="webcam")  # requested by default
        pipe = make_pipeline(spy, LogisticRegression())
        search = GridSearchCV(pipe, {"logisticregression__C": [0.01, 1.0]}, cv=3)
        search.fit(X, y, sample_domain=d)
        # 2 candidates x 3 folds: 40-row train folds in fit_transform, 20-row
        # test folds at score time, then the 60-row refit -- domain every time.
        assert sorted(seen) == sorted([40] * 6 + [20] * 6 + [60])
        assert_allclose(search.cv_results_["mean_test_score"], [1.0, 1.0])
        assert search.best_estimator_[0].domains_.tolist() == ["amazon", "webcam"]
        # Predict with domain (through the fitted pipeline) and without.
        assert_array_equal(search.best_estimator_.predict(X, sample_domain=d), y)
        webcam = d == "webcam"
        assert_array_equal(search.predict(X)[webcam], y[webcam])
        assert search.score(X, y, sample_domain=d) == 1.0


def test_grid_search_with_domain_sorted_folds_needs_fixed_domains():
    # Unshuffled KFold on rows sorted by domain: a training fold may miss a
    # domain its test fold contains. Declaring `domains` makes that work.
    X, y, d = _office_like()
    order = np.argsort(d, kind="stable")
    X, y, d = X[order], y[order], d[order]
    with sklearn.config_context(enable_metadata_routing=True):
        fixed = DomainAugment(target_domain="webcam", domains=["amazon", "webcam"])
        search = GridSearchCV(
            make_pipeline(fixed, LogisticRegression()),
            {"logisticregression__C": [1.0]},
            cv=2,
            error_score="raise",
        )
        search.fit(X, y, sample_domain=d)
        assert np.isfinite(search.cv_results_["mean_test_score"]).all()
        unfixed = DomainAugment(target_domain="webcam")
        search.set_params(estimator=make_pipeline(unfixed, LogisticRegression()))
        with pytest.raises(ValueError, match="Unknown domain label"):
            search.fit(X, y, sample_domain=d)
