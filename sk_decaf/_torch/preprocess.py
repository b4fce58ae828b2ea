"""The transforms: an RGB image to the network's uint8 input (resize, centre crop, test-time views).

This module builds every transform; the loaders (:mod:`sk_decaf._torch.data`) only use them.
Preprocessing reuses timm: ``preprocess="model"`` is ``timm.data.create_transform`` on the model's resolved
data config; ``preprocess="decaf"`` is the same transform in timm's ``"squash"`` crop mode with
``crop_pct=0.875``: warp to 256x256 ignoring the aspect ratio, then take the centre 224 crop (DeCAF §3.1,
§4). Both stop at a uint8 tensor (timm's prefetcher mode). :class:`ResizeCrop` computes the same on the crop
only, with reduced-size decoding and bounded memory.

``decode="exact"`` is timm's evaluation transform (resize the short side to ``input / crop_pct``, then crop
the centre), bit for bit. Only where that intermediate image would be huge (aspect ratios beyond about 12:1,
such as a 10000x1 strip, which would become a 2.5 GB image) does it resample just the crop's box of the
source (Pillow's ``resize(box=...)``: same sample positions and filter support, intermediate rounding may
differ by a few levels), so memory is bounded by the output size for every input.

``decode="reduced"`` decodes a JPEG directly at the smallest DCT scale (1/2, 1/4, 1/8) that still has at
least the resized size (``Image.draft``), shrinks other formats by an integer factor first (``Image.reduce``
through Pillow's ``reducing_gap``, never below twice the resized size), and resamples only the crop's box. On
a 12-megapixel phone JPEG this is about 9x faster than decoding at full size, and the normalised pixels
differ by about 0.005 on average.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

__all__ = ["ResizeCrop", "build_transform", "make_preprocessor", "DECODE_MODES", "TTA_MODES"]

DECODE_MODES = ("reduced", "exact")
#: Test-time augmentation: views of each image, in this order (see :class:`ResizeCrop`).
TTA_MODES = (None, "flip", "10crop", "12jitter")
_N_VIEWS = {None: 1, "flip": 2, "10crop": 10, "12jitter": 12}

_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
#: Pillow's resize first shrinks by an integer factor while the image is at least this many times the output.
_REDUCING_GAP = 2.0


def build_transform(data_config, preprocess="model"):
    """timm's evaluation transform for ``preprocess`` ("model" or "decaf"), ending in a uint8 CHW tensor."""
    from timm.data import create_transform

    cfg = {
        k: data_config[k]
        for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        if k in data_config
    }
    if preprocess == "decaf":
        cfg.update(crop_mode="squash", crop_pct=0.875)
    elif preprocess != "model":
        raise ValueError(f"preprocess must be 'model' or 'decaf', got {preprocess!r}.")
    return create_transform(**cfg, is_training=False, use_prefetcher=True)


def make_preprocessor(data_config, preprocess="model", decode="exact", tta=None):
    """The image -> uint8 CHW tensor (or ``(n_views, C, H, W)`` with ``tta``) callable (see :class:`ResizeCrop`)."""
    return ResizeCrop(data_config, preprocess, decode, tta)


class ResizeCrop:
    """PIL image -> uint8 ``(3, H, W)`` tensor: timm's eval resize + centre crop, computed on the crop only.

    Parameters
    ----------
    data_config : dict
        timm data config (``input_size``, ``interpolation``, ``crop_pct``, ``crop_mode``).
    preprocess : {"model", "decaf"}
        ``"decaf"`` warps to ``input / 0.875`` squared ignoring the aspect ratio (timm's ``"squash"``).
    decode : {"reduced", "exact"}
        See the module docstring.
    tta : {None, "flip", "10crop", "12jitter"}
        Test-time views; the call then returns ``(n_views, 3, H, W)``:

        * ``"flip"``: the centre crop and its mirror;
        * ``"10crop"``: Caffe's oversampling (DeCAF): the centre and the 4 corner crops of the resized image
          (short side ``input / crop_pct``, or squashed with ``preprocess="decaf"``), then their mirrors;
        * ``"12jitter"``: Azizpour et al.'s 12 jitters: those 5 crops, the whole image squashed to the input
          size, then the mirrors of all 6.
    """

    def __init__(self, data_config, preprocess="model", decode="exact", tta=None):
        if preprocess not in ("model", "decaf"):
            raise ValueError(f"preprocess must be 'model' or 'decaf', got {preprocess!r}.")
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, got {decode!r}.")
        _, h, w = data_config["input_size"]
        self.crop = (int(w), int(h))
        self.crop_pct = 0.875 if preprocess == "decaf" else (data_config.get("crop_pct") or 0.875)
        self.crop_mode = "squash" if preprocess == "decaf" else (data_config.get("crop_mode") or "center")
        self.interpolation = data_config.get("interpolation", "bilinear")
        self.filter = _FILTERS.get(self.interpolation, Image.Resampling.BILINEAR)
        self.decode = decode
        # The box path covers timm's "center" and "squash" modes on square inputs that are never upsampled
        # past the crop; everything else (timm's "border" mode, ...) is timm's transform alone.
        self.fused = self.crop_mode in ("center", "squash") and h == w and math.floor(w / self.crop_pct) >= w
        self._timm = build_transform(data_config, preprocess)
        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}.")
        if tta not in (None, "flip") and not self.fused:
            raise ValueError(
                f"tta={tta!r} needs a square input with timm's 'center' or 'squash' crop; this "
                f"network's data config has crop_mode={self.crop_mode!r}. Use tta='flip'."
            )
        self.tta = tta
        self.n_views = _N_VIEWS[tta]

    def __repr__(self):
        return (
            f"ResizeCrop(crop={self.crop}, crop_pct={self.crop_pct}, crop_mode={self.crop_mode!r}, "
            f"interpolation={self.interpolation!r}, decode={self.decode!r}, tta={self.tta!r})"
        )

    def resized_size(self, width, height):
        """Size ``(w, h)`` of the full resized image for a ``width x height`` source (torchvision's rule)."""
        scale = math.floor(self.crop[0] / self.crop_pct)
        if self.crop_mode == "squash":
            return scale, scale
        if width <= height:
            return scale, int(scale * height / width)
        return int(scale * width / height), scale

    def draft_size(self, width, height):
        """The smallest decoded size that resampling still needs, or ``None`` to decode at full size."""
        if self.decode != "reduced" or not self.fused:
            return None
        return self.resized_size(width, height)

    #: Above this many pixels in the resized image, "exact" resamples only the crop's box.
    max_resized_pixels = 16 * 224 * 224

    def __call__(self, img):
        if not self.fused:
            out = self._timm(img)
            return out if self.tta is None else torch.stack([out, out.flip(-1)])
        width, height = img.size
        new_w, new_h = self.resized_size(width, height)
        crop_w, crop_h = self.crop
        # torchvision's CenterCrop offsets, in resized pixels.
        offsets = [(int(round((new_w - crop_w) / 2.0)), int(round((new_h - crop_h) / 2.0)))]
        if self.tta in ("10crop", "12jitter"):
            offsets += [(0, 0), (new_w - crop_w, 0), (0, new_h - crop_h), (new_w - crop_w, new_h - crop_h)]
        small = new_w * new_h <= self.max_resized_pixels
        if self.decode == "exact" and small and self.tta is None:
            return self._timm(img)
        if self.decode == "exact" and small:  # the full resize once, then crops of it: timm's pixels
            full = np.asarray(img.resize((new_w, new_h), self.filter), dtype=np.uint8)
            crops = [full[top : top + crop_h, left : left + crop_w] for left, top in offsets]
        else:  # resample only each crop's box of the source
            sx, sy = width / new_w, height / new_h
            gap = _REDUCING_GAP if self.decode == "reduced" else None
            crops = [
                np.asarray(
                    img.resize(
                        self.crop,
                        self.filter,
                        reducing_gap=gap,
                        box=(left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy),
                    ),
                    dtype=np.uint8,
                )
                for left, top in offsets
            ]
        if self.tta == "12jitter":  # the whole image, squashed to the input size
            gap = _REDUCING_GAP if self.decode == "reduced" else None
            crops.append(np.asarray(img.resize(self.crop, self.filter, reducing_gap=gap), dtype=np.uint8))
        if self.tta is not None:
            crops += [crop[:, ::-1] for crop in crops]
        views = np.stack(crops).transpose(0, 3, 1, 2)
        out = torch.from_numpy(np.ascontiguousarray(views))
        return out if self.tta is not None else out[0]
