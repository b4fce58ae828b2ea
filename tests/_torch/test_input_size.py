"""DeCAFTransformer(input_size=...): the network and its preprocessing follow it, in every backbone family."""

import numpy as np
import pytest
import timm
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from torch import nn

from sk_decaf import DeCAFTransformer
from sk_decaf._torch import catalog
from sk_decaf._torch.backbones import load_backbone
from tests.conftest import TINY, assert_features_close, normalised_batch

DINO = "vit_small_patch14_reg4_dinov2.lvd142m"  # built for 518 x 518 inputs
ONE_BLOCK = {"depth": 1}


def _seeded(name, seed, **kwargs):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(name, pretrained=False, **kwargs).eval()


def _pre_logits(model, batch):
    with torch.inference_mode():
        return model.forward_head(model.forward_features(batch), pre_logits=True).numpy()


@pytest.mark.parametrize("how", ["model_kwargs", "module"])
def test_network_built_for_another_size_is_fed_that_size(how, image_files):
    """The issue's case: timm's AssertionError "Input height (518) doesn't match model (224)" is gone; the size
    is read from the network's patch embedding, not from its stale pretrained configuration (518)."""
    kwargs = {"img_size": 224, **ONE_BLOCK}
    if how == "module":
        model = _seeded(DINO, 0, **kwargs)
        decaf = DeCAFTransformer(model, engine="torch", decode="exact")
    else:
        decaf = DeCAFTransformer(DINO, weights="random", random_state=0, model_kwargs=kwargs, engine="torch")
        decaf.set_params(decode="exact")
    X = decaf.fit_transform(image_files)
    assert decaf.data_config_["input_size"] == (3, 224, 224)
    assert decaf.data_config_["crop_pct"] == 1.0  # the rest of DINOv2's configuration is kept
    model = model if how == "module" else _seeded(DINO, decaf.random_seed_, **kwargs)
    assert_features_close(X, _pre_logits(model, normalised_batch(decaf, image_files)))


def test_vit_is_resized_by_timms_set_input_size(image_files):
    decaf = DeCAFTransformer(
        DINO, weights="random", random_state=0, model_kwargs=ONE_BLOCK, input_size=112, engine="torch", decode="exact"
    ).fit(image_files)
    assert decaf.data_config_["input_size"] == (3, 112, 112)
    X = decaf.transform(image_files)
    model = _seeded(DINO, decaf.random_seed_, **ONE_BLOCK)
    model.set_input_size(img_size=(112, 112))  # resamples the 37 x 37 position embeddings to 8 x 8
    assert_features_close(X, _pre_logits(model, normalised_batch(decaf, image_files)))
    # (height, width): a grid of 8 x 10 patches
    wide = DeCAFTransformer(DINO, weights="random", model_kwargs=ONE_BLOCK, input_size=(112, 140), layer="blocks.0")
    wide.set_params(pooling="flatten").fit(image_files)
    assert wide.data_config_["input_size"] == (3, 112, 140)
    assert wide.feature_dims_ == {"blocks.0": 384 * 8 * 10}
    assert wide.transform(image_files[:1]).shape == (1, 384 * 80)


def test_cnn_keeps_its_weights_and_crop_pct(image_files):
    """A CNN takes any size: only the resize and centre crop change, with the network's crop_pct."""
    own = DeCAFTransformer(TINY, weights="random", random_state=0, engine="torch", decode="exact").fit(image_files)
    small = DeCAFTransformer(TINY, weights="random", random_state=0, input_size=96, engine="torch", decode="exact")
    small.fit(image_files)
    assert own.data_config_["input_size"] == (3, 160, 160) and small.data_config_["input_size"] == (3, 96, 96)
    assert small.data_config_["crop_pct"] == own.data_config_["crop_pct"] == 0.95
    assert small.weights_digest_ == own.weights_digest_
    X = small.transform(image_files)
    assert_features_close(X, _pre_logits(small.backbone_, normalised_batch(small, image_files)))
    assert not np.allclose(X, own.transform(image_files), atol=1e-3 * np.abs(X).max())
    # the reduced decoding's own resize and crop (the default) make the same network input size
    reduced = DeCAFTransformer(TINY, weights="random", random_state=0, input_size=(96, 96), engine="torch")
    assert_features_close(reduced.fit_transform(image_files), X, rtol=0.1)  # JPEG DCT scaling, not timm's pixels


@pytest.mark.parametrize(
    "backbone, size",
    [("alexnet", 160), ("torchvision:resnet18", 128)],
)
def test_alexnet_and_torchvision_read_input_size(backbone, size, image_files):
    decaf = DeCAFTransformer(
        backbone, weights="random", random_state=0, input_size=size, layer=-1, engine="torch", decode="exact"
    ).fit(image_files[:2])
    assert decaf.data_config_["input_size"] == (3, size, size)
    X = decaf.transform(image_files[:2])
    model = load_backbone(backbone, weights="random", seed=decaf.random_seed_).model
    with torch.inference_mode():
        logits = model(normalised_batch(decaf, image_files[:2])).numpy()
    assert_features_close(X, logits)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_module_backbones_read_input_size(image_files):
    net = _Net()
    decaf = DeCAFTransformer(net, input_size=(64, 80), layer="conv", pooling="flatten").fit(image_files)
    assert decaf.data_config_["input_size"] == (3, 64, 80)
    assert decaf.feature_dims_ == {"conv": 4 * 62 * 78}
    vit = _seeded("test_vit", 0)
    resized = DeCAFTransformer(vit, input_size=96, engine="torch", decode="exact").fit(image_files)
    assert resized.data_config_["input_size"] == (3, 96, 96)
    assert vit.patch_embed.img_size == (160, 160)  # the user's module is never resized
    expected = _seeded("test_vit", 0)
    expected.set_input_size(img_size=(96, 96))
    assert_features_close(resized.transform(image_files), _pre_logits(expected, normalised_batch(resized, image_files)))


def test_sizes_a_vit_cannot_take_are_refused_with_the_sizes_it_takes(image_files):
    with pytest.raises(ValueError, match=r"input_size=230 .* multiples of 14, such as 224, 238, 518"):
        DeCAFTransformer(DINO, weights="random", model_kwargs=ONE_BLOCK, input_size=230).fit(image_files)
    with pytest.raises(ValueError, match=r"input_size=\(224, 230\).*multiples of 14"):
        DeCAFTransformer(DINO, weights="random", model_kwargs=ONE_BLOCK, input_size=(224, 230)).fit(image_files)
    swin = {"depths": (1, 1, 1, 1)}
    with pytest.raises(ValueError, match=r"input_size=190 .* multiples of 4, such as 188, 192, 224"):
        DeCAFTransformer("swin_tiny_patch4_window7_224", weights="random", model_kwargs=swin, input_size=190).fit(
            image_files
        )


@pytest.mark.parametrize("bad", [0, -3, (224,), (224, 0), (224, 224, 3), "224", 224.0, (True, 2)])
def test_malformed_input_size_is_a_value_error_naming_it(bad, image_files):
    with pytest.raises(ValueError, match="input_size"):
        DeCAFTransformer(TINY, weights="random", input_size=bad).fit(image_files)


def test_size_a_module_cannot_take_is_refused(image_files):
    """A network built for one size, without set_input_size, in a module that cannot be rebuilt."""

    class Fixed(nn.Module):
        img_size = (32, 32)

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 32 * 32, 2)

        def forward(self, x):
            return self.fc(x.flatten(1))

    assert DeCAFTransformer(Fixed()).fit(image_files).data_config_["input_size"] == (3, 32, 32)
    with pytest.raises(ValueError, match="input_size=48: the module backbone Fixed is built for 32 inputs"):
        DeCAFTransformer(Fixed(), input_size=48).fit(image_files)


def test_weights_file_saved_at_another_grid_loads(tmp_path, image_files):
    """Position embeddings of a file saved at 518 (37 x 37 patches) are resampled as timm does, whether the
    network is built for 224 (model_kwargs) or resized to it (input_size)."""
    path = tmp_path / "dinov2_518.pth"
    native = _seeded(DINO, 3, **ONE_BLOCK)
    torch.save(native.state_dict(), path)
    expected = _seeded(DINO, 3, **ONE_BLOCK)
    expected.set_input_size(img_size=(224, 224))
    for params in ({"input_size": 224}, {"model_kwargs": {"img_size": 224, **ONE_BLOCK}}):
        params = {"model_kwargs": ONE_BLOCK, **params}
        decaf = DeCAFTransformer(DINO, weights=path, engine="torch", decode="exact", **params).fit(image_files)
        assert decaf.data_config_["input_size"] == (3, 224, 224)
        assert_features_close(decaf.transform(image_files), _pre_logits(expected, normalised_batch(decaf, image_files)))


def test_input_size_keys_the_cache_and_the_memo(image_files):
    def key(size):
        return DeCAFTransformer(TINY, weights="random", random_state=0, input_size=size).fit(image_files)

    assert key(None)._resolution.key == key(160)._resolution.key == key((160, 160))._resolution.key  # its own size
    assert key(128)._resolution.key != key(None)._resolution.key
    assert catalog._memo_key(TINY, "random", {}, 0, 128) == catalog._memo_key(TINY, "random", {}, 0, (128, 128))
    assert catalog._memo_key(TINY, "random", {}, 0, 128) != catalog._memo_key(TINY, "random", {}, 0, None)
    assert catalog.backbone_info(TINY, "random", None, 0, 128).data_config["input_size"] == (3, 128, 128)
    assert catalog.backbone_info(TINY, "random", None, 0, None).data_config["input_size"] == (3, 160, 160)


def test_grid_search_over_input_size_runs_one_pass_per_image_and_size(demo, tmp_path):
    """GridSearchCV over decaf__input_size with a cache: each size computes every image once, in the folds
    and the refit alike."""
    pick = np.flatnonzero(demo.target < 2)[::4]
    X, y = [demo.paths[i] for i in pick], demo.target[pick]
    cache = tmp_path / "sizes.sqlite"
    pipe = Pipeline(
        [
            ("decaf", DeCAFTransformer(TINY, weights="random", random_state=0, cache=cache)),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    )
    sizes = [None, 96, (128, 112)]
    search = GridSearchCV(pipe, {"decaf__input_size": sizes}, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 3
    for size in sizes:
        decaf = DeCAFTransformer(TINY, weights="random", random_state=0, cache=cache, input_size=size)
        info = decaf.fit(X).cache_info()
        assert info["computed"] == len(X), (size, info)  # one forward pass per image for this size
        assert info["hits"] > 0


@pytest.mark.slow  # two ViT-B/16 with random weights: about 8 s
def test_torchvision_vit_is_rebuilt_for_the_size(image_files):
    """torchvision's ViT is built for one size: it is rebuilt with image_size, its tokens read as a ViT's."""
    decaf = DeCAFTransformer(
        "torchvision:vit_b_16", weights="random", random_state=0, input_size=160, layer="encoder", pooling="cls+avg"
    )
    decaf.set_params(engine="torch", decode="exact").fit(image_files[:2])
    assert decaf.data_config_["input_size"] == (3, 160, 160)
    model = decaf.backbone_
    assert model.image_size == 160
    X = decaf.transform(image_files[:2])
    with torch.inference_mode():
        x = model._process_input(normalised_batch(decaf, image_files[:2]))
        tokens = model.encoder(torch.cat([model.class_token.expand(len(x), -1, -1), x], dim=1))
    assert_features_close(X, torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=1).numpy())
    with pytest.raises(ValueError, match="multiples of 16, such as 144, 160, 224"):
        DeCAFTransformer("torchvision:vit_b_16", weights="random", input_size=150).fit(image_files[:2])
