"""Today's backbone families, random weights: the features are timm's own computation, at any input size.

For each of the ten families of the backbone guide (docs/backbones.md), built small where the family's code
allows it (fewer blocks, the same modules), the pooled pre-logits equal timm's
``forward_head(forward_features(x), pre_logits=True)`` and an intermediate stage equals timm's
``forward_intermediates`` averaged over space, at the network's own input size and at another one, with both
engines. The reference network is built by timm with the same seed and, for the other size, resized by timm's
own ``set_input_size`` where the family has one (ViT-like networks); a convolutional network takes the larger
or smaller image as it is.
"""

import warnings

import pytest
import timm
import torch

from sk_decaf import DeCAFTransformer
from tests.conftest import assert_features_close, normalised_batch

#: family -> (timm name, model_kwargs, intermediate layer, another input size)
FAMILIES = {
    "DINOv2 ViT-S/14": ("vit_small_patch14_dinov2.lvd142m", {"depth": 2}, "blocks.0", 224),
    "CLIP ViT-B/16": ("vit_base_patch16_clip_224.openai", {"depth": 2}, "blocks.0", 160),
    "ConvNeXt-T": ("convnext_tiny", {"depths": (1, 1, 1, 1)}, "stages.2", 160),
    "EVA-02-T": ("eva02_tiny_patch14_224.mim_in22k", {"depth": 2}, "blocks.0", 168),
    "ResNet-50": ("resnet50", {"layers": (1, 1, 1, 1)}, "layer3", 192),
    "RegNetY-800MF": ("regnety_008", {}, "s3", 160),
    "Swin-T": ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 2, 1)}, "layers.2", 192),
    "DeiT-T": ("deit_tiny_distilled_patch16_224", {"depth": 2}, "blocks.0", 160),
    "MobileNetV4-S": ("mobilenetv4_conv_small", {}, "blocks.2", 256),
    "EfficientViT-B0": ("efficientvit_b0", {}, "stages.2", 192),
}


def _timm_reference(name, model_kwargs, seed, input_size):
    """The network as timm builds it with the same seeded random weights, resized by timm itself."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(name, pretrained=False, **model_kwargs).eval()
    if input_size is not None and hasattr(model, "set_input_size"):
        model.set_input_size(img_size=(input_size, input_size))
    return model


@pytest.mark.parametrize("resized", [False, True], ids=["own-size", "input_size"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_features_are_timms_own(family, resized, image_files):
    name, model_kwargs, stage, other = FAMILIES[family]
    images = image_files[:2]
    input_size = other if resized else None
    params = dict(
        backbone=name,
        weights="random",
        random_state=0,
        model_kwargs=model_kwargs,
        layer=[stage, "pre_logits"],
        input_size=input_size,
        decode="exact",  # timm's own transform, as normalised_batch writes it
    )
    decaf = DeCAFTransformer(engine="torch", **params).fit(images)
    native = timm.create_model(name, pretrained=False, **model_kwargs).pretrained_cfg["input_size"]
    assert decaf.data_config_["input_size"] == ((3, other, other) if resized else tuple(native))
    X = decaf.transform(images)

    model = _timm_reference(name, model_kwargs, decaf.random_seed_, input_size)
    batch = normalised_batch(decaf, images)
    assert tuple(batch.shape[2:]) == decaf.data_config_["input_size"][1:]
    index = [info["module"] for info in model.feature_info].index(stage)
    with torch.inference_mode():
        pre_logits = model.forward_head(model.forward_features(batch), pre_logits=True).numpy()
        (inter,) = model.forward_intermediates(batch, indices=[index], intermediates_only=True)
    d = decaf.feature_dims_[stage]
    assert X.shape == (2, d + pre_logits.shape[1])
    assert_features_close(X[:, :d], inter.mean(dim=(2, 3)).numpy())
    assert_features_close(X[:, d:], pre_logits)

    pytest.importorskip("onnxruntime")
    onnx = DeCAFTransformer(engine="onnxruntime", **params).fit(images)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to torch
        X_onnx = onnx.transform(images)
    assert onnx._network.get(onnx).engine.name == "onnxruntime"
    assert_features_close(X_onnx[:, :d], X[:, :d])
    assert_features_close(X_onnx[:, d:], X[:, d:])
