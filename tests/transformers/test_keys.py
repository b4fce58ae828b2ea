"""The activation description keys the cache and the exported graph: complete, and only what matters."""

import os

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from sk_decaf import DeCAFTransformer
from sk_decaf.transformers._decaf import KEY_EXEMPT_PARAMS
from tests.conftest import TINY, assert_features_close, normalised_batch


def tiny(**kwargs):
    params = dict(backbone=TINY, weights="random", random_state=0, engine="torch")
    params.update(kwargs)
    return DeCAFTransformer(**params)


def test_every_parameter_is_keyed_or_exempt_on_purpose(rgb_arrays):
    """A new parameter joins the key unless it is declared exempt, and the exempt list has no stale names."""
    decaf = tiny().fit(rgb_arrays)
    params = set(decaf.get_params(deep=False))
    assert set(KEY_EXEMPT_PARAMS) <= params, set(KEY_EXEMPT_PARAMS) - params
    keyed = params - set(KEY_EXEMPT_PARAMS)
    assert keyed <= set(decaf._resolution.description), keyed - set(decaf._resolution.description)
    # what replaces the exempt parameters that do change activations
    for derived in ("backbone", "family", "architecture", "weights", "precision", "data_config"):
        assert derived in decaf._resolution.description


# Parameters that change activations, each with a value different from the default.
CHANGES = {
    "pooling": "max",
    "preprocess": "decaf",
    "decode": "exact",
    "model_kwargs": {"drop_rate": 0.0, "global_pool": "max"},
    "precision": "bfloat16",
    "tta": "flip",
    "tta_reduce": "max",
    "input_size": 96,
}


@pytest.mark.parametrize("param", sorted(CHANGES))
def test_each_activation_parameter_changes_the_key(param, rgb_arrays):
    base = tiny(layer="blocks.1").fit(rgb_arrays)
    other = tiny(layer="blocks.1", **{param: CHANGES[param]}).fit(rgb_arrays)
    assert other._resolution.key != base._resolution.key


def test_parameters_in_changes_cover_every_keyed_parameter(rgb_arrays):
    keyed = set(tiny().get_params(deep=False)) - set(KEY_EXEMPT_PARAMS)
    assert keyed <= set(CHANGES), keyed - set(CHANGES)  # every keyed parameter is shown to change the key


@pytest.mark.parametrize(
    "param,value",
    [
        ("batch_size", 3),
        ("n_jobs", 1),
        ("verbose", True),
        ("engine", "auto"),
        ("cache_layers", "requested"),
        ("on_error", "nan"),
    ],
)
def test_exempt_parameters_share_the_key(param, value, rgb_arrays):
    assert tiny(**{param: value}).fit(rgb_arrays)._resolution.key == tiny().fit(rgb_arrays)._resolution.key


def test_global_pool_max_is_not_served_average_pooled_vectors(rgb_arrays, tmp_path):
    """model_kwargs joins the cache key: a max-pooled network never reads an average-pooled run's rows."""
    cache = tmp_path / "c.sqlite"
    avg = tiny(cache=cache).fit(rgb_arrays).transform(rgb_arrays)
    decaf = tiny(cache=cache, model_kwargs={"global_pool": "max"}).fit(rgb_arrays)
    X = decaf.transform(rgb_arrays)
    assert decaf.cache_info()["computed"] == len(rgb_arrays)
    fresh = tiny(model_kwargs={"global_pool": "max"}).fit(rgb_arrays).transform(rgb_arrays)
    assert_features_close(X, fresh)
    assert not np.allclose(X, avg, atol=1e-3)


def test_exported_graph_is_keyed_by_model_kwargs(rgb_arrays):
    """No cache, default engine: a graph exported for global average pooling is not reused for max."""
    pytest.importorskip("onnxruntime")
    avg = tiny(engine="onnxruntime").fit(rgb_arrays)
    mx = tiny(engine="onnxruntime", model_kwargs={"global_pool": "max"}).fit(rgb_arrays)
    assert avg._network.get(avg).onnx_path() != mx._network.get(mx).onnx_path()
    X_avg, X_max = avg.transform(rgb_arrays), mx.transform(rgb_arrays)
    ref = tiny(engine="torch", model_kwargs={"global_pool": "max"}).fit(rgb_arrays).transform(rgb_arrays)
    assert_allclose(X_max, ref, rtol=1e-4, atol=1e-5)
    assert not np.allclose(X_max, X_avg, atol=1e-3)


def test_module_backbones_with_the_same_weights_but_another_structure_differ(rgb_arrays):
    a = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    b = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.Tanh(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    b.load_state_dict(a.state_dict())
    ka = DeCAFTransformer(a, layer="4", engine="torch").fit(rgb_arrays)._resolution.key
    kb = DeCAFTransformer(b, layer="4", engine="torch").fit(rgb_arrays)._resolution.key
    assert ka != kb


def test_bfloat16_on_cpu_computes_bfloat16(image_files):
    """precision='bfloat16' is what runs, not float32 under a bf16 key: the network under bf16 autocast by hand."""
    from sk_decaf._torch.engines import TorchEngine

    f32 = tiny(layer="pre_logits", decode="exact").fit(image_files).transform(image_files)
    bf16 = tiny(layer="pre_logits", precision="bfloat16", decode="exact").fit(image_files)  # exact: timm's transform
    assert bf16.engine_ == "torch" and bf16._resolution.description["precision"] == "bfloat16"
    X = bf16.transform(image_files)
    assert X.dtype == np.float32
    # The same network, layout (channels_last) and slices of images as the torch engine, so that oneDNN
    # runs the same bf16 kernels: agreement to float32 noise, where bf16 rounding is 50 times larger.
    model = bf16.backbone_.eval().to(memory_format=torch.channels_last)
    batch = normalised_batch(bf16, image_files).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        hand = [
            model.forward_head(model.forward_features(batch[i : i + TorchEngine.cpu_slice]), pre_logits=True)
            for i in range(0, len(batch), TorchEngine.cpu_slice)
        ]
    hand = torch.cat(hand).float().numpy()
    assert_features_close(X, hand)
    rel = np.abs(X - f32).max() / np.abs(f32).max()
    assert rel > 1e-3  # and bf16 rounding is visible against float32 (measured 7e-3; float32 agrees to 1e-6)


def test_bfloat16_with_onnxruntime_is_refused(rgb_arrays):
    pytest.importorskip("onnxruntime")
    with pytest.raises(ValueError, match="bfloat16"):
        tiny(engine="onnxruntime", precision="bfloat16").fit(rgb_arrays)


@pytest.mark.parametrize("pooling", ["max", "flatten", 2])
def test_pooling_that_cannot_apply_to_pre_logits_is_refused(pooling, rgb_arrays):
    with pytest.raises(ValueError, match="pools it itself"):
        tiny(layer=["blocks.1", "pre_logits"], pooling=pooling).fit(rgb_arrays)


def test_max_pooled_pre_logits_through_the_networks_own_pooling(image_files):
    """With global_pool="max", pre_logits are timm's own max-pooled pre-logits; the stage beside them is
    max-pooled by us, from the same forward pass."""
    decaf = tiny(
        layer=["blocks.4", "pre_logits"], pooling="max", model_kwargs={"global_pool": "max"}, decode="exact"
    ).fit(image_files)  # exact: timm's transform
    X = decaf.transform(image_files)
    stage = tiny(layer="blocks.4", pooling="max", decode="exact").fit(image_files).transform(image_files)
    # test_efficientnet's pre_logits are its last stage through conv_head + bn2 + act, then the global pool
    model = decaf.backbone_
    assert model.global_pool.pool_type == "max"
    d = decaf.feature_dims_["blocks.4"]
    assert X.shape == (len(image_files), d + decaf.feature_dims_["pre_logits"])
    maps = []
    handle = model.blocks[4].register_forward_hook(lambda module, args, out: maps.append(out.amax(dim=(2, 3))))
    try:
        with torch.inference_mode():
            features = model.forward_features(normalised_batch(decaf, image_files))
            pre_logits = model.forward_head(features, pre_logits=True).numpy()
    finally:
        handle.remove()
    assert_features_close(X[:, d:], pre_logits)
    assert_features_close(X[:, :d], maps[0].numpy())
    assert_features_close(X[:, :d], stage)
    # The maximum, not the average, of the final map.
    assert not np.allclose(X[:, d:], features.mean(dim=(2, 3)).numpy(), atol=1e-3 * np.abs(pre_logits).max())


def test_grid_pooling_order_is_channel_major(rgb_arrays):
    """Feature c * k * k + row * k + col, from torch's (overlapping) adaptive bins."""
    flat = tiny(layer="blocks.1", pooling="flatten").fit(rgb_arrays)
    grid = tiny(layer="blocks.1", pooling=3).fit(rgb_arrays)
    maps = torch.from_numpy(flat.transform(rgb_arrays))
    c = grid.feature_dims_["blocks.1"] // 9
    side = int(round((maps.shape[1] / c) ** 0.5))
    maps = maps.view(len(rgb_arrays), c, side, side)
    expected = torch.nn.functional.adaptive_avg_pool2d(maps, 3)
    G = grid.transform(rgb_arrays).reshape(len(rgb_arrays), c, 3, 3)
    assert_allclose(G, expected.numpy(), rtol=1e-4, atol=1e-5)
    assert side % 3 != 0  # the bins overlap on this map: the documented case


def test_integer_pooling_exports_to_onnx_without_fallback(rgb_arrays, recwarn):
    """A static input size lets uneven adaptive bins export (5x5 -> 2x2 on the tiny EfficientNet's last stage)."""
    pytest.importorskip("onnxruntime")
    import warnings

    onnx = tiny(layer="blocks.4", pooling=2, engine="onnxruntime").fit(rgb_arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        X = onnx.transform(rgb_arrays)
    assert onnx._network.get(onnx).engine.name == "onnxruntime"
    ref = tiny(layer="blocks.4", pooling=2).fit(rgb_arrays).transform(rgb_arrays)
    assert_allclose(X, ref, rtol=1e-4, atol=1e-5)


def test_fallback_warning_is_one_line():
    from sk_decaf._torch.featurizer import one_line

    exc = RuntimeError("export failed\n" + "graph(%x : Float(1, 3, 224, 224)):\n" * 2000)
    text = one_line(exc)
    assert "\n" not in text and len(text) <= 300 and text.startswith("RuntimeError: export failed")
    assert os.linesep not in one_line(ValueError("x" * 10000)) and len(one_line(ValueError("x" * 10000))) == 300
