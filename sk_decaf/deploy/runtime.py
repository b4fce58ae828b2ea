"""Run a model exported by :func:`sk_decaf.to_onnx` with onnxruntime, numpy and Pillow only.

This file is the whole runtime. It imports nothing from ``sk_decaf``, torch, timm or scikit-learn, so it
works in an environment with only ``pip install onnxruntime numpy pillow``: copy it next to the model and
run ``python runtime.py model.onnx photo.jpg ...`` (``-`` reads one image's bytes from standard input), or
``import runtime`` and use :class:`OnnxPipeline`. An image is a file path, the encoded bytes of an image file, a
seekable binary file object, a Hugging Face image dict ``{"bytes", "path"}``, a PIL image or a uint8 array; an
item that cannot be read is a ``ValueError`` naming its index and a short description of it.

Preprocessing lives here, beside the graph, and reads its settings from the model's metadata
(``sk_decaf.preprocess``): it reproduces, byte for byte, the uint8 tensors that ``DeCAFTransformer`` feeds
its network — EXIF orientation, conversion to RGB (alpha composited on white), then timm's evaluation
transform on the PIL image (a resize with Pillow's filter, which is what torchvision's ``Resize`` calls on
PIL images, and timm's centre crop) or, with ``decode="reduced"``, JPEG decoding at a reduced DCT scale and
resampling of the crop's box only. Normalisation by the model's mean and std is inside the graph, whose
input is ``uint8 (N, 3, H, W)`` RGB, or ``(N, K, 3, H, W)`` with the ``K`` crops that test-time augmentation
needs (the graph adds their mirrors and reduces over the views).

A model of several networks (a ``FeatureUnion`` of ``DeCAFTransformer`` branches, as ``make_ensemble``
builds) has one input per distinct preprocessing, listed with its settings in ``sk_decaf.inputs``: each image
is decoded once (once per JPEG draft scale when several inputs decode at reduced size) and every input is
prepared from the decoded image.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, TypeAlias

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "OnnxPipeline",
    "read_metadata",
    "load_rgb",
    "preprocess",
    "preprocess_inputs",
    "preprocess_image",
    "preprocess_crops",
    "jpeg_draft_size",
    "main",
]

#: Metadata keys written by ``sk_decaf.to_onnx`` (JSON values). ``sk_decaf.preprocess`` holds the settings
#: of the first input; ``sk_decaf.inputs`` lists every input with its settings (absent in older models).
PREPROCESS_KEY = "sk_decaf.preprocess"
INPUTS_KEY = "sk_decaf.inputs"
OUTPUTS_KEY = "sk_decaf.outputs"

#: One image: a file path, the encoded bytes of an image file, a seekable binary file object, a Hugging Face
#: image dict ``{"bytes": ..., "path": ...}``, a PIL image or a uint8 ``(H, W, 3)`` array.
ImageInput: TypeAlias = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | Mapping[str, Any] | Image.Image | np.ndarray
)
#: Several images: a sequence of :data:`ImageInput`, or one uint8 ``(N, H, W, 3)`` array.
ImageInputs: TypeAlias = Sequence[ImageInput] | np.ndarray
#: The preprocessing settings of one graph input (``sk_decaf.preprocess``, JSON-decoded).
Config: TypeAlias = dict[str, Any]

_RESAMPLE: dict[str | None, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


# -- images --------------------------------------------------------------------------------------------------
def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB as sk_decaf's loader does: 16/32-bit grey scaled by range, alpha on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.uint32 if img.mode == "I" else np.uint16)
        shift = 8 if img.mode != "I" or arr.max(initial=0) < 65536 else 24
        img = Image.fromarray((arr >> shift).astype(np.uint8))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


class UnsupportedItem(ValueError):
    """An item of no kind the runtime reads."""


_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"))


def _describe_bytes(data: bytes | bytearray | memoryview) -> str:
    view = memoryview(data).cast("B") if memoryview(data).c_contiguous else memoryview(bytes(data))
    head = bytes(view[:16])
    kind = next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "WebP"
    if kind is not None:
        return f"{view.nbytes} bytes of {kind} data"
    return f"{view.nbytes} bytes starting {head[:8]!r}" if view.nbytes else "0 bytes"


def _what(item: object) -> str:
    """A short description of an item for error messages: its path, its size and format; never its content."""
    if isinstance(item, (str, os.PathLike)):
        return repr(os.fspath(item))
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _describe_bytes(item)
    if isinstance(item, Mapping) and ("bytes" in item or "path" in item):
        path, data = item.get("path"), item.get("bytes")
        parts = [f"path {os.fspath(path)!r}"] if isinstance(path, (str, os.PathLike)) else []
        parts += [_describe_bytes(data)] if isinstance(data, (bytes, bytearray, memoryview)) else []
        return "image dict" + (": " + ", ".join(parts) if parts else "")
    if isinstance(item, np.ndarray):
        return f"array of shape {item.shape}, dtype {item.dtype}"
    name = getattr(item, "name", None)
    if callable(getattr(item, "read", None)) and isinstance(name, str):
        return f"file object {name!r}"
    return type(item).__name__


@contextlib.contextmanager
def _encoded(item: object) -> Iterator[str | IO[bytes]]:
    """What ``Image.open`` reads for an encoded item: a path, or a binary stream at its start.

    Bytes, a seekable binary file object (put back at its position afterwards) or an image dict's bytes
    (else its path), as sk_decaf's reader takes them.
    """
    if isinstance(item, Mapping) and ("bytes" in item or "path" in item):
        item = item["bytes"] if item.get("bytes") is not None else item.get("path")
        if item is None:
            raise ValueError("an image dict whose 'bytes' and 'path' are both missing or None")
    if isinstance(item, (str, os.PathLike)):
        yield os.fspath(item)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        if memoryview(item).nbytes == 0:
            raise ValueError("no data")
        yield io.BytesIO(item)
    elif callable(getattr(item, "read", None)):
        stream: Any = item
        if isinstance(stream, io.TextIOBase) or "b" not in getattr(stream, "mode", "b"):
            raise ValueError("a text stream: open the file in binary mode ('rb')")
        if not (stream.seekable() if hasattr(stream, "seekable") else hasattr(stream, "seek")):
            raise ValueError("a file object that cannot seek: pass its bytes (f.read())")
        position = stream.tell()
        stream.seek(0)
        try:
            yield stream
        finally:
            stream.seek(position)
    else:
        raise UnsupportedItem(
            f"unsupported item type {type(item).__name__}; expected a file path, bytes, a binary file object, "
            "a {'bytes', 'path'} dict, a PIL image or a uint8 array"
        )


def load_rgb(item: ImageInput, config: Config | None = None) -> Image.Image:
    """Read an item as an RGB PIL image, EXIF orientation applied.

    A path, the encoded bytes of an image file, a seekable binary file object (read from its start and put
    back at its position), an image dict ``{"bytes", "path"}``, a PIL image or a uint8 array. With
    ``config["decode"] == "reduced"``, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still
    has at least the resized size (``Image.draft``), as the fitted pipeline did.
    """
    return _load_for(item, [config])[0]


def _load_for(item: ImageInput, configs: Sequence[Config | None]) -> list[Image.Image]:
    """``item`` as an RGB PIL image for each of ``configs``, decoded once per distinct decoded size.

    Only ``decode="reduced"`` JPEG drafts can differ between configs; without them the file is decoded once.
    """
    if isinstance(item, np.ndarray):
        return [_to_rgb(Image.fromarray(np.ascontiguousarray(item)))] * len(configs)
    if isinstance(item, Image.Image):
        item.load()
        return [_to_rgb(ImageOps.exif_transpose(item))] * len(configs)
    decoded: dict[tuple[str, tuple[int, int]], Image.Image] = {}
    out: list[Image.Image] = []
    for config in configs:
        with _encoded(item) as source, Image.open(source) as img:  # reads the header; load() decodes
            need = jpeg_draft_size(img, config) if config is not None else None
            if need is not None:
                img.draft(None, need)  # the DCT scale the decoder will use: img.size becomes the decoded size
            key = (img.mode, img.size)
            if key not in decoded:
                img.load()
                decoded[key] = _to_rgb(ImageOps.exif_transpose(img))
        out.append(decoded[key])
    return out


def jpeg_draft_size(img: Image.Image, config: Config) -> tuple[int, int] | None:
    """The size to ask ``img.draft`` for (in the file's orientation), or None to decode at full size."""
    if config.get("decode") != "reduced" or img.format != "JPEG" or not _fused(config):
        return None
    width, height = img.size
    turned = img.getexif().get(0x0112) in (5, 6, 7, 8)  # the resize sees the image after EXIF rotation
    new_w, new_h = _resized_size(height, width, config) if turned else _resized_size(width, height, config)
    return (new_h, new_w) if turned else (new_w, new_h)


# -- resize and crop -----------------------------------------------------------------------------------------
# timm's evaluation transform on PIL images (torchvision's Resize calls Pillow's resize), and the faster path
# of sk_decaf's preprocessing that resamples only the crop's box of the source image.

#: With ``decode="exact"``, resized images above this many pixels are resampled on the crop's box only.
MAX_RESIZED_PIXELS = 16 * 224 * 224
#: Pillow's ``reducing_gap`` of ``decode="reduced"``.
REDUCING_GAP = 2.0


def _crop_size(config: Config) -> tuple[int, int]:
    height, width = config["input_size"][-2:]
    return int(height), int(width)


def _scale_size(config: Config) -> tuple[int, int]:
    crop_h, crop_w = _crop_size(config)
    pct = config.get("crop_pct") or 0.875
    return math.floor(crop_h / pct), math.floor(crop_w / pct)


def _fused(config: Config) -> bool:
    """Whether the box path applies: square centre or squash crops that never upsample past the crop."""
    crop_h, crop_w = _crop_size(config)
    return config.get("crop_mode") in ("center", "squash") and crop_h == crop_w and _scale_size(config)[1] >= crop_w


def _resized_size(width: int, height: int, config: Config) -> tuple[int, int]:
    """``(w, h)`` of the whole resized image for a square crop (torchvision's integer arithmetic)."""
    scale = _scale_size(config)[1]
    if config.get("crop_mode") == "squash":
        return scale, scale
    if width <= height:
        return scale, int(scale * height / width)
    return int(scale * width / height), scale


def _keep_ratio(h: int, w: int, target: tuple[int, int], longest: float) -> tuple[int, int]:
    """timm's ``ResizeKeepRatio``: scale by a ratio between the shortest (0) and longest (1) side's."""
    ratio_h, ratio_w = h / target[0], w / target[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(h / ratio), round(w / ratio)


def _timm_resize_size(h: int, w: int, config: Config) -> tuple[int, int]:
    """``(new_h, new_w)`` of timm's resize step for every crop mode."""
    scale = _scale_size(config)
    mode = config.get("crop_mode") or "center"
    if mode == "squash":
        return scale
    if mode == "border":
        return _keep_ratio(h, w, scale, 1.0)
    if scale[0] != scale[1]:
        return _keep_ratio(h, w, scale, 0.0)
    # torchvision Resize(int): the shorter side becomes ``scale``, the longer one is truncated.
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = scale[0], int(scale[0] * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _center_crop(img: Image.Image, crop_h: int, crop_w: int, fill: int | tuple[int, ...]) -> Image.Image:
    """torchvision's ``center_crop``: pad symmetrically when too small, then crop at rounded offsets."""
    w, h = img.size
    if crop_w > w or crop_h > h:
        left, top = max(crop_w - w, 0) // 2, max(crop_h - h, 0) // 2
        right, bottom = (max(crop_w - w, 0) + 1) // 2, (max(crop_h - h, 0) + 1) // 2
        img = ImageOps.expand(img, border=(left, top, right, bottom), fill=fill)
        w, h = img.size
        if (w, h) == (crop_w, crop_h):
            return img
    top, left = int(round((h - crop_h) / 2.0)), int(round((w - crop_w) / 2.0))
    return img.crop((left, top, left + crop_w, top + crop_h))


def _timm_transform(img: Image.Image, config: Config, resample: Image.Resampling) -> Image.Image:
    w, h = img.size
    new_h, new_w = _timm_resize_size(h, w, config)
    if (new_h, new_w) != (h, w):
        img = img.resize((new_w, new_h), resample)
    fill = tuple(round(255 * m) for m in config["mean"]) if config.get("crop_mode") == "border" else 0
    return _center_crop(img, *_crop_size(config), fill)


def preprocess_image(img: Image.Image, config: Config) -> np.ndarray:
    """One RGB PIL image to the model's ``uint8 (3, H, W)`` input."""
    resample = _RESAMPLE.get(config.get("interpolation"), Image.Resampling.BILINEAR)
    reduced = config.get("decode") == "reduced"
    if _fused(config):
        width, height = img.size
        new_w, new_h = _resized_size(width, height, config)
        if reduced or new_w * new_h > MAX_RESIZED_PIXELS:
            crop_h, crop_w = _crop_size(config)
            # torchvision's CenterCrop offsets in resized pixels, mapped back onto the source image.
            left, top = int(round((new_w - crop_w) / 2.0)), int(round((new_h - crop_h) / 2.0))
            sx, sy = width / new_w, height / new_h
            box = (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)
            img = img.resize((crop_w, crop_h), resample, box=box, reducing_gap=REDUCING_GAP if reduced else None)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    return np.asarray(_timm_transform(img, config, resample), dtype=np.uint8).transpose(2, 0, 1)


def preprocess_crops(img: Image.Image, config: Config) -> np.ndarray:
    """One RGB PIL image to the ``uint8 (K, 3, H, W)`` crops of test-time augmentation.

    ``config["crops"]`` is ``"center+corners"`` (``tta="10crop"``: the centre crop, then the top-left,
    top-right, bottom-left and bottom-right crops of the resized image) or ``"center+corners+whole"``
    (``tta="12jitter"``: those and the whole image squashed to the input size), as ``DeCAFTransformer``'s
    preprocessing takes them; their mirrors are computed by the graph.
    """
    if not _fused(config):
        raise ValueError(f"crops={config.get('crops')!r} need a square input with the 'center' or 'squash' crop.")
    resample = _RESAMPLE.get(config.get("interpolation"), Image.Resampling.BILINEAR)
    reduced = config.get("decode") == "reduced"
    width, height = img.size
    new_w, new_h = _resized_size(width, height, config)
    crop_h, crop_w = _crop_size(config)
    offsets = [
        (int(round((new_w - crop_w) / 2.0)), int(round((new_h - crop_h) / 2.0))),
        (0, 0),
        (new_w - crop_w, 0),
        (0, new_h - crop_h),
        (new_w - crop_w, new_h - crop_h),
    ]
    gap = REDUCING_GAP if reduced else None
    if not reduced and new_w * new_h <= MAX_RESIZED_PIXELS:  # the full resize once, then crops of it
        full = np.asarray(img.resize((new_w, new_h), resample), dtype=np.uint8)
        crops = [full[top : top + crop_h, left : left + crop_w] for left, top in offsets]
    else:  # resample only each crop's box of the source
        sx, sy = width / new_w, height / new_h
        crops = [
            np.asarray(
                img.resize(
                    (crop_w, crop_h),
                    resample,
                    box=(left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy),
                    reducing_gap=gap,
                ),
                dtype=np.uint8,
            )
            for left, top in offsets
        ]
    if config["crops"] == "center+corners+whole":
        crops.append(np.asarray(img.resize((crop_w, crop_h), resample, reducing_gap=gap), dtype=np.uint8))
    return np.stack(crops).transpose(0, 3, 1, 2)


def _prepare(img: Image.Image, config: Config) -> np.ndarray:
    """The network input of one image: ``(3, H, W)``, or ``(K, 3, H, W)`` crops."""
    if config.get("crops", "center") == "center":
        return preprocess_image(img, config)
    return preprocess_crops(img, config)


def preprocess_inputs(items: ImageInputs, configs: Sequence[Config]) -> list[np.ndarray]:
    """Images to one uint8 batch per config: paths, bytes, file objects, image dicts, PIL images or arrays.

    Each image is decoded once (once per JPEG draft scale where configs decode at different reduced sizes)
    and prepared for every config: ``(N, 3, H, W)``, or ``(N, K, 3, H, W)`` for configs with ``K`` crops.

    Raises
    ------
    ValueError
        Naming the item that cannot be read or decoded.
    """
    batches: list[list[np.ndarray]] = [[] for _ in configs]
    for i, item in enumerate(items):
        try:
            for batch, img, config in zip(batches, _load_for(item, configs), configs):
                batch.append(_prepare(img, config))
        except UnsupportedItem as exc:
            raise ValueError(f"image {i} ({_what(item)}): {exc}") from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ValueError(f"image {i} ({_what(item)}): cannot decode: {type(exc).__name__}: {exc}") from None
    return [np.stack(batch) for batch in batches]


def preprocess(items: ImageInputs, config: Config) -> np.ndarray:
    """Images to one ``uint8 (N, 3, H, W)`` batch: paths, bytes, file objects, image dicts, PIL images or arrays.

    ``(N, K, 3, H, W)`` when ``config["crops"]`` asks for ``K`` crops (see :func:`preprocess_crops`).

    Raises
    ------
    ValueError
        Naming the item that cannot be read or decoded.
    """
    return preprocess_inputs(items, [config])[0]


# -- the model -----------------------------------------------------------------------------------------------
def read_metadata(model: str | os.PathLike[str] | Any) -> dict[str, Any]:
    """The ``sk_decaf.*`` metadata of an exported model (path, or onnxruntime session), JSON-decoded."""
    import onnxruntime as ort

    if isinstance(model, ort.InferenceSession):
        session = model
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the metadata only
        options.log_severity_level = 3
        session = ort.InferenceSession(os.fspath(model), options, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    return {key: json.loads(value) for key, value in props.items() if key.startswith("sk_decaf.")}


class OnnxPipeline:
    """An exported pipeline: images in, the final step's outputs out.

    Parameters
    ----------
    path : str or path-like
        A model written by ``sk_decaf.to_onnx``.
    threads : int, default=None
        onnxruntime intra-op threads (None: every core).
    batch_size : int, default=32
        Images decoded and run per call of the session.

    Attributes
    ----------
    inputs : list of (str, dict)
        Each graph input's name and preprocessing settings, read from the model: one input, or one per
        distinct preprocessing for a model of several networks.
    config : dict
        The preprocessing settings of the first input.
    outputs : dict
        What each graph output holds (``label``, ``decision_function``, ``predict_proba`` or ``features``)
        and the ``classes``.
    classes_ : ndarray or None
        Class labels, in the column order of the scores.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None, batch_size: int = 32) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Errors only: not the optimiser's notes on the constants it folds away (an int8 network's ReLU6
        # bounds, merged into its quantized convolutions, are one line each).
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning threads would steal the cores that decode the next images.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        meta = read_metadata(self.session)
        if PREPROCESS_KEY not in meta:
            raise ValueError(
                f"{os.fspath(path)!r} was not written by sk_decaf.to_onnx: no {PREPROCESS_KEY!r} metadata."
            )
        names = [i.name for i in self.session.get_inputs()]
        listed = meta.get(INPUTS_KEY) or [{"name": names[0], "preprocess": meta[PREPROCESS_KEY]}]
        self.inputs = [(entry["name"], entry["preprocess"]) for entry in listed]
        if sorted(name for name, _ in self.inputs) != sorted(names):
            raise ValueError(
                f"{os.fspath(path)!r}: the graph's inputs {names} are not those its metadata describes "
                f"{[name for name, _ in self.inputs]}."
            )
        self.config = self.inputs[0][1]
        self.outputs: dict[str, Any] = meta.get(OUTPUTS_KEY, {})
        classes = self.outputs.get("classes")
        self.classes_ = None if classes is None else np.asarray(classes)
        self.batch_size = batch_size
        self.output_names = [o.name for o in self.session.get_outputs()]

    def prepare(self, images: ImageInputs) -> dict[str, np.ndarray]:
        """The graph's input batches for ``images``, as a dict ``{input name: uint8 array}``."""
        batches = preprocess_inputs(images, [config for _, config in self.inputs])
        return {name: batch for (name, _), batch in zip(self.inputs, batches)}

    def run(self, images: ImageInputs) -> dict[str, np.ndarray]:
        """Every output of the graph for ``images`` (see :data:`ImageInput`), as a dict."""
        parts = []
        for start in range(0, len(images), self.batch_size):
            parts.append(self.session.run(None, self.prepare(images[start : start + self.batch_size])))
        if not parts:
            raise ValueError("OnnxPipeline got no images.")
        return {name: np.concatenate(cols) for name, cols in zip(self.output_names, zip(*parts))}

    def _output(self, images: ImageInputs, name: str) -> np.ndarray:
        if name not in self.output_names:
            raise AttributeError(f"This model has no {name!r} output; it has {self.output_names}.")
        return self.run(images)[name]

    def predict(self, images: ImageInputs) -> np.ndarray:
        """The label of each image."""
        return self._output(images, "label")

    def decision_function(self, images: ImageInputs) -> np.ndarray:
        """The final step's ``decision_function``, shaped as scikit-learn's."""
        return self._output(images, "decision_function")

    def predict_proba(self, images: ImageInputs) -> np.ndarray:
        """The final step's ``predict_proba``."""
        return self._output(images, "predict_proba")

    def transform(self, images: ImageInputs) -> np.ndarray:
        """The features, for a pipeline that ends with a transformer."""
        return self._output(images, "features")


def label_scores(outputs: dict[str, np.ndarray], classes: np.ndarray | None = None) -> np.ndarray | None:
    """The score of each image's predicted label.

    Its probability when the model has ``predict_proba``, else its decision value (for two classes, the
    decision function's sign is flipped for the first class, so that the score is positive).
    """
    labels = outputs["label"]
    scores = outputs.get("predict_proba", outputs.get("decision_function"))
    if scores is None:
        return None
    if scores.ndim == 1:  # binary decision_function: > 0 means classes[1]
        first = labels == classes[0] if classes is not None else np.zeros(len(labels), dtype=bool)
        return np.where(first, -scores, scores)
    if classes is None:
        return scores.max(axis=1)
    column = {c: i for i, c in enumerate(classes.tolist())}
    return scores[np.arange(len(labels)), [column[c] for c in labels.tolist()]]


# -- command line --------------------------------------------------------------------------------------------
def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", help="a model written by sk_decaf.to_onnx or 'sk-decaf train'")
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files; '-' reads one image's bytes from standard input"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: every core)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per image with every output, instead of 'image<TAB>label<TAB>score'",
    )
    return parser


def _plain(value: object) -> Any:
    """A numpy value (string labels come back as Python ``str``) as plain Python, for printing and JSON."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def run_predict(args: argparse.Namespace, stream: IO[str] | None = None) -> int:
    """Print one line per image: ``image<TAB>label<TAB>score``, or JSON with ``--json``."""
    stream = stream or sys.stdout
    model = OnnxPipeline(args.model, threads=args.threads, batch_size=args.batch_size)
    missing = [path for path in args.images if path != "-" and not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"no such image file: {missing[0]!r}")
    if args.images.count("-") > 1:
        raise ValueError("'-' (an image read from standard input) can be given once.")
    stdin = sys.stdin.buffer.read() if "-" in args.images else b""
    outputs = model.run([stdin if path == "-" else path for path in args.images])
    if "label" not in outputs:
        raise ValueError(f"{args.model!r} does not predict labels (its outputs: {model.output_names}).")
    scores = label_scores(outputs, model.classes_)
    for i, path in enumerate(args.images):
        label = _plain(outputs["label"][i])
        if args.json:
            row = {"image": path, **{name: _plain(value[i]) for name, value in outputs.items()}}
            print(json.dumps(row), file=stream)
        else:
            print(f"{path}\t{label}" + ("" if scores is None else f"\t{scores[i]:.6g}"), file=stream)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python runtime.py model.onnx IMAGE...``: the label and score of each image."""
    parser = add_predict_arguments(
        argparse.ArgumentParser(
            prog="runtime.py",
            description="Predict with a model exported by sk_decaf.to_onnx (onnxruntime, numpy and Pillow only).",
        )
    )
    args = parser.parse_args(argv)
    try:
        return run_predict(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
