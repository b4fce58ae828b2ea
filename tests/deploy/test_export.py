"""to_onnx on a tiny random-weight network: every exported output equals the fitted pipeline's."""

import os
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import sklearn
from numpy.testing import assert_allclose
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler
from sklearn.svm import SVC, LinearSVC

from sk_decaf import (
    CORAL,
    DeCAFTransformer,
    DomainAugment,
    FeatureDropout,
    GeodesicFlowKernel,
    SignedSqrt,
    SubspaceAlignment,
    to_onnx,
)
from sk_decaf.deploy import OnnxPipeline, read_metadata, register_converters, unsupported_steps
from sk_decaf.deploy import runtime as runtime_module
from sk_decaf.deploy._network import preprocess_config
from tests.conftest import TINY


@pytest.fixture(scope="module")
def split(demo):
    paths, target = np.asarray(demo.paths), demo.target
    return list(paths[::5]), target[::5], list(paths[2::10])


@pytest.fixture(scope="module")
def decaf(tmp_path_factory):
    cache = tmp_path_factory.mktemp("export") / "activations.sqlite"
    return DeCAFTransformer(TINY, weights="random", layer=[-3, -2], cache=str(cache), random_state=0)


def _assert_scores(got, expected):
    """Scores within a relative error of 1e-4 of the largest one."""
    assert got.shape == expected.shape
    assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _export(pipe, tmp_path, **kwargs):
    path = tmp_path / "model.onnx"
    model = to_onnx(pipe, path, **kwargs)
    return model, OnnxPipeline(path)


@pytest.mark.parametrize("n_classes", [2, 10])
@pytest.mark.parametrize(
    "head, outputs",
    [
        (LinearSVC(), ["label", "decision_function"]),
        (LogisticRegression(max_iter=1000), ["label", "decision_function", "predict_proba"]),
        (SVC(), ["label", "decision_function"]),
        (SVC(kernel="linear", decision_function_shape="ovo"), ["label", "decision_function"]),
    ],
)
def test_classifier_outputs_match_pipeline(decaf, split, tmp_path, head, outputs, n_classes):
    X, y, X_test = split
    pipe = make_pipeline(decaf, SignedSqrt(), head).fit(X, y % n_classes)
    model, exported = _export(pipe, tmp_path)
    assert [o.name for o in model.graph.output] == outputs
    got = exported.run(X_test)
    assert np.array_equal(got["label"], pipe.predict(X_test))
    for method in outputs[1:]:
        _assert_scores(got[method], getattr(pipe, method)(X_test))
    assert np.array_equal(exported.classes_, pipe.classes_)


@pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")  # deprecated in sklearn 1.9
def test_scores_that_skl2onnx_gets_wrong_are_left_out(decaf, split, tmp_path):
    """skl2onnx's SVC converter gives probabilities, not decision_function, when probability=True."""
    X, y, X_test = split
    pipe = make_pipeline(decaf, SignedSqrt(), SVC(probability=True, random_state=0)).fit(X, y)
    with pytest.warns(UserWarning, match="no 'decision_function' output"):
        model, exported = _export(pipe, tmp_path)
    assert [o.name for o in model.graph.output] == ["label", "predict_proba"]
    got = exported.run(X_test)
    assert np.array_equal(got["label"], pipe.predict(X_test))
    _assert_scores(got["predict_proba"], pipe.predict_proba(X_test))


@pytest.mark.parametrize(
    "steps",
    [
        [SignedSqrt(power=0.3, norm="l1", renorm="max")],
        [SignedSqrt(norm=None, renorm=None)],
        [FeatureDropout(0.4, random_state=0), SignedSqrt()],
        [StandardScaler(), PCA(8, whiten=True, random_state=0), Normalizer()],
    ],
    ids=["signed-power-l1-max", "signed-sqrt-alone", "dropout", "scaler-pca-normalizer"],
)
def test_feature_steps_match_pipeline(decaf, split, tmp_path, steps):
    X, y, X_test = split
    pipe = make_pipeline(decaf, *steps, LinearSVC()).fit(X, y)
    _, exported = _export(pipe, tmp_path)
    got = exported.run(X_test)
    assert np.array_equal(got["label"], pipe.predict(X_test))
    _assert_scores(got["decision_function"], pipe.decision_function(X_test))


@pytest.mark.parametrize(
    "adapt",
    [
        DomainAugment(target_domain="webcam"),
        CORAL(target_domain="webcam", center=True),
        SubspaceAlignment(6, target_domain="webcam"),
        GeodesicFlowKernel(4, target_domain="webcam"),
        GeodesicFlowKernel(4, target_domain="webcam", center=True),
    ],
    ids=repr,
)
def test_domain_transformers_map_unlabelled_images_as_target(decaf, split, tmp_path, adapt):
    X, y, X_test = split
    sample_domain = np.where(np.arange(len(X)) % 3 == 0, "webcam", "amazon")
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(decaf, SignedSqrt(), adapt, LinearSVC()).fit(X, y, sample_domain=sample_domain)
        _, exported = _export(pipe, tmp_path)
        got = exported.run(X_test)
        assert np.array_equal(got["label"], pipe.predict(X_test))
        _assert_scores(got["decision_function"], pipe.decision_function(X_test))


def test_several_target_domains_cannot_be_exported(decaf, split):
    X, y, _ = split
    sample_domain = np.where(np.arange(len(X)) % 2 == 0, -1, -2)  # skada's labels: two target domains
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(decaf, DomainAugment(), LinearSVC()).fit(X, y, sample_domain=sample_domain)
    [(name, why)] = unsupported_steps(pipe)
    assert name == "domainaugment" and "several target domains" in why


@pytest.mark.parametrize("pooling", ["avg", "max", 2])
def test_transformers_export_their_features(split, tmp_path, pooling):
    X, _, X_test = split
    decaf = DeCAFTransformer(
        TINY, weights="random", layer=["blocks.2", "blocks.4"], pooling=pooling, random_state=0
    ).fit(X)
    for pipe in (decaf, Pipeline([("decaf", decaf), ("sqrt", SignedSqrt())])):
        model, exported = _export(pipe, tmp_path)
        assert [o.name for o in model.graph.output] == ["features"]
        _assert_scores(exported.transform(X_test), pipe.transform(X_test))


def test_string_labels_and_metadata(decaf, split, tmp_path):
    X, y, X_test = split
    names = np.array([f"class {k}" for k in range(10)], dtype=object)
    pipe = make_pipeline(decaf, SignedSqrt(), LinearSVC()).fit(X, names[y])
    _, exported = _export(pipe, tmp_path)
    assert exported.predict(X_test).tolist() == pipe.predict(X_test).tolist()
    meta = read_metadata(tmp_path / "model.onnx")
    assert meta["sk_decaf.preprocess"] == preprocess_config(decaf.data_config_, decaf.preprocess, decaf.decode)
    assert meta["sk_decaf.outputs"]["classes"] == names.tolist()
    assert meta["sk_decaf.network"]["layers"] == decaf.layers_


def test_check_on_images_guards_the_file(decaf, split, tmp_path, monkeypatch):
    X, y, X_test = split
    pipe = make_pipeline(decaf, SignedSqrt(), LinearSVC()).fit(X, y)
    to_onnx(pipe, tmp_path / "checked.onnx", X=X_test)
    assert (tmp_path / "checked.onnx").is_file()

    run = runtime_module.OnnxPipeline.run

    def drifted(self, images):
        out = run(self, images)
        out["decision_function"] = out["decision_function"] * 1.01
        return out

    monkeypatch.setattr(runtime_module.OnnxPipeline, "run", drifted)
    with pytest.raises(ValueError, match="decision_function differs"):
        to_onnx(pipe, tmp_path / "drifted.onnx", X=X_test)
    assert os.listdir(tmp_path) == ["checked.onnx"]  # nothing written, no temporary file left


def test_unsupported_steps_are_named_with_reasons(decaf, split):
    X, y, _ = split
    pipe = make_pipeline(decaf, FunctionTransformer(np.log1p), SignedSqrt(), LinearSVC()).fit(X, y)
    with pytest.raises(ValueError) as info:
        to_onnx(pipe, "never-written.onnx")
    assert "'functiontransformer': it runs an arbitrary Python function" in str(info.value)
    assert not os.path.exists("never-written.onnx")
    features = np.random.default_rng(0).normal(size=(30, 4))
    on_features = make_pipeline(SignedSqrt(), LinearSVC()).fit(features, np.arange(30) % 2)
    assert unsupported_steps(on_features) == [
        (
            "signedsqrt",
            pytest.approx(
                "the graph starts from images, so the first step must be a DeCAFTransformer or a FeatureUnion whose "
                "branches start with one (to export a pipeline on features, use skl2onnx.to_onnx after "
                "sk_decaf.deploy.register_converters())"
            ),
        )
    ]
    twice = Pipeline([("a", decaf), ("b", decaf), ("svm", LinearSVC())])
    assert unsupported_steps(twice) == [("b", "a DeCAFTransformer takes images, so it can only be the first step")]


def test_not_fitted(tmp_path):
    with pytest.raises(NotFittedError):
        to_onnx(make_pipeline(DeCAFTransformer(TINY), LinearSVC()), tmp_path / "m.onnx")


def test_skl2onnx_converts_our_pipelines(decaf, split):
    """After register_converters, skl2onnx.to_onnx itself converts them, here to opset 18."""
    import skl2onnx
    from skl2onnx.common.data_types import UInt8TensorType

    X, y, X_test = split
    head = LogisticRegression(max_iter=1000)
    pipe = make_pipeline(decaf, SignedSqrt(), FeatureDropout(0.2), head).fit(X, y)
    register_converters()
    model = skl2onnx.to_onnx(
        pipe,
        initial_types=[("images", UInt8TensorType([None, 3, 160, 160]))],
        options={id(head): {"zipmap": False}},
        target_opset=18,
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    images = runtime_module.preprocess(X_test, preprocess_config(decaf.data_config_, decaf.preprocess, decaf.decode))
    labels, proba = session.run(None, {"images": images})
    assert np.array_equal(labels, pipe.predict(X_test))
    _assert_scores(proba, pipe.predict_proba(X_test))


def test_onnx_pipeline_errors(decaf, split, tmp_path):
    import skl2onnx

    X, y, X_test = split
    plain = skl2onnx.to_onnx(StandardScaler().fit(np.ones((3, 2), np.float32)), np.ones((1, 2), np.float32))
    (tmp_path / "plain.onnx").write_bytes(plain.SerializeToString())
    with pytest.raises(ValueError, match="not written by sk_decaf.to_onnx"):
        OnnxPipeline(tmp_path / "plain.onnx")
    pipe = make_pipeline(decaf, SignedSqrt(), LinearSVC()).fit(X, y)
    _, exported = _export(pipe, tmp_path)
    with pytest.raises(AttributeError, match="no 'predict_proba' output"):
        exported.predict_proba(X_test)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="no images"):
            exported.run([])
