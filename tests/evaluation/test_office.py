"""The Office protocol on a synthetic two-domain dataset."""

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.utils import Bunch

from sk_decaf import DomainAugment, evaluate
from sk_decaf.evaluation import evaluate_office

RECORDED = []


class RecordDomain(TransformerMixin, BaseEstimator):
    """Identity step that records the domains routed to it."""

    def fit(self, X, y=None, *, domain=None):
        RECORDED.append(("fit", None if domain is None else list(domain)))
        return self

    def transform(self, X, *, domain=None):
        RECORDED.append(("transform", None if domain is None else list(domain)))
        return X

    def fit_transform(self, X, y=None, *, domain=None):
        return self.fit(X, y, domain=domain).transform(X, domain=domain)


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


def test_evaluate_office_protocol_matches_evaluate_office():
    data = _office()
    results = evaluate_office(LogisticRegression(), data, source="amazon", target="webcam",
                              settings=("T",), random_state=4)
    single = evaluate(LogisticRegression(), data, protocol="office", source="amazon",
                      target="webcam", setting="T", random_state=4)
    assert_allclose(results["T"].scores, single.scores)


def test_office_shared_draws_with_random_state_instance():
    results = evaluate_office(
        LogisticRegression(), _office(), source="amazon", target="webcam",
        settings=("S", "ST"), random_state=np.random.RandomState(0), n_splits=2,
    )
    assert_array_equal(results["S"].n_test, results["ST"].n_test)


def test_domains_routed_only_to_requesting_steps():
    with sklearn.config_context(enable_metadata_routing=True):
        step = RecordDomain().set_fit_request(domain=True).set_transform_request(domain=True)
    pipe = make_pipeline(step, LogisticRegression())
    evaluate_office(pipe, _office(), source="amazon", target="webcam", settings=("ST",),
                    n_splits=2)
    fits = [d for kind, d in RECORDED if kind == "fit"]
    assert len(fits) == 2
    for domains in fits:
        assert domains.count("amazon") == 60 and domains.count("webcam") == 9
    tests = [d for kind, d in RECORDED if kind == "transform" and d and len(d) == 21]
    assert tests and all(set(d) == {"webcam"} for d in tests)
    assert sklearn.get_config()["enable_metadata_routing"] is False
    RECORDED.clear()
    evaluate_office(make_pipeline(RecordDomain(), LogisticRegression()), _office(),
                    source="amazon", target="webcam", settings=("ST",), n_splits=1)
    assert all(d is None for _, d in RECORDED)


def test_st_with_domain_augment():
    data = _office(shift=6.0, seed=1)
    with sklearn.config_context(enable_metadata_routing=True):
        augment = DomainAugment(target_domain="webcam").set_fit_request(
            domain=True).set_transform_request(domain=True)
    pipe = make_pipeline(augment, LogisticRegression(max_iter=1000))
    adapted = evaluate_office(pipe, data, source="amazon", target="webcam", settings=("ST",))
    plain = evaluate_office(LogisticRegression(max_iter=1000), data, source="amazon",
                            target="webcam", settings=("S",))
    assert adapted["ST"].mean >= plain["S"].mean
    assert adapted["ST"].mean > 0.8


def test_office_search_gets_stratified_folds():
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]})
    result = evaluate(search, _office(), protocol="office", source="amazon", target="webcam",
                      n_splits=2, return_estimators=True)
    assert all(isinstance(est.cv, StratifiedKFold) for est in result.estimators)


def test_office_needs_domains():
    data = _office()
    with pytest.raises(ValueError, match="domain"):
        evaluate_office(LogisticRegression(), (data.data, data.target), source="amazon",
                        target="webcam")
    with pytest.raises(ValueError, match="domain"):
        evaluate(LogisticRegression(), (data.data, data.target), protocol="office",
                 source="amazon", target="webcam")
