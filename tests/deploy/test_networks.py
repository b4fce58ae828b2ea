"""to_onnx on every documented pooling, layer list, test-time augmentation, preprocessing and decoding, and on
unions of several networks (make_ensemble, make_union): the exported model gives the pipeline's outputs."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline, make_union
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler
from sklearn.svm import LinearSVC
from torch import nn

from sk_decaf import DeCAFTransformer, SignedSqrt, make_ensemble, to_onnx
from sk_decaf.deploy import OnnxPipeline, read_metadata, unsupported_steps
from sk_decaf.deploy._network import preprocess_config
from tests.conftest import TINY

#: test_efficientnet at another input size and filter: a network whose images are prepared differently.
SMALL = {"pretrained_cfg_overlay": {"input_size": (3, 128, 128), "interpolation": "bilinear", "crop_pct": 0.9}}


@pytest.fixture(scope="module")
def split(demo):
    paths, target = np.asarray(demo.paths), demo.target
    return list(paths[::10]), target[::10], list(paths[3::25])


def _decaf(backbone=TINY, **params):
    return DeCAFTransformer(backbone, weights="random", random_state=0, **params)


def _assert_scores(got, expected):
    assert got.shape == expected.shape
    assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _export(pipe, tmp_path, X=None):
    """The exported model, checked by to_onnx itself on ``X`` when given."""
    path = tmp_path / "model.onnx"
    model = to_onnx(pipe, path, X=X)
    return model, OnnxPipeline(path)


def _assert_same_classifier(pipe, exported, X_test):
    got = exported.run(X_test)
    assert np.array_equal(got["label"], pipe.predict(X_test))
    _assert_scores(got["decision_function"], pipe.decision_function(X_test))


class _Tokens(nn.Module):
    """Patches as a token sequence ``(N, T, C)``, as transformer blocks give them."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 32, stride=32)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.mix(self.patch(x).flatten(2).transpose(1, 2))
        return self.head(tokens.mean(dim=1))


class _Hooked(_Tokens):
    """Not FX-traceable (a data-dependent branch): its layers are read through forward hooks."""

    def forward(self, x):
        if x.sum() > 0:
            x = x * 1.0
        return super().forward(x)


# -- pooling and layers --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "backbone, layer, pooling",
    [
        *[(TINY, ["blocks.2", "blocks.3", "blocks.4"], p) for p in ("avg", "max", "flatten", 1, 2, 3, 7)],
        ("efficientnet_lite0", "blocks.4", 2),  # the case: a 14 x 14 map behind "same" padding
        ("efficientnet_lite0", ["blocks.2", "blocks.4"], 3),
        ("test_vit", ["blocks.1", -2], "avg"),
        ("test_vit", "blocks.3", 4),
        (_Tokens(), ["patch", "mix"], "max"),
        (_Tokens(), "mix", "flatten"),
        (_Hooked(), ["patch", "mix"], "max"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__ if isinstance(v, nn.Module) else str(v),
)
def test_every_pooling_and_layer_list_exports(split, tmp_path, backbone, layer, pooling):
    X, _, X_test = split
    decaf = _decaf(backbone, layer=layer, pooling=pooling).fit(X)
    if isinstance(backbone, _Hooked):
        assert type(decaf.feature_network().taps).__name__ == "_HookTaps"
    model, exported = _export(decaf, tmp_path)
    assert [o.name for o in model.graph.output] == ["features"]
    _assert_scores(exported.transform(X_test), decaf.transform(X_test))


# -- test-time augmentation, preprocessing and decoding ------------------------------------------------------
@pytest.mark.parametrize("tta_reduce", ["mean", "max"])
@pytest.mark.parametrize("tta", ["flip", "10crop", "12jitter"])
def test_every_tta_mode_exports(split, tmp_path, tta, tta_reduce):
    X, y, X_test = split
    pipe = make_pipeline(_decaf(layer=[-3, -2], tta=tta, tta_reduce=tta_reduce), SignedSqrt(), LinearSVC())
    pipe.fit(X, y)
    model, exported = _export(pipe, tmp_path)
    n_crops = {"flip": None, "10crop": 5, "12jitter": 6}[tta]
    shape = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert shape == (["N", 3, 160, 160] if n_crops is None else ["N", n_crops, 3, 160, 160])
    assert read_metadata(tmp_path / "model.onnx")["sk_decaf.network"]["tta"] == tta
    _assert_same_classifier(pipe, exported, X_test)


@pytest.mark.parametrize("decode", ["exact", "reduced"])
@pytest.mark.parametrize("preprocess", ["model", "decaf"])
@pytest.mark.parametrize("tta", [None, "12jitter"])
def test_every_preprocess_and_decode_exports(split, tmp_path, preprocess, decode, tta):
    X, y, X_test = split
    pipe = make_pipeline(_decaf(preprocess=preprocess, decode=decode, tta=tta), SignedSqrt(), LinearSVC()).fit(X, y)
    _, exported = _export(pipe, tmp_path)
    assert exported.config == preprocess_config(pipe[0].data_config_, preprocess, decode, tta)
    _assert_same_classifier(pipe, exported, X_test)


# -- several networks ------------------------------------------------------------------------------------------
def test_ensemble_with_tta_is_one_graph(split, tmp_path):
    """make_ensemble's branches; the two 160 x 160 networks share an input, whatever their mean and std."""
    X, y, X_test = split
    features = make_ensemble(TINY, "test_vit", TINY, tta="flip", decaf_params={"weights": "random"})
    features.set_params(**{f"{TINY}-2__decaf__model_kwargs": SMALL})
    pipe = make_pipeline(features, LinearSVC()).fit(X, y)
    model, exported = _export(pipe, tmp_path, X=X_test)
    assert [i.name for i in model.graph.input] == ["images", "images_1"]
    meta = read_metadata(tmp_path / "model.onnx")
    assert [(b["name"], b["input"]) for b in meta["sk_decaf.branches"]] == [
        (TINY, "images"),
        ("test_vit", "images"),
        (f"{TINY}-2", "images_1"),
    ]
    assert [entry["preprocess"]["input_size"] for entry in meta["sk_decaf.inputs"]] == [[3, 160, 160], [3, 128, 128]]
    assert meta["sk_decaf.inputs"][0]["preprocess"]["mean"] is None  # ImageNet's and 0.5: applied in the graph
    assert meta["sk_decaf.preprocess"] == meta["sk_decaf.inputs"][0]["preprocess"]
    assert [name for name, _ in exported.inputs] == ["images", "images_1"]
    _assert_same_classifier(pipe, exported, X_test)


def test_union_with_other_steps_weights_and_dropped_branches(split, tmp_path):
    """A hand-written union: scaled and projected branches, a bare transformer, weights, a dropped branch,
    steps after the union and a classifier with probabilities."""
    X, y, X_test = split
    union = FeatureUnion(
        [
            ("projected", make_pipeline(_decaf(layer="blocks.3", pooling=2), StandardScaler(), PCA(6, random_state=0))),
            ("bare", _decaf(layer=-2, tta="10crop")),
            ("small", make_pipeline(_decaf(model_kwargs=SMALL), SignedSqrt())),
            ("dropped", "drop"),
        ],
        transformer_weights={"projected": 0.5, "small": 2.0},
    )
    pipe = make_pipeline(union, Normalizer(), LogisticRegression(max_iter=2000)).fit(X, y)
    model, exported = _export(pipe, tmp_path, X=X_test)
    assert [i.name for i in model.graph.input] == ["images", "images_1", "images_2"]
    got = exported.run(X_test)
    assert np.array_equal(got["label"], pipe.predict(X_test))
    _assert_scores(got["predict_proba"], pipe.predict_proba(X_test))
    _assert_scores(got["decision_function"], pipe.decision_function(X_test))


@pytest.mark.parametrize("make", [lambda u: u, lambda u: make_pipeline(u, SignedSqrt())], ids=["union", "then-sqrt"])
def test_union_features_export(split, tmp_path, make):
    X, _, X_test = split
    pipe = make(make_union(_decaf(layer=-2), make_pipeline(_decaf(layer="blocks.2", pooling=3), SignedSqrt()))).fit(X)
    model, exported = _export(pipe, tmp_path)
    assert [o.name for o in model.graph.output] == ["features"]
    assert [i.name for i in model.graph.input] == ["images"]
    _assert_scores(exported.transform(X_test), pipe.transform(X_test))


def test_union_steps_that_cannot_be_exported_are_named(split):
    X, y, _ = split
    union = FeatureUnion(
        [
            ("net", make_pipeline(_decaf(), FunctionTransformer(np.abs))),
            ("raw", FunctionTransformer(lambda images: np.zeros((len(images), 1)))),
            ("same", "passthrough"),
        ]
    )
    pipe = Pipeline([("union", union), ("svm", LinearSVC())])
    problems = dict(unsupported_steps(pipe))
    assert problems["union__net__functiontransformer"] == "it runs an arbitrary Python function, which has no ONNX form"
    assert "must start with a DeCAFTransformer; it is a FunctionTransformer" in problems["union__raw"]
    assert "'passthrough' would pass the images on" in problems["union__same"]
    late = Pipeline([("sqrt", SignedSqrt()), ("union", make_union(_decaf())), ("svm", LinearSVC())])
    assert ("union", "a FeatureUnion of DeCAFTransformers takes images, so it can only be the first step") in (
        unsupported_steps(late)
    )
    fitted = Pipeline([("union", FeatureUnion([union.transformer_list[0]])), ("svm", LinearSVC())]).fit(X, y)
    with pytest.raises(ValueError, match="step 'union__net__functiontransformer': it runs an arbitrary"):
        to_onnx(fitted, "never-written.onnx")


def test_models_of_earlier_versions_still_run(split, tmp_path):
    """A model without sk_decaf.inputs nor "crops" (written before unions and crops) runs as before."""
    import json

    import onnx

    X, y, X_test = split
    pipe = make_pipeline(_decaf(), SignedSqrt(), LinearSVC()).fit(X, y)
    model = to_onnx(pipe, tmp_path / "new.onnx")
    props = {p.key: json.loads(p.value) for p in model.metadata_props}
    del props["sk_decaf.inputs"], props["sk_decaf.preprocess"]["crops"]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {key: json.dumps(value) for key, value in props.items()})
    onnx.save(model, tmp_path / "old.onnx")
    _assert_same_classifier(pipe, OnnxPipeline(tmp_path / "old.onnx"), X_test)


def test_skl2onnx_input_must_hold_the_crops(split):
    import onnxruntime as ort
    import skl2onnx
    from skl2onnx.common.data_types import UInt8TensorType

    from sk_decaf.deploy import preprocess, register_converters

    X, _, X_test = split
    register_converters()
    decaf = _decaf(tta="10crop").fit(X)
    with pytest.raises(TypeError, match=r"UInt8TensorType\(\[None, 5, 3, 160, 160\]\)"):
        skl2onnx.to_onnx(decaf, initial_types=[("images", UInt8TensorType([None, 3, 160, 160]))], target_opset=17)
    model = skl2onnx.to_onnx(
        decaf, initial_types=[("images", UInt8TensorType([None, 5, 3, 160, 160]))], target_opset=17
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    crops = preprocess(X_test, preprocess_config(decaf.data_config_, decaf.preprocess, decaf.decode, decaf.tta))
    _assert_scores(session.run(None, {"images": crops})[0], decaf.transform(X_test))


# -- a ViT at a chosen input size ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layer, pooling",
    [("norm", "cls+avg"), (["blocks.0", "pre_logits"], "avg"), ("blocks.0", 2)],
)
def test_vit_at_a_chosen_input_size_exports(split, tmp_path, layer, pooling):
    """DINOv2 (4 registers, one block, random weights) resized to 112 x 112: one graph, fixed input shape."""
    X, y, X_test = split
    decaf = _decaf(
        "vit_small_patch14_reg4_dinov2.lvd142m", model_kwargs={"depth": 1}, input_size=112, layer=layer, pooling=pooling
    )
    pipe = make_pipeline(decaf, SignedSqrt(), LinearSVC()).fit(X, y)
    model, exported = _export(pipe, tmp_path)
    shape = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert shape == ["N", 3, 112, 112]
    assert read_metadata(tmp_path / "model.onnx")["sk_decaf.preprocess"]["input_size"] == [3, 112, 112]
    _assert_same_classifier(pipe, exported, X_test)
