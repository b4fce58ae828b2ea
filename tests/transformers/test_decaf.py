"""DeCAFTransformer: layers, shapes, invariances and the scikit-learn contract."""

import pickle
import time

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer, list_layers
from tests.conftest import API_CHECKS, TINY, assert_features_close, normalised_batch


def tiny(**kwargs):
    params = dict(backbone=TINY, weights="random", random_state=0, engine="torch")
    params.update(kwargs)
    return DeCAFTransformer(**params)


# -- layers and shapes ------------------------------------------------------------------------------
def test_list_layers_alexnet_forward_order():
    assert list_layers("alexnet") == [
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "conv3",
        "conv4",
        "conv5",
        "pool5",
        "fc6",
        "fc7",
        "fc8",
    ]
    layers, aliases = list_layers("alexnet", aliases=True)
    assert aliases["decaf1"] == "pool1" and aliases["decaf5"] == "pool5"
    assert aliases["decaf6"] == "fc6" and aliases["decaf7"] == "fc7"


def test_list_layers_timm_ends_with_head():
    assert list_layers("efficientnet_lite0") == [
        "blocks.0",
        "blocks.1",
        "blocks.2",
        "blocks.4",
        "blocks.6",
        "pre_logits",
        "logits",
    ]
    assert list_layers(TINY)[-2:] == ["pre_logits", "logits"]


@pytest.fixture(scope="module")
def alexnet_features(image_files):
    layers = ["conv1", "pool1", "pool5", "fc6", "fc7", "fc8"]
    decaf = DeCAFTransformer(backbone="alexnet", layer=layers, weights="random", random_state=0, engine="torch").fit(
        image_files
    )
    flat = DeCAFTransformer(
        backbone="alexnet", layer="pool5", pooling="flatten", weights="random", random_state=0, engine="torch"
    ).fit(image_files)
    return decaf, decaf.transform(image_files[:2]), flat.transform(image_files[:2])


def test_alexnet_layer_shapes(alexnet_features):
    decaf, X, flat = alexnet_features
    # torchvision's AlexNet ("one weird trick" variant) has 64 conv1 filters where DeCAF's had 96;
    # pool5 and the fully connected layers have DeCAF's sizes.
    assert decaf.feature_dims_ == {"conv1": 64, "pool1": 64, "pool5": 256, "fc6": 4096, "fc7": 4096, "fc8": 1000}
    assert X.shape == (2, 64 + 64 + 256 + 4096 + 4096 + 1000) and X.dtype == np.float32
    assert flat.shape == (2, 9216)
    # pool5 flattened is the 256 x 6 x 6 map, channel-major: its per-channel means are the avg-pooled pool5
    assert_features_close(flat.reshape(2, 256, 36).mean(axis=2), X[:, 128:384])
    names = decaf.get_feature_names_out()
    fc6 = names[np.char.startswith(names.astype(str), "fc6_")]
    assert fc6[0] == "fc6_0" and fc6[-1] == "fc6_4095" and len(fc6) == 4096


def test_alexnet_fc_layers_are_taken_after_relu(alexnet_features):
    decaf, X, _ = alexnet_features
    cols = dict(zip(decaf.layers_, np.split(X, np.cumsum(list(decaf.feature_dims_.values()))[:-1], axis=1)))
    assert (cols["fc6"] >= 0).all() and (cols["fc7"] >= 0).all() and (cols["conv1"] >= 0).all()
    assert (cols["fc6"] > 0).mean() > 0.1
    assert (cols["fc8"] < 0).any()  # the logits are not rectified


def test_alexnet_aliases_and_default(image_files):
    base = dict(backbone="alexnet", weights="random", random_state=0, engine="torch")
    fc6 = DeCAFTransformer(layer="fc6", **base).fit_transform(image_files[:1])
    decaf6 = DeCAFTransformer(layer="decaf6", **base).fit_transform(image_files[:1])
    default = DeCAFTransformer(**base).fit(image_files[:1])
    assert default.layers_ == ["fc6"]
    assert_features_close(decaf6, fc6)
    assert DeCAFTransformer(layer=-2, **base).fit(image_files[:1]).layers_ == ["fc7"]


def test_negative_layers_count_back_from_logits(image_files):
    decaf = tiny(layer=[-1, -2, -3]).fit(image_files)
    assert decaf.layers_ == ["logits", "pre_logits", list_layers(TINY)[-3]]
    assert decaf.feature_dims_["logits"] == 1000


@pytest.mark.parametrize("bad", ["nope", -99, 3, ["pre_logits", "pre_logits"], []])
def test_bad_layer_is_a_clear_error(bad, image_files):
    with pytest.raises(ValueError, match="layer"):
        tiny(layer=bad).fit(image_files)


def test_layer_list_is_the_concatenation_of_single_layers(image_files):
    both = tiny(layer=["blocks.2", "pre_logits"]).fit_transform(image_files)
    one = tiny(layer="blocks.2").fit_transform(image_files)
    two = tiny(layer="pre_logits").fit_transform(image_files)
    assert_features_close(both[:, : one.shape[1]], one)
    assert_features_close(both[:, one.shape[1] :], two)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_same_features_whatever_the_batch_size(engine, image_files):
    pytest.importorskip("onnxruntime") if engine == "onnxruntime" else None
    outs = [
        tiny(engine=engine, batch_size=b, layer=["blocks.1", "logits"]).fit_transform(image_files * 3)
        for b in (1, 4, 32)
    ]
    d = outs[0].shape[1] - 1000  # blocks.1, then the logits: each compared at its own scale
    for other in outs[1:]:
        assert_features_close(other[:, :d], outs[0][:, :d])
        assert_features_close(other[:, d:], outs[0][:, d:])


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet", "test_vit", "test_convnext"])
def test_logits_and_pre_logits_match_the_model(name, image_files):
    decaf = DeCAFTransformer(
        backbone=name, layer=["pre_logits", "logits"], weights="random", random_state=0, engine="torch", decode="exact"
    ).fit(image_files)  # exact: timm's transform
    X = decaf.transform(image_files)
    model = decaf.backbone_.float().eval()
    batch = normalised_batch(decaf, image_files)
    with torch.inference_mode():
        feats = model.forward_features(batch)
        pre = model.forward_head(feats, pre_logits=True).numpy()
        logits = model(batch).numpy()
    d = decaf.feature_dims_["pre_logits"]
    assert_features_close(X[:, :d], pre)
    assert_features_close(X[:, d:], logits)


def test_network_is_cut_after_the_deepest_layer(image_files):
    decaf = tiny(layer="blocks.1").fit(image_files)
    model = decaf.backbone_
    assert len(model.blocks) == 2  # blocks.2 ... never exist, let alone run
    assert isinstance(model.conv_head, torch.nn.Identity)
    assert decaf.transform(image_files).shape == (5, decaf.feature_dims_["blocks.1"])


# blocks.1 of test_efficientnet: 24 channels at stride 4 of a 160 x 160 input
@pytest.mark.parametrize("pooling, dim", [("avg", 24), ("max", 24), ("flatten", 24 * 40 * 40), (2, 24 * 4)])
def test_pooling(pooling, dim, image_files):
    decaf = tiny(layer="blocks.1", pooling=pooling, decode="exact").fit(image_files)  # exact: timm's transform
    X = decaf.transform(image_files)
    assert X.shape == (5, dim)
    # The raw activation map of blocks.1, taken by hand with a forward hook on the same network.
    maps = []
    model = decaf.backbone_.float().eval()
    handle = model.blocks[1].register_forward_hook(lambda module, args, out: maps.append(out.numpy().copy()))
    with torch.inference_mode():
        model(normalised_batch(decaf, image_files))
    handle.remove()
    fmap = maps[0]
    assert fmap.shape == (5, 24, 40, 40)
    expected = {
        "avg": fmap.mean(axis=(2, 3)),
        "max": fmap.max(axis=(2, 3)),
        "flatten": fmap.reshape(5, -1),  # channel-major, as get_feature_names_out numbers them
        2: fmap.reshape(5, 24, 2, 20, 2, 20).mean(axis=(3, 5)).reshape(5, -1),  # 2 x 2 grid, row-major cells
    }[pooling]
    assert_features_close(X, expected)


def test_max_pooling_dominates_average(image_files):
    avg = tiny(layer="blocks.1", pooling="avg").fit_transform(image_files)
    mx = tiny(layer="blocks.1", pooling="max").fit_transform(image_files)
    grid = tiny(layer="blocks.1", pooling=2).fit_transform(image_files)
    assert (mx >= avg - 1e-5).all()
    # the mean of the 2x2 grid of average pools is the global average
    assert_features_close(grid.reshape(5, 24, 4).mean(axis=2), avg)


def test_random_weights_follow_random_state(image_files):
    a = tiny(random_state=0).fit_transform(image_files)
    b = tiny(random_state=0).fit_transform(image_files)
    c = tiny(random_state=1).fit_transform(image_files)
    assert_features_close(a, b)
    assert not np.allclose(a, c, rtol=1e-2, atol=1e-2 * np.abs(a).max())


# -- scikit-learn contract ------------------------------------------------------------------------
@pytest.mark.parametrize("check", API_CHECKS)
def test_api_level_estimator_checks(check):
    est = tiny()
    check(type(est).__name__, est)


def test_fit_does_not_change_parameters(image_files):
    est = tiny(layer=-2)
    before = est.get_params()
    est.fit(image_files)
    assert est.get_params() == before


def test_estimator_checks_that_need_arrays_are_not_silently_skipped():
    tags = tiny().__sklearn_tags__()
    assert tags.input_tags.two_d_array is False  # the API-level checks above run instead


def test_not_fitted_error(image_files):
    with pytest.raises(NotFittedError):
        tiny().transform(image_files)
    with pytest.raises(NotFittedError):
        tiny().get_feature_names_out()


def test_parameter_validation_happens_in_fit(image_files):
    est = tiny(pooling="median", batch_size=0)
    with pytest.raises(ValueError, match="pooling|batch_size"):
        est.fit(image_files)


def test_clone_and_pickle_round_trip(image_files):
    est = tiny(layer="pre_logits").fit(image_files)
    X = est.transform(image_files)
    cloned = clone(est)
    assert cloned.get_params() == est.get_params() and not hasattr(cloned, "layers_")
    blob = pickle.dumps(est)
    weights_bytes = sum(p.numel() * 4 for p in est.backbone_.parameters())
    assert len(blob) < weights_bytes / 10  # the weights are reloaded, not embedded
    restored = pickle.loads(blob)
    assert restored.layers_ == est.layers_
    assert_features_close(restored.transform(image_files), X)


def test_set_output_pandas(image_files):
    est = tiny(layer="pre_logits").set_output(transform="pandas").fit(image_files)
    df = est.transform(image_files)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == list(est.get_feature_names_out())
    assert df.columns[0] == "pre_logits_0" and df.shape == (5, est.n_features_out_)


def test_pipeline_and_gridsearch_over_layer(demo):
    paths, y = demo.paths[::4], demo.target[::4]  # 50 images, 5 per class
    pipe = Pipeline([("decaf", tiny()), ("svm", LinearSVC())])
    grid = GridSearchCV(
        pipe, {"decaf__layer": ["blocks.1", "pre_logits"]}, cv=StratifiedKFold(2, shuffle=True, random_state=0)
    ).fit(paths, y)
    assert set(grid.cv_results_["param_decaf__layer"]) == {"blocks.1", "pre_logits"}
    assert grid.best_params_["decaf__layer"] in {"blocks.1", "pre_logits"}
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert grid.predict(demo.paths[1:6]).shape == (5,)


def test_output_is_float32_in_input_order(image_files):
    est = tiny(layer="pre_logits").fit(image_files)
    forward = est.transform(image_files)
    backward = est.transform(image_files[::-1])
    assert forward.dtype == np.float32
    assert_features_close(backward, forward[::-1])


def test_out_writes_a_memmap(tmp_path, image_files):
    est = tiny(layer="pre_logits").fit(image_files)
    path = tmp_path / "features.npy"
    result = est.transform(image_files, out=path)
    assert isinstance(result, np.memmap)
    assert_features_close(np.load(path), est.transform(image_files))


def test_explicit_cuda_without_cuda_is_an_error(image_files):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA"):
        tiny(device="cuda").fit(image_files)
    assert tiny(device="auto").fit(image_files).device_.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(image_files):
    cpu = tiny(layer="pre_logits", device="cpu", precision="float32").fit_transform(image_files)
    gpu = tiny(layer="pre_logits", device="cuda", precision="float32").fit_transform(image_files)
    bf16 = tiny(layer="pre_logits", device="cuda").fit_transform(image_files)
    assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-4)
    assert np.corrcoef(bf16.ravel(), cpu.ravel())[0, 1] > 0.99


def test_threads_sharing_a_transformer_load_its_network_once(monkeypatch, rgb_arrays):
    from sk_decaf.transformers import _runtime
    from tests.conftest import run_in_threads

    est = tiny().fit(rgb_arrays)
    loads = []
    load = _runtime.Network._load

    def slow_load(e):
        loads.append(1)
        time.sleep(0.2)  # every thread arrives while the first one loads
        return load(e)

    monkeypatch.setattr(_runtime.Network, "_load", staticmethod(slow_load))
    expected = tiny().fit(rgb_arrays).transform(rgb_arrays)
    loads.clear()
    results = {}
    run_in_threads(lambda i: results.__setitem__(i, est.transform(rgb_arrays)), 4)
    assert len(loads) == 1
    for X in results.values():
        assert_features_close(X, expected)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_transform_leaves_torch_s_global_generator_alone(rgb_arrays, engine):
    """Decoding draws no seed from torch's global generator: the user's stream stays as it was, and a thread
    drawing a network's seeded random weights meanwhile gets the same weights (the race this test pins)."""
    est = tiny(engine=engine).fit(rgb_arrays)
    est.transform(rgb_arrays)  # loads the network (its seeded build restores the generator too)
    before = torch.get_rng_state()
    est.transform(rgb_arrays)
    assert torch.equal(torch.get_rng_state(), before)
