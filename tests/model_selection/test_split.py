"""Protocol arithmetic of the splitters."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from sk_decaf.model_selection import DomainAdaptationSplit, OfficialSplit, PerClassSplit


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def _per_class(y, idx):
    return np.bincount(y[idx], minlength=y.max() + 1)


def test_per_class_counts_and_disjoint():
    y = _labels([40, 35, 31])
    cv = PerClassSplit(n_train=30, random_state=0)
    splits = list(cv.split(np.zeros((len(y), 2)), y))
    assert len(splits) == cv.get_n_splits() == 5
    for train, test in splits:
        assert_array_equal(_per_class(y, train), [30, 30, 30])
        assert_array_equal(_per_class(y, test), [10, 5, 1])
        assert not np.intersect1d(train, test).size
        assert_array_equal(np.sort(np.r_[train, test]), np.arange(len(y)))
    assert len({tuple(train) for train, _ in splits}) == 5


def test_per_class_fixed_test_size_and_string_labels():
    y = np.repeat(["sky", "sea", "land"], 100)
    for train, test in PerClassSplit(50, 50, n_splits=2, random_state=1).split(y, y):
        assert_array_equal(np.unique(y[train], return_counts=True)[1], [50, 50, 50])
        assert_array_equal(np.unique(y[test], return_counts=True)[1], [50, 50, 50])
        assert not np.intersect1d(train, test).size


def test_per_class_reproducible():
    y = _labels([12, 15])
    cv = PerClassSplit(5, n_splits=3, random_state=42)
    first, second = list(cv.split(y, y)), list(cv.split(y, y))
    for (a, b), (c, d) in zip(first, second):
        assert_array_equal(a, c)
        assert_array_equal(b, d)
    other = list(PerClassSplit(5, n_splits=3, random_state=43).split(y, y))
    assert any(not np.array_equal(a, c) for (a, _), (c, _) in zip(first, other))


def test_per_class_too_few_raise_names_classes():
    y = np.repeat(["big", "tiny"], [40, 30])
    with pytest.raises(ValueError, match=r"'tiny' \(30\)"):
        next(PerClassSplit(30).split(y, y))


def test_per_class_too_few_skip():
    y = _labels([40, 20, 35])
    for train, test in PerClassSplit(30, too_few="skip", random_state=0).split(y, y):
        assert_array_equal(_per_class(y, train), [30, 0, 30])
        assert_array_equal(_per_class(y, test), [10, 0, 5])


def test_per_class_too_few_shrink():
    y = _labels([40, 20, 1, 33])
    cv = PerClassSplit(30, 5, too_few="shrink", random_state=0)
    for train, test in cv.split(y, y):
        # 20 images: 19 train + 1 test; a lone image trains; 33: 30 + 3.
        assert_array_equal(_per_class(y, train), [30, 19, 1, 30])
        assert_array_equal(_per_class(y, test), [5, 1, 0, 3])


@pytest.mark.parametrize("params", [{"n_train": 0}, {"too_few": "drop"}, {"n_test": 0}, {"n_splits": 0}])
def test_per_class_invalid_params(params):
    y = _labels([10, 10])
    with pytest.raises(ValueError):
        next(PerClassSplit(**{"n_train": 2, **params}).split(y, y))


def test_per_class_as_cv_in_sklearn():
    rng = np.random.RandomState(0)
    y = _labels([20, 20, 20])
    X = rng.normal(size=(60, 3)) + 4 * y[:, None]
    scores = cross_val_score(LogisticRegression(), X, y, cv=PerClassSplit(5, random_state=0))
    assert scores.shape == (5,) and scores.min() > 0.9
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1]}, cv=PerClassSplit(4, 2, n_splits=3))
    assert len(search.fit(X, y).cv_results_["split2_test_score"]) == 2
    assert "n_train=5" in repr(PerClassSplit(5))


def _office(source=25, target=10, n_classes=3):
    y = np.r_[_labels([source] * n_classes), _labels([target] * n_classes)]
    domain = np.repeat(["amazon", "webcam"], [source * n_classes, target * n_classes])
    return y, domain


@pytest.mark.parametrize("setting, n_amazon, n_webcam", [("S", 20, 0), ("T", 0, 3), ("ST", 20, 3)])
def test_domain_adaptation_counts(setting, n_amazon, n_webcam):
    y, domain = _office()
    cv = DomainAdaptationSplit("amazon", "webcam", setting=setting, random_state=0)
    splits = list(cv.split(y, y, sample_domain=domain))
    assert len(splits) == cv.get_n_splits() == 5
    for train, test in splits:
        amazon, webcam = train[domain[train] == "amazon"], train[domain[train] == "webcam"]
        assert_array_equal(_per_class(y, amazon), [n_amazon] * 3)
        assert_array_equal(_per_class(y, webcam), [n_webcam] * 3)
        assert set(domain[test]) == {"webcam"}
        assert_array_equal(_per_class(y, test), [7, 7, 7])
        assert not np.intersect1d(train, test).size


def test_domain_adaptation_settings_share_test_sets():
    y, domain = _office()
    tests = {
        s: [te for _, te in DomainAdaptationSplit("amazon", "webcam", setting=s, random_state=3).split(None, y, domain)]
        for s in ("S", "T", "ST")
    }
    for a, b, c in zip(tests["S"], tests["T"], tests["ST"]):
        assert_array_equal(a, b)
        assert_array_equal(a, c)


@pytest.mark.parametrize("source, expected", [("dslr", 8), ("webcam", 8), ("caltech10", 20)])
def test_domain_adaptation_default_source_counts(source, expected):
    y = np.r_[_labels([30, 30]), _labels([10, 10])]
    domain = np.repeat([source, "amazon"], [60, 20])
    cv = DomainAdaptationSplit(source, "amazon", setting="S", n_splits=1, random_state=0)
    train, test = next(cv.split(y, y, domain))
    assert_array_equal(_per_class(y, train), [expected] * 2)
    assert len(test) == 2 * (10 - 3)


def test_domain_adaptation_errors():
    y, domain = _office()
    with pytest.raises(ValueError, match="n_source_per_class"):
        next(DomainAdaptationSplit("art", "webcam").split(y, y, np.where(domain == "amazon", "art", domain)))
    with pytest.raises(ValueError, match="sample_domain"):
        next(DomainAdaptationSplit("amazon", "webcam").split(y, y))
    with pytest.raises(ValueError, match="'dslr' not in sample_domain"):
        next(DomainAdaptationSplit("dslr", "webcam").split(y, y, domain))
    y_few, domain_few = _office(target=3)  # needs 3 labelled + 1 test
    with pytest.raises(ValueError, match="webcam"):
        next(DomainAdaptationSplit("amazon", "webcam").split(y_few, y_few, domain_few))


def test_domain_adaptation_too_few_policies():
    y = np.r_[_labels([25, 25, 5]), _labels([10, 3, 10])]
    domain = np.repeat(["amazon", "webcam"], [55, 23])
    skip = DomainAdaptationSplit("amazon", "webcam", too_few="skip", random_state=0)
    train, test = next(skip.split(y, y, domain))
    assert_array_equal(_per_class(y, train), [23, 0, 0])  # class 1: few target, 2: source
    assert_array_equal(_per_class(y, test), [7, 0, 0])
    shrink = DomainAdaptationSplit("amazon", "webcam", too_few="shrink", random_state=0)
    train, test = next(shrink.split(y, y, domain))
    assert_array_equal(_per_class(y, train[domain[train] == "amazon"]), [20, 20, 5])
    assert_array_equal(_per_class(y, train[domain[train] == "webcam"]), [3, 2, 3])
    assert_array_equal(_per_class(y, test), [7, 1, 7])


def test_domain_adaptation_with_cross_val_score():
    # Without routing, scikit-learn passes `groups` as the third argument of split: sample_domain.
    y, domain = _office()
    X = np.random.RandomState(0).normal(size=(len(y), 2)) + 3 * y[:, None]
    cv = DomainAdaptationSplit("amazon", "webcam", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = cross_val_score(LogisticRegression(), X, y, groups=domain, cv=cv)
    assert scores.shape == (5,) and scores.min() > 0.9
    # With routing, sample_domain is requested by default.
    with sklearn.config_context(enable_metadata_routing=True):
        routed = cross_val_score(LogisticRegression(), X, y, cv=cv, params={"sample_domain": domain})
    assert_array_equal(routed, scores)


def test_domain_adaptation_groups_is_sample_domain():
    # scikit-learn's name for the labels, as passed without routing, gives the same splits.
    y, domain = _office()
    cv = DomainAdaptationSplit("amazon", "webcam", n_splits=2, random_state=0)
    for (a, b), (c, d) in zip(cv.split(y, y, groups=domain), cv.split(y, y, sample_domain=domain)):
        assert_array_equal(a, c)
        assert_array_equal(b, d)
    with pytest.raises(TypeError, match="once"):
        next(cv.split(y, y, domain, groups=domain))


def test_domain_adaptation_skada_integer_domains():
    # skada's labels: 1 for the source, -2 for the target; the standard count needs a name.
    y, domain = _office()
    codes = np.where(domain == "amazon", 1, -2)
    named = DomainAdaptationSplit("amazon", "webcam", random_state=0)
    coded = DomainAdaptationSplit(1, -2, n_source_per_class=20, random_state=0)
    for (a, b), (c, d) in zip(named.split(y, y, domain), coded.split(y, y, codes)):
        assert_array_equal(a, c)
        assert_array_equal(b, d)
    with pytest.raises(ValueError, match="n_source_per_class"):
        next(DomainAdaptationSplit(1, -2).split(y, y, codes))


def test_domain_adaptation_shared_office_caltech10():
    env = os.environ.get("SK_DECAF_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    if not (root / "office_caltech10").is_dir():
        pytest.skip(f"shared data not found at {root}")
    from sk_decaf.datasets import load_office_caltech10

    data = load_office_caltech10(root / "office_caltech10", domain=["amazon", "webcam"])
    expected = {"S": 200, "T": 30, "ST": 230}
    for setting, n_train in expected.items():
        cv = DomainAdaptationSplit("amazon", "webcam", setting=setting, random_state=0)
        for train, test in cv.split(data.paths, data.target, data.domain):
            assert (len(train), len(test)) == (n_train, 295 - 30)


def test_official_split_1d_and_2d():
    labels = np.array(["train", "test", "", "val", "train"])
    cv = OfficialSplit(labels)
    assert cv.get_n_splits() == 1
    [(train, test)] = list(cv.split(np.zeros((5, 1))))
    assert_array_equal(train, [0, 4])
    assert_array_equal(test, [1])
    [(train, _)] = list(OfficialSplit(labels, train=("train", "val")).split())
    assert_array_equal(train, [0, 3, 4])
    two = OfficialSplit(np.vstack([labels, labels[::-1]]))
    assert two.get_n_splits() == 2
    assert_array_equal([te for _, te in two.split()][1], [3])
    with pytest.raises(ValueError, match="samples"):
        next(cv.split(np.zeros((4, 1))))
