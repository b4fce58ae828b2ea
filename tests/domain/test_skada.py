"""Interoperability with skada (the ``skada`` extra), both ways, with skada's integer labels."""

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from sk_decaf import CORAL, DeCAFTransformer, DomainAugment, GeodesicFlowKernel, SubspaceAlignment
from sk_decaf.domain._checks import _data
from tests.conftest import TINY


@pytest.fixture
def skada():
    # skada switches metadata routing on for the whole process when imported: keep that inside the test.
    with sklearn.config_context():
        module = pytest.importorskip("skada")
        sklearn.set_config(enable_metadata_routing=True)
        yield module
    assert sklearn.get_config()["enable_metadata_routing"] is False


def _skada_data():
    X, y, names = _data()
    return X, y, np.where(names == "amazon", 1, -2)  # skada: >= 0 source, < 0 target


@pytest.mark.parametrize(
    "adapter", [CORAL(), SubspaceAlignment(3), GeodesicFlowKernel(3)], ids=lambda a: type(a).__name__
)
def test_unsupervised_members_in_make_da_pipeline(skada, adapter):
    # The call of the issue: it raised "Pipeline.fit got unexpected argument(s) {'sample_domain'}".
    X, y, sd = _skada_data()
    pipe = skada.make_da_pipeline(adapter, LinearSVC())
    pipe.fit(X, y.copy(), sample_domain=sd)  # skada masks the target labels (-1), in place
    # By hand: the adapter sees every row, the SVM the source rows only.
    by_hand = sklearn.clone(adapter).fit(X, sample_domain=sd)
    svm = LinearSVC().fit(by_hand.transform(X, sample_domain=sd)[sd >= 0], y[sd >= 0])
    target = sd < 0
    assert_allclose(pipe.decision_function(X[target]), svm.decision_function(by_hand.transform(X[target])))
    expected = svm.decision_function(by_hand.transform(X, sample_domain=sd))
    assert_allclose(pipe.decision_function(X, sample_domain=sd), expected)
    # Labels masked beforehand (skada's convention for unlabelled targets) give the same model.
    masked = skada.make_da_pipeline(sklearn.clone(adapter), LinearSVC())
    masked.fit(X, np.where(target, -1, y), sample_domain=sd)
    assert_allclose(masked.decision_function(X[target]), pipe.decision_function(X[target]))


def test_domain_augment_in_make_da_pipeline_needs_target_labels(skada):
    X, y, sd = _skada_data()
    pipe = skada.make_da_pipeline(DomainAugment(), LinearSVC(), mask_target_labels=False)
    pipe.fit(X, y, sample_domain=sd)
    augment = DomainAugment().fit(X, sample_domain=sd)
    assert augment.domains_.tolist() == [1, -2]
    svm = LinearSVC().fit(augment.transform(X, sample_domain=sd), y)
    target = sd < 0
    assert_allclose(pipe.decision_function(X[target]), svm.decision_function(augment.transform(X[target])))


@pytest.mark.parametrize("n_components", [1, 3, 6])
def test_subspace_alignment_matches_skada(skada, n_components):
    X, _, sd = _skada_data()
    theirs = skada.SubspaceAlignmentAdapter(n_components=n_components).fit(X, sample_domain=sd)
    ours = SubspaceAlignment(n_components).fit(X, sample_domain=sd)
    assert_allclose(ours.alignment_, theirs.M_, atol=1e-10)
    expected = theirs.transform(X, sample_domain=sd, allow_source=True)
    assert_allclose(ours.transform(X, sample_domain=sd), expected, atol=1e-10)
    assert_allclose(ours.transform(X[sd < 0]), theirs.transform(X[sd < 0]), atol=1e-10)


def test_coral_matches_skada_up_to_its_conventions(skada):
    # skada's CORALAdapter(reg=None): biased covariances (1/n), both domains centred. Ours with reg=0
    # and center=True: unbiased covariances (Matlab's cov), target rows unchanged, source rows moved
    # to the target mean. Same algorithm: equal once the target mean and the 1/n scale are accounted for.
    X, _, sd = _skada_data()
    n_source, n_target = np.sum(sd >= 0), np.sum(sd < 0)
    theirs = skada.CORALAdapter(reg=None).fit(X, sample_domain=sd).transform(X, sample_domain=sd, allow_source=True)
    coral = CORAL(reg=0.0, center=True).fit(X, sample_domain=sd)
    ours = coral.transform(X, sample_domain=sd) - coral.mean_target_
    scale = np.sqrt(n_source / (n_source - 1) * (n_target - 1) / n_target)
    source = sd >= 0
    assert_allclose(ours[source] * scale, theirs[source], atol=1e-10)
    assert_allclose(ours[~source], theirs[~source], atol=1e-12)


@pytest.fixture(scope="module")
def activation_cache(tmp_path_factory):
    """One activation cache for the tests below: the network runs once per image."""
    return str(tmp_path_factory.mktemp("skada") / "activations.sqlite")


@pytest.mark.parametrize("name", ["CORALAdapter", "SubspaceAlignmentAdapter"])
def test_skada_adapters_after_decaf_in_our_pipelines(skada, name, rgb_arrays, activation_cache):
    # Images -> DeCAF features (tiny random-weight network) -> skada adapter -> SVM, in a plain Pipeline.
    images = [np.roll(rgb_arrays[i % 5], 4 * i, axis=0) for i in range(20)]
    y = np.arange(20) % 2
    images = [255 - im if label else im for im, label in zip(images, y)]
    sd = np.where(np.arange(20) < 12, 0, -1)
    params = {"n_components": 4} if name == "SubspaceAlignmentAdapter" else {}

    def decaf():
        return DeCAFTransformer(
            TINY, weights="random", random_state=0, engine="torch", n_jobs=1, cache=activation_cache
        )

    pipe = make_pipeline(decaf(), getattr(skada, name)(**params), LinearSVC())
    pipe.fit(images, y, sample_domain=sd)  # requested by skada's BaseAdapter, routed past DeCAF
    features = decaf().fit_transform(images)
    adapter = getattr(skada, name)(**params)
    svm = LinearSVC().fit(adapter.fit_transform(features, sample_domain=sd), y)
    target = sd < 0
    expected = svm.decision_function(adapter.transform(features[target]))
    assert_allclose(pipe.decision_function([images[i] for i in np.flatnonzero(target)]), expected, rtol=1e-4, atol=1e-4)
    assert_array_equal(pipe.predict([images[i] for i in np.flatnonzero(target)]), expected > 0)
