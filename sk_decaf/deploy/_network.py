"""The network of a fitted DeCAFTransformer as an ONNX graph, and the preprocessing that feeds it."""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import onnx
import torch
from onnx import helper
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._torch import quantize
from .._torch.engines import export_onnx
from .._torch.featurizer import one_line
from .runtime import preprocess

if TYPE_CHECKING:
    from ..transformers import DeCAFTransformer

__all__ = [
    "network_to_onnx",
    "network_precision",
    "preprocess_config",
    "input_shape",
    "NETWORK_OPSET",
    "CROPS",
    "N_CROPS",
]

#: The opset of the exported network (that of ``sk_decaf._torch.engines.export_onnx``).
NETWORK_OPSET = 17


#: The crops the runtime prepares for each test-time augmentation mode; the graph adds their mirrors.
CROPS = {None: "center", "flip": "center", "10crop": "center+corners", "12jitter": "center+corners+whole"}
#: Number of crops of each ``crops`` setting: the size of the input's second axis when more than one.
N_CROPS = {"center": 1, "center+corners": 5, "center+corners+whole": 6}


def preprocess_config(
    data_config: Mapping[str, Any], preprocess: str = "model", decode: str = "exact", tta: str | None = None
) -> dict[str, Any]:
    """The settings the runtime needs to turn an image into the network's uint8 input (JSON-able).

    They are those of a transformer's preprocessing (``sk_decaf._torch.preprocess.ResizeCrop``): the resolved
    timm ``data_config``, with ``preprocess="decaf"`` meaning timm's ``"squash"`` crop mode with
    ``crop_pct=0.875``, the ``decode`` mode ("exact": timm's transform; "reduced": JPEG DCT scaling and
    resampling of the crop's box only), and the ``crops`` that test-time augmentation ``tta`` needs:
    ``"center"`` (no augmentation, or ``"flip"``: the graph mirrors the crop itself), ``"center+corners"``
    (``"10crop"``: the centre and the four corner crops of the resized image) or ``"center+corners+whole"``
    (``"12jitter"``: those and the whole image squashed to the input size). The mirrors of the crops and the
    reduction over the views are inside the graph.
    """
    crop_mode, crop_pct = data_config.get("crop_mode") or "center", data_config.get("crop_pct") or 0.875
    if preprocess == "decaf":
        crop_mode, crop_pct = "squash", 0.875
    crops = CROPS[tta]
    height, width = (int(v) for v in data_config["input_size"][-2:])
    shape = f"(N, 3, {height}, {width})" if crops == "center" else f"(N, {N_CROPS[crops]}, 3, {height}, {width})"
    return {
        "input_size": [int(v) for v in data_config["input_size"]],
        "interpolation": data_config.get("interpolation") or "bilinear",
        "crop_mode": crop_mode,
        "crop_pct": float(crop_pct),
        "mean": [float(v) for v in data_config["mean"]],
        "std": [float(v) for v in data_config["std"]],
        "decode": decode,
        "crops": crops,
        "input": f"uint8 RGB {shape}; mean and std are applied inside the graph",
    }


def input_shape(decaf: DeCAFTransformer) -> list[int | None]:
    """The shape of the network's ONNX input for a fitted transformer.

    ``[None, 3, H, W]``, or ``[None, n_crops, 3, H, W]`` when its test-time augmentation needs several crops.
    """
    height, width = (int(v) for v in decaf.data_config_["input_size"][-2:])
    n_crops = N_CROPS[CROPS[decaf.tta]]
    return [None, 3, height, width] if n_crops == 1 else [None, n_crops, 3, height, width]


class _Views(nn.Module):
    """The extractor on every view of each image, reduced over the views; the requested layers concatenated.

    Input: uint8 ``(N, 3, H, W)``, or ``(N, K, 3, H, W)`` crops. With ``mirror`` the crops' mirrors follow
    the crops, in the transformer's order (crops, then their mirrors). Each layer's ``(N * views, D)``
    output is reduced over the views by ``reduce`` ("mean" or "max"), as ``Featurizer`` does.
    """

    def __init__(self, extractor: nn.Module, wanted: list[int], mirror: bool, reduce: str) -> None:
        super().__init__()
        self.extractor = extractor
        self.wanted = list(wanted)
        self.mirror = mirror
        self.reduce = reduce

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 4 and not self.mirror:
            x, views = images, 1
        else:
            x = images if images.ndim == 5 else images.unsqueeze(1)
            if self.mirror:
                x = torch.cat([x, x.flip(-1)], dim=1)
            views = int(x.shape[1])
            x = x.flatten(0, 1)
        outputs = self.extractor(x)
        features = []
        for i in self.wanted:
            out = outputs[i]
            if views > 1:
                out = out.unflatten(0, (-1, views))
                out = out.mean(dim=1) if self.reduce == "mean" else out.amax(dim=1)
            features.append(out)
        return torch.cat(features, dim=1) if len(features) > 1 else features[0]


def network_to_onnx(decaf: DeCAFTransformer) -> onnx.ModelProto:
    """The network of a fitted :class:`~sk_decaf.DeCAFTransformer` as one ONNX model.

    The graph takes ``images``, uint8 RGB as the transformer's preprocessing makes them (shaped as
    :func:`input_shape` says), and returns ``features``, float32 ``(N, n_features_out_)``: the requested
    layers, pooled, reduced over the test-time views (the crops and, with ``tta``, their mirrors, which the
    graph computes) and concatenated in ``layers_`` order, exactly ``decaf.transform``'s columns. Whatever
    the transformer computes besides (the extra layers of its activation cache) is cut off, so the network
    stops at the deepest requested layer.

    Parameters
    ----------
    decaf : DeCAFTransformer
        A fitted transformer; its network is loaded if it was not yet.

    A transformer with ``precision="int8"`` gives its network quantized to int8 as its onnxruntime engine
    quantizes it (:mod:`sk_decaf._torch.quantize`: the same method, calibrated and checked on the same demo
    images, prepared as the runtime prepares them); where the int8 network agrees with float32 to a cosine
    below ``quantize.AGREEMENT``, one warning says so and the network stays float32, as the transformer does.
    :func:`network_precision` says which was exported.

    Returns
    -------
    model : onnx.ModelProto
        Opset :data:`NETWORK_OPSET`, float32 computations (a CUDA transformer's bf16 autocast is not kept), or
        int8 ones for ``precision="int8"``.

    Raises
    ------
    ValueError
        If ``torch.onnx.export`` cannot export the network (the first line of its error; what the exporter
        prints is not shown).
    """
    check_is_fitted(decaf, "layers_")
    extractor = decaf.feature_network()
    if any(t.device.type != "cpu" for t in extractor.state_dict().values()):
        extractor = copy.deepcopy(extractor).cpu()  # export on the CPU; the GPU copy keeps serving transform
    wanted = [extractor.layers.index(name) for name in decaf.layers_]
    # eval(): the exporter restores the wrapper's mode recursively afterwards, and the extractor is shared with
    # the transformer's torch engine.
    module = _Views(extractor, wanted, mirror=decaf.tta is not None, reduce=decaf.tta_reduce).eval()
    example = torch.zeros([2, *cast(list[int], input_shape(decaf)[1:])], dtype=torch.uint8)  # None: batch only
    channels_last, extractor.channels_last = extractor.channels_last, False  # a layout hint, not a graph op
    with tempfile.TemporaryDirectory(prefix="sk_decaf_export_") as tmp:
        try:
            path = export_onnx(module, os.path.join(tmp, "network.onnx"), example, output_names=["features"])
        except Exception as exc:
            raise ValueError(
                f"The network of DeCAFTransformer(backbone={_name(decaf.backbone)}) cannot be exported to ONNX "
                f"by torch.onnx.export ({one_line(exc)})."
            ) from exc
        finally:
            extractor.channels_last = channels_last
        model = onnx.load(path)
    # Keep only what the requested layers need: the cache's extra layers may run the whole network.
    model = onnx.utils.Extractor(model).extract_model(["images"], ["features"])
    del model.graph.output[:]
    model.graph.output.append(
        helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, ["batch", int(decaf.n_features_out_)])
    )
    _EXPORTED[decaf] = "float32"
    return _int8(decaf, model) if decaf.precision == "int8" else model


#: The precision each transformer's network was last exported in (weak keys: no transformer is kept alive).
_EXPORTED: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def network_precision(decaf: DeCAFTransformer) -> str:
    """The precision :func:`network_to_onnx` last exported ``decaf``'s network in (``"float32"`` or ``"int8"``)."""
    return _EXPORTED.get(decaf, "float32")


def _int8(decaf: DeCAFTransformer, model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (the network, float32) quantized as the transformer's int8 engine does; float32 where it disagrees."""
    config = preprocess_config(decaf.data_config_, decaf.preprocess, decaf.decode, decaf.tta)
    calibrate, check = quantize.calibration_split(quantize.calibration_images())
    with tempfile.TemporaryDirectory(prefix="sk_decaf_int8_") as tmp:
        float_path, int8_path = os.path.join(tmp, "float32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, float_path)
        quantize.quantize(float_path, int8_path, preprocess(calibrate, config))
        agreement = quantize.agreement(int8_path, float_path, preprocess(check, config))
        if agreement["min"] < quantize.AGREEMENT:
            warnings.warn(
                f"precision='int8': the int8 network of DeCAFTransformer(backbone={_name(decaf.backbone)}) agrees "
                f"with float32 only to a cosine of {agreement['min']:.3f} on the calibration images "
                f"(< {quantize.AGREEMENT:g}); exporting it in float32.",
                RuntimeWarning,
                stacklevel=3,
            )
            return model
        quantized = onnx.load(int8_path)
    _EXPORTED[decaf] = "int8"
    return quantized


def _name(backbone: str | nn.Module) -> str:
    return repr(backbone) if isinstance(backbone, str) else type(backbone).__name__
