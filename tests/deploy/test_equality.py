"""The exported graph against the fitted pipeline with the real default network (EfficientNet-Lite0, ImageNet
weights shipped offline) and the recipe that docs/recipes.md recommends (EfficientNet-Lite0 and -Lite2 tested at
300 x 300): identical labels, scores within a relative error of 1e-4."""

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from sk_decaf import (
    CORAL,
    DeCAFTransformer,
    DomainAugment,
    GeodesicFlowKernel,
    SignedSqrt,
    SubspaceAlignment,
    make_ensemble,
    to_onnx,
)
from sk_decaf.datasets import load_office_caltech10
from sk_decaf.deploy import OnnxPipeline, read_metadata
from tests.conftest import shared_data_root


def _assert_same(exported, pipe, images):
    got = exported.run(images)
    assert np.array_equal(got["label"], pipe.predict(images))
    expected = pipe.decision_function(images)
    assert_allclose(got["decision_function"], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_demo_set(demo, tmp_path):
    """DeCAF -> SignedSqrt -> LinearSVC, fitted on half of the demo set, on the other half."""
    pipe = make_pipeline(DeCAFTransformer(cache=str(tmp_path / "activations.sqlite")), SignedSqrt(), LinearSVC())
    pipe.fit(demo.paths[::2], demo.target[::2])
    to_onnx(pipe, tmp_path / "model.onnx")
    _assert_same(OnnxPipeline(tmp_path / "model.onnx"), pipe, demo.paths[1::2])


def _recipe(cache):
    """docs/recipes.md's recommendation: EfficientNet-Lite0, and EfficientNet-Lite2 at 300 x 300, a LinearSVC."""
    features = make_ensemble("efficientnet_lite0", "efficientnet_lite2", cache=str(cache))
    return make_pipeline(features.set_params(efficientnet_lite2__decaf__input_size=300), LinearSVC())


def _assert_two_inputs(path):
    """Lite0 reads 224 x 224 images and Lite2 300 x 300: one input each, decoded once by the runtime."""
    inputs = read_metadata(path)["sk_decaf.inputs"]
    assert [(i["name"], i["preprocess"]["input_size"]) for i in inputs] == [
        ("images", [3, 224, 224]),
        ("images_1", [3, 300, 300]),
    ]


@pytest.mark.slow
def test_demo_set_ensemble_recipe(demo, tmp_path):
    pipe = _recipe(tmp_path / "activations.sqlite").fit(demo.paths[::2], demo.target[::2])
    to_onnx(pipe, tmp_path / "model.onnx")
    _assert_two_inputs(tmp_path / "model.onnx")
    _assert_same(OnnxPipeline(tmp_path / "model.onnx"), pipe, demo.paths[1::2])


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    """amazon -> dslr, supervised: 5 source and 3 target images per class; 3 more dslr images per class to test."""
    root = shared_data_root()
    if root is None:
        pytest.skip("../shared/data is not available (set SK_DECAF_SHARED_DATA to run this test)")
    data = load_office_caltech10(root / "office_caltech10", domain=["amazon", "dslr"])
    paths, target, domain = np.asarray(data.paths), data.target, np.asarray(data.domain)
    train, test = [], []
    for k in range(len(data.target_names)):
        train += list(np.flatnonzero((target == k) & (domain == "amazon"))[:5])
        dslr = np.flatnonzero((target == k) & (domain == "dslr"))
        train += list(dslr[:3])
        test += list(dslr[3:6])
    cache = tmp_path_factory.mktemp("office") / "activations.sqlite"
    return (
        list(paths[train]),
        target[train],
        domain[train],
        list(paths[test]),
        DeCAFTransformer(cache=str(cache)),
        tmp_path_factory.mktemp("office_models"),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "adapt",
    [
        None,
        DomainAugment(target_domain="dslr"),
        CORAL(target_domain="dslr"),
        SubspaceAlignment(20, target_domain="dslr"),
        GeodesicFlowKernel(10, target_domain="dslr"),
    ],
    ids=lambda adapt: type(adapt).__name__,
)
def test_office_caltech10(office, adapt):
    X, y, sample_domain, X_test, decaf, folder = office
    steps = [decaf, SignedSqrt()] + ([adapt] if adapt is not None else []) + [LinearSVC()]
    routed = {"sample_domain": sample_domain} if adapt is not None else {}  # no consumer: nothing to route
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(*steps).fit(X, y, **routed)
        path = folder / f"{type(adapt).__name__}.onnx"
        to_onnx(pipe, path)
        _assert_same(OnnxPipeline(path), pipe, X_test)


@pytest.mark.slow
def test_office_caltech10_ensemble_recipe(office):
    X, y, _, X_test, decaf, folder = office
    pipe = _recipe(decaf.cache).fit(X, y)
    path = folder / "ensemble.onnx"
    to_onnx(pipe, path)
    _assert_two_inputs(path)
    _assert_same(OnnxPipeline(path), pipe, X_test)
