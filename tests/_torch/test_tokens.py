"""Token layers: the class token, the patch tokens as their map, prefix tokens never counted as patches.

On a DINOv2 with 4 registers and on a distilled DeiT (random weights, two blocks, small inputs), every pooling
of a block and of the final norm is computed by hand from the network's own tokens, and the three ways a
layer is read (timm's ``forward_intermediates``, an FX graph, forward hooks) give the same features.
"""

import copy
import warnings

import numpy as np
import pytest
import timm
import torch
from torch import nn

from sk_decaf import DeCAFTransformer
from tests.conftest import assert_features_close, normalised_batch

DINO = "vit_small_patch14_reg4_dinov2.lvd142m"
DEIT = "deit_tiny_distilled_patch16_224"
#: name -> (model_kwargs, input_size, prefix tokens: class + registers / class + distillation)
NETWORKS = {DINO: ({"depth": 2}, 70, 5), DEIT: ({"depth": 2}, 80, 2)}
POOLINGS = ["avg", "max", "flatten", 2, "cls", "cls+avg"]


def _network(name, seed=0):
    """The network as timm builds it (seeded random weights), resized by timm for the test's input size."""
    kwargs, size, _ = NETWORKS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(name, pretrained=False, **kwargs).eval()
    model.set_input_size(img_size=(size, size))
    return model


def _by_hand(tokens, n_prefix, pooling):
    """A pooling of ``(N, prefix + H * W, C)`` tokens, written out: the patches are the tokens after the prefix."""
    patches = tokens[:, n_prefix:]
    side = int(round(patches.shape[1] ** 0.5))
    grid = patches.reshape(len(tokens), side, side, -1).permute(0, 3, 1, 2)  # (N, C, H, W), row by row
    return {
        "avg": patches.mean(dim=1),
        "max": patches.amax(dim=1),
        "flatten": grid.flatten(1),
        2: torch.nn.functional.adaptive_avg_pool2d(grid, 2).flatten(1),
        "cls": tokens[:, 0],
        "cls+avg": torch.cat([tokens[:, 0], patches.mean(dim=1)], dim=1),
    }[pooling].numpy()


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("name", list(NETWORKS))
def test_poolings_of_tokens_by_hand(name, pooling, image_files):
    kwargs, size, n_prefix = NETWORKS[name]
    decaf = DeCAFTransformer(
        name,
        weights="random",
        random_state=0,
        model_kwargs=kwargs,
        input_size=size,
        layer=["blocks.1", "norm"],
        pooling=pooling,
        engine="torch",
        decode="exact",
    ).fit(image_files)
    X = decaf.transform(image_files)
    model = _network(name, decaf.random_seed_)
    assert model.num_prefix_tokens == n_prefix  # registers (DINOv2) or the distillation token (DeiT) exist
    blocks = []
    handle = model.blocks[1].register_forward_hook(lambda module, args, out: blocks.append(out))
    try:
        with torch.inference_mode():
            final = model.forward_features(normalised_batch(decaf, image_files))  # after the final norm
    finally:
        handle.remove()
    d = decaf.feature_dims_["blocks.1"]
    assert_features_close(X[:, :d], _by_hand(blocks[0], n_prefix, pooling))
    assert_features_close(X[:, d:], _by_hand(final, n_prefix, pooling))
    if pooling in ("avg", "max"):  # the prefix tokens would change them: they are not patches
        everything = (final.mean(dim=1) if pooling == "avg" else final.amax(dim=1)).numpy()
        assert not np.allclose(X[:, d:], everything, atol=1e-3 * np.abs(everything).max())


def test_dinov2_linear_probe_recipe(image_files):
    """layer="norm", pooling="cls+avg": the class token after the final norm, then the mean patch token."""
    kwargs, size, n_prefix = NETWORKS[DINO]
    decaf = DeCAFTransformer(
        DINO, weights="random", random_state=0, model_kwargs=kwargs, input_size=size, layer="norm", pooling="cls+avg"
    )
    X = decaf.set_params(engine="torch", decode="exact").fit_transform(image_files)
    model = _network(DINO, decaf.random_seed_)
    with torch.inference_mode():
        tokens = model.forward_features(normalised_batch(decaf, image_files))
    assert X.shape == (len(image_files), 2 * 384)
    assert_features_close(X[:, :384], tokens[:, 0].numpy())
    assert_features_close(X[:, 384:], tokens[:, n_prefix:].mean(dim=1).numpy())


class _Hooked(nn.Module):
    """A ViT inside a module that torch.fx cannot trace (a data-dependent branch): read through forward hooks."""

    def __init__(self, vit):
        super().__init__()
        self.vit = vit
        self.pretrained_cfg = vit.pretrained_cfg  # the same preprocessing as the timm path

    def forward(self, x):
        if x.sum() > -1e30:
            x = x * 1.0
        return self.vit(x)


def _paths(name, seed):
    """The same network read three ways: timm's forward_intermediates, an FX graph, forward hooks."""
    model = _network(name, seed)
    graph = copy.deepcopy(model)
    del graph.feature_info  # no timm feature API: torchvision's create_feature_extractor on its FX graph
    return {
        "timm": (model, ["blocks.1", "norm"]),
        "graph": (graph, ["blocks.1", "norm"]),
        "hooks": (_Hooked(copy.deepcopy(model)), ["vit.blocks.1", "vit.norm"]),
    }


@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_three_paths_give_the_same_features(name, image_files):
    paths = _paths(name, seed=7)
    for pooling in ["max", "flatten", 2, "cls+avg"]:  # "avg" and "cls" are the halves of "cls+avg"
        features = {}
        for path, (backbone, layers) in paths.items():
            decaf = DeCAFTransformer(backbone, layer=layers, pooling=pooling, engine="torch", decode="exact")
            decaf.fit(image_files)
            taps = type(decaf.feature_network().taps).__name__
            assert taps == {"timm": "_TimmTaps", "graph": "_GraphTaps", "hooks": "_HookTaps"}[path]
            features[path] = decaf.transform(image_files)
        assert_features_close(features["graph"], features["timm"])
        assert_features_close(features["hooks"], features["timm"])


@pytest.mark.parametrize("pooling", ["cls+avg", 2, "flatten"])
def test_token_poolings_export_to_onnx(pooling, image_files):
    """The onnxruntime engine serves token layers on the timm path and on an FX graph, without fallback."""
    pytest.importorskip("onnxruntime")
    paths = _paths(DINO, seed=0)
    for backbone, layers in (paths["timm"], paths["graph"]):
        params = dict(layer=layers, pooling=pooling, decode="exact")
        expected = DeCAFTransformer(backbone, engine="torch", **params).fit_transform(image_files)
        onnx = DeCAFTransformer(backbone, engine="onnxruntime", **params).fit(image_files)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            X = onnx.transform(image_files)
        assert onnx._network.get(onnx).engine.name == "onnxruntime"
        assert_features_close(X, expected)


def test_class_token_poolings_need_a_class_token(image_files):
    small = dict(weights="random", random_state=0, engine="torch")
    with pytest.raises(ValueError, match=r"layer 'stages.1'.*pooling='cls' reads a transformer's class token"):
        DeCAFTransformer("test_convnext", layer="stages.1", pooling="cls", **small).fit(image_files)
    with pytest.raises(ValueError, match="pooling='cls\\+avg'"):
        DeCAFTransformer("test_efficientnet", layer="blocks.2", pooling="cls+avg", **small).fit(image_files)
    # Registers but no class token: the tokens have none.
    no_cls = {"class_token": False, "reg_tokens": 2, "global_pool": "avg"}
    with pytest.raises(ValueError, match="this layer's tokens have none"):
        DeCAFTransformer("test_vit", layer="blocks.1", pooling="cls", model_kwargs=no_cls, **small).fit(image_files)
    avg = DeCAFTransformer("test_vit", layer="blocks.1", model_kwargs=no_cls, **small).fit(image_files)
    assert avg.feature_dims_ == {"blocks.1": avg.backbone_.embed_dim}


def test_class_token_and_the_networks_own_head(image_files):
    """pre_logits are pooled by the network: "cls" is accepted where that pooling is the class token."""
    small = dict(weights="random", random_state=0, engine="torch", decode="exact")
    vit = DeCAFTransformer("test_vit", layer="pre_logits", **small).fit(image_files)
    assert vit.backbone_.global_pool == "token"
    cls = DeCAFTransformer("test_vit", layer="pre_logits", pooling="cls", **small).fit_transform(image_files)
    assert_features_close(cls, vit.transform(image_files))
    with pytest.raises(ValueError, match="pools it itself"):
        DeCAFTransformer("test_vit", layer="pre_logits", pooling="cls+avg", **small).fit(image_files)
    # A distilled DeiT's pre-logits average the class and distillation tokens: not the class token.
    deit = dict(model_kwargs={"depth": 1}, input_size=64, **small)
    with pytest.raises(ValueError, match="'token\\+dist' global pooling"):
        DeCAFTransformer(DEIT, layer="pre_logits", pooling="cls", **deit).fit(image_files)


class _PatchesThenTokens(nn.Module):
    """A convolutional patch map, then tokens whose layout the network does not declare (hook path)."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 32, stride=32)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        if x.sum() > -1e30:  # not FX-traceable
            x = x * 1.0
        tokens = self.mix(self.patch(x).flatten(2).transpose(1, 2))
        return self.head(tokens.mean(dim=1))


def test_integer_pooling_is_checked_on_the_requested_layers_only(image_files, tmp_path):
    """A grid pooling of a map fits although another layer of the network gives tokens it cannot pool."""
    net = _PatchesThenTokens()
    decaf = DeCAFTransformer(net, layer="patch", pooling=2, cache=tmp_path / "c.sqlite", decode="exact")
    X = decaf.fit_transform(image_files)
    assert decaf.feature_dims_ == {"patch": 32}
    assert "mix" not in decaf._resolution.compute  # its tokens cannot be pooled by 2: never stored
    assert decaf._resolution.compute[:2] == ["patch", "head"]
    with torch.inference_mode():
        maps = net.patch(normalised_batch(decaf, image_files))
    assert_features_close(X, torch.nn.functional.adaptive_avg_pool2d(maps, 2).flatten(1).numpy())
    with pytest.raises(ValueError, match="layout .* is not known"):
        DeCAFTransformer(net, layer="mix", pooling=2).fit(image_files)


@pytest.mark.parametrize(
    "name, kwargs, pooling",
    [
        ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 1, 1)}, "avg"),  # forward_features is NHWC
        ("eva02_tiny_patch14_224.mim_in22k", {"depth": 1}, "cls+avg"),  # its final norm is an Identity
    ],
)
def test_final_norm_is_forward_features(name, kwargs, pooling, image_files):
    """The "norm" layer is forward_features' output: Swin's NHWC map, EVA-02's tokens (one class token)."""
    decaf = DeCAFTransformer(name, weights="random", random_state=0, model_kwargs=kwargs, input_size=112)
    X = decaf.set_params(layer="norm", pooling=pooling, engine="torch", decode="exact").fit_transform(image_files)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(decaf.random_seed_)
        model = timm.create_model(name, pretrained=False, **kwargs).eval()
    model.set_input_size(img_size=(112, 112))
    with torch.inference_mode():
        out = model.forward_features(normalised_batch(decaf, image_files))
    if out.ndim == 4:  # (N, H, W, C)
        expected = out.mean(dim=(1, 2))
    else:
        expected = torch.cat([out[:, 0], out[:, model.num_prefix_tokens :].mean(dim=1)], dim=1)
    assert_features_close(X, expected.numpy())
