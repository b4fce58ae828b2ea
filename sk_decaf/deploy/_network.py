"""The network of a fitted DeCAFTransformer as an ONNX graph, and the preprocessing that feeds it."""

from __future__ import annotations

import copy
import os
import tempfile

import onnx
import torch
from onnx import helper
from sklearn.utils.validation import check_is_fitted

from .._torch.engines import export_onnx

__all__ = ["network_to_onnx", "preprocess_config", "NETWORK_OPSET"]

#: The opset of the exported network (that of ``sk_decaf._torch.engines.export_onnx``).
NETWORK_OPSET = 17


def preprocess_config(data_config, preprocess="model", decode="exact"):
    """The settings the runtime needs to turn an image into the network's uint8 input (JSON-able).

    They are those of a transformer's preprocessing (``sk_decaf._torch.preprocess.ResizeCrop``): the resolved
    timm ``data_config``, with ``preprocess="decaf"`` meaning timm's ``"squash"`` crop mode with
    ``crop_pct=0.875``, and the ``decode`` mode ("exact": timm's transform; "reduced": JPEG DCT scaling and
    resampling of the crop's box only).
    """
    crop_mode, crop_pct = data_config.get("crop_mode") or "center", data_config.get("crop_pct") or 0.875
    if preprocess == "decaf":
        crop_mode, crop_pct = "squash", 0.875
    return {
        "input_size": [int(v) for v in data_config["input_size"]],
        "interpolation": data_config.get("interpolation") or "bilinear",
        "crop_mode": crop_mode,
        "crop_pct": float(crop_pct),
        "mean": [float(v) for v in data_config["mean"]],
        "std": [float(v) for v in data_config["std"]],
        "decode": decode,
        "input": "uint8 RGB (N, 3, H, W); mean and std are applied inside the graph",
    }


def network_to_onnx(decaf):
    """The network of a fitted :class:`~sk_decaf.DeCAFTransformer` as one ONNX model.

    The graph takes ``images``, uint8 ``(N, 3, H, W)`` RGB as the transformer's preprocessing makes them, and
    returns ``features``, float32 ``(N, n_features_out_)``: the requested layers, pooled and concatenated in
    ``layers_`` order, exactly ``decaf.transform``'s columns. Whatever the transformer computes besides (the
    extra layers of its activation cache) is cut off, so the network stops at the deepest requested layer.

    Parameters
    ----------
    decaf : DeCAFTransformer
        A fitted transformer; its network is loaded if it was not yet.

    Returns
    -------
    model : onnx.ModelProto
        Opset :data:`NETWORK_OPSET`, float32 throughout (a CUDA transformer's bf16 autocast is not kept).
    """
    check_is_fitted(decaf, "layers_")
    extractor = decaf.feature_network()
    if any(t.device.type != "cpu" for t in extractor.state_dict().values()):
        extractor = copy.deepcopy(extractor).cpu()  # export on the CPU; the GPU copy keeps serving transform
    height, width = decaf.data_config_["input_size"][-2:]
    example = torch.zeros((2, 3, height, width), dtype=torch.uint8)
    with tempfile.TemporaryDirectory(prefix="sk_decaf_export_") as tmp:
        try:
            path = export_onnx(extractor, os.path.join(tmp, "network.onnx"), example)
        except Exception as exc:
            raise ValueError(
                f"The network of DeCAFTransformer(backbone={_name(decaf.backbone)}) cannot be exported to ONNX "
                f"by torch.onnx.export ({type(exc).__name__}: {exc})."
            ) from exc
        model = onnx.load(path)
    wanted = [f"layer{extractor.layers.index(name)}" for name in decaf.layers_]
    # Keep only what the requested layers need: the cache's extra layers may run the whole network.
    model = onnx.utils.Extractor(model).extract_model(["images"], wanted)
    graph = model.graph
    if len(wanted) == 1:
        graph.node.append(helper.make_node("Identity", wanted, ["features"], name="features"))
    else:
        graph.node.append(helper.make_node("Concat", wanted, ["features"], axis=1, name="features"))
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, ["batch", int(decaf.n_features_out_)])
    )
    return model


def _name(backbone):
    return repr(backbone) if isinstance(backbone, str) else type(backbone).__name__
