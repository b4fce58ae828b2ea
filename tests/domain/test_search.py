"""Searching over adaptation choices with DomainAdaptationSplit as cv, with no set_*_request call."""

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from sk_decaf import CORAL, DomainAdaptationSplit, DomainAugment, NoAdaptation, SubspaceAlignment


def _office(seed=0):
    """Three classes; the webcam domain is shifted and one class direction is flipped in it."""
    rng = np.random.RandomState(seed)
    y = np.r_[np.repeat(np.arange(3), 25), np.repeat(np.arange(3), 10)]
    d = np.repeat(["amazon", "webcam"], [75, 30])
    X = rng.normal(size=(105, 5)) + 3 * np.eye(5)[y] + 2.0 * (d == "webcam")[:, None]
    X[d == "webcam", 0] *= -1
    return X, y, d


CHOICES = [
    NoAdaptation("webcam"),
    DomainAugment("webcam"),
    CORAL("webcam"),
    SubspaceAlignment(4, target_domain="webcam"),
]


def test_grid_search_over_adaptation_choices():
    X, y, d = _office()
    cv = DomainAdaptationSplit("amazon", "webcam", n_splits=3, random_state=0)
    search = GridSearchCV(Pipeline([("adapt", CHOICES[0]), ("svm", LinearSVC())]), {"adapt": CHOICES}, cv=cv)
    with sklearn.config_context(enable_metadata_routing=True):
        search.fit(X, y, sample_domain=d)  # the labels reach the splitter and every candidate
    # Each candidate's score, recomputed by hand on the same splits.
    expected = []
    for choice in CHOICES:
        scores = []
        for train, test in cv.split(X, y, sample_domain=d):
            adapt = sklearn.clone(choice).fit(X[train], sample_domain=d[train])
            svm = LinearSVC().fit(adapt.transform(X[train], sample_domain=d[train]), y[train])
            scores.append(accuracy_score(y[test], svm.predict(adapt.transform(X[test], sample_domain=d[test]))))
        expected.append(np.mean(scores))
    assert_allclose(search.cv_results_["mean_test_score"], expected)
    # Daumé's per-domain weights undo the flipped direction: the search finds it.
    assert type(search.best_params_["adapt"]) is DomainAugment
    assert expected[1] > expected[0] + 0.05


def test_literal_passthrough_cannot_take_the_labels():
    # Why NoAdaptation exists: "passthrough" consumes no metadata, so the labels either reach no
    # candidate (the search routes by its first pipeline) or break the passthrough candidate.
    X, y, d = _office()
    cv = DomainAdaptationSplit("amazon", "webcam", n_splits=2, random_state=0)
    grid = {"adapt": ["passthrough", DomainAugment("webcam")]}
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(
            Pipeline([("adapt", DomainAugment("webcam")), ("svm", LinearSVC())]), grid, cv=cv, error_score="raise"
        )
        with pytest.raises(TypeError, match="sample_domain"):
            search.fit(X, y, sample_domain=d)
