"""evaluate and few_shot_curve on synthetic features standing in for images."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import LinearSVC
from sklearn.utils import Bunch

from sk_decaf import DomainAdaptationSplit, PerClassSplit, evaluate
from sk_decaf.evaluation import EvaluationResult, FewShotCurve, few_shot_curve
from sk_decaf.transformers import DeCAFTransformer
from tests.conftest import TINY

CALLS = []  # rows seen by the featurizer, one entry per call


def _featurize(X):
    """Stand-in for a frozen CNN: records its calls, returns float features."""
    X = np.asarray(X, dtype=float)
    CALLS.append(len(X))
    return X


def _blobs(counts, n_features=4, spread=1.0, seed=0):
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    centres = 4 * rng.normal(size=(len(counts), n_features))
    return centres[y] + spread * rng.normal(size=(len(y), n_features)), y


def _pipe(clf=None):
    return make_pipeline(FunctionTransformer(_featurize), clf or LinearSVC())


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def test_caltech101_protocol_counts_and_result():
    X, y = _blobs([40, 35, 31])
    result = evaluate(_pipe(), Bunch(data=X, target=y), protocol="caltech101")
    assert isinstance(result, EvaluationResult)
    assert result.scores.shape == (5,)
    assert_array_equal(result.n_train, [90] * 5)
    assert_array_equal(result.n_test, [16] * 5)
    assert result.mean > 0.9 and result.best_params is None
    assert_allclose([result.mean, result.std], [result.scores.mean(), result.scores.std()])
    assert "30 train / the rest test" in result.protocol and "±" in repr(result)


def test_sun397_protocol_counts():
    X, y = _blobs([110, 100])
    result = evaluate(LinearSVC(), (X, y), protocol="sun397", n_splits=2)
    assert_array_equal(result.n_train, [100, 100])
    assert_array_equal(result.n_test, [100, 100])


def test_score_is_mean_per_class_accuracy():
    X, y = _blobs([60, 20, 35], spread=4.0)  # overlapping, imbalanced test sets
    result = evaluate(
        LogisticRegression(),
        (X, y),
        protocol="per-class",
        n_train=10,
        random_state=3,
        return_estimators=True,
    )
    splits = PerClassSplit(10, random_state=3).split(X, y)
    for score, est, (_, test) in zip(result.scores, result.estimators, splits):
        y_pred = est.predict(X[test])
        assert_allclose(score, balanced_accuracy_score(y[test], y_pred))
        cm = confusion_matrix(y[test], y_pred)
        assert_allclose(score, np.mean(np.diag(cm) / cm.sum(axis=1)))
    assert result.mean < 0.99  # a non-trivial check


def test_precompute_featurizes_once_with_same_scores():
    X, y = _blobs([120, 110, 100])
    evaluate(_pipe(), (X, y), protocol="sun397", n_splits=1, precompute=True)
    assert CALLS == [300]  # only the images used by a split, once
    CALLS.clear()
    fast = evaluate(_pipe(), (X, y), protocol="sun397", precompute=True)
    assert CALLS == [330]
    CALLS.clear()
    slow = evaluate(_pipe(), (X, y), protocol="sun397", precompute=False)
    assert len(CALLS) == 10  # fit_transform + transform per split
    assert_allclose(fast.scores, slow.scores)


def test_precompute_auto_only_for_frozen_featurizers():
    # Any other first step is refitted per split (fit_transform + transform each time).
    X, y = _blobs([40, 40])
    evaluate(_pipe(), (X, y), n_splits=2)
    assert len(CALLS) == 4


class CountingDeCAF(DeCAFTransformer):
    """The real DeCAFTransformer (a tiny random-weight network), recording the images it featurizes."""

    def transform(self, X, out=None):
        CALLS.append(len(X))
        return super().transform(X, out=out)


def test_precompute_auto_featurizes_images_once_with_decaf(rgb_arrays):
    # precompute="auto" recognises a real DeCAFTransformer as a frozen first step: every image used by
    # some split goes through the network once, and the scores equal those of refitting it per split.
    y = np.arange(16) % 2
    # Class 1: negative images, an easy contrast even for random weights.
    images = [np.roll(rgb_arrays[i % 5], 3 * i, axis=1) for i in range(16)]
    images = [255 - im if label else im for im, label in zip(images, y)]
    decaf = CountingDeCAF(TINY, weights="random", random_state=0, engine="torch", n_jobs=1)
    pipe = make_pipeline(decaf, LinearSVC())
    auto = evaluate(pipe, (images, y), protocol="per-class", n_train=3, n_splits=3)
    assert CALLS == [16]
    CALLS.clear()
    per_split = evaluate(pipe, (images, y), protocol="per-class", n_train=3, n_splits=3, precompute=False)
    assert CALLS == [6, 10] * 3
    assert_allclose(auto.scores, per_split.scores)


def test_precompute_true_errors():
    X, y = _blobs([40, 40])
    with pytest.raises(ValueError, match="not a Pipeline"):
        evaluate(LinearSVC(), (X, y), precompute=True)
    search = GridSearchCV(_pipe(), {"functiontransformer__validate": [False, True]})
    with pytest.raises(ValueError, match="tunes the first step"):
        evaluate(search, (X, y), precompute=True)


@pytest.mark.parametrize(
    "protocol, n_train, inner", [("caltech101", None, (25, 5)), ("sun397", None, (42, 8)), ("per-class", 12, (10, 2))]
)
def test_search_gets_protocol_validation_split(protocol, n_train, inner):
    X, y = _blobs([100, 100])
    search = GridSearchCV(_pipe(), {"linearsvc__C": [0.01, 1.0]})
    result = evaluate(
        search,
        (X, y),
        protocol=protocol,
        n_train=n_train,
        n_splits=2,
        precompute=True,
        return_estimators=True,
    )
    assert len(CALLS) == 1
    for est in result.estimators:
        assert isinstance(est.cv, PerClassSplit) and est.cv.n_splits == 1
        assert (est.cv.n_train, est.cv.n_test) == inner
        assert est.best_estimator_.steps[0][0] == "linearsvc"  # featurizer split off
    assert [set(p) for p in result.best_params] == [{"linearsvc__C"}] * 2
    assert search.cv is None  # the user's object is untouched


def test_search_explicit_cv_is_kept():
    X, y = _blobs([40, 40])
    search = GridSearchCV(LinearSVC(), {"C": [0.1, 1.0]}, cv=3)
    result = evaluate(search, (X, y), n_splits=2, return_estimators=True)
    assert [est.cv for est in result.estimators] == [3, 3]


def test_search_with_one_image_per_class_needs_explicit_cv():
    X, y = _blobs([20, 20])
    search = GridSearchCV(LinearSVC(), {"C": [0.1, 1.0]})
    with pytest.raises(ValueError, match="n_train=1"):
        evaluate(search, (X, y), protocol="per-class", n_train=1)


def test_splitter_object_protocol():
    X, y = _blobs([30, 30])
    result = evaluate(LinearSVC(), (X, y), protocol=StratifiedKFold(3))
    assert result.scores.shape == (3,) and "StratifiedKFold" in result.protocol
    assert_array_equal(result.n_test, [20, 20, 20])


def test_splitter_objects_get_the_domains_under_their_own_name():
    # GroupKFold requests `groups`, DomainAdaptationSplit `sample_domain`: each gets the dataset's domains.
    X, y = _blobs([30, 30])
    domain = np.tile(np.repeat(["amazon", "webcam"], [20, 10]), 2)
    by_group = evaluate(LinearSVC(), (X, y, domain), protocol=GroupKFold(2))
    assert sorted(by_group.n_test) == [20, 40]  # one whole domain per test fold
    cv = DomainAdaptationSplit("amazon", "webcam", n_source_per_class=10, n_splits=2, random_state=0)
    office = evaluate(LinearSVC(), (X, y, domain), protocol=cv)
    assert_array_equal(office.n_train, [2 * (10 + 3)] * 2)
    assert_array_equal(office.n_test, [2 * 7] * 2)
    assert office.splitter is cv and by_group.splitter.get_n_splits() == 2


def test_too_few_is_passed_on():
    X, y = _blobs([40, 20, 35])
    with pytest.raises(ValueError, match="fewer than 31"):
        evaluate(LinearSVC(), (X, y))
    result = evaluate(LinearSVC(), (X, y), too_few="skip", n_splits=2)
    assert_array_equal(result.n_train, [60, 60])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"protocol": "imagenet"}, "'protocol' parameter"),
        ({"protocol": "per-class"}, "n_train"),
        ({"n_train": 5}, "n_train"),
        ({"protocol": "office"}, "source"),
        ({"precompute": "yes"}, "'precompute' parameter"),
        ({"too_few": "drop"}, "too_few"),
    ],
)
def test_bad_protocol_arguments(kwargs, match):
    X, y = _blobs([40, 40])
    with pytest.raises(ValueError, match=match):
        evaluate(LinearSVC(), (X, y), **kwargs)


def test_dataset_forms():
    X, y = _blobs([40, 40])
    a = evaluate(LinearSVC(), Bunch(data=X, target=y, paths=["unused"] * 80), n_splits=2)
    b = evaluate(LinearSVC(), (X, y), n_splits=2)
    assert_allclose(a.scores, b.scores)
    with pytest.raises(ValueError, match="target"):
        evaluate(LinearSVC(), Bunch(data=X))
    with pytest.raises(TypeError):
        evaluate(LinearSVC(), X)


def test_lazy_crops_reach_the_featurizer_lazily(tmp_path):
    from PIL import Image

    from sk_decaf.datasets import CroppedImages

    seen = []

    def mean_colour(images):
        seen.append(type(images).__name__)
        return np.array([np.asarray(im, dtype=float).mean(axis=(0, 1)) for im in images])

    paths = []
    for i in range(24):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (6, 6), (200 * (i % 2), 50, 100)).save(paths[-1])
    data = Bunch(images=CroppedImages(paths, [[1, 1, 3, 3]] * 24), target=np.arange(24) % 2)
    pipe = make_pipeline(FunctionTransformer(mean_colour), LinearSVC())
    result = evaluate(pipe, data, protocol="per-class", n_train=4, n_splits=2)
    assert set(seen) == {"CroppedImages"}
    assert_allclose(result.scores, [1.0, 1.0])


def test_few_shot_curve_shapes_and_single_featurization():
    X, y = _blobs([40, 40, 40])
    curve = few_shot_curve(_pipe(), (X, y), n_train=[5, 1, 2], n_splits=3, precompute=True)
    assert isinstance(curve, FewShotCurve)
    assert_array_equal(curve.n_train, [1, 2, 5])
    assert curve.scores.shape == (3, 3) and len(CALLS) == 1
    assert_allclose(curve.mean, curve.scores.mean(axis=1))
    single = evaluate(_pipe(), (X, y), protocol="per-class", n_train=2, n_splits=3)
    assert_allclose(curve.scores[1], single.scores)
    again = few_shot_curve(_pipe(), (X, y), n_train=[5, 1, 2], n_splits=3)
    assert_allclose(curve.scores, again.scores)


def test_few_shot_curve_too_few():
    X, y = _blobs([25, 40])
    with pytest.raises(ValueError, match="fewer than 31"):
        few_shot_curve(LinearSVC(), (X, y), n_train=[1, 30])
    curve = few_shot_curve(LinearSVC(), (X, y), n_train=[1, 30], too_few="shrink", n_splits=2)
    assert curve.scores.shape == (2, 2)
