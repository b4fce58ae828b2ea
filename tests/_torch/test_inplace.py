"""Taps are immune to later in-place operations: pre-activation layers of networks with in-place ReLUs."""

import numpy as np
import pytest
import torch
import torchvision
from numpy.testing import assert_allclose

from sk_decaf import DeCAFTransformer
from sk_decaf._images import load_rgb
from sk_decaf._torch.preprocess import make_preprocessor


@pytest.fixture(scope="module")
def alexnet():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.alexnet().eval()
    assert model.classifier[2].inplace and model.features[1].inplace  # the premise of these tests
    return model


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (70 + 9 * i, 90, 3), dtype=np.uint8) for i in range(3)]


def by_hand(model, images, decaf):
    """Pre-activation features computed step by step, with no in-place operation anywhere."""
    prep = make_preprocessor(decaf.data_config_, "model", decaf.decode)
    x = torch.stack([prep(load_rgb(img)) for img in images]).float() / 255
    mean = torch.tensor(decaf.data_config_["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(decaf.data_config_["std"]).view(1, 3, 1, 1)
    x = (x - mean) / std
    with torch.no_grad():
        conv1 = model.features[0](x)
        h = x
        for layer in model.features:
            h = torch.relu(layer(h)) if isinstance(layer, torch.nn.ReLU) else layer(h)
        h = torch.flatten(model.avgpool(h), 1)
        fc6_pre = model.classifier[1](h)
        fc7_pre = model.classifier[4](torch.relu(fc6_pre))
    return {
        "features.0": conv1.mean(dim=(2, 3)).numpy(),
        "classifier.1": fc6_pre.numpy(),
        "classifier.4": fc7_pre.numpy(),
    }


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
@pytest.mark.parametrize("backbone", ["module", "torchvision:alexnet"])
@pytest.mark.parametrize("with_cache", [False, True])
def test_pre_activation_taps_match_hand_computation(alexnet, images, engine, backbone, with_cache, tmp_path):
    spec = alexnet if backbone == "module" else backbone
    weights = None
    if backbone != "module":
        weights = tmp_path / "alexnet.pth"
        torch.save(alexnet.state_dict(), weights)
    layers = ["features.0", "classifier.1", "classifier.4", "classifier.5"]
    decaf = DeCAFTransformer(
        spec, layer=layers, weights=weights, engine=engine, cache=tmp_path / "c.sqlite" if with_cache else None
    ).fit(images)
    X = decaf.transform(images)
    ref = by_hand(alexnet, images, decaf)
    start = 0
    for name in layers[:3]:
        dim = decaf.feature_dims_[name]
        assert (ref[name] < 0).any()  # the pre-activation values really have negative entries
        assert_allclose(X[:, start : start + dim], ref[name], rtol=1e-3, atol=1e-4)
        start += dim
    if with_cache:  # served from the cache, each layer alone: the same values
        for name in layers[:3]:
            alone = DeCAFTransformer(spec, layer=name, weights=weights, engine=engine, cache=tmp_path / "c.sqlite").fit(
                images
            )
            assert_allclose(alone.transform(images), ref[name], rtol=1e-3, atol=1e-4)
            assert alone.cache_info()["computed"] == len(images)  # the first, multi-layer pass only


def test_single_pre_activation_layer_equals_layer_in_a_list(alexnet, images):
    alone = DeCAFTransformer(alexnet, layer="classifier.1", engine="torch").fit(images).transform(images)
    both = DeCAFTransformer(alexnet, layer=["classifier.1", "classifier.2"], engine="torch").fit(images)
    X = both.transform(images)
    assert_allclose(X[:, :4096], alone, rtol=1e-5, atol=1e-5)
    assert_allclose(X[:, 4096:], np.maximum(alone, 0), rtol=1e-5, atol=1e-5)


class _HookOnly(torch.nn.Module):
    """Not FX-traceable (data-dependent control flow): read through forward hooks."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.act = torch.nn.ReLU(inplace=True)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > -1e30:  # data-dependent branch: FX cannot trace it
            x = self.act(x)
        return self.fc(x.mean(dim=(2, 3)))


def test_hook_taps_are_immune_to_inplace_relu(images):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _HookOnly().eval()
    decaf = DeCAFTransformer(model, layer=["conv", "act"], engine="torch").fit(images)
    X = decaf.transform(images)
    conv, act = X[:, :8], X[:, 8:]
    assert (conv < 0).any()
    assert not np.allclose(conv, act)
