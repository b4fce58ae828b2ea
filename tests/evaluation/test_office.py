"""The Office protocol on a synthetic two-domain dataset."""

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.utils import Bunch

from sk_decaf import DomainAdaptationSplit, DomainAugment, evaluate
from sk_decaf.evaluation import OfficeResults, evaluate_office

RECORDED = []


class RecordDomain(TransformerMixin, BaseEstimator):
    """Identity step that records the domains routed to it (requests them only when asked to)."""

    def fit(self, X, y=None, *, sample_domain=None):
        RECORDED.append(("fit", None if sample_domain is None else list(sample_domain)))
        return self

    def transform(self, X, *, sample_domain=None):
        RECORDED.append(("transform", None if sample_domain is None else list(sample_domain)))
        return X

    def fit_transform(self, X, y=None, *, sample_domain=None):
        return self.fit(X, y, sample_domain=sample_domain).transform(X, sample_domain=sample_domain)


def _office(source=25, target=10, n_classes=3, shift=2.0, seed=0):
    """Blobs per class; the target domain is shifted from the source one."""
    rng = np.random.RandomState(seed)
    y = np.r_[np.repeat(np.arange(n_classes), source), np.repeat(np.arange(n_classes), target)]
    domain = np.repeat(["amazon", "webcam"], [source * n_classes, target * n_classes])
    centres = 3 * rng.normal(size=(n_classes, 5))
    X = centres[y] + rng.normal(size=(len(y), 5)) + shift * (domain == "webcam")[:, None]
    return Bunch(data=X, target=y, domain=domain)


@pytest.fixture(autouse=True)
def _reset():
    RECORDED.clear()


def test_office_settings_arithmetic():
    results = evaluate_office(LogisticRegression(), _office(), source="amazon", target="webcam")
    assert list(results) == ["S", "T", "ST"]
    expected = {"S": 60, "T": 9, "ST": 69}
    for setting, result in results.items():
        assert_array_equal(result.n_train, [expected[setting]] * 5)
        assert_array_equal(result.n_test, [21] * 5)
        assert result.scores.shape == (5,) and 0 <= result.mean <= 1
        assert f"setting {setting}" in result.protocol
        assert isinstance(result.splitter, DomainAdaptationSplit) and result.splitter.setting == setting
    assert isinstance(results, OfficeResults) and (results.source, results.target) == ("amazon", "webcam")
    assert results.protocol == (
        "office: amazon -> webcam: 20 source + 3 target images per class, rest of the target tested, "
        "5 random splits; settings S, T, ST"
    )


def test_evaluate_office_protocol_matches_evaluate_office():
    data = _office()
    results = evaluate_office(
        LogisticRegression(), data, source="amazon", target="webcam", settings=("T",), random_state=4
    )
    single = evaluate(
        LogisticRegression(), data, protocol="office", source="amazon", target="webcam", setting="T", random_state=4
    )
    assert_allclose(results["T"].scores, single.scores)


def test_office_shared_draws_with_random_state_instance():
    results = evaluate_office(
        LogisticRegression(),
        _office(),
        source="amazon",
        target="webcam",
        settings=("S", "ST"),
        random_state=np.random.RandomState(0),
        n_splits=2,
    )
    assert_array_equal(results["S"].n_test, results["ST"].n_test)


def test_domains_routed_only_to_requesting_steps():
    with sklearn.config_context(enable_metadata_routing=True):
        step = RecordDomain().set_fit_request(sample_domain=True).set_transform_request(sample_domain=True)
    pipe = make_pipeline(step, LogisticRegression())
    evaluate_office(pipe, _office(), source="amazon", target="webcam", settings=("ST",), n_splits=2)
    fits = [d for kind, d in RECORDED if kind == "fit"]
    assert len(fits) == 2
    for domains in fits:
        assert domains.count("amazon") == 60 and domains.count("webcam") == 9
    tests = [d for kind, d in RECORDED if kind == "transform" and d and len(d) == 21]
    assert tests and all(set(d) == {"webcam"} for d in tests)
    assert sklearn.get_config()["enable_metadata_routing"] is False
    RECORDED.clear()
    evaluate_office(
        make_pipeline(RecordDomain(), LogisticRegression()),
        _office(),
        source="amazon",
        target="webcam",
        settings=("ST",),
        n_splits=1,
    )
    assert all(d is None for _, d in RECORDED)


def test_st_with_domain_augment():
    # No set_*_request: DomainAugment requests sample_domain by default.
    data = _office(shift=6.0, seed=1)
    data.data[data.domain == "webcam"] *= -1  # a mirrored target: the source model is always wrong
    pipe = make_pipeline(DomainAugment(target_domain="webcam"), LogisticRegression(max_iter=1000))
    adapted = evaluate_office(pipe, data, source="amazon", target="webcam", settings=("ST",))
    plain = evaluate_office(
        LogisticRegression(max_iter=1000), data, source="amazon", target="webcam", settings=("S", "ST")
    )
    assert plain["S"].mean < 0.1 and plain["ST"].mean < 0.1
    assert adapted["ST"].mean > 0.9  # the per-domain block learns the mirror from 3 images per class
    # Same splits by hand: the labels reached DomainAugment in fit and predict.
    X, y, d = data.data, data.target, data.domain
    cv = DomainAdaptationSplit("amazon", "webcam", setting="ST", random_state=0)
    expected = []
    for train, test in cv.split(X, y, sample_domain=d):
        augment = DomainAugment(target_domain="webcam").fit(X[train], sample_domain=d[train])
        clf = LogisticRegression(max_iter=1000).fit(augment.transform(X[train], sample_domain=d[train]), y[train])
        y_pred = clf.predict(augment.transform(X[test], sample_domain=d[test]))
        expected.append(balanced_accuracy_score(y[test], y_pred))
    assert_allclose(adapted["ST"].scores, expected)


def test_skada_integer_domains():
    # The protocol with skada's labels (1 source, -2 target) gives the same scores as with names.
    data = _office(shift=6.0, seed=1)
    codes = np.where(data.domain == "amazon", 1, -2)
    pipe = make_pipeline(DomainAugment(), LogisticRegression(max_iter=1000))  # target_domain=None: skada
    named = evaluate_office(
        make_pipeline(DomainAugment("webcam"), LogisticRegression(max_iter=1000)),
        data,
        source="amazon",
        target="webcam",
        settings=("ST",),
        n_splits=2,
    )
    coded = evaluate_office(
        pipe, (data.data, data.target, codes), source=1, target=-2, settings=("ST",), n_source_per_class=20, n_splits=2
    )
    assert_allclose(coded["ST"].scores, named["ST"].scores)


def test_office_search_gets_stratified_folds():
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]})
    result = evaluate(
        search, _office(), protocol="office", source="amazon", target="webcam", n_splits=2, return_estimators=True
    )
    assert all(isinstance(est.cv, StratifiedKFold) for est in result.estimators)


def test_office_needs_domains():
    data = _office()
    with pytest.raises(ValueError, match="domain"):
        evaluate_office(LogisticRegression(), (data.data, data.target), source="amazon", target="webcam")
    with pytest.raises(ValueError, match="domain"):
        evaluate(LogisticRegression(), (data.data, data.target), protocol="office", source="amazon", target="webcam")
